//! Wake-ups for the claim loop, from producers' NOTIFYs (see
//! [`crate::db::listen`]). Notifications are hints; the claim loop also
//! polls, so one missed while reconnecting costs at most one poll interval.

use std::sync::Arc;

use tokio::sync::{Notify, watch};

use crate::db::listen::{Heard, listen as listen_on};

pub const WAKE_CHANNEL: &str = "hookline_wake";

/// Runs until shutdown, calling `wake.notify_one()` per notification and
/// per (re)connection, which may have missed some. Bursts collapse:
/// `Notify` stores at most one pending wake-up.
pub async fn listen(config: tokio_postgres::Config, wake: Arc<Notify>, shutdown: watch::Receiver<bool>) {
    listen_on(config, WAKE_CHANNEL, |_: Heard<'_>| wake.notify_one(), shutdown).await
}
