//! Statistics, read from the public views only (SPEC §4).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;

pub const STATS_QUEUE: &str = "
SELECT pending, due_now, in_flight, dead, oldest_due_age_s, held FROM hookline.queue_stats";

/// The `queue_stats` columns for one tenant's endpoints (`$1`).
pub const STATS_QUEUE_OF_TENANT: &str = "
SELECT pending, due_now, in_flight, dead, oldest_due_age_s, held FROM hookline.queue_stats_of($1)";

/// Totals of the history (deliveries and events), estimated from the planner
/// statistics where an exact count would scan everything.
pub const STATS_TOTALS: &str = "
SELECT (SELECT count(*) FROM hookline.endpoints),
       (SELECT count(*) FROM hookline.endpoints WHERE enabled),
       (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'hookline.events'::regclass),
       (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'hookline.deliveries'::regclass)";

/// One tenant's endpoints (`$1`); the history estimates are of the whole
/// database, so a tenant gets none.
pub const STATS_TOTALS_OF_TENANT: &str = "
SELECT count(*), count(*) FILTER (WHERE enabled), NULL::bigint, NULL::bigint
  FROM hookline.endpoints WHERE tenant = $1";

pub const STATS_ENDPOINT: &str = "
SELECT h.enabled, h.disabled_reason, h.consecutive_failures, h.last_success_at, h.last_failure_at, h.circuit_state,
       s.total, s.succeeded, s.dead, s.pending, s.success_rate::float8, s.p50_ms, s.p95_ms, s.p99_ms,
       h.failed_attempts, h.circuit_retry_at
  FROM hookline.endpoint_health AS h
  JOIN hookline.endpoint_stats_24h AS s USING (endpoint_id)
 WHERE h.endpoint_id = $1";

#[derive(Debug, Clone)]
pub struct QueueStats {
    pub pending: i64,
    pub due_now: i64,
    pub in_flight: i64,
    pub dead: i64,
    pub oldest_due_age_s: f64,
    pub held: i64,
}

#[derive(Debug, Clone)]
pub struct Totals {
    pub endpoints: i64,
    pub enabled_endpoints: i64,
    /// `None` for one tenant's totals.
    pub events_estimate: Option<i64>,
    pub deliveries_estimate: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct EndpointStats {
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub circuit_state: String,
    pub failed_attempts: i32,
    pub circuit_retry_at: Option<DateTime<Utc>>,
    pub total: i64,
    pub succeeded: i64,
    pub dead: i64,
    pub pending: i64,
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The whole queue, or one tenant's part of it.
pub async fn queue(db: &impl GenericClient, tenant: Option<&str>) -> Result<QueueStats> {
    let r = match tenant {
        None => db.query_one(&db.prepare_cached(STATS_QUEUE).await?, &[]).await?,
        Some(tenant) => db.query_one(&db.prepare_cached(STATS_QUEUE_OF_TENANT).await?, &[&tenant]).await?,
    };
    Ok(QueueStats {
        pending: r.get(0),
        due_now: r.get(1),
        in_flight: r.get(2),
        dead: r.get(3),
        oldest_due_age_s: r.get(4),
        held: r.get(5),
    })
}

pub async fn totals(db: &impl GenericClient, tenant: Option<&str>) -> Result<Totals> {
    let r = match tenant {
        None => db.query_one(&db.prepare_cached(STATS_TOTALS).await?, &[]).await?,
        Some(tenant) => db.query_one(&db.prepare_cached(STATS_TOTALS_OF_TENANT).await?, &[&tenant]).await?,
    };
    Ok(Totals {
        endpoints: r.get(0),
        enabled_endpoints: r.get(1),
        events_estimate: r.get(2),
        deliveries_estimate: r.get(3),
    })
}

pub async fn endpoint(db: &impl GenericClient, id: Uuid) -> Result<Option<EndpointStats>> {
    Ok(db.query_opt(&db.prepare_cached(STATS_ENDPOINT).await?, &[&id]).await?.map(|r| EndpointStats {
        enabled: r.get(0),
        disabled_reason: r.get(1),
        consecutive_failures: r.get(2),
        last_success_at: r.get(3),
        last_failure_at: r.get(4),
        circuit_state: r.get(5),
        total: r.get(6),
        succeeded: r.get(7),
        dead: r.get(8),
        pending: r.get(9),
        success_rate: r.get(10),
        p50_ms: r.get(11),
        p95_ms: r.get(12),
        p99_ms: r.get(13),
        failed_attempts: r.get(14),
        circuit_retry_at: r.get(15),
    }))
}
