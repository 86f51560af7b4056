//! The numbers behind `/metrics`, from the views and the recent attempts.

use deadpool_postgres::GenericClient;

use super::Result;

/// Upper bounds (ms) of the attempt latency buckets.
pub const LATENCY_BUCKETS_MS: &[i32] = &[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// Requests of the last `$1` seconds: each attempt of a delivery alone and
/// each batched request, once.
macro_rules! recent_requests {
    () => {
        "WITH recent AS (
             SELECT duration_ms, error_kind FROM hookline.attempts
              WHERE started_at >= now() - make_interval(secs => $1)
             UNION ALL
             SELECT duration_ms, error_kind FROM hookline.batch_attempts
              WHERE started_at >= now() - make_interval(secs => $1)
         ) "
    };
}

/// Attempts of the last `$1` seconds: how many fell at or below each bucket
/// bound `$2`, plus the total count and duration sum.
pub const METRICS_RECENT_ATTEMPTS: &str = concat!(
    recent_requests!(),
    "SELECT b.le, count(a.*) FILTER (WHERE a.duration_ms <= b.le)
       FROM unnest($2::int[]) AS b(le)
       LEFT JOIN recent AS a ON true
      GROUP BY b.le ORDER BY b.le"
);

pub const METRICS_RECENT_TOTALS: &str = concat!(
    recent_requests!(),
    "SELECT count(*), coalesce(sum(duration_ms), 0)::bigint,
            count(*) FILTER (WHERE error_kind IS NULL), count(*) FILTER (WHERE error_kind IS NOT NULL)
       FROM recent"
);

/// Deliveries created in the last 24 hours (whole hours, as
/// endpoint_stats_24h counts them) by state: the rollup by hour, tenant and
/// event type through its key, plus what is still open in the queue.
pub const METRICS_DELIVERIES_24H: &str = "
WITH finished AS (
    SELECT coalesce(sum(succeeded), 0)::bigint AS succeeded, coalesce(sum(dead), 0)::bigint AS dead,
           coalesce(sum(cancelled), 0)::bigint AS cancelled
      FROM hookline.event_type_hourly_live
     WHERE hour >= date_trunc('hour', now() - interval '24 hours', 'UTC')
),
open AS (
    SELECT count(*) AS pending
      FROM hookline.delivery_queue
     WHERE state IN ('pending', 'held', 'waiting')
       AND delivery_id >= hookline.uuid_v7_floor(date_trunc('hour', now() - interval '24 hours', 'UTC'))
)
SELECT f.succeeded, f.dead, o.pending, f.succeeded + f.dead + f.cancelled + o.pending
  FROM finished AS f, open AS o";

/// Endpoints by what they receive: closed circuits, open ones (tripped or
/// disabled), half-open ones probing.
pub const METRICS_CIRCUITS: &str = "
SELECT s.circuit_state, count(h.endpoint_id)
  FROM unnest('{closed,open,half_open}'::text[]) AS s(circuit_state)
  LEFT JOIN hookline.endpoint_health AS h USING (circuit_state)
 GROUP BY s.circuit_state ORDER BY s.circuit_state";

/// Per event type that warns: events accepted in the last 24 hours although
/// their payload fails its schema.
pub const METRICS_SCHEMA_WARNINGS: &str = "
SELECT t.name, coalesce(t.tenant, ''), count(w.event_id)
  FROM hookline.event_types AS t
  LEFT JOIN hookline.event_schema_warnings AS w
    ON w.event_type_id = t.id AND w.event_id >= hookline.uuid_v7_floor(now() - interval '24 hours')
 WHERE t.validation = 'warn'
 GROUP BY t.id, t.name, t.tenant ORDER BY t.name, t.tenant";

pub struct RecentAttempts {
    pub buckets: Vec<(i32, i64)>,
    pub count: i64,
    pub sum_ms: i64,
    pub succeeded: i64,
    pub failed: i64,
}

pub struct Deliveries24h {
    pub succeeded: i64,
    pub dead: i64,
    pub pending: i64,
    pub total: i64,
}

pub async fn recent_attempts(db: &impl GenericClient, window_s: f64) -> Result<RecentAttempts> {
    let buckets = db
        .query(&db.prepare_cached(METRICS_RECENT_ATTEMPTS).await?, &[&window_s, &LATENCY_BUCKETS_MS])
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let t = db.query_one(&db.prepare_cached(METRICS_RECENT_TOTALS).await?, &[&window_s]).await?;
    Ok(RecentAttempts { buckets, count: t.get(0), sum_ms: t.get(1), succeeded: t.get(2), failed: t.get(3) })
}

pub async fn deliveries_24h(db: &impl GenericClient) -> Result<Deliveries24h> {
    let r = db.query_one(&db.prepare_cached(METRICS_DELIVERIES_24H).await?, &[]).await?;
    Ok(Deliveries24h { succeeded: r.get(0), dead: r.get(1), pending: r.get(2), total: r.get(3) })
}

/// `(circuit state, endpoints)` for each state.
pub async fn circuits(db: &impl GenericClient) -> Result<Vec<(String, i64)>> {
    let rows = db.query(&db.prepare_cached(METRICS_CIRCUITS).await?, &[]).await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `(event type, tenant or "" when shared, warnings)` of each type that warns.
pub async fn schema_warnings(db: &impl GenericClient) -> Result<Vec<(String, String, i64)>> {
    let rows = db.query(&db.prepare_cached(METRICS_SCHEMA_WARNINGS).await?, &[]).await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}
