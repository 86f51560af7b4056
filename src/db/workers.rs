//! Worker presence: which workers are idle and want a NOTIFY.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;

pub const IDLE_WORKER_REGISTER: &str = "
INSERT INTO hookline.idle_workers (worker_id) VALUES ($1)
ON CONFLICT (worker_id) DO UPDATE SET since = now()";

pub const IDLE_WORKER_DEREGISTER: &str = "
DELETE FROM hookline.idle_workers WHERE worker_id = $1";

/// Rows left by workers that died while idle; they only cost producers a
/// needless NOTIFY, so a generous age is fine.
pub const IDLE_WORKER_FORGET_STALE: &str = "
DELETE FROM hookline.idle_workers WHERE since < now() - interval '10 minutes'";

pub async fn register_idle(db: &impl GenericClient, worker: Uuid) -> Result<()> {
    db.execute(&db.prepare_cached(IDLE_WORKER_REGISTER).await?, &[&worker]).await?;
    Ok(())
}

pub async fn deregister_idle(db: &impl GenericClient, worker: Uuid) -> Result<()> {
    db.execute(&db.prepare_cached(IDLE_WORKER_DEREGISTER).await?, &[&worker]).await?;
    Ok(())
}

pub async fn forget_stale(db: &impl GenericClient) -> Result<u64> {
    Ok(db.execute(&db.prepare_cached(IDLE_WORKER_FORGET_STALE).await?, &[]).await?)
}
