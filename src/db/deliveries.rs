//! The delivery queue: claim, complete, release.
//!
//! A worker claims due deliveries in one statement (each gets a lease),
//! commits, and only then makes HTTP requests with no transaction open.
//! Completion is guarded by the lease owner and lease end, so a worker whose
//! lease expired (and whose delivery was handed to another) cannot overwrite
//! the newer outcome. The lifecycle's states and actions are the enums of
//! [`crate::domain::delivery`], the same types as in PostgreSQL.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use postgres_types::ToSql;
use uuid::Uuid;

use super::Result;
use super::lanes::{LANES_ADVANCE, LANES_LOCK_OF_DELIVERY};
use crate::config::CircuitSettings;
use crate::domain::batch::{BatchFormat, BatchShape};
use crate::domain::delivery::{DeliveryState, ErrorKind};
use crate::secrets::StoredSecret;
use crate::signing::Signing;

/// The plain claim: one statement takes what endpoints without limits may
/// send now, ends orphans, holds what stalled endpoints cannot take, keeps
/// the idle registration, and hands back the candidates whose endpoints have
/// limits. See the file for the whole story. Parameters: `$1` worker, `$2`
/// free slots, `$3` candidates to scan, `$4` longest lease (s), `$5` the
/// worker's share per endpoint, `$6`/`$7` busy endpoints and their room,
/// `$8` stalled endpoints, `$9` the clock (NULL: now()), `$10` idle
/// registration (true register, false deregister, NULL leave).
pub const DELIVERY_CLAIM: &str = include_str!("statements/delivery_claim.sql");

/// The flow-control claim of the candidates the plain claim found limited:
/// see `sql/060_claim_deliveries.sql`.
pub const DELIVERY_CLAIM_LIMITED: &str = "
SELECT delivery_id, attempt, lease_until, event_id, event_type, event_created_at, payload,
       endpoint_id, url, http_method, headers, timeout_ms, retry_schedule, secret, previous_secret,
       lost_since, lost_at, worker_losses, circuit_expired, lane, batch_max_events, batch_max_bytes, batch_format,
       signature, signature_header, signature_hash, tenant, transformation
  FROM hookline.claim_limited($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Fills batches with more of their endpoints' pending deliveries: see the
/// file. Parameters: `$1` worker, `$2`/`$3`/`$4` endpoints with their room
/// in envelopes and bytes, `$5` longest lease (s), `$6` the clock (NULL: now()).
pub const DELIVERY_CLAIM_BATCH: &str = include_str!("statements/delivery_claim_batch.sql");

/// Leases the deliveries waiting behind ordered lane heads into their
/// batches: see `hookline.claim_lane_followers` (sql/065_batching.sql).
/// Parameters: `$1` worker, `$2`/`$3`/`$4` the heads with their batch's
/// room in envelopes and bytes, `$5` longest lease (s), `$6` the clock.
/// Returns the rows as the batch fill does ([`Leased`]).
pub const DELIVERY_CLAIM_LANE_FOLLOWERS: &str = "
SELECT f.delivery_id, f.attempt, f.lease_until, f.event_id, f.event_type, f.event_created_at, f.payload,
       f.endpoint_id, f.lane
  FROM hookline.claim_lane_followers($1, $2, $3, $4, $5, $6) WITH ORDINALITY
           AS f(delivery_id, attempt, lease_until, event_id, event_type, event_created_at, payload, endpoint_id,
                lane, nth)
 ORDER BY f.nth";

/// Records a batch of outcomes in one statement: see the file. Parameters:
/// `$1` worker, `$2` the outcomes (`hookline.attempt_outcome[]`), `$3`
/// failed attempts that open a circuit, `$4`/`$5` its first and longest
/// cool-down (s), `$6` the clock (NULL: now()), `$7` the batched requests
/// the outcomes name (`hookline.batch_attempt[]`), `$8`/`$9` the least and
/// greatest delivery id among the outcomes.
pub const DELIVERY_COMPLETE: &str = include_str!("statements/delivery_complete.sql");

/// Hands deliveries this worker still holds back to the queue (at shutdown),
/// due at once and without counting the unfinished attempt; their slots in
/// max_in_flight are freed with them, and a circuit probe among them no
/// longer counts as out.
pub const DELIVERY_RELEASE: &str = "
WITH released AS (
    UPDATE hookline.delivery_queue AS q
       SET next_attempt_at = now(), lease_owner = NULL, attempts = q.attempts - 1
      FROM (SELECT delivery_id, next_attempt_at AS lease_until
              FROM hookline.delivery_queue
             WHERE delivery_id = ANY ($1) AND lease_owner = $2
               FOR UPDATE) AS leased
     WHERE q.delivery_id = leased.delivery_id
    RETURNING q.endpoint_id, leased.lease_until
),
slots AS (
    UPDATE hookline.endpoint_state AS s
       SET leases = hookline.lease_batches_end(s.leases, r.ended, now()),
           circuit_probe_until = CASE WHEN s.circuit_probe_until = ANY (r.ended) THEN NULL
                                      ELSE s.circuit_probe_until END
      FROM (SELECT endpoint_id, array_agg(lease_until) AS ended FROM released GROUP BY endpoint_id ORDER BY endpoint_id) AS r
     WHERE s.endpoint_id = r.endpoint_id AND (cardinality(s.leases) > 0 OR s.circuit_state = 'half_open')
)
SELECT count(*) FROM released";

/// Releases up to `$2` of endpoint `$1`'s held deliveries (oldest due first),
/// waking idle workers; returns how many. The worker calls it when it held an
/// endpoint's deliveries while that endpoint's last requests finished, whose
/// completions could not see the held rows to release them.
pub const DELIVERY_RELEASE_HELD: &str = "
WITH released AS (
    UPDATE hookline.delivery_queue AS q
       SET state = 'pending'
      FROM (SELECT delivery_id FROM hookline.delivery_queue
             WHERE endpoint_id = $1 AND state = 'held'
             ORDER BY next_attempt_at
             LIMIT $2
               FOR UPDATE SKIP LOCKED) AS h
     WHERE q.delivery_id = h.delivery_id
    RETURNING 1
),
woken AS (
    SELECT pg_notify('hookline_wake', '')
     WHERE EXISTS (SELECT FROM released) AND EXISTS (SELECT FROM hookline.idle_workers)
)
SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM woken)";

