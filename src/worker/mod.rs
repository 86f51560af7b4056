//! `hookline worker`: claims due deliveries and sends them. The lifecycle
//! it drives is drawn in [`crate::domain::delivery`].
//!
//! A lease is the queue row's `next_attempt_at` pushed to the end of the
//! lease, so a delivery whose worker died simply falls due again: no rescuer.
//! Pieces: [`wake`] (LISTEN), the claim loop below and [`presence`] (when
//! to be woken, when to poll), [`share`] (no endpoint takes all slots),
//! [`dispatch`] (HTTP), [`complete`] (decide + batched writes), and a fold
//! of the statistics' deltas every second. Several workers share one queue
//! through the database alone.
//!
//! The claim is one statement for endpoints without limits; flow control
//! (`sql/060_claim_deliveries.sql`) is taken only by deliveries whose
//! endpoint cannot take them now (rate limit, max_in_flight, open circuit,
//! a stalled endpoint): those are deferred or held instead of claimed, so
//! they cost neither an attempt nor a request slot.

pub mod batch;
pub mod brokers;
pub mod complete;
pub mod dispatch;
pub mod net;
pub mod presence;
pub mod share;
pub mod transforms;
pub mod wake;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::config::WorkerSettings;
use crate::db::{self, deliveries::ClaimRequest};
use crate::telemetry::error_chain;
use batch::Job;
use complete::{Completed, Flusher};
use dispatch::{Attempt, Dispatcher};
use presence::{Next, Presence};
use share::Shares;

/// Margin between the request timeout and the lease: time to record the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// An idle worker renews its registration this often, so stale rows of dead
/// workers can be told apart and removed.
const IDLE_REFRESH: Duration = Duration::from_secs(60);
/// Longest wait for an endpoint at its share to make room before claiming
/// again: short, since other endpoints' deliveries may be waiting meanwhile.
const SHARE_RECHECK: Duration = Duration::from_millis(10);
/// Sleep at least this long when the next due delivery is overdue.
const OVERDUE_RECHECK: Duration = Duration::from_millis(5);
/// How often the worker folds the statistics' deltas into the rollups.
const FOLD_EVERY: Duration = Duration::from_secs(1);
/// How often, in folds, it looks for endpoints whose circuit stayed open too
/// long (a tenth of the shortest setting it could find late) and for
/// plaintext secrets to seal.
const ENDPOINT_CHECKS_EVERY: u32 = 10;
/// Endpoints whose plaintext secrets one check seals at most.
const SEAL_BATCH: i64 = 500;
/// How often, in folds, it forgets the ordered lanes producers stopped using.
const FORGET_LANES_EVERY: u32 = 600;
/// How often, in folds, it creates partitions ahead and drops expired ones
/// (workers take turns; most rounds find nothing to do).
const MAINTAIN_EVERY: u32 = 300;
/// How long a stopping worker waits for its outcomes to be written.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(10);

