//! Batched delivery: an endpoint with `batch` settings gets its claimed
//! deliveries together, cut by [`BatchShape`], as one Standard Webhooks
//! message per request (its own `webhook-id`; each envelope keeps its event
//! id). A request that has room left after the claim is filled with more of
//! that endpoint's pending deliveries (`delivery_claim_batch.sql`), and an
//! endpoint with a backlog gets whole batches more while the worker has
//! request slots free.
//!
//! One request is one attempt of every delivery it carries, and its outcome
//! is theirs. A `413 Payload Too Large` halves it: each half is sent at once
//! as a new request (a new attempt of its deliveries) while the lease leaves
//! time for it; otherwise the 413 stands, and they are retried as usual.
//!
//! With a transformation, each element of the batch is what the template
//! writes for its event (one JSON value; the method and headers a template
//! may set belong to a single request, not to a batch's, and are not used).
//! A member whose template fails is an attempt of its own that sent
//! nothing (and holds back the later events of its ordering key); the rest
//! go in one request, cut as they were claimed (`max_bytes` counts their
//! envelopes; a receiver's 413 halves the request as usual).

use chrono::Utc;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::dispatch::{Attempt, Dispatcher, Outcome, envelope};
use crate::db::{self, deliveries::BatchAttempt, deliveries::Claimed, deliveries::Leased};
use crate::domain::batch::BatchShape;

/// Fill a batch from the queue only when the claim left it this much room
/// at least: a smaller top-up is not worth its statement.
const FILL_AT_LEAST: usize = 2;
/// Deliveries one fill takes for an endpoint in whole batches at most.
const EXTRA_AT_MOST: usize = 4096;
/// A half of a batch is sent only while the lease leaves its timeout and this.
const SPLIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// What one request slot sends: a delivery alone, or a batch of one
/// endpoint's deliveries with their envelopes.
#[derive(Debug)]
pub enum Job {
    Single(Box<Claimed>),
    /// `shape` as it was when the batch was made: members added later may
    /// have seen the endpoint change.
    Batch {
        shape: BatchShape,
        members: Vec<Claimed>,
        envelopes: Vec<String>,
    },
}

impl Job {
    /// The endpoint, if this is one of its batches.
    fn batch_of(&self) -> Option<Uuid> {
        match self {
            Job::Batch { members, .. } => Some(members[0].endpoint_id),
            Job::Single(_) => None,
        }
    }

    pub fn delivery_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        let members: &[Claimed] = match self {
            Job::Single(d) => std::slice::from_ref(d),
            Job::Batch { members, .. } => members,
        };
        members.iter().map(|d| d.delivery_id)
    }
}

/// The claimed deliveries as jobs, in claim order: those of batching
/// endpoints cut into batches, the rest alone. A delivery that is recorded
/// rather than sent (a lost lease, an expired circuit) goes alone too.
/// Never more jobs than deliveries.
pub fn jobs(claimed: Vec<Claimed>) -> Vec<Job> {
    let (batched, single): (Vec<Claimed>, Vec<Claimed>) =
        claimed.into_iter().partition(|d| d.batch.is_some() && d.lost.is_none() && !d.circuit_expired);
    let mut jobs: Vec<Job> = single.into_iter().map(|d| Job::Single(Box::new(d))).collect();
    for (_, members) in by_endpoint(batched, |d| d.endpoint_id) {
        let shape = members[0].batch.expect("only batched deliveries");
        let envelopes = members.iter().map(envelope).collect();
        jobs.extend(cut(shape, members, envelopes));
    }
    jobs
}

/// Deliveries grouped by endpoint, each group in order.
fn by_endpoint<D>(deliveries: Vec<D>, endpoint_of: impl Fn(&D) -> Uuid) -> Vec<(Uuid, Vec<D>)> {
    let mut groups: Vec<(Uuid, Vec<D>)> = Vec::new();
    for d in deliveries {
        let endpoint = endpoint_of(&d);
        match groups.iter_mut().find(|(id, _)| *id == endpoint) {
            Some((_, members)) => members.push(d),
            None => groups.push((endpoint, vec![d])),
        }
    }
    groups
}

/// Deliveries of one endpoint, in order, with their envelopes, as batches.
fn cut(shape: BatchShape, members: Vec<Claimed>, envelopes: Vec<String>) -> Vec<Job> {
    let sizes: Vec<usize> = envelopes.iter().map(String::len).collect();
    let (mut members, mut envelopes) = (members.into_iter(), envelopes.into_iter());
    shape
        .cut(&sizes)
        .into_iter()
        .map(|range| Job::Batch {
            shape,
            members: members.by_ref().take(range.len()).collect(),
            envelopes: envelopes.by_ref().take(range.len()).collect(),
        })
        .collect()
}

