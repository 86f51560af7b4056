//! Endpoints: the API's CRUD, and what the worker and `hookline dev` need.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;
use crate::secrets::StoredSecret;

/// The columns every endpoint query returns, in `Endpoint::from(Row)` order.
macro_rules! endpoint_columns {
    () => {
        "id, tenant, url, description, event_types, secret, previous_secret, previous_secret_expires_at,
         http_method, headers, timeout_ms, rate_limit_per_s, max_in_flight, retry_schedule, disable_after_failures,
         enabled, disabled_reason, disabled_at, metadata, created_at, updated_at, disable_after_open_s,
         ordering, ordering_on_dead, batch_max_events, batch_max_bytes, batch_max_wait_ms, batch_format,
         signature, signature_header, signature_hash, transformation"
    };
}
pub(crate) use endpoint_columns;

pub const ENDPOINT_INSERT: &str = concat!(
    "INSERT INTO hookline.endpoints (tenant, url, description, event_types, secret, http_method, headers,
        timeout_ms, rate_limit_per_s, max_in_flight, retry_schedule, disable_after_failures, enabled, metadata,
        disable_after_open_s, ordering, ordering_on_dead, batch_max_events, batch_max_bytes, batch_max_wait_ms,
        batch_format, signature, signature_header, signature_hash, transformation)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
             $24, $25)
     RETURNING ",
    endpoint_columns!()
);

pub const ENDPOINT_GET: &str = concat!("SELECT ", endpoint_columns!(), " FROM hookline.endpoints WHERE id = $1");

/// The same, locked for an update in this transaction.
pub const ENDPOINT_GET_FOR_UPDATE: &str =
    concat!("SELECT ", endpoint_columns!(), " FROM hookline.endpoints WHERE id = $1 FOR UPDATE");

/// Newest first, after cursor `$1`, optionally of one tenant (`$3`).
pub const ENDPOINT_LIST_PAGE: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    " FROM hookline.endpoints
     WHERE ($1::uuid IS NULL OR id < $1) AND ($3::text IS NULL OR tenant = $3)
     ORDER BY id DESC LIMIT $2"
);

/// Writes every changeable column (the API reads, changes and writes back).
pub const ENDPOINT_UPDATE: &str = concat!(
    "UPDATE hookline.endpoints
        SET url = $2, description = $3, event_types = $4, http_method = $5, headers = $6, timeout_ms = $7,
            rate_limit_per_s = $8, max_in_flight = $9, retry_schedule = $10, disable_after_failures = $11,
            enabled = $12, disabled_reason = $13, metadata = $14, secret = $15, previous_secret = $16,
            previous_secret_expires_at = $17, disable_after_open_s = $18, ordering = $19, ordering_on_dead = $20,
            batch_max_events = $21, batch_max_bytes = $22, batch_max_wait_ms = $23, batch_format = $24,
            signature = $25, signature_header = $26, signature_hash = $27, transformation = $28
      WHERE id = $1
     RETURNING ",
    endpoint_columns!()
);

pub const ENDPOINT_DELETE: &str = "DELETE FROM hookline.endpoints WHERE id = $1";

/// Disables an endpoint with a reason; the endpoints trigger moves its pending
/// deliveries to the dead-letter queue.
pub const ENDPOINT_DISABLE: &str = "
UPDATE hookline.endpoints
   SET enabled = false, disabled_reason = $2, disabled_at = now()
 WHERE id = $1 AND enabled";

/// Disables the endpoints whose circuit has stayed open longer than they
/// allow (`disable_after_open_s`, else `$1` seconds); returns their ids.
pub const ENDPOINT_DISABLE_LONG_OPEN: &str = "
UPDATE hookline.endpoints AS ep
   SET enabled = false,
       disabled_reason = format('circuit open for more than %s s (since %s)',
                                coalesce(ep.disable_after_open_s, $1), s.circuit_opened_at),
       disabled_at = now()
  FROM hookline.endpoint_state AS s
 WHERE s.endpoint_id = ep.id AND ep.enabled AND s.circuit_state <> 'closed'
   AND s.circuit_opened_at <= now() - make_interval(secs => coalesce(ep.disable_after_open_s, $1))
RETURNING ep.id";

pub const ENDPOINT_INSERT_MINIMAL: &str = "
INSERT INTO hookline.endpoints (url, description, event_types)
VALUES ($1, $2, $3)
RETURNING id";