/// Runs a worker until `shutdown` turns true, then drains: stops claiming,
/// lets in-flight requests finish within the grace period, records their
/// outcomes and hands anything unfinished back to the queue.
pub async fn run(
    pool: Pool,
    listen_config: tokio_postgres::Config,
    settings: WorkerSettings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let worker_id = Uuid::now_v7();
    let max_timeout = settings.lease_max.saturating_sub(LEASE_MARGIN).max(Duration::from_secs(1));
    let dispatcher = Dispatcher::new(settings.network.clone(), max_timeout, settings.secret_keys.clone())?;
    tracing::info!(%worker_id, pid = std::process::id(), concurrency = settings.concurrency, "worker started");

    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(wake::listen(listen_config, wake.clone(), shutdown.clone()));
    let (finished_tx, finished_rx) = mpsc::channel(settings.concurrency * 2);
    let held: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let flusher = Flusher {
        pool: pool.clone(),
        worker: worker_id,
        circuit: settings.circuit,
        wake: wake.clone(),
        outstanding: held.clone(),
    };
    let flusher = tokio::spawn(complete::flush_loop(flusher, finished_rx));
    let housekeeper = tokio::spawn(housekeeping(pool.clone(), settings.clone(), shutdown.clone()));

    let worker = Worker {
        id: worker_id,
        pool: pool.clone(),
        shares: Arc::new(Shares::new(settings.endpoint_share)),
        settings: Arc::new(settings),
        dispatcher,
        wake,
        held,
    };
    let mut requests = JoinSet::new();
    worker.claim_loop(&mut requests, finished_tx, shutdown).await;

    tracing::info!(%worker_id, in_flight = requests.len(), "worker draining");
    let grace = worker.settings.shutdown_grace;
    if tokio::time::timeout(grace, async { while requests.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(unfinished = requests.len(), "grace period over: abandoning in-flight requests");
        requests.shutdown().await;
    }
    // All senders are gone now, so the flusher ends once everything is written
    // (or, if the database is gone, the leases expire and others redeliver).
    let give_up = flusher.abort_handle();
    if tokio::time::timeout(FLUSH_AT_SHUTDOWN, flusher).await.is_err() {
        give_up.abort();
        tracing::warn!("outcomes not recorded before shutdown; those deliveries will be retried");
    }
    let unfinished: Vec<Uuid> = worker.held.lock().expect("not poisoned").drain().collect();
    if !unfinished.is_empty() {
        let released = match pool.get().await {
            Ok(client) => db::deliveries::release(&client, worker_id, &unfinished).await,
            Err(error) => Err(error.into()),
        };
        match released {
            Ok(n) => tracing::info!(released = n, "handed unfinished deliveries back"),
            Err(error) => tracing::warn!(error = %error_chain(&error), "could not release leases; they will expire"),
        }
    }
    let _ = listener.await;
    let _ = housekeeper.await;
    tracing::info!(%worker_id, "worker stopped");
    Ok(())
}

/// Until shutdown: folds the statistics' deltas into the hourly rollups
/// every second (workers take turns; the views are exact either way, this
/// keeps the deltas few), and every ten disables the endpoints whose circuit
/// has stayed open longer than they allow and seals the plaintext secrets
/// that SQL wrote; every five minutes (and at start) it keeps the history's
/// partitions; every ten minutes it forgets the ordered lanes producers
/// stopped using.
async fn housekeeping(pool: Pool, settings: WorkerSettings, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(FOLD_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for tick in 0u32.. {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let mut client = match pool.get().await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(error = %error_chain(&db::Error::from(error)), "no connection for housekeeping; retrying");
                continue;
            }
        };
        if let Err(error) = db::rollups::fold(&client).await {
            tracing::warn!(error = %error_chain(&error), "could not fold statistics; retrying");
        }
        if tick % ENDPOINT_CHECKS_EVERY == 0 {
            match db::endpoints::disable_long_open(&client, settings.disable_after_open).await {
                Ok(disabled) => {
                    for endpoint_id in disabled {
                        tracing::warn!(%endpoint_id, "endpoint's circuit stayed open too long: disabled");
                    }
                }
                Err(error) => tracing::warn!(error = %error_chain(&error), "could not check for long-open circuits"),
            }
            match db::secrets::seal_plaintext(&mut client, &settings.secret_keys, SEAL_BATCH).await {
                Ok(0) => {}
                Ok(sealed) => tracing::info!(rows = sealed, "sealed plaintext secrets of endpoints and sources"),
                Err(error) => tracing::warn!(error = %error_chain(&error), "could not seal plaintext secrets"),
            }
        }
        if tick % MAINTAIN_EVERY == 0 {
            match db::retention::maintain(&mut client, settings.retention, None).await {
                Ok(Some(done)) if done.created > 0 || !done.dropped.is_empty() => {
                    tracing::info!(created = done.created, dropped = ?done.dropped, "partitions maintained");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error_chain(&error), "could not maintain partitions; retrying"),
            }
        }
        if tick % FORGET_LANES_EVERY == FORGET_LANES_EVERY - 1
            && let Err(error) = db::lanes::forget_unused(&client).await
        {
            tracing::warn!(error = %error_chain(&error), "could not forget unused lanes");
        }
    }
}

/// What a claim took: its jobs, how many deliveries it found due, and when
/// the next falls due.
struct Taken {
    jobs: Vec<Job>,
    found: usize,
    next_due_s: Option<f64>,
}

struct Worker {
    id: Uuid,
    pool: Pool,
    settings: Arc<WorkerSettings>,
    dispatcher: Dispatcher,
    wake: Arc<Notify>,
    shares: Arc<Shares>,
    /// Deliveries claimed whose outcome has not reached the flusher yet:
    /// what to hand back if the grace period runs out.
    held: Arc<Mutex<HashSet<Uuid>>>,
}