/// Fills each endpoint's last batch as far as its shape allows (see the
/// module): with the deliveries waiting behind the ordered lane heads it
/// holds, in lane order, or else with more of the endpoint's due ones —
/// and, for an endpoint whose claimed deliveries filled a batch (it has a
/// backlog), with whole batches more, as many as `spare` request slots and
/// its `room` (requests its share still allows) let it, up to
/// [`EXTRA_AT_MOST`] deliveries. A claim counts its rows against request
/// slots one by one: without whole batches, a backlog would go a claim's
/// rows at a time, a few requests per claim, fill and completion.
/// What a statement leased joins its endpoint's batches before the next
/// one runs: on an error, what was leased is still sent.
pub async fn fill(
    db: &impl GenericClient,
    worker: Uuid,
    lease_max_s: f64,
    jobs: &mut Vec<Job>,
    mut spare: usize,
    room: impl Fn(Uuid) -> usize,
) -> db::Result<()> {
    let mut filled: Vec<Uuid> = Vec::new();
    let (mut rooms, mut heads) = (Vec::new(), Vec::new());
    for job in jobs.iter().rev() {
        let Job::Batch { shape, members, envelopes } = job else { continue };
        let endpoint = members[0].endpoint_id;
        if filled.contains(&endpoint) {
            continue; // not its last batch
        }
        filled.push(endpoint);
        let sizes: Vec<usize> = envelopes.iter().map(String::len).collect();
        let last_room = shape.room(&sizes).filter(|(events, _)| *events >= FILL_AT_LEAST);
        let lane_heads: Vec<Uuid> = members.iter().filter(|d| d.lane.is_some()).map(|d| d.delivery_id).collect();
        if !lane_heads.is_empty() {
            if let Some((events, bytes)) = last_room {
                let (events, bytes) = (db::deliveries::count(events), db::deliveries::count(bytes));
                heads.extend(lane_heads.into_iter().map(|head| (head, events, bytes)));
            }
            continue;
        }
        let batches = jobs.iter().filter(|job| job.batch_of() == Some(endpoint)).count();
        let backlog = batches > 1 || last_room.is_none();
        let extra = if backlog {
            spare.min(room(endpoint).saturating_sub(batches)).min(EXTRA_AT_MOST / shape.max_events.max(1))
        } else {
            0
        };
        spare -= extra;
        let (events, bytes) = last_room.unwrap_or((0, 0));
        if events + extra > 0 {
            let events = events + extra * shape.max_events;
            let bytes = bytes + extra * shape.max_bytes;
            rooms.push((endpoint, db::deliveries::count(events), db::deliveries::count(bytes)));
        }
    }
    if !rooms.is_empty() {
        join_batches(jobs, db::deliveries::claim_for_batches(db, worker, &rooms, lease_max_s, None).await?);
    }
    if !heads.is_empty() {
        join_batches(jobs, db::deliveries::claim_lane_followers(db, worker, &heads, lease_max_s, None).await?);
    }
    Ok(())
}

/// Adds each endpoint's deliveries to its last batch (sent as its first
/// member's endpoint was claimed) and cuts that batch again: what fits
/// stays in it, the rest makes new batches, after all other jobs (the
/// worker sends jobs as far as it has free slots).
fn join_batches(jobs: &mut Vec<Job>, more: Vec<Leased>) {
    for (endpoint, those) in by_endpoint(more, |d| d.endpoint_id) {
        let last =
            jobs.iter().rposition(|job| job.batch_of() == Some(endpoint)).expect("filled only endpoints with a batch");
        let Job::Batch { shape, mut members, mut envelopes } = jobs.remove(last) else { unreachable!("a batch") };
        let those: Vec<Claimed> = those.into_iter().map(|d| members[0].joined_by(d)).collect();
        envelopes.extend(those.iter().map(envelope));
        members.extend(those);
        let mut batches = cut(shape, members, envelopes).into_iter();
        jobs.insert(last, batches.next().expect("at least one"));
        jobs.extend(batches);
    }
}

/// What sending a batch did: the requests made, and for each member the
/// attempt that decided it and the requests that carried it.
#[derive(Debug, Default)]
pub struct Sent {
    pub requests: Vec<BatchAttempt>,
    pub decided: Vec<(Claimed, Attempt, Vec<Uuid>)>,
}