pub const ENDPOINT_FIND_BY_DESCRIPTION: &str = "
SELECT id FROM hookline.endpoints WHERE description = $1 ORDER BY created_at LIMIT 1";

pub const ENDPOINT_SET_URL: &str = "
UPDATE hookline.endpoints SET url = $2, enabled = true WHERE id = $1";

/// An endpoint row, secrets included: the API decides what to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub secret: StoredSecret,
    pub previous_secret: Option<StoredSecret>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub http_method: String,
    pub headers: serde_json::Value,
    pub timeout_ms: i32,
    pub rate_limit_per_s: Option<i32>,
    pub max_in_flight: Option<i32>,
    pub retry_schedule: Option<Vec<f64>>,
    pub disable_after_failures: i32,
    /// Seconds its circuit may stay open before it is disabled (`None`:
    /// the workers' HOOKLINE_DISABLE_AFTER_OPEN).
    pub disable_after_open_s: Option<i32>,
    /// `none`, `endpoint` or `key` (sql/058_ordering.sql).
    pub ordering: String,
    /// `wait` or `skip`: whether a dead delivery holds its lane back.
    pub ordering_on_dead: String,
    /// Its batches, if it takes its deliveries in batches.
    pub batch: Option<Batch>,
    /// `v1`, `v1a` or `hmac_header`, with the latter's header (`None`: the
    /// default) and hash (src/signing.rs).
    pub signature: String,
    pub signature_header: Option<String>,
    pub signature_hash: String,
    /// The minijinja template that writes its request bodies.
    pub transformation: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Row> for Endpoint {
    fn from(r: Row) -> Self {
        Endpoint {
            id: r.get(0),
            tenant: r.get(1),
            url: r.get(2),
            description: r.get(3),
            event_types: r.get(4),
            secret: r.get(5),
            previous_secret: r.get(6),
            previous_secret_expires_at: r.get(7),
            http_method: r.get(8),
            headers: r.get(9),
            timeout_ms: r.get(10),
            rate_limit_per_s: r.get(11),
            max_in_flight: r.get(12),
            retry_schedule: r.get(13),
            disable_after_failures: r.get(14),
            enabled: r.get(15),
            disabled_reason: r.get(16),
            disabled_at: r.get(17),
            metadata: r.get(18),
            created_at: r.get(19),
            updated_at: r.get(20),
            disable_after_open_s: r.get(21),
            ordering: r.get(22),
            ordering_on_dead: r.get(23),
            batch: Batch::from_columns(r.get(24), r.get(25), r.get(26), r.get(27)),
            signature: r.get(28),
            signature_header: r.get(29),
            signature_hash: r.get(30),
            transformation: r.get(31),
        }
    }
}

/// An endpoint's `batch` settings (all four columns, or none).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub max_events: i32,
    pub max_bytes: i32,
    pub max_wait_ms: i32,
    /// `json` or `ndjson`.
    pub format: String,
}

impl Batch {
    fn from_columns(
        max_events: Option<i32>,
        max_bytes: Option<i32>,
        max_wait_ms: Option<i32>,
        format: Option<String>,
    ) -> Option<Batch> {
        Some(Batch { max_events: max_events?, max_bytes: max_bytes?, max_wait_ms: max_wait_ms?, format: format? })
    }

    /// The four columns' values.
    fn columns(batch: &Option<Batch>) -> (Option<i32>, Option<i32>, Option<i32>, Option<&str>) {
        match batch {
            Some(b) => (Some(b.max_events), Some(b.max_bytes), Some(b.max_wait_ms), Some(b.format.as_str())),
            None => (None, None, None, None),
        }
    }
}

/// What a new endpoint is made of.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub tenant: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub secret: StoredSecret,
    pub http_method: String,
    pub headers: serde_json::Value,
    pub timeout_ms: i32,
    pub rate_limit_per_s: Option<i32>,
    pub max_in_flight: Option<i32>,
    pub retry_schedule: Option<Vec<f64>>,
    pub disable_after_failures: i32,
    pub disable_after_open_s: Option<i32>,
    pub ordering: String,
    pub ordering_on_dead: String,
    pub batch: Option<Batch>,
    pub signature: String,
    pub signature_header: Option<String>,
    pub signature_hash: String,
    pub transformation: Option<String>,
    pub enabled: bool,
    pub metadata: serde_json::Value,
}

