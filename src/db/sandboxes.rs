//! Sandboxes: a capture URL served by hookline and the endpoint that
//! delivers to it, and the requests captured there (the last
//! [`REQUESTS_KEPT`]).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;

/// Requests a sandbox keeps; older ones go as new ones arrive.
pub const REQUESTS_KEPT: i64 = 100;

/// How long a sandbox lives.
pub const LIFETIME_HOURS: i32 = 24;

pub const SANDBOX_INSERT: &str = "
INSERT INTO hookline.sandboxes (tenant, token, endpoint_id, expires_at)
VALUES ($1, $2, $3, now() + make_interval(hours => $4))
RETURNING id, tenant, token, endpoint_id, created_at, expires_at";

/// A sandbox that has not expired.
pub const SANDBOX_GET: &str = "
SELECT id, tenant, token, endpoint_id, created_at, expires_at FROM hookline.sandboxes
 WHERE id = $1 AND expires_at > now()";

pub const SANDBOX_BY_TOKEN: &str = "
SELECT id, tenant, token, endpoint_id, created_at, expires_at FROM hookline.sandboxes
 WHERE token = $1 AND expires_at > now()";

/// Newest first after cursor `$1`, optionally of one tenant (`$3`).
pub const SANDBOX_LIST_PAGE: &str = "
SELECT id, tenant, token, endpoint_id, created_at, expires_at FROM hookline.sandboxes
 WHERE ($1::uuid IS NULL OR id < $1) AND ($3::text IS NULL OR tenant = $3) AND expires_at > now()
 ORDER BY id DESC LIMIT $2";

/// A sandbox, its requests (cascade) and its endpoint — unless the endpoint
/// was pointed elsewhere since: then it is the user's, and stays.
pub const SANDBOX_DELETE: &str = "
WITH sandbox AS (DELETE FROM hookline.sandboxes WHERE id = $1 RETURNING endpoint_id, token)
DELETE FROM hookline.endpoints AS e USING sandbox AS s
 WHERE e.id = s.endpoint_id AND e.url LIKE '%/sandbox/' || s.token";

/// Stores a request and lets the oldest beyond the kept number go.
pub const REQUEST_INSERT: &str = "
WITH stored AS (
    INSERT INTO hookline.sandbox_requests (sandbox_id, method, headers, body, signature_valid, signature_error)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING id
)
DELETE FROM hookline.sandbox_requests AS r
 WHERE r.sandbox_id = $1
   AND r.id <= (SELECT k.id FROM hookline.sandbox_requests AS k WHERE k.sandbox_id = $1
                 ORDER BY k.id DESC OFFSET $7::bigint - 1 LIMIT 1)";

/// Newest first after cursor `$2`.
pub const REQUEST_LIST_PAGE: &str = "
SELECT id, received_at, method, headers, body, signature_valid, signature_error FROM hookline.sandbox_requests
 WHERE sandbox_id = $1 AND ($2::uuid IS NULL OR id < $2)
 ORDER BY id DESC LIMIT $3";

/// Expired sandboxes go, with their requests and their endpoints (those
/// still pointed at them).
pub const EXPIRED_DELETE: &str = "
WITH expired AS (DELETE FROM hookline.sandboxes WHERE expires_at <= now() RETURNING endpoint_id, token),
     endpoints AS (DELETE FROM hookline.endpoints AS e USING expired AS x
                    WHERE e.id = x.endpoint_id AND e.url LIKE '%/sandbox/' || x.token)
SELECT count(*) FROM expired";

#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: Uuid,
    pub tenant: String,
    pub token: String,
    /// `None` once its endpoint was deleted.
    pub endpoint_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<Row> for Sandbox {
    fn from(r: Row) -> Self {
        Sandbox {
            id: r.get(0),
            tenant: r.get(1),
            token: r.get(2),
            endpoint_id: r.get(3),
            created_at: r.get(4),
            expires_at: r.get(5),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CapturedRequest {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub method: String,
    pub headers: serde_json::Value,
    pub body: String,
    pub signature_valid: bool,
    pub signature_error: Option<String>,
}

impl From<Row> for CapturedRequest {
    fn from(r: Row) -> Self {
        CapturedRequest {
            id: r.get(0),
            received_at: r.get(1),
            method: r.get(2),
            headers: r.get(3),
            body: r.get(4),
            signature_valid: r.get(5),
            signature_error: r.get(6),
        }
    }
}

/// What a capture stores.
pub struct NewRequest<'a> {
    pub method: &'a str,
    pub headers: &'a serde_json::Value,
    pub body: &'a str,
    pub signature_valid: bool,
    pub signature_error: Option<&'a str>,
}

pub async fn insert(db: &impl GenericClient, tenant: &str, token: &str, endpoint_id: Uuid) -> Result<Sandbox> {
    let statement = db.prepare_cached(SANDBOX_INSERT).await?;
    Ok(db.query_one(&statement, &[&tenant, &token, &endpoint_id, &LIFETIME_HOURS]).await?.into())
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Option<Sandbox>> {
    Ok(db.query_opt(&db.prepare_cached(SANDBOX_GET).await?, &[&id]).await?.map(Sandbox::from))
}

pub async fn by_token(db: &impl GenericClient, token: &str) -> Result<Option<Sandbox>> {
    Ok(db.query_opt(&db.prepare_cached(SANDBOX_BY_TOKEN).await?, &[&token]).await?.map(Sandbox::from))
}

pub async fn list_page(
    db: &impl GenericClient,
    after: Option<Uuid>,
    limit: i64,
    tenant: Option<&str>,
) -> Result<Vec<Sandbox>> {
    let rows = db.query(SANDBOX_LIST_PAGE, &[&after, &limit, &tenant]).await?;
    Ok(rows.into_iter().map(Sandbox::from).collect())
}

pub async fn delete(db: &impl GenericClient, sandbox: &Sandbox) -> Result<()> {
    db.execute(&db.prepare_cached(SANDBOX_DELETE).await?, &[&sandbox.id]).await?;
    Ok(())
}

pub async fn capture(db: &impl GenericClient, sandbox: Uuid, r: &NewRequest<'_>) -> Result<()> {
    let statement = db.prepare_cached(REQUEST_INSERT).await?;
    db.execute(
        &statement,
        &[&sandbox, &r.method, &r.headers, &r.body, &r.signature_valid, &r.signature_error, &REQUESTS_KEPT],
    )
    .await?;
    Ok(())
}

pub async fn requests_page(
    db: &impl GenericClient,
    sandbox: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<CapturedRequest>> {
    let rows = db.query(&db.prepare_cached(REQUEST_LIST_PAGE).await?, &[&sandbox, &after, &limit]).await?;
    Ok(rows.into_iter().map(CapturedRequest::from).collect())
}

/// Deletes expired sandboxes with their endpoints; returns how many.
pub async fn delete_expired(db: &impl GenericClient) -> Result<i64> {
    Ok(db.query_one(EXPIRED_DELETE, &[]).await?.get(0))
}