impl Worker {
    /// Claims as many due deliveries as there are free request slots and
    /// starts them; between claims it sleeps or claims again as
    /// [`presence`] decides (the idle registry that producers' NOTIFYs
    /// depend on), until a notification, the next due retry or lease end,
    /// a re-check, or the fallback poll.
    async fn claim_loop(
        &self,
        requests: &mut JoinSet<()>,
        finished: mpsc::Sender<Completed>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut backoff = Duration::from_millis(50);
        let mut presence = Presence::new(Instant::now());
        while !*shutdown.borrow() {
            while requests.try_join_next().is_some() {}
            let first_slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("never closed"),
                _ = shutdown.changed() => break,
            };
            let wanted = (slots.available_permits() + 1).min(self.settings.claim_batch);
            let limits = self.shares.limits(wanted, Instant::now());
            if limits.too_little_room {
                drop(first_slot);
                tokio::select! {
                    _ = self.shares.wait_for_room(SHARE_RECHECK) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let intent = presence.intent();
            let claim = match self.claim(wanted, &limits, intent).await {
                Ok(claim) => {
                    backoff = Duration::from_millis(50);
                    claim
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), retry_in = ?backoff, "claiming failed");
                    drop(first_slot);
                    presence.forget();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let got = claim.found;
            self.start_requests(claim.jobs, first_slot, &slots, requests, &finished);
            let next = presence.after_claim(intent, got, wanted, Instant::now());
            if got < wanted && limits.full_and_moving {
                // What is due is likely that endpoint's backlog: claim again
                // when its requests have made room, not in vain right now.
                tokio::select! {
                    _ = self.shares.wait_for_room(SHARE_RECHECK) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            match next {
                Next::ClaimAgain => continue,
                Next::Poll(pause) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Next::Sleep => {}
            }
            if presence.registered_for(Instant::now()) > IDLE_REFRESH {
                presence.refreshed(Instant::now());
                self.refresh_idle().await;
            }
            self.sleep_until_due(&presence, claim.next_due_s, &mut shutdown).await;
        }
        if presence.registered() {
            self.deregister_idle().await;
        }
    }

    /// Starts a request for each job, the first in `first_slot`.
    fn start_requests(
        &self,
        jobs: Vec<Job>,
        first_slot: tokio::sync::OwnedSemaphorePermit,
        slots: &Arc<Semaphore>,
        requests: &mut JoinSet<()>,
        finished: &mpsc::Sender<Completed>,
    ) {
        self.held.lock().expect("not poisoned").extend(jobs.iter().flat_map(Job::delivery_ids));
        let mut first_slot = Some(first_slot);
        let mut take_slot = || {
            first_slot
                .take()
                .unwrap_or_else(|| slots.clone().try_acquire_owned().expect("claimed no more than the free slots"))
        };
        for job in jobs {
            let delivery = match job {
                Job::Single(delivery) => *delivery,
                Job::Batch { shape, members, envelopes } => {
                    self.start_batch(shape, members, envelopes, take_slot(), requests, finished);
                    continue;
                }
            };
            // A lost lease or a circuit's expiry is recorded, not sent (see
            // crate::domain::delivery): it takes no request slot.
            let unsent = Attempt::unsent(&delivery);
            let slot = unsent.is_none().then(&mut take_slot);
            let (dispatcher, settings, finished) = (self.dispatcher.clone(), self.settings.clone(), finished.clone());
            let (held, shares) = (self.held.clone(), self.shares.clone());
            if unsent.is_none() {
                shares.started(delivery.endpoint_id);
            }
            requests.spawn(async move {
                let attempt = match unsent {
                    Some(attempt) => attempt,
                    None => {
                        let attempt = dispatcher.attempt(&delivery).await;
                        shares.finished(delivery.endpoint_id, attempt.duration);
                        attempt
                    }
                };
                let jitter = rand::random_range(-1.0..=1.0);
                let outcome = complete::decide(&delivery, attempt, &settings, jitter);
                if finished.send(Completed::alone(outcome)).await.is_ok() {
                    held.lock().expect("not poisoned").remove(&delivery.delivery_id);
                }
                drop(slot);
            });
        }
    }

    /// Starts the requests of one batch (see [`batch`]) in `slot`.
    fn start_batch(
        &self,
        shape: crate::domain::batch::BatchShape,
        members: Vec<db::deliveries::Claimed>,
        envelopes: Vec<String>,
        slot: tokio::sync::OwnedSemaphorePermit,
        requests: &mut JoinSet<()>,
        finished: &mpsc::Sender<Completed>,
    ) {
        let (dispatcher, settings, finished) = (self.dispatcher.clone(), self.settings.clone(), finished.clone());
        let (held, shares) = (self.held.clone(), self.shares.clone());
        let endpoint = members[0].endpoint_id;
        shares.started(endpoint);
        requests.spawn(async move {
            let clock = Instant::now();
            let sent = batch::send(&dispatcher, shape, members, envelopes).await;
            shares.finished(endpoint, clock.elapsed());
            // One jitter for all: a failed batch's deliveries at the same
            // attempt fall due again together.
            let jitter = rand::random_range(-1.0..=1.0);
            let ids: Vec<Uuid> = sent.decided.iter().map(|(d, ..)| d.delivery_id).collect();
            let outcomes = sent
                .decided
                .into_iter()
                .map(|(delivery, attempt, carried_by)| {
                    let mut outcome = complete::decide(&delivery, attempt, &settings, jitter);
                    // Carried by no request: its template failed, an attempt of its own.
                    outcome.outcome.requests = (!carried_by.is_empty()).then_some(carried_by);
                    outcome
                })
                .collect();
            if finished.send(Completed { outcomes, requests: sent.requests }).await.is_ok() {
                let mut held = held.lock().expect("not poisoned");
                ids.iter().for_each(|id| {
                    held.remove(id);
                });
            }
            drop(slot);
        });
    }

    /// Refreshes the idle entry (so it is not mistaken for a dead worker's)
    /// and removes those of workers that died while idle.
    async fn refresh_idle(&self) {
        let result = match self.pool.get().await {
            Ok(client) => {
                let _ = db::workers::forget_stale(&client).await;
                db::workers::register_idle(&client, self.id).await
            }
            Err(error) => Err(error.into()),
        };
        if let Err(error) = result {
            tracing::warn!(error = %error_chain(&error), "could not refresh idleness");
        }
    }

    async fn deregister_idle(&self) {
        let result = match self.pool.get().await {
            Ok(client) => db::workers::deregister_idle(&client, self.id).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = result {
            tracing::warn!(error = %error_chain(&error), "could not leave the idle registry");
        }
    }

    /// Claims what is due (see `db::deliveries::claim`) and fills the
    /// batches it makes (see [`batch`]).
    async fn claim(&self, wanted: usize, limits: &share::Limits, idle: Option<bool>) -> db::Result<Taken> {
        let client = self.pool.get().await?;
        let request = ClaimRequest {
            worker: self.id,
            wanted,
            scan: limits.scan,
            lease_max_s: self.settings.lease_max.as_secs_f64(),
            share: self.shares.share(),
            busy: &limits.busy,
            stalled: &limits.stalled,
            idle,
            at: None,
            default_schedule: self.settings.retry_schedule.delays(),
        };
        let claim = db::deliveries::claim(&client, &request).await?;
        let found = claim.deliveries.len();
        let mut jobs = batch::jobs(claim.deliveries);
        // What the claim took is ours already: send it even unfilled.
        let spare = wanted.saturating_sub(jobs.len());
        let room = |endpoint| self.shares.share().saturating_sub(self.shares.in_flight(endpoint));
        if let Err(error) = batch::fill(&client, self.id, request.lease_max_s, &mut jobs, spare, room).await {
            tracing::warn!(error = %error_chain(&error), "could not fill batches; sending them as they are");
        }
        // Whole batches were taken by their envelopes' count; their bytes may
        // cut them finer: what has no free slot (new batches come last) goes
        // back to the queue.
        if jobs.len() > wanted {
            let over: Vec<Uuid> = jobs.split_off(wanted).iter().flat_map(Job::delivery_ids).collect();
            if let Err(error) = db::deliveries::release(&client, self.id, &over).await {
                tracing::warn!(error = %error_chain(&error), deliveries = over.len(), "could not release deliveries beyond the free slots; their leases will expire");
            }
        }
        // A stalled endpoint's deliveries may have been held just as its last
        // requests finished: their completions, written meanwhile, could not
        // see those rows to release them, and nothing else of it is in flight.
        for endpoint in &limits.stalled {
            // What the claim took is leased to us: an error here must not drop it.
            if self.shares.in_flight(*endpoint) == 0
                && let Err(error) = db::deliveries::release_held(&client, *endpoint, self.shares.share() as i64).await
            {
                tracing::warn!(error = %error_chain(&error), %endpoint, "could not release held deliveries");
            }
        }
        Ok(Taken { jobs, found, next_due_s: claim.next_due_s })
    }

    /// Sleeps until a notification, the next due delivery, a re-check of a
    /// fresh registration, or the poll interval, whichever comes first.
    async fn sleep_until_due(
        &self,
        presence: &Presence,
        next_due_s: Option<f64>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut nap = self.settings.poll_interval;
        if let Some(recheck) = presence.recheck_within(Instant::now(), self.settings.poll_interval) {
            nap = nap.min(recheck);
        }
        if let Some(due) = next_due_s {
            // Overdue rows are mostly other workers' claims in progress: not
            // worth claiming again at once.
            nap = nap.min(Duration::from_secs_f64(due.max(OVERDUE_RECHECK.as_secs_f64())));
        }
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(nap) => {}
            _ = shutdown.changed() => {}
        }
    }
}
