//! Endpoints as the worker and `hookline dev` need them (the API adds the rest).

use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::Result;

/// Disables an endpoint with a reason; the endpoints trigger moves its pending
/// deliveries to the dead-letter queue.
pub const ENDPOINT_DISABLE: &str = "
UPDATE hookline.endpoints
   SET enabled = false, disabled_reason = $2, disabled_at = now()
 WHERE id = $1 AND enabled";

pub const ENDPOINT_INSERT_MINIMAL: &str = "
INSERT INTO hookline.endpoints (url, description, event_types)
VALUES ($1, $2, $3)
RETURNING id";

pub const ENDPOINT_FIND_BY_DESCRIPTION: &str = "
SELECT id FROM hookline.endpoints WHERE description = $1 ORDER BY created_at LIMIT 1";

pub const ENDPOINT_SET_URL: &str = "
UPDATE hookline.endpoints SET url = $2, enabled = true WHERE id = $1";

pub async fn disable(db: &impl GenericClient, id: Uuid, reason: &str) -> Result<bool> {
    Ok(db.execute(ENDPOINT_DISABLE, &[&id, &reason]).await? == 1)
}

/// Points the endpoint described `description` at `url`, creating it if needed.
pub async fn upsert_by_description(
    db: &impl GenericClient,
    description: &str,
    url: &str,
    event_types: &[&str],
) -> Result<Uuid> {
    if let Some(row) = db.query_opt(ENDPOINT_FIND_BY_DESCRIPTION, &[&description]).await? {
        let id: Uuid = row.get(0);
        db.execute(ENDPOINT_SET_URL, &[&id, &url]).await?;
        return Ok(id);
    }
    let row = db.query_one(ENDPOINT_INSERT_MINIMAL, &[&url, &description, &event_types]).await?;
    Ok(row.get(0))
}
