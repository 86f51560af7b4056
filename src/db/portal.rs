//! Tenant portal links and the sessions they are exchanged for.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;

pub const LINK_INSERT: &str = "
INSERT INTO hookline.portal_links (key_hash, tenant, capabilities, endpoint_ids, branding, created_by, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
RETURNING id, tenant, capabilities, endpoint_ids, branding, created_by, created_at, expires_at";

/// Marks a live, unused link used; returns it (none: unknown, used or expired).
pub const LINK_EXCHANGE: &str = "
UPDATE hookline.portal_links SET exchanged_at = now()
 WHERE key_hash = $1 AND exchanged_at IS NULL AND expires_at > now()
RETURNING id, tenant, capabilities, endpoint_ids, branding, created_by, created_at, expires_at";

pub const SESSION_INSERT: &str = "
INSERT INTO hookline.portal_sessions (key_hash, link_id) VALUES ($1, $2)";

/// The link of a session, while the link lives.
pub const SESSION_LINK: &str = "
SELECT l.id, l.tenant, l.capabilities, l.endpoint_ids, l.branding, l.created_by, l.created_at, l.expires_at
  FROM hookline.portal_sessions AS s
  JOIN hookline.portal_links AS l ON l.id = s.link_id
 WHERE s.key_hash = $1 AND l.expires_at > now()";

/// Ends a link of tenant `$2` (NULL: any) and its session.
pub const LINK_DELETE: &str = "
DELETE FROM hookline.portal_links WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)";

pub const LINK_DELETE_EXPIRED: &str = "
DELETE FROM hookline.portal_links WHERE expires_at < now()";

/// A portal link: one tenant, what may be done, for how long.
#[derive(Debug, Clone)]
pub struct Link {
    pub id: Uuid,
    pub tenant: String,
    pub capabilities: Vec<String>,
    pub endpoint_ids: Option<Vec<Uuid>>,
    pub branding: serde_json::Value,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<Row> for Link {
    fn from(r: Row) -> Self {
        Link {
            id: r.get(0),
            tenant: r.get(1),
            capabilities: r.get(2),
            endpoint_ids: r.get(3),
            branding: r.get(4),
            created_by: r.get(5),
            created_at: r.get(6),
            expires_at: r.get(7),
        }
    }
}

pub struct NewLink<'a> {
    pub key_hash: &'a [u8],
    pub tenant: &'a str,
    pub capabilities: &'a [String],
    pub endpoint_ids: Option<&'a [Uuid]>,
    pub branding: &'a serde_json::Value,
    pub created_by: Uuid,
    pub lifetime_s: f64,
}

pub async fn insert_link(db: &impl GenericClient, new: &NewLink<'_>) -> Result<Link> {
    let row = db
        .query_one(
            &db.prepare_cached(LINK_INSERT).await?,
            &[
                &new.key_hash,
                &new.tenant,
                &new.capabilities,
                &new.endpoint_ids,
                &new.branding,
                &new.created_by,
                &new.lifetime_s,
            ],
        )
        .await?;
    Ok(Link::from(row))
}

/// Uses the link up and opens a session on it (`session_hash`), in `tx`.
pub async fn exchange(db: &impl GenericClient, link_hash: &[u8], session_hash: &[u8]) -> Result<Option<Link>> {
    let Some(row) = db.query_opt(&db.prepare_cached(LINK_EXCHANGE).await?, &[&link_hash]).await? else {
        return Ok(None);
    };
    let link = Link::from(row);
    db.execute(&db.prepare_cached(SESSION_INSERT).await?, &[&session_hash, &link.id]).await?;
    Ok(Some(link))
}

pub async fn session_link(db: &impl GenericClient, session_hash: &[u8]) -> Result<Option<Link>> {
    Ok(db.query_opt(&db.prepare_cached(SESSION_LINK).await?, &[&session_hash]).await?.map(Link::from))
}

/// Whether a link was there to delete.
pub async fn delete_link(db: &impl GenericClient, id: Uuid, tenant: Option<&str>) -> Result<bool> {
    Ok(db.execute(&db.prepare_cached(LINK_DELETE).await?, &[&id, &tenant]).await? == 1)
}

pub async fn delete_expired(db: &impl GenericClient) -> Result<i64> {
    Ok(db.execute(LINK_DELETE_EXPIRED, &[]).await? as i64)
}
