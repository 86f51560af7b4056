//! What the dashboard's pages read beyond the API's queries: the overview's
//! aggregates and the endpoint list with health. Everything comes from the
//! rollups and the public views, so a page costs the same with a million
//! deliveries in the history as with ten. `$1` is always the tenant (NULL:
//! every tenant).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;
use super::endpoints::{Endpoint, endpoint_columns};

/// Per hour of the last 24 (whole hours): deliveries created then by their
/// state now, and attempts started then; of endpoint `$2` if given.
pub const DASHBOARD_HOURS: &str = "
SELECT h.hour,
       coalesce(sum(r.succeeded), 0)::bigint, coalesce(sum(r.dead), 0)::bigint,
       coalesce(sum(r.cancelled), 0)::bigint, coalesce(sum(r.attempts), 0)::bigint,
       coalesce(sum(r.failed_attempts), 0)::bigint
  FROM generate_series(date_trunc('hour', now() - interval '23 hours', 'UTC'), date_trunc('hour', now(), 'UTC'),
                       interval '1 hour') AS h(hour)
  LEFT JOIN hookline.endpoint_hourly_live AS r
    ON r.hour = h.hour
   AND ($1::text IS NULL OR r.endpoint_id IN (SELECT ep.id FROM hookline.endpoints AS ep WHERE ep.tenant = $1))
   AND ($2::uuid IS NULL OR r.endpoint_id = $2)
 GROUP BY h.hour
 ORDER BY h.hour";

/// Attempt duration percentiles over the last 24 hours, from the histograms.
pub const DASHBOARD_LATENCY: &str = "
SELECT hookline.latency_percentiles(date_trunc('hour', now() - interval '24 hours', 'UTC'), $1, '{0.5,0.95,0.99}')";

/// Endpoints by circuit state (a disabled one counts as open).
pub const DASHBOARD_CIRCUITS: &str = "
SELECT h.circuit_state, count(*) FROM hookline.endpoint_health AS h
 WHERE $1::text IS NULL OR h.tenant = $1
 GROUP BY h.circuit_state";

/// What the inbound receivers saw, summed over the sources.
pub const DASHBOARD_INBOUND: &str = "
SELECT count(*), coalesce(sum(s.accepted), 0)::bigint, coalesce(sum(s.duplicates), 0)::bigint,
       coalesce(sum(s.failed_verifications), 0)::bigint
  FROM hookline.source_stats AS s
 WHERE $1::text IS NULL OR s.tenant = $1";

/// A page of endpoints, newest first after cursor `$2`, whose shown URL,
/// description or id contains `$4` (a LIKE pattern), in health `$5`, among
/// `$6` if given.
pub const DASHBOARD_ENDPOINTS: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    ", health.failures, health.circuit
  FROM hookline.endpoints
 CROSS JOIN LATERAL (
       SELECT coalesce(max(st.consecutive_failures), 0) AS failures,
              CASE WHEN NOT endpoints.enabled THEN 'open' ELSE coalesce(max(st.circuit_state), 'closed') END AS circuit
         FROM hookline.endpoint_state AS st
        WHERE st.endpoint_id = endpoints.id) AS health
 WHERE ($1::text IS NULL OR tenant = $1)
   AND ($2::uuid IS NULL OR id < $2)
   AND ($4::text IS NULL OR hookline.shown_url(url) ILIKE $4 OR description ILIKE $4 OR id::text ILIKE $4)
   AND ($6::uuid[] IS NULL OR id = ANY($6))
   AND CASE $5::text
         WHEN 'enabled' THEN enabled
         WHEN 'disabled' THEN NOT enabled
         WHEN 'failing' THEN enabled AND (health.failures > 0 OR health.circuit <> 'closed')
         ELSE true
       END
 ORDER BY id DESC
 LIMIT $3"
);

/// The last 24 hours of the endpoints `$1`.
pub const DASHBOARD_ENDPOINT_RATES: &str = "
SELECT s.endpoint_id, s.success_rate::float8, s.total FROM hookline.endpoint_stats_24h AS s
 WHERE s.endpoint_id = ANY($1)";

/// One hour of the chart.
#[derive(Debug, Clone)]
pub struct Hour {
    pub hour: DateTime<Utc>,
    pub succeeded: i64,
    pub dead: i64,
    pub cancelled: i64,
    pub attempts: i64,
    pub failed_attempts: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Inbound {
    pub sources: i64,
    pub accepted: i64,
    pub duplicates: i64,
    pub failed_verifications: i64,
}

/// An endpoint as the list shows it.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    pub endpoint: Endpoint,
    pub consecutive_failures: i32,
    pub circuit_state: String,
    pub success_rate_24h: Option<f64>,
    pub deliveries_24h: i64,
}

