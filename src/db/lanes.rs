//! Ordered lanes (sql/058_ordering.sql): letting a lane's next delivery go,
//! and forgetting the lanes producers stopped using.

use deadpool_postgres::GenericClient;

use super::Result;

/// Lets the next delivery of each lane `$2` (of endpoint `$1`) go; run after
/// the statement that ended their heads, in the same transaction.
pub const LANES_ADVANCE: &str = "SELECT hookline.advance_lanes($1, $2)";

/// Takes the lane lock of delivery `$1`'s lane, if it has one.
pub const LANES_LOCK_OF_DELIVERY: &str = "
SELECT hookline.lock_lanes(array_agg(lane)) FROM hookline.delivery_queue WHERE delivery_id = $1 AND lane IS NOT NULL";

/// Forgets the producers' lane rows unused for a day. A lane's deliveries
/// keep their places without its row; its next producer makes a new one.
pub const LANES_FORGET_UNUSED: &str = "DELETE FROM hookline.ordering_lanes WHERE used_at < now() - interval '1 day'";

pub async fn forget_unused(db: &impl GenericClient) -> Result<u64> {
    Ok(db.execute(LANES_FORGET_UNUSED, &[]).await?)
}
