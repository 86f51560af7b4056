//! The delivery queue: claim, complete, release.
//!
//! A worker claims due deliveries in one statement (state → `in_flight`, with
//! a lease), commits, and only then makes HTTP requests with no transaction
//! open. Completion is guarded by the lease owner, so a worker whose lease
//! expired (and whose delivery was handed to another) cannot overwrite the
//! newer outcome.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::Result;

/// Claims up to `$1` due deliveries for worker `$2` and returns everything the
/// request needs, so a delivery costs one round trip to start. The lease is
/// the endpoint's timeout plus 5 s, capped at `$3` seconds; it is stored as
/// `next_attempt_at`, so an expired lease makes the delivery due again.
pub const DELIVERY_CLAIM_DUE: &str = "
WITH due AS (
    SELECT delivery_id
      FROM hookline.delivery_queue
     WHERE state = 'pending' AND next_attempt_at <= now()
     ORDER BY next_attempt_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
)
UPDATE hookline.delivery_queue AS q
   SET next_attempt_at = now() + make_interval(secs => least(ep.timeout_ms / 1000.0 + 5, $3::float8)),
       lease_owner = $2,
       attempts = q.attempts + 1
  FROM due, hookline.events AS e, hookline.endpoints AS ep
 WHERE q.delivery_id = due.delivery_id AND e.id = q.event_id AND ep.id = q.endpoint_id
RETURNING q.delivery_id, q.attempts, e.id, e.event_type, e.created_at, e.payload::text,
          ep.id, ep.url, ep.http_method, ep.headers, ep.timeout_ms, ep.retry_schedule,
          ep.secret,
          CASE WHEN ep.previous_secret_expires_at > now() THEN ep.previous_secret END";

/// Records a batch of outcomes in one statement, only for deliveries still
/// leased to worker `$13`: successes leave the queue, retries get their next
/// attempt time, dead ones stay as dead letters (a retry for an endpoint that
/// was disabled meanwhile is dead too); the history row (a HOT update), the
/// attempt, and per-endpoint health follow. `last_success_at` is refreshed at
/// most once a second per endpoint, so a busy endpoint does not cost a row
/// write per delivery.
pub const DELIVERY_COMPLETE_MANY: &str = "
WITH outcome AS (
    SELECT o.*,
           CASE WHEN o.state = 'pending' AND NOT coalesce(ep.enabled, false) THEN 'dead' ELSE o.state END AS final_state
      FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::float8[],
                  $6::timestamptz[], $7::int[], $8::int[], $9::jsonb[], $10::text[],
                  $11::text[], $12::text[])
        AS o(delivery_id, endpoint_id, attempt, state, retry_in_s,
             started_at, duration_ms, status_code, response_headers, response_body,
             error_kind, error)
      LEFT JOIN hookline.endpoints AS ep ON ep.id = o.endpoint_id
),
kept AS (
    UPDATE hookline.delivery_queue AS q
       SET state = CASE WHEN o.final_state = 'dead' THEN 'dead' ELSE 'pending' END,
           next_attempt_at = CASE WHEN o.final_state = 'pending'
                                  THEN now() + make_interval(secs => o.retry_in_s)
                                  ELSE now() END,
           lease_owner = NULL
      FROM outcome AS o
     WHERE q.delivery_id = o.delivery_id AND q.lease_owner = $13 AND o.final_state <> 'succeeded'
    RETURNING q.delivery_id
),
removed AS (
    DELETE FROM hookline.delivery_queue AS q
     USING outcome AS o
     WHERE q.delivery_id = o.delivery_id AND q.lease_owner = $13 AND o.final_state = 'succeeded'
    RETURNING q.delivery_id
),
history AS (
    UPDATE hookline.deliveries AS d
       SET state = o.final_state,
           attempts = o.attempt,
           last_status_code = o.status_code,
           last_error = o.error,
           completed_at = CASE WHEN o.final_state IN ('succeeded', 'dead') THEN now() END
      FROM outcome AS o
     WHERE d.id = o.delivery_id
       AND d.id IN (SELECT delivery_id FROM kept UNION ALL SELECT delivery_id FROM removed)
),
recorded AS (
    INSERT INTO hookline.attempts (delivery_id, endpoint_id, attempt, started_at, duration_ms,
                                   status_code, response_headers, response_body, error_kind, error, worker)
    SELECT delivery_id, endpoint_id, attempt, started_at, duration_ms,
           status_code, response_headers, response_body, error_kind, error, $13
      FROM outcome
),
health AS (
    UPDATE hookline.endpoint_state AS s
       SET consecutive_failures = CASE WHEN h.succeeded THEN 0 ELSE s.consecutive_failures + h.dead END,
           last_success_at = CASE WHEN h.succeeded THEN now() ELSE s.last_success_at END,
           last_failure_at = CASE WHEN h.failed THEN now() ELSE s.last_failure_at END
      FROM (SELECT endpoint_id,
                   bool_or(final_state = 'succeeded') AS succeeded,
                   bool_or(final_state <> 'succeeded') AS failed,
                   count(*) FILTER (WHERE final_state = 'dead') AS dead
              FROM outcome GROUP BY endpoint_id) AS h
     WHERE s.endpoint_id = h.endpoint_id
       AND (h.failed OR s.consecutive_failures > 0
            OR s.last_success_at IS NULL OR s.last_success_at < now() - interval '1 second')
)
SELECT (SELECT count(*) FROM kept) + (SELECT count(*) FROM removed)";