/// Which endpoints the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthFilter {
    All,
    Enabled,
    Disabled,
    /// Enabled, with failed deliveries since the last success or a circuit not closed.
    Failing,
}

impl HealthFilter {
    pub fn parse(s: &str) -> HealthFilter {
        match s {
            "enabled" => HealthFilter::Enabled,
            "disabled" => HealthFilter::Disabled,
            "failing" => HealthFilter::Failing,
            _ => HealthFilter::All,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HealthFilter::All => "all",
            HealthFilter::Enabled => "enabled",
            HealthFilter::Disabled => "disabled",
            HealthFilter::Failing => "failing",
        }
    }
}

pub struct EndpointSearch<'a> {
    pub tenant: Option<&'a str>,
    pub after: Option<Uuid>,
    pub limit: i64,
    /// Text the URL, description or id contains.
    pub text: Option<&'a str>,
    pub health: HealthFilter,
    /// Only these endpoints (a portal link's list).
    pub only: Option<&'a [Uuid]>,
}

pub async fn hours(db: &impl GenericClient, tenant: Option<&str>, endpoint: Option<Uuid>) -> Result<Vec<Hour>> {
    let rows = db.query(&db.prepare_cached(DASHBOARD_HOURS).await?, &[&tenant, &endpoint]).await?;
    Ok(rows
        .into_iter()
        .map(|r| Hour {
            hour: r.get(0),
            succeeded: r.get(1),
            dead: r.get(2),
            cancelled: r.get(3),
            attempts: r.get(4),
            failed_attempts: r.get(5),
        })
        .collect())
}

/// p50, p95 and p99 in milliseconds; `None` before any attempt.
pub async fn latency(db: &impl GenericClient, tenant: Option<&str>) -> Result<Option<[f64; 3]>> {
    let row = db.query_one(&db.prepare_cached(DASHBOARD_LATENCY).await?, &[&tenant]).await?;
    let percentiles: Option<Vec<Option<f64>>> = row.get(0);
    Ok(match percentiles.as_deref() {
        Some([Some(p50), Some(p95), Some(p99)]) => Some([*p50, *p95, *p99]),
        _ => None,
    })
}

/// Endpoints per circuit state (`closed`, `half_open`, `open`).
pub async fn circuits(db: &impl GenericClient, tenant: Option<&str>) -> Result<Vec<(String, i64)>> {
    let rows = db.query(&db.prepare_cached(DASHBOARD_CIRCUITS).await?, &[&tenant]).await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn inbound(db: &impl GenericClient, tenant: Option<&str>) -> Result<Inbound> {
    let r = db.query_one(&db.prepare_cached(DASHBOARD_INBOUND).await?, &[&tenant]).await?;
    Ok(Inbound { sources: r.get(0), accepted: r.get(1), duplicates: r.get(2), failed_verifications: r.get(3) })
}

pub async fn endpoints(db: &impl GenericClient, search: &EndpointSearch<'_>) -> Result<Vec<EndpointHealth>> {
    let pattern = search.text.map(|text| format!("%{}%", escape_like(text)));
    let rows = db
        .query(
            &db.prepare_cached(DASHBOARD_ENDPOINTS).await?,
            &[&search.tenant, &search.after, &search.limit, &pattern, &search.health.as_str(), &search.only],
        )
        .await?;
    let mut list: Vec<EndpointHealth> = rows.into_iter().map(endpoint_health).collect();
    let ids: Vec<Uuid> = list.iter().map(|e| e.endpoint.id).collect();
    for rate in db.query(&db.prepare_cached(DASHBOARD_ENDPOINT_RATES).await?, &[&ids]).await? {
        let id: Uuid = rate.get(0);
        if let Some(e) = list.iter_mut().find(|e| e.endpoint.id == id) {
            e.success_rate_24h = rate.get(1);
            e.deliveries_24h = rate.get(2);
        }
    }
    Ok(list)
}

fn endpoint_health(row: Row) -> EndpointHealth {
    let columns = row.len();
    EndpointHealth {
        consecutive_failures: row.get(columns - 2),
        circuit_state: row.get(columns - 1),
        success_rate_24h: None,
        deliveries_24h: 0,
        endpoint: Endpoint::from(row),
    }
}

/// `text` matched literally by LIKE.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
