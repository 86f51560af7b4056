//! Inbound sources: the API's CRUD, the receiver's lookup by name, and the
//! receivers' counters. A source's secret is sealed on its way in and
//! opened on its way out (see [`crate::secrets`]): in memory it is the
//! secret, in the table never.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::Result;
use crate::secrets::{KeyRing, StoredSecret};

/// The columns every source query returns, in `Source::from(Row)` order: the
/// source and what its receiver saw.
macro_rules! source_columns {
    () => {
        "s.id, s.tenant, s.name, s.description, s.scheme, s.secret, s.signature_header, s.signature_encoding,
         s.id_header, s.timestamp_tolerance_s, s.event_type, s.enabled, s.metadata, s.created_at, s.updated_at,
         coalesce(st.accepted, 0), coalesce(st.duplicates, 0), coalesce(st.failed_verifications, 0),
         st.last_accepted_at, st.last_failed_at, st.last_failure,
         s.event_type_from, s.event_type_prefix, s.keep_headers"
    };
}

macro_rules! source_from {
    () => {
        " FROM hookline.sources AS s LEFT JOIN hookline.source_state AS st ON st.source_id = s.id "
    };
}

pub const SOURCE_INSERT: &str = concat!(
    "WITH s AS (
        INSERT INTO hookline.sources (tenant, name, description, scheme, secret, signature_header,
                                      signature_encoding, id_header, timestamp_tolerance_s, event_type,
                                      enabled, metadata, event_type_from, event_type_prefix, keep_headers)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        RETURNING *
     )
     SELECT ",
    source_columns!(),
    " FROM s LEFT JOIN hookline.source_state AS st ON st.source_id = s.id"
);

pub const SOURCE_GET: &str = concat!("SELECT ", source_columns!(), source_from!(), "WHERE s.id = $1");

pub const SOURCE_GET_FOR_UPDATE: &str =
    concat!("SELECT ", source_columns!(), source_from!(), "WHERE s.id = $1 FOR UPDATE OF s");

/// The receiver's lookup.
pub const SOURCE_BY_NAME: &str = concat!("SELECT ", source_columns!(), source_from!(), "WHERE s.name = $1");

/// Newest first, after cursor `$1`, optionally of one tenant (`$3`).
pub const SOURCE_LIST_PAGE: &str = concat!(
    "SELECT ",
    source_columns!(),
    source_from!(),
    "WHERE ($1::uuid IS NULL OR s.id < $1) AND ($3::text IS NULL OR s.tenant = $3)
     ORDER BY s.id DESC LIMIT $2"
);

/// Writes every column of the settings (the API reads, changes and writes
/// back), in `SOURCE_INSERT`'s order after the id.
pub const SOURCE_UPDATE: &str = "
UPDATE hookline.sources
   SET tenant = $2, name = $3, description = $4, scheme = $5, secret = $6, signature_header = $7,
       signature_encoding = $8, id_header = $9, timestamp_tolerance_s = $10, event_type = $11, enabled = $12,
       metadata = $13, event_type_from = $14, event_type_prefix = $15, keep_headers = $16
 WHERE id = $1";

pub const SOURCE_DELETE: &str = "DELETE FROM hookline.sources WHERE id = $1";

/// Adds receivers' counts (one element per source in each array); counts of
/// sources deleted meanwhile are dropped.
pub const SOURCE_ADD_COUNTS: &str = "
INSERT INTO hookline.source_state AS st
       (source_id, accepted, duplicates, failed_verifications, last_accepted_at, last_failed_at, last_failure)