/// A claimed delivery with its event and endpoint.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: Uuid,
    pub attempt: i32,
    /// When the lease ends; the completion hands it back to free the slot.
    pub lease_until: DateTime<Utc>,
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
    pub secret: StoredSecret,
    pub previous_secret: Option<StoredSecret>,
    /// Set when the claim took over a lost lease: the worker records the
    /// loss rather than sending.
    pub lost: Option<LostLease>,
    /// Set when its endpoint's circuit stayed open past its last scheduled
    /// attempt: the worker records it dead rather than sending.
    pub circuit_expired: bool,
    /// Its ordered lane (`None`: not ordered); its completion lets the
    /// lane's next delivery go.
    pub lane: Option<i64>,
    /// Its endpoint's batches, if it sends them.
    pub batch: Option<BatchShape>,
    /// How its endpoint's requests are signed.
    pub signing: Signing,
    /// Its event's tenant (`None` where no transformation reads it).
    pub tenant: Option<String>,
    /// The minijinja template that writes its body, if its endpoint has one.
    pub transformation: Option<String>,
}

/// A lease whose worker stopped before recording an outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LostLease {
    /// When the lost attempt began (its lease's start, as near as is known).
    pub since: DateTime<Utc>,
    /// When its lease ran out.
    pub at: DateTime<Utc>,
    /// Attempts of this delivery lost before this one.
    pub losses_before: i32,
}

impl From<&tokio_postgres::Row> for Claimed {
    fn from(r: &tokio_postgres::Row) -> Self {
        Claimed {
            delivery_id: r.get(0),
            attempt: r.get(1),
            lease_until: r.get(2),
            event_id: r.get(3),
            event_type: r.get(4),
            event_created_at: r.get(5),
            payload_json: r.get(6),
            endpoint_id: r.get(7),
            url: r.get(8),
            http_method: r.get(9),
            headers: r.get(10),
            timeout_ms: r.get(11),
            retry_schedule: r.get(12),
            secret: r.get(13),
            previous_secret: r.get(14),
            lost: r.get::<_, Option<DateTime<Utc>>>(16).map(|at| LostLease {
                since: r.get::<_, Option<DateTime<Utc>>>(15).unwrap_or(at),
                at,
                losses_before: r.get::<_, Option<i32>>(17).unwrap_or(0),
            }),
            circuit_expired: r.get(18),
            lane: r.get(19),
            batch: batch_shape(r.get(20), r.get(21), r.get(22)),
            signing: Signing::from_columns(r.get(23), r.get(24), r.get(25)),
            tenant: r.get(26),
            transformation: r.get(27),
        }
    }
}

/// A delivery a fill leased into a batch: what is its own. The rest is its
/// batch's, which is sent as its first member's endpoint was claimed (see
/// [`Claimed::joined_by`]).
#[derive(Debug, Clone)]
pub struct Leased {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub lease_until: DateTime<Utc>,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_created_at: DateTime<Utc>,
    pub payload_json: String,
    pub endpoint_id: Uuid,
    pub lane: Option<i64>,
}

