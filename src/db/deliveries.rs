//! The delivery queue: claim, complete, release.
//!
//! A worker claims due deliveries in one statement (state → `in_flight`, with
//! a lease), commits, and only then makes HTTP requests with no transaction
//! open. Completion is guarded by the lease owner, so a worker whose lease
//! expired (and whose delivery was handed to another) cannot overwrite the
//! newer outcome.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
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
/// attempt, and per-endpoint health follow, and an endpoint whose run of dead
/// deliveries reached its `disable_after_failures` is disabled. The run
/// counts deliveries, not attempts, and any success resets it.
/// `last_success_at` is refreshed at most once a second per endpoint, so a
/// busy endpoint does not cost a row write per delivery.
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
    RETURNING s.endpoint_id, s.consecutive_failures
),
tripped AS (
    -- Auto-disable: a run of dead deliveries as long as the endpoint allows.
    -- The endpoints trigger parks its queue and publishes endpoint.disabled.
    UPDATE hookline.endpoints AS ep
       SET enabled = false,
           disabled_reason = h.consecutive_failures || ' consecutive failed deliveries',
           disabled_at = now()
      FROM health AS h
     WHERE ep.id = h.endpoint_id AND ep.enabled AND h.consecutive_failures >= ep.disable_after_failures
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
    let rows = db.query(&db.prepare_cached(DELIVERY_CLAIM_DUE).await?, &[&limit, &worker, &lease_max_s]).await?;
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
            &db.prepare_cached(DELIVERY_COMPLETE_MANY).await?,
            &[
                &ids, &endpoints, &attempts, &states, &retry_in, &started, &durations, &statuses, &headers, &bodies,
                &kinds, &errors, &worker,
            ],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn release(db: &impl GenericClient, worker: Uuid, deliveries: &[Uuid]) -> Result<u64> {
    Ok(db.execute(&db.prepare_cached(DELIVERY_RELEASE).await?, &[&deliveries, &worker]).await?)
}

pub async fn seconds_until_next_due(db: &impl GenericClient) -> Result<Option<f64>> {
    Ok(db.query_one(&db.prepare_cached(DELIVERY_SECONDS_UNTIL_NEXT_DUE).await?, &[]).await?.get(0))
}

// ---- The API's view of deliveries -------------------------------------------

/// A delivery as the API shows it. `in_flight` is not stored: a pending
/// delivery whose queue row holds an unexpired lease is in flight.
macro_rules! delivery_view {
    () => {
        "SELECT d.id, d.event_id, d.endpoint_id, d.tenant, d.event_type,
                CASE WHEN d.state = 'pending' AND q.lease_owner IS NOT NULL AND q.next_attempt_at > now()
                     THEN 'in_flight' ELSE d.state END AS state,
                d.attempts,
                CASE WHEN d.state = 'pending' AND (q.lease_owner IS NULL OR q.next_attempt_at <= now())
                     THEN q.next_attempt_at END AS next_attempt_at,
                d.last_status_code, d.last_error, d.created_at, d.completed_at
           FROM hookline.deliveries AS d
           LEFT JOIN hookline.delivery_queue AS q ON q.delivery_id = d.id"
    };
}

pub const DELIVERY_GET: &str = concat!(delivery_view!(), " WHERE d.id = $1");

pub const DELIVERIES_OF_EVENT: &str = concat!(delivery_view!(), " WHERE d.event_id = $1 ORDER BY d.id");

/// Newest first after cursor `$1`, filtered by tenant `$3`, endpoint `$4`,
/// event type `$5`, creation window [`$6`, `$7`) and (derived) state `$8`.
pub const DELIVERY_LIST_PAGE: &str = concat!(
    "SELECT * FROM (",
    delivery_view!(),
    " WHERE ($1::uuid IS NULL OR d.id < $1)
        AND ($3::text IS NULL OR d.tenant = $3)
        AND ($4::uuid IS NULL OR d.endpoint_id = $4)
        AND ($5::text IS NULL OR d.event_type = $5)
        AND ($6::timestamptz IS NULL OR d.id >= hookline.uuid_v7_floor($6))
        AND ($7::timestamptz IS NULL OR d.id < hookline.uuid_v7_floor($7))
      ORDER BY d.id DESC) AS v
     WHERE ($8::text IS NULL OR v.state = $8)
     LIMIT $2"
);

/// The dead-letter queue, newest first, read through its own index.
pub const DEAD_LETTER_LIST_PAGE: &str = concat!(
    delivery_view!(),
    " WHERE q.state = 'dead'
        AND ($1::uuid IS NULL OR q.delivery_id < $1)
        AND ($3::text IS NULL OR d.tenant = $3)
        AND ($4::uuid IS NULL OR q.endpoint_id = $4)
        AND ($5::text IS NULL OR d.event_type = $5)
      ORDER BY q.delivery_id DESC LIMIT $2"
);

