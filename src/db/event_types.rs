//! The event-type catalogue: the API's CRUD, the checks a schema passes
//! before it is stored, and the names endpoints may subscribe to.
//!
//! A type's `tenant` is `None` when every tenant shares it; a tenant's own
//! type of the same name takes its place for that tenant
//! (`hookline.event_type_for`).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;
use crate::domain::schema::{self, Refused};

/// The columns every query returns, in `EventType::from(Row)` order; the
/// last counts the warnings of the last 24 hours (their index holds them
/// by type and event id, which is also their time).
/// With a filter, only the warnings of the events it lets through (a
/// tenant's, when a shared type is shown to it).
macro_rules! type_columns {
    () => {
        type_columns!("")
    };
    ($warnings_filter:literal) => {
        concat!(
            "t.id, t.name, t.tenant, t.description, t.schema, t.example, t.deprecated, t.validation,
             t.created_at, t.updated_at,
             (SELECT count(*) FROM hookline.event_schema_warnings AS w
               WHERE w.event_type_id = t.id AND w.event_id >= hookline.uuid_v7_floor(now() - interval '24 hours')",
            $warnings_filter,
            ")"
        )
    };
}

pub const EVENT_TYPE_INSERT: &str = concat!(
    "WITH t AS (
        INSERT INTO hookline.event_types (name, tenant, description, schema, example, deprecated, validation,
                                          checked_schema)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *
     )
     SELECT ",
    type_columns!(),
    " FROM t"
);

pub const EVENT_TYPE_UPDATE: &str = concat!(
    "WITH t AS (
        UPDATE hookline.event_types
           SET description = $2, schema = $3, example = $4, deprecated = $5, validation = $6, checked_schema = $7,
               updated_at = now()
         WHERE id = $1 RETURNING *
     )
     SELECT ",
    type_columns!(),
    " FROM t"
);

/// The type of this name kept for tenant `$2` (`NULL`: the shared one).
pub const EVENT_TYPE_GET: &str = concat!(
    "SELECT ",
    type_columns!(),
    " FROM hookline.event_types AS t WHERE t.name = $1 AND coalesce(t.tenant, '') = coalesce($2, '')"
);

pub const EVENT_TYPE_GET_FOR_UPDATE: &str = concat!(
    "SELECT ",
    type_columns!(),
    " FROM hookline.event_types AS t WHERE t.name = $1 AND coalesce(t.tenant, '') = coalesce($2, '') FOR UPDATE"
);

/// The type that applies to events of this name in tenant `$2`.
pub const EVENT_TYPE_FOR_TENANT: &str = concat!(
    "SELECT ",
    type_columns!(" AND w.tenant = $2"),
    " FROM hookline.event_type_for($1, $2) AS t WHERE t.id IS NOT NULL"
);

/// Newest first after cursor `$1`; with tenant `$3`, the types that apply
/// to it (shared and its own) with its warnings only; optionally only (not)
/// deprecated ones (`$4`).
pub const EVENT_TYPE_LIST_PAGE: &str = concat!(
    "SELECT ",
    type_columns!(" AND ($3::text IS NULL OR w.tenant = $3)"),
    " FROM hookline.event_types AS t
     WHERE ($1::uuid IS NULL OR t.id < $1)
       AND ($3::text IS NULL OR t.tenant IS NULL OR t.tenant = $3)
       AND ($4::boolean IS NULL OR t.deprecated = $4)
     ORDER BY t.id DESC LIMIT $2"
);

pub const EVENT_TYPE_DELETE: &str = "DELETE FROM hookline.event_types WHERE id = $1";

/// The names of the types that apply to tenant `$1`.
pub const EVENT_TYPE_NAMES_FOR_TENANT: &str =
    "SELECT DISTINCT name FROM hookline.event_types WHERE tenant IS NULL OR tenant = $1";

/// Endpoints that subscribe to type `$1` by name and that no other type of
/// the name would apply to once type `$3` (of tenant `$2`) is gone.
pub const EVENT_TYPE_SUBSCRIBERS_LEFT_WITHOUT: &str = "
SELECT count(*) FROM hookline.endpoints AS e
 WHERE $1 = ANY (e.event_types)
   AND ($2::text IS NULL OR e.tenant = $2)
   AND NOT EXISTS (SELECT FROM hookline.event_types AS t
                    WHERE t.name = $1 AND t.id <> $3 AND (t.tenant IS NULL OR t.tenant = e.tenant))";

/// Where a payload fails a schema, or `NULL`s (`hookline.schema_violation`).
pub const SCHEMA_VIOLATION: &str = "SELECT v.pointer, v.message FROM hookline.schema_violation($1, $2) AS v";

/// For each pattern, what PostgreSQL says of it when it does not compile.
pub const REGEX_ERRORS: &str = "
SELECT p.nth::integer - 1, hookline.regex_error(p.pattern)
  FROM unnest($1::text[]) WITH ORDINALITY AS p(pattern, nth)
 WHERE hookline.regex_error(p.pattern) IS NOT NULL
 ORDER BY p.nth LIMIT 1";

#[derive(Debug, Clone)]
pub struct EventType {
    pub id: Uuid,
    pub settings: EventTypeSettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Events accepted with a schema warning in the last 24 hours.
    pub warnings_24h: i64,
}