impl From<&tokio_postgres::Row> for Leased {
    fn from(r: &tokio_postgres::Row) -> Self {
        Leased {
            delivery_id: r.get(0),
            attempt: r.get(1),
            lease_until: r.get(2),
            event_id: r.get(3),
            event_type: r.get(4),
            event_created_at: r.get(5),
            payload_json: r.get(6),
            endpoint_id: r.get(7),
            lane: r.get(8),
        }
    }
}

impl Claimed {
    /// `leased`, a delivery of the same endpoint, with this delivery's
    /// endpoint as it was claimed: a fill returns its deliveries' own
    /// columns only, not the endpoint's once per delivery.
    pub fn joined_by(&self, leased: Leased) -> Claimed {
        debug_assert_eq!(self.endpoint_id, leased.endpoint_id);
        Claimed {
            delivery_id: leased.delivery_id,
            attempt: leased.attempt,
            lease_until: leased.lease_until,
            event_id: leased.event_id,
            event_type: leased.event_type,
            event_created_at: leased.event_created_at,
            payload_json: leased.payload_json,
            endpoint_id: self.endpoint_id,
            url: self.url.clone(),
            http_method: self.http_method.clone(),
            headers: self.headers.clone(),
            timeout_ms: self.timeout_ms,
            retry_schedule: self.retry_schedule.clone(),
            secret: self.secret.clone(),
            previous_secret: self.previous_secret.clone(),
            lost: None,
            circuit_expired: false,
            lane: leased.lane,
            batch: self.batch,
            signing: self.signing.clone(),
            tenant: self.tenant.clone(),
            transformation: self.transformation.clone(),
        }
    }
}

fn batch_shape(max_events: Option<i32>, max_bytes: Option<i32>, format: Option<&str>) -> Option<BatchShape> {
    Some(BatchShape {
        max_events: usize::try_from(max_events?).ok()?,
        max_bytes: usize::try_from(max_bytes?).ok()?,
        format: BatchFormat::parse(format?)?,
    })
}

/// What a worker asks for when it claims.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub worker: Uuid,
    /// Free request slots: deliveries claimed at most.
    pub wanted: usize,
    /// Due candidates to look at (more than `wanted` when endpoints the
    /// worker is busy with may fill the front of the queue).
    pub scan: usize,
    pub lease_max_s: f64,
    /// Requests the worker may send one endpoint at once.
    pub share: usize,
    /// Endpoints the worker's share limits in this claim, and their room left.
    pub busy: &'a [(Uuid, usize)],
    /// Busy endpoints whose requests have stopped finishing: their waiting
    /// deliveries are held rather than left in front of everyone else's.
    pub stalled: &'a [Uuid],
    /// The worker's entry in `hookline.idle_workers` after this claim:
    /// registered, removed, or left as it is (`None`).
    pub idle: Option<bool>,
    /// The clock; `None` is the database's.
    pub at: Option<DateTime<Utc>>,
    /// The worker's retry schedule, for endpoints without their own.
    pub default_schedule: &'a [f64],
}

/// What a plain claim found.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub deliveries: Vec<Claimed>,
    /// Due candidates of endpoints with limits: for [`claim_limited`].
    pub limited: Vec<Uuid>,
    /// Seconds until the next pending delivery falls due (negative: overdue;
    /// `None`: nothing pending).
    pub next_due_s: Option<f64>,
}

/// A count or size as the `integer` parameters take it (saturating).
pub fn count(n: usize) -> i32 {
    n.min(i32::MAX as usize) as i32
}

/// The busy endpoints as the claims take them: ids, and room for each.
fn busy_arrays(r: &ClaimRequest<'_>) -> (Vec<Uuid>, Vec<i32>) {
    r.busy.iter().map(|(id, room)| (*id, count(*room))).unzip()
}

pub async fn claim_due(db: &impl GenericClient, r: &ClaimRequest<'_>) -> Result<Claim> {
    let (busy_ids, busy_room) = busy_arrays(r);
    let rows = db
        .query(
            &db.prepare_cached(DELIVERY_CLAIM).await?,
            &[
                &r.worker,
                &count(r.wanted),
                &count(r.scan),
                &r.lease_max_s,
                &count(r.share),
                &busy_ids,
                &busy_room,
                &r.stalled,
                &r.at,
                &r.idle,
            ],
        )
        .await?;
    let mut claim = Claim::default();
    for row in &rows {
        match row.get::<_, Option<Uuid>>(0) {
            Some(_) => claim.deliveries.push(Claimed::from(row)),
            None => {
                claim.limited = row.get::<_, Option<Vec<Uuid>>>(28).unwrap_or_default();
                claim.next_due_s = row.get(29);
            }
        }
    }
    Ok(claim)
}