pub const ATTEMPTS_OF_DELIVERY: &str = "
SELECT attempt, started_at, duration_ms, status_code, response_headers, response_body, error_kind, error, worker
  FROM hookline.attempts WHERE delivery_id = $1 ORDER BY attempt";

/// Puts a delivery back in the queue, due now, unless a worker holds it.
/// Returns the delivery id when it did. Attempt numbers continue from the
/// history's count, so a finished delivery sent again keeps unique attempts.
pub const DELIVERY_REQUEUE: &str = "
WITH queued AS (
    INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id, attempts)
    SELECT id, event_id, endpoint_id, attempts FROM hookline.deliveries WHERE id = $1
    ON CONFLICT (delivery_id) DO UPDATE
       SET state = 'pending', next_attempt_at = now(), lease_owner = NULL
     WHERE hookline.delivery_queue.lease_owner IS NULL OR hookline.delivery_queue.next_attempt_at <= now()
    RETURNING delivery_id
)
UPDATE hookline.deliveries AS d
   SET state = 'pending', completed_at = NULL
  FROM queued WHERE d.id = queued.delivery_id
RETURNING d.id";

/// Takes a delivery out of the queue for good, unless a worker holds it.
pub const DELIVERY_CANCEL: &str = "
WITH removed AS (
    DELETE FROM hookline.delivery_queue
     WHERE delivery_id = $1 AND (lease_owner IS NULL OR next_attempt_at <= now())
    RETURNING delivery_id
)
UPDATE hookline.deliveries AS d
   SET state = 'cancelled', completed_at = now(), last_error = coalesce(d.last_error, $2)
  FROM removed WHERE d.id = removed.delivery_id
RETURNING d.id";

/// Re-queues the dead letters matching tenant `$1`, endpoint `$2`, type `$3`,
/// window [`$4`, `$5`); returns how many.
pub const DEAD_LETTER_REPLAY_MATCHING: &str = "
WITH revived AS (
    UPDATE hookline.delivery_queue AS q
       SET state = 'pending', next_attempt_at = now(), lease_owner = NULL
      FROM hookline.deliveries AS d
     WHERE q.state = 'dead' AND d.id = q.delivery_id
       AND ($1::text IS NULL OR d.tenant = $1)
       AND ($2::uuid IS NULL OR q.endpoint_id = $2)
       AND ($3::text IS NULL OR d.event_type = $3)
       AND ($4::timestamptz IS NULL OR q.delivery_id >= hookline.uuid_v7_floor($4))
       AND ($5::timestamptz IS NULL OR q.delivery_id < hookline.uuid_v7_floor($5))
    RETURNING q.delivery_id
),
history AS (
    UPDATE hookline.deliveries AS d
       SET state = 'pending', completed_at = NULL
      FROM revived WHERE d.id = revived.delivery_id
)
SELECT count(*) FROM revived";

/// Queues, for endpoint `$1`, the matching events since `$2` that it has no
/// delivery of (those produced while it was disabled); returns how many.
pub const DELIVERY_QUEUE_MISSED: &str = "
WITH missed AS (
    SELECT e.id, e.tenant, e.event_type
      FROM hookline.endpoints AS ep
      JOIN hookline.events AS e
        ON e.tenant = ep.tenant AND e.id >= hookline.uuid_v7_floor($2)
       AND e.source <> 'test' AND e.event_type LIKE ANY (ep.event_types_like)
       -- not the notice of its own disabling
       AND NOT (e.source = 'hookline' AND e.payload ->> 'endpoint_id' = ep.id::text)
     WHERE ep.id = $1
       AND NOT EXISTS (SELECT FROM hookline.deliveries AS d WHERE d.event_id = e.id AND d.endpoint_id = ep.id)
),
created AS (
    INSERT INTO hookline.deliveries (event_id, endpoint_id, tenant, event_type)
    SELECT id, $1, tenant, event_type FROM missed
    RETURNING id, event_id, endpoint_id
)
INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id)
SELECT id, event_id, endpoint_id FROM created";

/// Queues event `$1` for endpoint `$2` alone (an endpoint test).
pub const DELIVERY_QUEUE_ONE: &str = "
WITH created AS (
    INSERT INTO hookline.deliveries (event_id, endpoint_id, tenant, event_type)
    VALUES ($1, $2, $3, $4)
    RETURNING id, event_id, endpoint_id
)
INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id)
SELECT id, event_id, endpoint_id FROM created
RETURNING delivery_id";

/// Wakes idle workers after the API queued something by hand.
pub const DELIVERY_WAKE_WORKERS: &str = "
SELECT pg_notify('hookline_wake', '') WHERE EXISTS (SELECT FROM hookline.idle_workers)";