/// What the API sets.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTypeSettings {
    pub name: String,
    pub tenant: Option<String>,
    pub description: String,
    pub schema: Option<Value>,
    pub example: Option<Value>,
    pub deprecated: bool,
    /// `off`, `warn` or `enforce`.
    pub validation: String,
}

impl From<Row> for EventType {
    fn from(r: Row) -> Self {
        EventType {
            id: r.get(0),
            settings: EventTypeSettings {
                name: r.get(1),
                tenant: r.get(2),
                description: r.get(3),
                schema: r.get(4),
                example: r.get(5),
                deprecated: r.get(6),
                validation: r.get(7),
            },
            created_at: r.get(8),
            updated_at: r.get(9),
            warnings_24h: r.get(10),
        }
    }
}

pub async fn insert(db: &impl GenericClient, s: &EventTypeSettings) -> Result<EventType> {
    let checked = s.schema.as_ref().map(schema::for_database);
    let row = db
        .query_one(
            &db.prepare_cached(EVENT_TYPE_INSERT).await?,
            &[&s.name, &s.tenant, &s.description, &s.schema, &s.example, &s.deprecated, &s.validation, &checked],
        )
        .await?;
    Ok(row.into())
}

pub async fn update(db: &impl GenericClient, id: Uuid, s: &EventTypeSettings) -> Result<EventType> {
    let checked = s.schema.as_ref().map(schema::for_database);
    let row = db
        .query_one(
            &db.prepare_cached(EVENT_TYPE_UPDATE).await?,
            &[&id, &s.description, &s.schema, &s.example, &s.deprecated, &s.validation, &checked],
        )
        .await?;
    Ok(row.into())
}

/// The type of this name kept for `tenant` (`None`: the shared one).
pub async fn get(db: &impl GenericClient, name: &str, tenant: Option<&str>) -> Result<Option<EventType>> {
    Ok(db.query_opt(&db.prepare_cached(EVENT_TYPE_GET).await?, &[&name, &tenant]).await?.map(EventType::from))
}

pub async fn get_for_update(db: &impl GenericClient, name: &str, tenant: Option<&str>) -> Result<Option<EventType>> {
    let statement = db.prepare_cached(EVENT_TYPE_GET_FOR_UPDATE).await?;
    Ok(db.query_opt(&statement, &[&name, &tenant]).await?.map(EventType::from))
}

/// The type that applies to events of this name in `tenant`.
pub async fn for_tenant(db: &impl GenericClient, name: &str, tenant: &str) -> Result<Option<EventType>> {
    let statement = db.prepare_cached(EVENT_TYPE_FOR_TENANT).await?;
    Ok(db.query_opt(&statement, &[&name, &tenant]).await?.map(EventType::from))
}

pub async fn list_page(
    db: &impl GenericClient,
    after: Option<Uuid>,
    limit: i64,
    tenant: Option<&str>,
    deprecated: Option<bool>,
) -> Result<Vec<EventType>> {
    let rows = db.query(EVENT_TYPE_LIST_PAGE, &[&after, &limit, &tenant, &deprecated]).await?;
    Ok(rows.into_iter().map(EventType::from).collect())
}

pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<()> {
    db.execute(&db.prepare_cached(EVENT_TYPE_DELETE).await?, &[&id]).await?;
    Ok(())
}

pub async fn names_for_tenant(db: &impl GenericClient, tenant: &str) -> Result<Vec<String>> {
    let rows = db.query(&db.prepare_cached(EVENT_TYPE_NAMES_FOR_TENANT).await?, &[&tenant]).await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// Endpoints that would subscribe to a type that no longer exists once
/// `event_type` is deleted.
pub async fn subscribers_left_without(db: &impl GenericClient, event_type: &EventType) -> Result<i64> {
    let s = &event_type.settings;
    let statement = db.prepare_cached(EVENT_TYPE_SUBSCRIBERS_LEFT_WITHOUT).await?;
    Ok(db.query_one(&statement, &[&s.name, &s.tenant, &event_type.id]).await?.get(0))
}

/// Where `instance` fails `schema`, as the events trigger would say it.
pub async fn schema_violation(db: &impl GenericClient, schema: &Value, instance: &Value) -> Result<Option<Refused>> {
    let checked = schema::for_database(schema);
    let row = db.query_one(&db.prepare_cached(SCHEMA_VIOLATION).await?, &[&checked, instance]).await?;
    let pointer: Option<String> = row.get(0);
    Ok(pointer.map(|pointer| Refused { pointer, reason: row.get(1) }))
}

/// Whether hookline can store `schema` and check payloads against it
/// exactly: [`schema::check`], then its patterns compiled by PostgreSQL.
pub async fn check_schema(db: &impl GenericClient, schema: &Value) -> Result<Result<(), Refused>> {
    let patterns = match schema::check(schema) {
        Ok(patterns) => patterns,
        Err(refused) => return Ok(Err(refused)),
    };
    if patterns.is_empty() {
        return Ok(Ok(()));
    }
    let texts: Vec<&str> = patterns.iter().map(|p| p.pattern.as_str()).collect();
    let failed = db.query_opt(&db.prepare_cached(REGEX_ERRORS).await?, &[&texts]).await?;
    Ok(match failed {
        None => Ok(()),
        Some(row) => {
            let nth: i32 = row.get(0);
            let error: String = row.get(1);
            Err(Refused {
                pointer: patterns[nth as usize].pointer.clone(),
                reason: format!("PostgreSQL cannot use this regular expression: {error}"),
            })
        }
    })
}