/// Sends a batch, halving it on 413 (see the module).
pub async fn send(dispatcher: &Dispatcher, shape: BatchShape, members: Vec<Claimed>, envelopes: Vec<String>) -> Sent {
    let mut sent = Sent::default();
    let Some(source) = members[0].transformation.clone() else {
        send_part(dispatcher, shape, members, &envelopes, Vec::new(), &mut sent).await;
        return sent;
    };
    let (mut kept, mut kept_elements) = (Vec::new(), Vec::new());
    // Lanes with a member whose template failed: their later members must
    // not go ahead of it (a batch carries a lane's events in order).
    let mut stopped_lanes = Vec::new();
    for (d, element) in dispatcher.transform_elements(source, members).await {
        match element {
            Ok(element) if d.lane.is_none_or(|lane| !stopped_lanes.contains(&lane)) => {
                kept.push(d);
                kept_elements.push(element);
            }
            Ok(_) => {
                let held = dispatcher.not_sent("an earlier event of its ordering key failed its transformation").await;
                sent.decided.push((d, held, Vec::new()));
            }
            Err(failed) => {
                stopped_lanes.extend(d.lane);
                sent.decided.push((d, failed, Vec::new()));
            }
        }
    }
    // One request for the rest, as claimed (a receiver's 413 halves it).
    if !kept.is_empty() {
        send_part(dispatcher, shape, kept, &kept_elements, Vec::new(), &mut sent).await;
    }
    sent
}

async fn send_part(
    dispatcher: &Dispatcher,
    shape: BatchShape,
    mut members: Vec<Claimed>,
    envelopes: &[String],
    mut carried_by: Vec<Uuid>,
    sent: &mut Sent,
) {
    let id = Uuid::now_v7();
    let body = shape.format.body(envelopes.iter().map(String::as_str));
    let bytes = db::deliveries::count(body.len());
    // Each request is an attempt of each delivery it carries: a half's is
    // the one after the 413's.
    if !carried_by.is_empty() {
        members.iter_mut().for_each(|d| d.attempt += 1);
    }
    let attempt = dispatcher.attempt_batch(&members[0], id, shape.format, body).await;
    sent.requests.push(record(id, &members, &attempt, bytes));
    carried_by.push(id);
    if attempt.status_code == Some(413) && members.len() > 1 && lease_allows_another(&members) {
        let half = members.len() / 2;
        let second = members.split_off(half);
        let before = sent.decided.len();
        Box::pin(send_part(dispatcher, shape, members, &envelopes[..half], carried_by.clone(), sent)).await;
        // An ordered lane's later events go only after its earlier ones
        // went through, and no half goes that its lease may not outlast:
        // otherwise the 413 stands for them.
        let first_half_failed = sent.decided[before..].iter().any(|(_, a, _)| a.outcome != Outcome::Delivered);
        let ordered = second.iter().any(|d| d.lane.is_some());
        if (first_half_failed && ordered) || !lease_allows_another(&second) {
            for d in second {
                sent.decided.push((d, attempt.without_response(), carried_by.clone()));
            }
            return;
        }
        Box::pin(send_part(dispatcher, shape, second, &envelopes[half..], carried_by, sent)).await;
        return;
    }
    for d in members {
        sent.decided.push((d, attempt.without_response(), carried_by.clone()));
    }
}

/// The batch's record of a request.
fn record(id: Uuid, members: &[Claimed], attempt: &Attempt, bytes: i32) -> BatchAttempt {
    let (error_kind, error) = attempt.error();
    BatchAttempt {
        id,
        endpoint_id: members[0].endpoint_id,
        started_at: attempt.started_at,
        duration_ms: attempt.duration_ms(),
        status_code: attempt.status_code.map(i32::from),
        response_headers: attempt.response_headers.clone(),
        response_body: attempt.response_body.clone(),
        error_kind,
        error,
        bytes,
        deliveries: members.iter().map(|d| d.delivery_id).collect(),
        delivery_attempts: members.iter().map(|d| d.attempt).collect(),
    }
}

/// Whether every member's lease outlasts one more request.
fn lease_allows_another(members: &[Claimed]) -> bool {
    let now = Utc::now();
    members.iter().all(|d| {
        let timeout = std::time::Duration::from_millis(d.timeout_ms.max(1) as u64) + SPLIT_MARGIN;
        (d.lease_until - now).to_std().is_ok_and(|left| left > timeout)
    })
}