SELECT c.source_id, c.accepted, c.duplicates, c.failed, c.last_accepted_at, c.last_failed_at, c.last_failure
  FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], $7::text[])
    AS c(source_id, accepted, duplicates, failed, last_accepted_at, last_failed_at, last_failure)
  JOIN hookline.sources AS s ON s.id = c.source_id
 ORDER BY c.source_id
    ON CONFLICT (source_id) DO UPDATE
   SET accepted = st.accepted + excluded.accepted,
       duplicates = st.duplicates + excluded.duplicates,
       failed_verifications = st.failed_verifications + excluded.failed_verifications,
       last_accepted_at = greatest(st.last_accepted_at, excluded.last_accepted_at),
       last_failed_at = greatest(st.last_failed_at, excluded.last_failed_at),
       last_failure = CASE WHEN excluded.last_failed_at >= coalesce(st.last_failed_at, '-infinity')
                           THEN excluded.last_failure ELSE st.last_failure END";

/// Every source's counts, for /metrics.
pub const SOURCE_COUNTS: &str = "
SELECT name, accepted, duplicates, failed_verifications FROM hookline.source_stats ORDER BY name";

/// A source row, secret included: the API decides what to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: Uuid,
    pub settings: SourceSettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub counts: Counts,
}

/// What a source's receiver saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub accepted: i64,
    pub duplicates: i64,
    pub failed_verifications: i64,
    pub last_accepted_at: Option<DateTime<Utc>>,
    pub last_failed_at: Option<DateTime<Utc>>,
    pub last_failure: Option<String>,
}

impl From<Row> for Source {
    fn from(r: Row) -> Self {
        Source {
            id: r.get(0),
            settings: SourceSettings {
                tenant: r.get(1),
                name: r.get(2),
                description: r.get(3),
                scheme: r.get(4),
                secret: r.get(5),
                signature_header: r.get(6),
                signature_encoding: r.get(7),
                id_header: r.get(8),
                timestamp_tolerance_s: r.get(9),
                event_type: r.get(10),
                enabled: r.get(11),
                metadata: r.get(12),
                event_type_from: r.get(21),
                event_type_prefix: r.get(22),
                keep_headers: r.get(23),
            },
            created_at: r.get(13),
            updated_at: r.get(14),
            counts: Counts {
                accepted: r.get(15),
                duplicates: r.get(16),
                failed_verifications: r.get(17),
                last_accepted_at: r.get(18),
                last_failed_at: r.get(19),
                last_failure: r.get(20),
            },
        }
    }
}

/// A source's settings, for insert and update.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSettings {
    pub tenant: String,
    pub name: String,
    pub description: String,
    pub scheme: String,
    pub secret: Option<String>,
    pub signature_header: Option<String>,
    pub signature_encoding: String,
    pub id_header: Option<String>,
    pub timestamp_tolerance_s: i32,
    pub event_type: String,
    pub enabled: bool,
    pub metadata: serde_json::Value,
    /// A header name or a JSON pointer the event type is taken from.
    pub event_type_from: Option<String>,
    pub event_type_prefix: String,
    /// Request headers kept with the payload.
    pub keep_headers: Vec<String>,
}

impl SourceSettings {
    /// The statement parameters, in `SOURCE_INSERT`'s order, with the
    /// secret as stored.
    fn params<'a>(&'a self, sealed: &'a Option<StoredSecret>) -> [&'a (dyn ToSql + Sync); 15] {
        [
            &self.tenant,
            &self.name,
            &self.description,
            &self.scheme,
            sealed,
            &self.signature_header,
            &self.signature_encoding,
            &self.id_header,
            &self.timestamp_tolerance_s,
            &self.event_type,
            &self.enabled,
            &self.metadata,
            &self.event_type_from,
            &self.event_type_prefix,
            &self.keep_headers,
        ]
    }
}

/// A row with its secret opened.
fn opened(keys: &KeyRing, row: Row) -> Result<Source> {
    let mut source = Source::from(row);
    if let Some(stored) = source.settings.secret.take() {
        source.settings.secret = Some(keys.open(&StoredSecret::from_stored(stored))?);
    }
    Ok(source)
}

