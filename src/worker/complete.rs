//! Turning attempts into recorded outcomes: decide the delivery's next state
//! (a pure function), then write outcomes in batches, one statement each.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use super::dispatch::{Attempt, GONE, Outcome};
use crate::config::{CircuitSettings, WorkerSettings};
use crate::db::{
    self, deliveries::AttemptOutcome, deliveries::BatchAttempt, deliveries::Claimed, deliveries::Outcomes,
};
use crate::domain::circuit::endpoint_down;
use crate::domain::delivery::{DeliveryState, ErrorKind};
use crate::domain::retry::{NextAttempt, RetrySchedule};

/// Written per statement at most; larger backlogs take several.
const FLUSH_MAX: usize = 1000;
/// A batch smaller than this, while more requests are in flight, waits up
/// to `GATHER_FOR` for company: a completion costs the database about the
/// same for one outcome as for thirty, and the wait delays only the record,
/// never a request (the receiver already has it).
const GATHER_BELOW: usize = 32;
const GATHER_FOR: Duration = Duration::from_millis(2);

/// What the flusher receives for one attempt.
#[derive(Debug)]
pub struct Finished {
    pub outcome: AttemptOutcome,
    /// Set when the endpoint answered 410 Gone.
    pub disable_endpoint: bool,
    /// The delivery's ordered lane: written with this outcome, the lane is
    /// advanced (a no-op unless the outcome ended its head — which the
    /// database decides: a retry of a since-disabled endpoint is dead).
    pub lane: Option<i64>,
}

/// What the flusher receives: the outcomes of one request (a delivery
/// alone, or a batch's deliveries with the requests it took), which are
/// written in one statement, so the breaker counts each request once.
#[derive(Debug)]
pub struct Completed {
    pub outcomes: Vec<Finished>,
    pub requests: Vec<BatchAttempt>,
}

impl Completed {
    pub fn alone(outcome: Finished) -> Self {
        Completed { outcomes: vec![outcome], requests: Vec::new() }
    }

    /// The same decisions, without what the receiver sent, and `why`.
    fn stripped(&self, why: &str) -> Completed {
        Completed {
            outcomes: self.outcomes.iter().map(|f| f.stripped(why)).collect(),
            requests: self
                .requests
                .iter()
                .map(|r| BatchAttempt { response_headers: None, response_body: None, ..r.clone() })
                .collect(),
        }
    }
}

/// Decides where a delivery goes after `attempt`.
pub fn decide(delivery: &Claimed, attempt: Attempt, settings: &WorkerSettings, jitter: f64) -> Finished {
    let schedule = delivery
        .retry_schedule
        .clone()
        .and_then(|delays| RetrySchedule::new(delays).ok())
        .unwrap_or_else(|| settings.retry_schedule.clone());
    let duration_ms = attempt.duration_ms();
    let (state, retry_in, error_kind, error, disable_endpoint) = match attempt.outcome {
        Outcome::Delivered => (DeliveryState::Succeeded, None, None, None, false),
        Outcome::Gone => (DeliveryState::Dead, None, Some(ErrorKind::HttpStatus), Some(GONE.to_owned()), true),
        Outcome::Failed { kind, message, retry_after } => {
            let attempts_made = delivery.attempt.max(1) as u32;
            let losses = delivery.lost.map(|lost| lost.losses_before.max(0) as u32 + 1);
            let given_up = losses.filter(|n| *n >= settings.max_worker_losses);
            let retry_in = match schedule.next_attempt(attempts_made, retry_after, settings.retry_after_max, jitter) {
                // An expired circuit's delivery is past its last scheduled attempt (see crate::domain::delivery).
                NextAttempt::After(delay) if kind != ErrorKind::CircuitOpen && given_up.is_none() => Some(delay),
                _ => None,
            };
            let message = match given_up {
                Some(n) => format!("{message}; lost by a worker {n} times: given up"),
                None => message,
            };
            let state = if retry_in.is_some() { DeliveryState::Pending } else { DeliveryState::Dead };
            (state, retry_in, Some(kind), Some(message), false)
        }
    };
    let status_code = attempt.status_code;
    Finished {
        outcome: AttemptOutcome {
            delivery_id: delivery.delivery_id,
            endpoint_id: delivery.endpoint_id,
            attempt: delivery.attempt,
            next_state: state,
            retry_in_s: retry_in.map(|d: Duration| d.as_secs_f64()),
            started_at: attempt.started_at,
            duration_ms,
            status_code: attempt.status_code.map(i32::from),
            response_headers: attempt.response_headers,
            response_body: attempt.response_body,
            error_kind,
            error,
            lease_until: delivery.lease_until,
            endpoint_down: endpoint_down(error_kind, status_code),
            requests: None,
        },
        disable_endpoint,
        lane: delivery.lane,
    }
}

/// Where the flusher writes, and whom it tells.
pub struct Flusher {
    pub pool: Pool,
    pub worker: Uuid,
    pub circuit: CircuitSettings,
    /// Woken when a write released held deliveries: they are due now.
    pub wake: Arc<Notify>,
    /// Deliveries claimed whose outcome has not reached the flusher (the
    /// worker's `held`): more of them than a batch holds means more
    /// outcomes are on their way.
    pub outstanding: Arc<Mutex<HashSet<Uuid>>>,
}

