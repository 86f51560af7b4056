//! Changes made elsewhere — another `serve` process, an operator's SQL — to
//! what this process remembers (tokens, inbound sources): the database
//! NOTIFYs `hookline_changes` with the table's name at commit
//! (`sql/150_changes.sql`), and this process forgets what it remembered of
//! that table, so a deleted token or a disabled source stops working here
//! at once rather than after its time to live.

use tokio::sync::watch;

use super::AppState;
use crate::db::listen::{Heard, listen};

pub const CHANGES_CHANNEL: &str = "hookline_changes";

/// Runs until shutdown.
pub async fn follow(state: AppState, config: tokio_postgres::Config, shutdown: watch::Receiver<bool>) {
    let forget = move |heard: Heard<'_>| match heard {
        // Whatever changed while the connection was down went unheard.
        Heard::Connected => {
            state.tokens.forget_all();
            state.sources.forget_all();
        }
        Heard::Notification("api_tokens") => state.tokens.forget_all(),
        Heard::Notification("sources") => state.sources.forget_all(),
        Heard::Notification(other) => tracing::debug!(table = other, "change of a table nothing remembers"),
    };
    listen(config, CHANGES_CHANNEL, forget, shutdown).await
}