pub async fn insert(db: &impl GenericClient, keys: &KeyRing, s: &SourceSettings) -> Result<Source> {
    let sealed = s.secret.as_deref().map(|secret| keys.seal(secret));
    opened(keys, db.query_one(&db.prepare_cached(SOURCE_INSERT).await?, &s.params(&sealed)).await?)
}

pub async fn get(db: &impl GenericClient, keys: &KeyRing, id: Uuid) -> Result<Option<Source>> {
    db.query_opt(&db.prepare_cached(SOURCE_GET).await?, &[&id]).await?.map(|r| opened(keys, r)).transpose()
}

pub async fn get_for_update(db: &impl GenericClient, keys: &KeyRing, id: Uuid) -> Result<Option<Source>> {
    let row = db.query_opt(&db.prepare_cached(SOURCE_GET_FOR_UPDATE).await?, &[&id]).await?;
    row.map(|r| opened(keys, r)).transpose()
}

pub async fn by_name(db: &impl GenericClient, keys: &KeyRing, name: &str) -> Result<Option<Source>> {
    db.query_opt(&db.prepare_cached(SOURCE_BY_NAME).await?, &[&name]).await?.map(|r| opened(keys, r)).transpose()
}

pub async fn list_page(
    db: &impl GenericClient,
    keys: &KeyRing,
    after: Option<Uuid>,
    limit: i64,
    tenant: Option<&str>,
) -> Result<Vec<Source>> {
    db.query(SOURCE_LIST_PAGE, &[&after, &limit, &tenant]).await?.into_iter().map(|r| opened(keys, r)).collect()
}

/// Writes `s` over source `id`, then reads it back.
pub async fn update(db: &impl GenericClient, keys: &KeyRing, id: Uuid, s: &SourceSettings) -> Result<Source> {
    let sealed = s.secret.as_deref().map(|secret| keys.seal(secret));
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
    params.extend(s.params(&sealed));
    db.execute(&db.prepare_cached(SOURCE_UPDATE).await?, &params).await?;
    get(db, keys, id).await?.ok_or(super::Error::NotFound)
}

pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<bool> {
    Ok(db.execute(&db.prepare_cached(SOURCE_DELETE).await?, &[&id]).await? == 1)
}

/// One source's counts since the last flush.
#[derive(Debug, Clone)]
pub struct CountsDelta {
    pub source_id: Uuid,
    pub accepted: i64,
    pub duplicates: i64,
    pub failed: i64,
    pub last_accepted_at: Option<DateTime<Utc>>,
    pub last_failed_at: Option<DateTime<Utc>>,
    pub last_failure: Option<String>,
}

pub async fn add_counts(db: &impl GenericClient, deltas: &[CountsDelta]) -> Result<()> {
    let ids: Vec<Uuid> = deltas.iter().map(|d| d.source_id).collect();
    let accepted: Vec<i64> = deltas.iter().map(|d| d.accepted).collect();
    let duplicates: Vec<i64> = deltas.iter().map(|d| d.duplicates).collect();
    let failed: Vec<i64> = deltas.iter().map(|d| d.failed).collect();
    let last_accepted: Vec<Option<DateTime<Utc>>> = deltas.iter().map(|d| d.last_accepted_at).collect();
    let last_failed: Vec<Option<DateTime<Utc>>> = deltas.iter().map(|d| d.last_failed_at).collect();
    let last_failure: Vec<Option<&str>> = deltas.iter().map(|d| d.last_failure.as_deref()).collect();
    db.execute(
        &db.prepare_cached(SOURCE_ADD_COUNTS).await?,
        &[&ids, &accepted, &duplicates, &failed, &last_accepted, &last_failed, &last_failure],
    )
    .await?;
    Ok(())
}

/// `(name, accepted, duplicates, failed verifications)` of every source.
pub async fn counts(db: &impl GenericClient) -> Result<Vec<(String, i64, i64, i64)>> {
    let rows = db.query(&db.prepare_cached(SOURCE_COUNTS).await?, &[]).await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}