pub async fn insert(db: &impl GenericClient, e: &NewEndpoint) -> Result<Endpoint> {
    let batch = Batch::columns(&e.batch);
    let row = db
        .query_one(
            &db.prepare_cached(ENDPOINT_INSERT).await?,
            &[
                &e.tenant,
                &e.url,
                &e.description,
                &e.event_types,
                &e.secret,
                &e.http_method,
                &e.headers,
                &e.timeout_ms,
                &e.rate_limit_per_s,
                &e.max_in_flight,
                &e.retry_schedule,
                &e.disable_after_failures,
                &e.enabled,
                &e.metadata,
                &e.disable_after_open_s,
                &e.ordering,
                &e.ordering_on_dead,
                &batch.0,
                &batch.1,
                &batch.2,
                &batch.3,
                &e.signature,
                &e.signature_header,
                &e.signature_hash,
                &e.transformation,
            ],
        )
        .await?;
    Ok(row.into())
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Option<Endpoint>> {
    Ok(db.query_opt(&db.prepare_cached(ENDPOINT_GET).await?, &[&id]).await?.map(Endpoint::from))
}

pub async fn get_for_update(db: &impl GenericClient, id: Uuid) -> Result<Option<Endpoint>> {
    Ok(db.query_opt(&db.prepare_cached(ENDPOINT_GET_FOR_UPDATE).await?, &[&id]).await?.map(Endpoint::from))
}

pub async fn list_page(
    db: &impl GenericClient,
    after: Option<Uuid>,
    limit: i64,
    tenant: Option<&str>,
) -> Result<Vec<Endpoint>> {
    Ok(db.query(ENDPOINT_LIST_PAGE, &[&after, &limit, &tenant]).await?.into_iter().map(Endpoint::from).collect())
}

/// Writes `e`'s changeable columns back.
pub async fn update(db: &impl GenericClient, e: &Endpoint) -> Result<Endpoint> {
    let batch = Batch::columns(&e.batch);
    let row = db
        .query_one(
            &db.prepare_cached(ENDPOINT_UPDATE).await?,
            &[
                &e.id,
                &e.url,
                &e.description,
                &e.event_types,
                &e.http_method,
                &e.headers,
                &e.timeout_ms,
                &e.rate_limit_per_s,
                &e.max_in_flight,
                &e.retry_schedule,
                &e.disable_after_failures,
                &e.enabled,
                &e.disabled_reason,
                &e.metadata,
                &e.secret,
                &e.previous_secret,
                &e.previous_secret_expires_at,
                &e.disable_after_open_s,
                &e.ordering,
                &e.ordering_on_dead,
                &batch.0,
                &batch.1,
                &batch.2,
                &batch.3,
                &e.signature,
                &e.signature_header,
                &e.signature_hash,
                &e.transformation,
            ],
        )
        .await?;
    Ok(row.into())
}

pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<bool> {
    Ok(db.execute(&db.prepare_cached(ENDPOINT_DELETE).await?, &[&id]).await? == 1)
}

pub async fn disable(db: &impl GenericClient, id: Uuid, reason: &str) -> Result<bool> {
    Ok(db.execute(&db.prepare_cached(ENDPOINT_DISABLE).await?, &[&id, &reason]).await? == 1)
}

/// Disables endpoints whose circuit has been open longer than they allow,
/// `default` when they say nothing; returns their ids.
pub async fn disable_long_open(db: &impl GenericClient, default: std::time::Duration) -> Result<Vec<Uuid>> {
    let default_s = default.as_secs().clamp(1, i32::MAX as u64) as i32;
    let rows = db.query(&db.prepare_cached(ENDPOINT_DISABLE_LONG_OPEN).await?, &[&default_s]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Points the endpoint described `description` at `url`, creating it if needed.
pub async fn upsert_by_description(
    db: &impl GenericClient,
    description: &str,
    url: &str,
    event_types: &[&str],
) -> Result<Uuid> {
    if let Some(row) = db.query_opt(&db.prepare_cached(ENDPOINT_FIND_BY_DESCRIPTION).await?, &[&description]).await? {
        let id: Uuid = row.get(0);
        db.execute(&db.prepare_cached(ENDPOINT_SET_URL).await?, &[&id, &url]).await?;
        return Ok(id);
    }
    let row =
        db.query_one(&db.prepare_cached(ENDPOINT_INSERT_MINIMAL).await?, &[&url, &description, &event_types]).await?;
    Ok(row.get(0))
}