/// Claims what is due: the plain claim, then, while slots remain and it
/// found candidates of endpoints with limits (or orphans, or a stalled
/// endpoint's backlog), the flow-control claim for those — with the
/// worker's room per endpoint less what the plain claim just took, so an
/// endpoint's share holds across both.
pub async fn claim(db: &impl GenericClient, r: &ClaimRequest<'_>) -> Result<Claim> {
    let mut claim = claim_due(db, r).await?;
    if claim.limited.is_empty() || claim.deliveries.len() >= r.wanted {
        return Ok(claim);
    }
    let busy = room_left(r.busy, r.share, claim.deliveries.iter().map(|d| d.endpoint_id));
    let rest = ClaimRequest { wanted: r.wanted - claim.deliveries.len(), busy: &busy, ..r.clone() };
    let limited = claim_limited(db, &rest, &claim.limited).await?;
    claim.deliveries.extend(limited);
    Ok(claim)
}

/// The worker's room per endpoint after it took `taken` (one endpoint id
/// per delivery): the busy list less those, plus any endpoint not in it.
fn room_left(busy: &[(Uuid, usize)], share: usize, taken: impl Iterator<Item = Uuid>) -> Vec<(Uuid, usize)> {
    let mut room: Vec<(Uuid, usize)> = busy.to_vec();
    for endpoint in taken {
        match room.iter_mut().find(|(id, _)| *id == endpoint) {
            Some((_, left)) => *left = left.saturating_sub(1),
            None => room.push((endpoint, share.saturating_sub(1))),
        }
    }
    room
}

/// Claims, of `candidates`, what their endpoints' limits allow, at most `r.wanted`.
pub async fn claim_limited(db: &impl GenericClient, r: &ClaimRequest<'_>, candidates: &[Uuid]) -> Result<Vec<Claimed>> {
    let (busy_ids, busy_room) = busy_arrays(r);
    let rows = db
        .query(
            &db.prepare_cached(DELIVERY_CLAIM_LIMITED).await?,
            &[
                &r.worker,
                &count(r.wanted),
                &candidates,
                &r.lease_max_s,
                &count(r.share),
                &busy_ids,
                &busy_room,
                &r.stalled,
                &r.at,
                &r.default_schedule,
            ],
        )
        .await?;
    Ok(rows.iter().map(Claimed::from).collect())
}