/// Hands deliveries this worker still holds back to the queue (at shutdown),
/// due at once and without counting the unfinished attempt.
pub const DELIVERY_RELEASE: &str = "
UPDATE hookline.delivery_queue
   SET next_attempt_at = now(), lease_owner = NULL, attempts = attempts - 1
 WHERE delivery_id = ANY ($1) AND lease_owner = $2";

/// Seconds until the next pending delivery falls due or a lease runs out, by
/// the database's clock (NULL when the queue is empty; negative when overdue).
pub const DELIVERY_SECONDS_UNTIL_NEXT_DUE: &str = "
SELECT extract(epoch FROM min(next_attempt_at) - now())::float8
  FROM hookline.delivery_queue WHERE state = 'pending'";

/// A claimed delivery with its event and endpoint.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_created_at: DateTime<Utc>,
    pub payload_json: String,
    pub endpoint_id: Uuid,
    pub url: String,
    pub http_method: String,
    pub headers: serde_json::Value,
    pub timeout_ms: i32,
    pub retry_schedule: Option<Vec<f64>>,
    pub secret: String,
    pub previous_secret: Option<String>,
}

pub async fn claim_due(db: &impl GenericClient, limit: i64, worker: Uuid, lease_max_s: f64) -> Result<Vec<Claimed>> {
    let rows = db.query(DELIVERY_CLAIM_DUE, &[&limit, &worker, &lease_max_s]).await?;
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            delivery_id: r.get(0),
            attempt: r.get(1),
            event_id: r.get(2),
            event_type: r.get(3),
            event_created_at: r.get(4),
            payload_json: r.get(5),
            endpoint_id: r.get(6),
            url: r.get(7),
            http_method: r.get(8),
            headers: r.get(9),
            timeout_ms: r.get(10),
            retry_schedule: r.get(11),
            secret: r.get(12),
            previous_secret: r.get(13),
        })
        .collect())
}

/// The outcome of one attempt, ready to be written.
#[derive(Debug, Clone)]
pub struct Completion {
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempt: i32,
    /// `succeeded`, `pending` (retry) or `dead`.
    pub state: &'static str,
    pub retry_in_s: Option<f64>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub error_kind: Option<&'static str>,
    pub error: Option<String>,
}

/// Writes a batch of completions; returns how many deliveries were still ours.
pub async fn complete_many(db: &impl GenericClient, worker: Uuid, batch: &[&Completion]) -> Result<i64> {
    let ids: Vec<Uuid> = batch.iter().map(|c| c.delivery_id).collect();
    let endpoints: Vec<Uuid> = batch.iter().map(|c| c.endpoint_id).collect();
    let attempts: Vec<i32> = batch.iter().map(|c| c.attempt).collect();
    let states: Vec<&str> = batch.iter().map(|c| c.state).collect();
    let retry_in: Vec<Option<f64>> = batch.iter().map(|c| c.retry_in_s).collect();
    let started: Vec<DateTime<Utc>> = batch.iter().map(|c| c.started_at).collect();
    let durations: Vec<i32> = batch.iter().map(|c| c.duration_ms).collect();
    let statuses: Vec<Option<i32>> = batch.iter().map(|c| c.status_code).collect();
    let headers: Vec<Option<&serde_json::Value>> = batch.iter().map(|c| c.response_headers.as_ref()).collect();
    let bodies: Vec<Option<&str>> = batch.iter().map(|c| c.response_body.as_deref()).collect();
    let kinds: Vec<Option<&str>> = batch.iter().map(|c| c.error_kind).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|c| c.error.as_deref()).collect();
    let row = db
        .query_one(
            DELIVERY_COMPLETE_MANY,
            &[
                &ids, &endpoints, &attempts, &states, &retry_in, &started, &durations, &statuses, &headers, &bodies,
                &kinds, &errors, &worker,
            ],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn release(db: &impl GenericClient, worker: Uuid, deliveries: &[Uuid]) -> Result<u64> {
    Ok(db.execute(DELIVERY_RELEASE, &[&deliveries, &worker]).await?)
}

pub async fn seconds_until_next_due(db: &impl GenericClient) -> Result<Option<f64>> {
    Ok(db.query_one(DELIVERY_SECONDS_UNTIL_NEXT_DUE, &[]).await?.get(0))
}
