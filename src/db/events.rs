//! Events: ingest from the API, lists, and the deliveries of one event.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;

/// Inserts an event (the fan-out trigger queues its deliveries). With an
/// idempotency key already used in the tenant nothing is inserted: then
/// `EVENT_BY_IDEMPOTENCY_KEY` finds the first event. Its schema warning is
/// recorded by the events trigger after this statement's rows are
/// returned, so it is asked of the same function here — only when a type
/// of the name warns (a probe of a partial index), as the call costs API
/// ingest 6% otherwise.
pub const EVENT_INSERT: &str = "
WITH e AS (
    INSERT INTO hookline.events (id, tenant, event_type, payload, idempotency_key, source, ordering_key)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING id, tenant, event_type, payload, idempotency_key, source, created_at, ordering_key
),
w AS MATERIALIZED (
    SELECT CASE WHEN EXISTS (SELECT FROM hookline.event_types AS t
                              WHERE t.name = e.event_type AND t.validation = 'warn')
                THEN hookline.payload_violation(e.event_type, e.payload, e.tenant) END AS violation
      FROM e
)
SELECT e.*, (w.violation).pointer, (w.violation).message FROM e, w";

/// The columns of an event and its schema warning, in `Event::from(Row)` order.
macro_rules! event_columns {
    () => {
        "e.id, e.tenant, e.event_type, e.payload, e.idempotency_key, e.source, e.created_at, e.ordering_key,
         w.pointer, w.message"
    };
}

macro_rules! event_from {
    () => {
        " FROM hookline.events AS e LEFT JOIN hookline.event_schema_warnings AS w ON w.event_id = e.id "
    };
}

pub const EVENT_BY_IDEMPOTENCY_KEY: &str = concat!(
    "SELECT ",
    event_columns!(),
    event_from!(),
    "JOIN hookline.event_idempotency AS i ON i.event_id = e.id WHERE i.tenant = $1 AND i.idempotency_key = $2"
);

pub const EVENT_GET: &str = concat!("SELECT ", event_columns!(), event_from!(), "WHERE e.id = $1");

/// Newest first after cursor `$1`; optional tenant `$3`, type `$4`, and
/// creation window [`$5`, `$6`) (as UUIDv7 id bounds, so the index does it).
pub const EVENT_LIST_PAGE: &str = concat!(
    "SELECT ",
    event_columns!(),
    event_from!(),
    "WHERE ($1::uuid IS NULL OR e.id < $1)
       AND ($3::text IS NULL OR e.tenant = $3)
       AND ($4::text IS NULL OR e.event_type = $4)
       AND ($5::timestamptz IS NULL OR e.id >= hookline.uuid_v7_floor($5))
       AND ($6::timestamptz IS NULL OR e.id < hookline.uuid_v7_floor($6))
     ORDER BY e.id DESC LIMIT $2"
);

#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub tenant: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub source: String,
    pub created_at: DateTime<Utc>,
    /// Its lane at endpoints ordered by key.
    pub ordering_key: Option<String>,
    /// Where its payload fails the schema of a type that only warns.
    pub schema_warning: Option<SchemaWarning>,
}

#[derive(Debug, Clone)]
pub struct SchemaWarning {
    pub pointer: String,
    pub message: String,
}

impl From<Row> for Event {
    fn from(r: Row) -> Self {
        Event {
            id: r.get(0),
            tenant: r.get(1),
            event_type: r.get(2),
            payload: r.get(3),
            idempotency_key: r.get(4),
            source: r.get(5),
            created_at: r.get(6),
            ordering_key: r.get(7),
            schema_warning: r.get::<_, Option<String>>(8).map(|pointer| SchemaWarning { pointer, message: r.get(9) }),
        }
    }
}

pub struct NewEvent<'a> {
    pub tenant: &'a str,
    pub event_type: &'a str,
    pub payload: &'a serde_json::Value,
    pub idempotency_key: Option<&'a str>,
    pub source: &'a str,
    pub ordering_key: Option<&'a str>,
}

/// Inserts the event, or returns the one that already holds its idempotency
/// key; the flag says whether it is new.
pub async fn insert(db: &impl GenericClient, e: &NewEvent<'_>) -> Result<(Event, bool)> {
    let id = Uuid::now_v7();
    let inserted = db
        .query_opt(
            &db.prepare_cached(EVENT_INSERT).await?,
            &[&id, &e.tenant, &e.event_type, &e.payload, &e.idempotency_key, &e.source, &e.ordering_key],
        )
        .await?;
    if let Some(row) = inserted {
        return Ok((row.into(), true));
    }
    let row =
        db.query_one(&db.prepare_cached(EVENT_BY_IDEMPOTENCY_KEY).await?, &[&e.tenant, &e.idempotency_key]).await?;
    Ok((row.into(), false))
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Option<Event>> {
    Ok(db.query_opt(&db.prepare_cached(EVENT_GET).await?, &[&id]).await?.map(Event::from))
}

pub struct EventFilter<'a> {
    pub after: Option<Uuid>,
    pub limit: i64,
    pub tenant: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

pub async fn list_page(db: &impl GenericClient, f: &EventFilter<'_>) -> Result<Vec<Event>> {
    let rows = db.query(EVENT_LIST_PAGE, &[&f.after, &f.limit, &f.tenant, &f.event_type, &f.since, &f.until]).await?;
    Ok(rows.into_iter().map(Event::from).collect())
}