#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub id: Uuid,
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    pub tenant: String,
    pub event_type: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<tokio_postgres::Row> for DeliveryView {
    fn from(r: tokio_postgres::Row) -> Self {
        DeliveryView {
            id: r.get(0),
            event_id: r.get(1),
            endpoint_id: r.get(2),
            tenant: r.get(3),
            event_type: r.get(4),
            state: r.get(5),
            attempts: r.get(6),
            next_attempt_at: r.get(7),
            last_status_code: r.get(8),
            last_error: r.get(9),
            created_at: r.get(10),
            completed_at: r.get(11),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub worker: Uuid,
}

/// Filters of delivery and dead-letter lists.
#[derive(Debug, Default)]
pub struct DeliveryFilter<'a> {
    pub after: Option<Uuid>,
    pub limit: i64,
    pub tenant: Option<&'a str>,
    pub endpoint_id: Option<Uuid>,
    pub event_type: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub state: Option<&'a str>,
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Option<DeliveryView>> {
    Ok(db.query_opt(&db.prepare_cached(DELIVERY_GET).await?, &[&id]).await?.map(DeliveryView::from))
}

pub async fn of_event(db: &impl GenericClient, event_id: Uuid) -> Result<Vec<DeliveryView>> {
    Ok(db
        .query(&db.prepare_cached(DELIVERIES_OF_EVENT).await?, &[&event_id])
        .await?
        .into_iter()
        .map(DeliveryView::from)
        .collect())
}

pub async fn list_page(db: &impl GenericClient, f: &DeliveryFilter<'_>) -> Result<Vec<DeliveryView>> {
    let rows = db
        .query(
            DELIVERY_LIST_PAGE,
            &[&f.after, &f.limit, &f.tenant, &f.endpoint_id, &f.event_type, &f.since, &f.until, &f.state],
        )
        .await?;
    Ok(rows.into_iter().map(DeliveryView::from).collect())
}

pub async fn dead_letters_page(db: &impl GenericClient, f: &DeliveryFilter<'_>) -> Result<Vec<DeliveryView>> {
    let rows = db.query(DEAD_LETTER_LIST_PAGE, &[&f.after, &f.limit, &f.tenant, &f.endpoint_id, &f.event_type]).await?;
    Ok(rows.into_iter().map(DeliveryView::from).collect())
}

pub async fn attempts(db: &impl GenericClient, delivery_id: Uuid) -> Result<Vec<AttemptView>> {
    let rows = db.query(&db.prepare_cached(ATTEMPTS_OF_DELIVERY).await?, &[&delivery_id]).await?;
    Ok(rows
        .into_iter()
        .map(|r| AttemptView {
            attempt: r.get(0),
            started_at: r.get(1),
            duration_ms: r.get(2),
            status_code: r.get(3),
            response_headers: r.get(4),
            response_body: r.get(5),
            error_kind: r.get(6),
            error: r.get(7),
            worker: r.get(8),
        })
        .collect())
}

/// False when a worker holds the delivery right now.
pub async fn requeue(db: &impl GenericClient, id: Uuid) -> Result<bool> {
    let done = db.query_opt(&db.prepare_cached(DELIVERY_REQUEUE).await?, &[&id]).await?.is_some();
    if done {
        db.execute(&db.prepare_cached(DELIVERY_WAKE_WORKERS).await?, &[]).await?;
    }
    Ok(done)
}

/// False when a worker holds the delivery right now.
pub async fn cancel(db: &impl GenericClient, id: Uuid, reason: &str) -> Result<bool> {
    Ok(db.query_opt(&db.prepare_cached(DELIVERY_CANCEL).await?, &[&id, &reason]).await?.is_some())
}

pub async fn replay_dead_letters(db: &impl GenericClient, f: &DeliveryFilter<'_>) -> Result<i64> {
    let row = db
        .query_one(DEAD_LETTER_REPLAY_MATCHING, &[&f.tenant, &f.endpoint_id, &f.event_type, &f.since, &f.until])
        .await?;
    let revived: i64 = row.get(0);
    if revived > 0 {
        db.execute(&db.prepare_cached(DELIVERY_WAKE_WORKERS).await?, &[]).await?;
    }
    Ok(revived)
}

pub async fn queue_missed(db: &impl GenericClient, endpoint_id: Uuid, since: DateTime<Utc>) -> Result<u64> {
    let queued = db.execute(&db.prepare_cached(DELIVERY_QUEUE_MISSED).await?, &[&endpoint_id, &since]).await?;
    if queued > 0 {
        db.execute(&db.prepare_cached(DELIVERY_WAKE_WORKERS).await?, &[]).await?;
    }
    Ok(queued)
}

pub struct OneDelivery<'a> {
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    pub tenant: &'a str,
    pub event_type: &'a str,
}

pub async fn queue_one(db: &impl GenericClient, d: &OneDelivery<'_>) -> Result<Uuid> {
    let row = db
        .query_one(
            &db.prepare_cached(DELIVERY_QUEUE_ONE).await?,
            &[&d.event_id, &d.endpoint_id, &d.tenant, &d.event_type],
        )
        .await?;
    db.execute(&db.prepare_cached(DELIVERY_WAKE_WORKERS).await?, &[]).await?;
    Ok(row.get(0))
}
