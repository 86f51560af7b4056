//! `hookline.settings`: what every process and SQL producer must agree on,
//! kept in the database (see `migrations/V9__settings.sql`).

use deadpool_postgres::GenericClient;

use super::Result;

pub const SETTINGS_SET_MAX_PAYLOAD_BYTES: &str =
    "UPDATE hookline.settings SET max_payload_bytes = $1, updated_at = now() WHERE max_payload_bytes <> $1";

/// Stores HOOKLINE_MAX_PAYLOAD_BYTES, when it was given.
pub async fn store(db: &impl GenericClient, max_payload_bytes: Option<i32>) -> Result<()> {
    if let Some(bytes) = max_payload_bytes {
        db.execute(SETTINGS_SET_MAX_PAYLOAD_BYTES, &[&bytes]).await?;
    }
    Ok(())
}
