//! Driving the claim and the completion by hand, as a worker would, for
//! tests of interleavings a worker fleet produces only rarely. Time is an
//! argument (`at`), so tests move the clock instead of waiting.

use chrono::{DateTime, Utc};
use hookline::config::CircuitSettings;
use hookline::db::deliveries::{self, AttemptOutcome, ClaimRequest, Claimed};
use hookline::domain::delivery::{DeliveryState, ErrorKind};
use uuid::Uuid;

use super::db::TestDb;

/// The breaker of these tests: 3 failed attempts open it for 10 s (at most 600 s).
pub const CIRCUIT: CircuitSettings = CircuitSettings {
    failures: 3,
    cooldown: std::time::Duration::from_secs(10),
    cooldown_max: std::time::Duration::from_secs(600),
};

/// Claims up to 10 deliveries for `worker` at `at`, flow control included.
pub async fn claim_at(db: &TestDb, worker: Uuid, at: Option<DateTime<Utc>>) -> Vec<Claimed> {
    let client = db.client().await;
    let request = ClaimRequest {
        worker,
        wanted: 10,
        scan: 10,
        lease_max_s: 60.0,
        share: 10,
        busy: &[],
        stalled: &[],
        idle: None,
        at,
        default_schedule: &[0.05, 0.05],
    };
    deliveries::claim(&client, &request).await.expect("claim").deliveries
}

pub async fn claim(db: &TestDb, worker: Uuid) -> Vec<Claimed> {
    claim_at(db, worker, None).await
}

/// The outcome a worker reports for `claimed` answered with `status` (a
/// failure is retried after 50 ms; a 5xx says the endpoint is down).
pub fn outcome(claimed: &Claimed, status: i32) -> AttemptOutcome {
    let ok = (200..300).contains(&status);
    let error_kind = (!ok).then_some(ErrorKind::HttpStatus);
    AttemptOutcome {
        delivery_id: claimed.delivery_id,
        endpoint_id: claimed.endpoint_id,
        attempt: claimed.attempt,
        lease_until: claimed.lease_until,
        next_state: if ok { DeliveryState::Succeeded } else { DeliveryState::Pending },
        retry_in_s: (!ok).then_some(0.05),
        started_at: Utc::now(),
        duration_ms: 3,
        status_code: Some(status),
        response_headers: Some(serde_json::json!({})),
        response_body: Some("x".into()),
        error_kind,
        error: None,
        endpoint_down: hookline::domain::circuit::endpoint_down(error_kind, Some(status as u16)),
        requests: None,
    }
}

/// Records outcomes for `worker` at `at`; returns how many were still its own.
pub async fn complete_at(db: &TestDb, worker: Uuid, outcomes: &[AttemptOutcome], at: Option<DateTime<Utc>>) -> i64 {
    let batch = deliveries::Outcomes { outcomes: outcomes.iter().collect(), ..Default::default() };
    deliveries::complete_many(&mut db.client().await, worker, &batch, &CIRCUIT, at).await.expect("complete").still_ours
}

pub async fn complete(db: &TestDb, worker: Uuid, claimed: &Claimed, status: i32) -> i64 {
    complete_at(db, worker, &[outcome(claimed, status)], None).await
}