/// Claims, for each (endpoint, envelopes, bytes) in `rooms`, as many of its
/// pending deliveries as fit (see [`DELIVERY_CLAIM_BATCH`]).
pub async fn claim_for_batches(
    db: &impl GenericClient,
    worker: Uuid,
    rooms: &[(Uuid, i32, i32)],
    lease_max_s: f64,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<Leased>> {
    claim_into_batches(db, DELIVERY_CLAIM_BATCH, worker, rooms, lease_max_s, at).await
}

/// Leases, behind each ordered lane head of `heads` (with its batch's room
/// in envelopes and bytes), the deliveries waiting for it, in lane order
/// (see [`DELIVERY_CLAIM_LANE_FOLLOWERS`]).
pub async fn claim_lane_followers(
    db: &impl GenericClient,
    worker: Uuid,
    heads: &[(Uuid, i32, i32)],
    lease_max_s: f64,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<Leased>> {
    claim_into_batches(db, DELIVERY_CLAIM_LANE_FOLLOWERS, worker, heads, lease_max_s, at).await
}

/// Runs one of the fills: `statement` takes the worker, the (id, envelopes,
/// bytes) of `rooms` as three arrays, the longest lease and the clock.
async fn claim_into_batches(
    db: &impl GenericClient,
    statement: &str,
    worker: Uuid,
    rooms: &[(Uuid, i32, i32)],
    lease_max_s: f64,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<Leased>> {
    let (ids, (events, bytes)): (Vec<Uuid>, (Vec<i32>, Vec<i32>)) =
        rooms.iter().map(|(id, events, bytes)| (*id, (*events, *bytes))).unzip();
    let rows =
        db.query(&db.prepare_cached(statement).await?, &[&worker, &ids, &events, &bytes, &lease_max_s, &at]).await?;
    Ok(rows.iter().map(Leased::from).collect())
}

/// The outcome of one attempt, ready to be written: a
/// `hookline.attempt_outcome`, field for field.
#[derive(Debug, Clone, ToSql)]
#[postgres(name = "attempt_outcome")]
pub struct AttemptOutcome {
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempt: i32,
    /// The lease the delivery was claimed with.
    pub lease_until: DateTime<Utc>,
    /// `Succeeded`, `Pending` (retry after `retry_in_s`) or `Dead`.
    pub next_state: DeliveryState,
    pub retry_in_s: Option<f64>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    /// The attempt's verdict for the circuit breaker: the endpoint is down
    /// (`Some(true)`), answers (`Some(false)`), or neither.
    pub endpoint_down: Option<bool>,
    /// The batched requests that carried the delivery in this claim, in
    /// order, the last deciding (`None`: sent alone, or not sent). Their
    /// responses are in [`BatchAttempt`]s, not repeated here.
    pub requests: Option<Vec<Uuid>>,
}

/// One batched request: a `hookline.batch_attempt`, field for field.
#[derive(Debug, Clone, ToSql)]
#[postgres(name = "batch_attempt")]
pub struct BatchAttempt {
    /// The request's `webhook-id`.
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    pub bytes: i32,
    pub deliveries: Vec<Uuid>,
    /// Each delivery's attempt number for this request.
    pub delivery_attempts: Vec<i32>,
}

/// A batch of completions to write.
#[derive(Debug, Default)]
pub struct Outcomes<'a> {
    pub outcomes: Vec<&'a AttemptOutcome>,
    /// The batched requests the outcomes name.
    pub requests: Vec<&'a BatchAttempt>,
    /// The (endpoint, lane) of the outcomes of ordered deliveries.
    pub lanes: Vec<(Uuid, i64)>,
}

/// What writing a batch of completions did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Outcomes of deliveries still leased to the worker (the rest were lost
    /// to an expired lease and are not written to the queue or history).
    pub still_ours: i64,
    /// Held deliveries, and waiting ones of ordered lanes, released back to the queue.
    pub released: i64,
}

/// Writes a batch of outcomes; `at` is the clock (`None`: the database's).
/// `lanes` are the (endpoint, lane) of the outcomes of ordered deliveries:
/// those are written in one transaction with the advance of their lanes,
/// so a lane never stops with its head gone.
pub async fn complete_many(
    client: &mut deadpool_postgres::Client,
    worker: Uuid,
    batch: &Outcomes<'_>,
    circuit: &CircuitSettings,
    at: Option<DateTime<Utc>>,
) -> Result<Recorded> {
    let (endpoints, lanes): (Vec<Uuid>, Vec<i64>) = batch.lanes.iter().copied().unzip();
    if lanes.is_empty() {
        return record(&*client, worker, batch, circuit, at).await;
    }
    let tx = client.transaction().await?;
    let recorded = record(&tx, worker, batch, circuit, at).await?;
    let advanced: i32 = tx.query_one(&tx.prepare_cached(LANES_ADVANCE).await?, &[&endpoints, &lanes]).await?.get(0);
    tx.commit().await?;
    Ok(Recorded { released: recorded.released + i64::from(advanced), ..recorded })
}

async fn record(
    db: &impl GenericClient,
    worker: Uuid,
    batch: &Outcomes<'_>,
    circuit: &CircuitSettings,
    at: Option<DateTime<Utc>>,
) -> Result<Recorded> {
    let failures = circuit.failures.min(i32::MAX as u32) as i32;
    let (cooldown_s, cooldown_max_s) = (circuit.cooldown.as_secs_f64(), circuit.cooldown_max.as_secs_f64());
    // The key range of the history rows: the planner then opens only the
    // partitions of deliveries that hold them.
    let ids = batch.outcomes.iter().map(|o| o.delivery_id);
    let (first, last) = (ids.clone().min(), ids.max());
    let row = db
        .query_one(
            &db.prepare_cached(DELIVERY_COMPLETE).await?,
            &[&worker, &batch.outcomes, &failures, &cooldown_s, &cooldown_max_s, &at, &batch.requests, &first, &last],
        )
        .await?;
    Ok(Recorded { still_ours: row.get(0), released: row.get(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_left_counts_what_the_plain_claim_took() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let left = room_left(&[(a, 3), (b, 1)], 8, [a, a, b, b, c].into_iter());
        assert_eq!(left, vec![(a, 1), (b, 0), (c, 7)]);
    }
}

pub async fn release(db: &impl GenericClient, worker: Uuid, deliveries: &[Uuid]) -> Result<i64> {
    Ok(db.query_one(&db.prepare_cached(DELIVERY_RELEASE).await?, &[&deliveries, &worker]).await?.get(0))
}

pub async fn release_held(db: &impl GenericClient, endpoint: Uuid, at_most: i64) -> Result<i64> {
    Ok(db.query_one(&db.prepare_cached(DELIVERY_RELEASE_HELD).await?, &[&endpoint, &at_most]).await?.get(0))
}

// ---- The API's view of deliveries -------------------------------------------

/// A delivery as the API shows it. `in_flight` is not stored: a pending
/// delivery whose queue row holds an unexpired lease is in flight.
macro_rules! delivery_view {
    () => {
        "SELECT d.id, d.event_id, d.endpoint_id, d.tenant, d.event_type,
                CASE WHEN d.state = 'pending' AND q.lease_owner IS NOT NULL AND q.next_attempt_at > now()
                     THEN 'in_flight' ELSE d.state::text END AS state,
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

/// A delivery's attempts: its own, and the batched requests that carried it
/// (with its attempt number in each, and the batch's id and size).
pub const ATTEMPTS_OF_DELIVERY: &str = "
SELECT attempt, started_at, duration_ms, status_code, response_headers, response_body, error_kind::text, error, worker,
       NULL::uuid AS batch_id, NULL::integer AS batch_size
  FROM hookline.attempts WHERE delivery_id = $1
UNION ALL
SELECT b.delivery_attempts[array_position(b.deliveries, $1)], b.started_at, b.duration_ms, b.status_code,
       b.response_headers, b.response_body, b.error_kind::text, b.error, b.worker, b.id, cardinality(b.deliveries)
  FROM hookline.deliveries AS d
  JOIN hookline.batch_attempts AS b ON b.id = ANY (d.batch_attempts)
 WHERE d.id = $1
 ORDER BY 1, 2";

/// Puts a delivery back in the queue, due now, unless a worker holds it or
/// it could never be sent (its endpoint deleted or disabled, its event
/// deleted): answers `queued`, `leased`, `endpoint_deleted`,
/// `endpoint_disabled` or `event_deleted`. Attempt numbers continue from the
/// history's count, so a finished delivery sent again keeps unique attempts.
pub const DELIVERY_REQUEUE: &str = "
WITH target AS (
    SELECT d.id, d.event_id, d.endpoint_id, d.attempts, d.state, d.tenant, d.event_type, d.created_at, ep.enabled,
           e.id IS NOT NULL AS has_event, l.lane,
           EXISTS (SELECT FROM hookline.delivery_queue AS q WHERE q.delivery_id = d.id) AS in_queue,
           -- Fills take unordered deliveries only (ordered ones follow their heads).
           ep.batch_max_events IS NOT NULL AND l.lane IS NULL AS batched
      FROM hookline.deliveries AS d
      LEFT JOIN hookline.endpoints AS ep ON ep.id = d.endpoint_id
      LEFT JOIN hookline.events AS e ON e.id = d.event_id
     CROSS JOIN LATERAL (SELECT hookline.lane_of(ep.id, ep.ordering, e.ordering_key) AS lane) AS l
     WHERE d.id = $1
),
queued AS (
    -- A finished delivery sent again joins the back of its lane; one still
    -- queued keeps its lane, and its place as hookline.replayed_lane_seq says.
    INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id, attempts, lane, lane_seq, batched)
    SELECT id, event_id, endpoint_id, attempts, lane, CASE WHEN NOT in_queue THEN hookline.take_lane_place(lane) END,
           batched
      FROM target WHERE enabled AND has_event
    ON CONFLICT (delivery_id) DO UPDATE
       SET state = 'pending', next_attempt_at = now(), lease_owner = NULL, batched = excluded.batched,
           lane_seq = hookline.replayed_lane_seq(hookline.delivery_queue.delivery_id,
                                                 hookline.delivery_queue.endpoint_id, hookline.delivery_queue.lane,
                                                 hookline.delivery_queue.lane_seq, hookline.delivery_queue.state)
     WHERE hookline.delivery_queue.lease_owner IS NULL OR hookline.delivery_queue.next_attempt_at <= now()
    RETURNING delivery_id
),
history AS (
    UPDATE hookline.deliveries AS d
       SET state = 'pending', completed_at = NULL
      FROM queued WHERE d.id = queued.delivery_id
    RETURNING d.id
),
counted AS (
    INSERT INTO hookline.rollup_deltas
    SELECT d.*
      FROM target AS t
     CROSS JOIN LATERAL hookline.transition_delta(t.endpoint_id, t.tenant, t.event_type, t.created_at,
                                                  t.state, 'pending', t.attempts, t.attempts) AS d
     WHERE t.state <> 'pending' AND t.id IN (SELECT h.id FROM history AS h)
)
SELECT CASE WHEN t.enabled IS NULL THEN 'endpoint_deleted'
            WHEN NOT t.enabled THEN 'endpoint_disabled'
            WHEN NOT t.has_event THEN 'event_deleted'
            WHEN EXISTS (SELECT FROM queued) THEN 'queued'
            ELSE 'leased' END
  FROM target AS t";

/// Takes a delivery out of the queue for good, unless a worker holds it.
/// The history keeps the queue's count of claims, so a later retry numbers
/// its attempts after any a worker whose lease ran out may still record.
pub const DELIVERY_CANCEL: &str = "
WITH removed AS (
    DELETE FROM hookline.delivery_queue
     WHERE delivery_id = $1 AND (lease_owner IS NULL OR next_attempt_at <= now())
    RETURNING delivery_id, attempts, endpoint_id, lane
),
before AS (
    SELECT d.id, d.state, d.attempts, d.endpoint_id, d.tenant, d.event_type, d.created_at
      FROM hookline.deliveries AS d WHERE d.id IN (SELECT r.delivery_id FROM removed AS r)
),
history AS (
    UPDATE hookline.deliveries AS d
       SET state = 'cancelled', completed_at = now(), last_error = coalesce(d.last_error, $2),
           attempts = greatest(d.attempts, removed.attempts)
      FROM removed WHERE d.id = removed.delivery_id
    RETURNING d.id, d.attempts
),
counted AS (
    INSERT INTO hookline.rollup_deltas
    SELECT d.*
      FROM before AS b
      JOIN history AS h ON h.id = b.id
     CROSS JOIN LATERAL hookline.transition_delta(b.endpoint_id, b.tenant, b.event_type, b.created_at,
                                                  b.state, 'cancelled', b.attempts, h.attempts) AS d
)
SELECT h.id, r.endpoint_id, r.lane FROM history AS h JOIN removed AS r ON r.delivery_id = h.id";

/// The FROM and WHERE of the dead letters a filter replays: tenant `$1`,
/// endpoint `$2`, event type `$3`, created in [`$4`, `$5`).
macro_rules! dead_letters_matching {
    () => {
        "FROM hookline.delivery_queue AS q
      JOIN hookline.deliveries AS d ON d.id = q.delivery_id
     WHERE q.state = 'dead'
       -- Dead letters of a disabled endpoint would only die again.
       AND EXISTS (SELECT FROM hookline.endpoints AS ep WHERE ep.id = q.endpoint_id AND ep.enabled)
       AND ($1::text IS NULL OR d.tenant = $1)
       AND ($2::uuid IS NULL OR q.endpoint_id = $2)
       AND ($3::text IS NULL OR d.event_type = $3)
       AND ($4::timestamptz IS NULL OR q.delivery_id >= hookline.uuid_v7_floor($4))
       AND ($5::timestamptz IS NULL OR q.delivery_id < hookline.uuid_v7_floor($5))
"
    };
}

/// How many dead letters [`DEAD_LETTER_REPLAY_MATCHING`] would replay.
pub const DEAD_LETTER_COUNT_MATCHING: &str = concat!("SELECT count(*)\n", dead_letters_matching!());

/// Re-queues the dead letters matching tenant `$1`, endpoint `$2`, type `$3`,
/// window [`$4`, `$5`); returns how many.
pub const DEAD_LETTER_REPLAY_MATCHING: &str = concat!(
    "
WITH target AS MATERIALIZED (
    SELECT q.delivery_id, q.endpoint_id, q.lane, q.lane_seq, q.state,
           q.lane IS NULL
               AND (SELECT ep.batch_max_events IS NOT NULL FROM hookline.endpoints AS ep WHERE ep.id = q.endpoint_id)
               AS batched
",
    dead_letters_matching!(),
    "     -- Ordered lanes' dead letters keep their order when they take new places.
     ORDER BY q.lane, q.lane_seq
       FOR UPDATE OF q
),
placed AS MATERIALIZED (
    SELECT t.delivery_id, t.batched,
           hookline.replayed_lane_seq(t.delivery_id, t.endpoint_id, t.lane, t.lane_seq, t.state) AS lane_seq
      FROM target AS t
),
revived AS (
    UPDATE hookline.delivery_queue AS q
       SET state = 'pending', next_attempt_at = now(), lease_owner = NULL, lane_seq = p.lane_seq, batched = p.batched
      FROM placed AS p
     WHERE q.delivery_id = p.delivery_id
    RETURNING q.delivery_id
),
history AS (
    UPDATE hookline.deliveries AS d
       SET state = 'pending', completed_at = NULL
      FROM revived WHERE d.id = revived.delivery_id AND d.state = 'dead'
    RETURNING d.endpoint_id, d.tenant, d.event_type, d.created_at, d.attempts
),
counted AS (
    INSERT INTO hookline.rollup_deltas
    SELECT d.*
      FROM history AS h
     CROSS JOIN LATERAL hookline.transition_delta(h.endpoint_id, h.tenant, h.event_type, h.created_at,
                                                  'dead', 'pending', h.attempts, h.attempts) AS d
)
SELECT count(*) FROM revived"
);

/// Queues, for endpoint `$1`, the matching events since `$2` that it has no
/// delivery of (those produced while it was disabled); returns how many.
/// At an ordered endpoint they join the back of their lanes, in event order.
pub const DELIVERY_QUEUE_MISSED: &str = "
WITH missed AS (
    SELECT e.id, e.tenant, e.event_type, l.lane, ep.batch_max_events IS NOT NULL AND l.lane IS NULL AS batched
      FROM hookline.endpoints AS ep
      JOIN hookline.events AS e
        ON e.tenant = ep.tenant AND e.id >= hookline.uuid_v7_floor($2)
       AND e.source <> 'test' AND e.event_type LIKE ANY (ep.event_types_like)
       -- not the notice of its own disabling
       AND NOT (e.source = 'hookline' AND e.payload ->> 'endpoint_id' = ep.id::text)
     CROSS JOIN LATERAL (SELECT hookline.lane_of(ep.id, ep.ordering, e.ordering_key) AS lane) AS l
     WHERE ep.id = $1
       AND NOT EXISTS (SELECT FROM hookline.deliveries AS d WHERE d.event_id = e.id AND d.endpoint_id = ep.id)
     ORDER BY e.id
),
placed AS MATERIALIZED (
    SELECT hookline.uuid_v7() AS delivery_id, m.*, hookline.take_lane_place(m.lane) AS lane_seq
      FROM missed AS m
),
created AS (
    INSERT INTO hookline.deliveries (id, event_id, endpoint_id, tenant, event_type)
    SELECT delivery_id, id, $1, tenant, event_type FROM placed
)
INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id, lane, lane_seq, batched)
SELECT delivery_id, id, $1, lane, lane_seq, batched FROM placed";

/// Queues event `$1` for endpoint `$2` alone (an endpoint test).
pub const DELIVERY_QUEUE_ONE: &str = "
WITH created AS (
    INSERT INTO hookline.deliveries (event_id, endpoint_id, tenant, event_type)
    VALUES ($1, $2, $3, $4)
    RETURNING id, event_id, endpoint_id
)
INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id, batched)
SELECT id, event_id, endpoint_id,
       (SELECT ep.batch_max_events IS NOT NULL FROM hookline.endpoints AS ep WHERE ep.id = created.endpoint_id)
  FROM created
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
    /// The batched request that made it, and how many deliveries it carried.
    pub batch_id: Option<Uuid>,
    pub batch_size: Option<i32>,
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
            batch_id: r.get(9),
            batch_size: r.get(10),
        })
        .collect())
}

