//! The audit log: one row per mutation made through the API.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;

pub const AUDIT_INSERT: &str = "
INSERT INTO hookline.audit_log (token_id, token_name, tenant, action, object_type, object_id, before, after)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// A page of entries, newest first, after cursor `$1`, optionally one tenant's.
pub const AUDIT_LIST_PAGE: &str = "
SELECT id, at, token_id, token_name, tenant, action, object_type, object_id, before, after
  FROM hookline.audit_log
 WHERE ($1::uuid IS NULL OR id < $1) AND ($3::text IS NULL OR tenant = $3)
 ORDER BY id DESC LIMIT $2";

/// Who did something.
#[derive(Debug, Clone)]
pub struct Actor {
    pub token_id: Option<Uuid>,
    pub token_name: String,
}

/// One mutation to record.
pub struct Entry<'a> {
    pub tenant: Option<&'a str>,
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

pub async fn record(db: &impl GenericClient, actor: &Actor, entry: Entry<'_>) -> Result<()> {
    db.execute(
        &db.prepare_cached(AUDIT_INSERT).await?,
        &[
            &actor.token_id,
            &actor.token_name,
            &entry.tenant,
            &entry.action,
            &entry.object_type,
            &entry.object_id,
            &entry.before,
            &entry.after,
        ],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub token_id: Option<Uuid>,
    pub token_name: String,
    pub tenant: Option<String>,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl From<Row> for AuditRow {
    fn from(r: Row) -> Self {
        AuditRow {
            id: r.get(0),
            at: r.get(1),
            token_id: r.get(2),
            token_name: r.get(3),
            tenant: r.get(4),
            action: r.get(5),
            object_type: r.get(6),
            object_id: r.get(7),
            before: r.get(8),
            after: r.get(9),
        }
    }
}

pub async fn list_page(
    db: &impl GenericClient,
    after: Option<Uuid>,
    limit: i64,
    tenant: Option<&str>,
) -> Result<Vec<AuditRow>> {
    Ok(db.query(AUDIT_LIST_PAGE, &[&after, &limit, &tenant]).await?.into_iter().map(AuditRow::from).collect())
}