/// Writes finished attempts until every sender is gone and the queue is empty.
/// Whatever accumulated while a write was in progress goes into the next one,
/// so batches grow with load by themselves. A failed write is retried with
/// backoff: until it lands the deliveries stay leased to us, and if the lease
/// runs out first they are delivered again (at-least-once).
pub async fn flush_loop(flusher: Flusher, mut finished: mpsc::Receiver<Completed>) {
    let mut batch: Vec<Completed> = Vec::new();
    while let Some(first) = finished.recv().await {
        let mut size = first.outcomes.len();
        batch.push(first);
        while size < FLUSH_MAX {
            let Ok(more) = finished.try_recv() else { break };
            size += more.outcomes.len();
            batch.push(more);
        }
        let more_coming = |size: usize| flusher.outstanding.lock().expect("not poisoned").len() > size;
        if size < GATHER_BELOW && more_coming(size) {
            let deadline = tokio::time::Instant::now() + GATHER_FOR;
            while size < GATHER_BELOW {
                let Ok(Some(more)) = tokio::time::timeout_at(deadline, finished.recv()).await else { break };
                size += more.outcomes.len();
                batch.push(more);
            }
        }
        write_until_done(&flusher, &batch).await;
        batch.clear();
    }
}

/// Retries a failed write with backoff while the failure is the database's
/// (connection lost, restart). A batch the data itself makes fail (an
/// integrity error) is split and written request by request, so one bad
/// outcome cannot hold up the others; that request is written again
/// without what the receiver sent (headers, body), saying why, so the
/// attempt still ends and the deliveries follow their decision instead of
/// being sent again when their lease runs out.
async fn write_until_done(flusher: &Flusher, batch: &[Completed]) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Err(error) = write(flusher, batch).await else { return };
        let chain = crate::telemetry::error_chain(&error);
        if let Some(sqlstate) = data_error(&error) {
            if let [one] = batch {
                let stripped =
                    one.stripped(&format!("the database refused the response (SQLSTATE {sqlstate}); not recorded"));
                let delivery_id = one.outcomes.first().map(|f| f.outcome.delivery_id);
                tracing::warn!(error = %chain, ?delivery_id, "outcome refused: recording it without the response");
                if let Err(error) = write(flusher, std::slice::from_ref(&stripped)).await {
                    tracing::error!(error = %crate::telemetry::error_chain(&error), ?delivery_id, "outcome refused; the delivery will be retried when its lease expires");
                }
            } else {
                tracing::warn!(error = %chain, size = batch.len(), "a batch of outcomes was refused: writing one by one");
                for one in batch {
                    Box::pin(write_until_done(flusher, std::slice::from_ref(one))).await;
                }
            }
            return;
        }
        tracing::error!(error = %chain, retry_in = ?backoff, "recording outcomes failed");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl Finished {
    /// The same decision, without what the receiver sent, and `why`.
    fn stripped(&self, why: &str) -> Finished {
        let c = &self.outcome;
        Finished {
            outcome: AttemptOutcome {
                response_headers: None,
                response_body: None,
                error: Some(match &c.error {
                    Some(error) => format!("{why}; {error}"),
                    None => why.to_owned(),
                }),
                ..c.clone()
            },
            disable_endpoint: self.disable_endpoint,
            lane: self.lane,
        }
    }
}

/// The SQLSTATE of a data exception (class 22) or an integrity violation
/// (class 23): the same statement would fail again.
fn data_error(error: &db::Error) -> Option<&str> {
    match error {
        db::Error::Pg(pg) => pg.code().map(|code| code.code()).filter(|code| matches!(&code[..2], "22" | "23")),
        _ => None,
    }
}

async fn write(flusher: &Flusher, batch: &[Completed]) -> db::Result<()> {
    let mut client = flusher.pool.get().await?;
    let outcomes = Outcomes {
        outcomes: batch.iter().flat_map(|c| &c.outcomes).map(|f| &f.outcome).collect(),
        requests: batch.iter().flat_map(|c| &c.requests).collect(),
        lanes: batch
            .iter()
            .flat_map(|c| &c.outcomes)
            .filter_map(|f| f.lane.map(|lane| (f.outcome.endpoint_id, lane)))
            .collect(),
    };
    let batch: Vec<&Finished> = batch.iter().flat_map(|c| &c.outcomes).collect();
    let recorded =
        db::deliveries::complete_many(&mut client, flusher.worker, &outcomes, &flusher.circuit, None).await?;
    if recorded.still_ours < batch.len() as i64 {
        tracing::warn!(
            not_ours = batch.len() as i64 - recorded.still_ours,
            "outcomes not recorded: their lease ran out, or their endpoint was deleted meanwhile"
        );
    }
    if recorded.released > 0 {
        flusher.wake.notify_one();
    }
    for gone in batch.iter().filter(|f| f.disable_endpoint) {
        if db::endpoints::disable(&client, gone.outcome.endpoint_id, "410 Gone").await? {
            tracing::warn!(endpoint_id = %gone.outcome.endpoint_id, "endpoint answered 410 Gone: disabled");
        }
    }
    Ok(())
}