/// What asking to send a delivery again did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeued {
    Queued,
    /// A worker holds it right now.
    Leased,
    EndpointDeleted,
    EndpointDisabled,
    EventDeleted,
    /// No such delivery.
    Missing,
}

pub async fn requeue(db: &impl GenericClient, id: Uuid) -> Result<Requeued> {
    let row = db.query_opt(&db.prepare_cached(DELIVERY_REQUEUE).await?, &[&id]).await?;
    let outcome = match row.as_ref().map(|r| r.get::<_, &str>(0)) {
        None => Requeued::Missing,
        Some("queued") => Requeued::Queued,
        Some("endpoint_deleted") => Requeued::EndpointDeleted,
        Some("endpoint_disabled") => Requeued::EndpointDisabled,
        Some("event_deleted") => Requeued::EventDeleted,
        Some(_) => Requeued::Leased,
    };
    if outcome == Requeued::Queued {
        db.execute(&db.prepare_cached(DELIVERY_WAKE_WORKERS).await?, &[]).await?;
    }
    Ok(outcome)
}

/// False when a worker holds the delivery right now. Run it in a
/// transaction: a cancelled head of an ordered lane lets the next one go
/// in a second statement.
pub async fn cancel(db: &impl GenericClient, id: Uuid, reason: &str) -> Result<bool> {
    // The lane lock before the row, as claims and completions take them.
    db.execute(&db.prepare_cached(LANES_LOCK_OF_DELIVERY).await?, &[&id]).await?;
    let Some(row) = db.query_opt(&db.prepare_cached(DELIVERY_CANCEL).await?, &[&id, &reason]).await? else {
        return Ok(false);
    };
    if let Some(lane) = row.get::<_, Option<i64>>(2) {
        let endpoint: Uuid = row.get(1);
        db.execute(&db.prepare_cached(LANES_ADVANCE).await?, &[&vec![endpoint], &vec![lane]]).await?;
    }
    Ok(true)
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

pub async fn count_dead_letters(db: &impl GenericClient, f: &DeliveryFilter<'_>) -> Result<i64> {
    let row = db
        .query_one(DEAD_LETTER_COUNT_MATCHING, &[&f.tenant, &f.endpoint_id, &f.event_type, &f.since, &f.until])
        .await?;
    Ok(row.get(0))
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
