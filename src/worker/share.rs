//! Each endpoint's share of one worker's request slots, so a slow or hanging
//! endpoint cannot occupy all of them and delay every other endpoint.
//!
//! The worker counts its own requests per endpoint (no coordination needed:
//! each worker protects its own slots) and tells the claim which endpoints
//! have little room left. An endpoint at its share is
//! - *moving* while its requests keep finishing quickly: its waiting
//!   deliveries stay due, and the worker claims again once it has room;
//! - *slowing* when none has finished for a little while: the claim looks
//!   further down the queue, past its backlog, for other endpoints' work;
//! - *stalled* when its requests are slow (by their recent average) and so
//!   finish rarely, or none has finished for longer: the claim holds its
//!   waiting deliveries, out of the due index, until one of its requests
//!   completes, instead of leaving them in front of everyone else's. Slow
//!   requests that finish often between them (a broker's confirms, slow
//!   because many are in flight) are an endpoint that moves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

/// At its share, slower than this (on average, or since a request last
/// finished) is stalled. Healthy endpoints answer within milliseconds.
pub const STALLED_AFTER: Duration = Duration::from_millis(50);
/// ... and, since a request last finished, slower than this many times its
/// average: a broker's confirms come in bursts, pausing 50–160 ms at a
/// 30–90 ms average on a loaded machine, and holding its backlog at each
/// pause (to release it again a moment later) cost more than the pause.
const PAUSE_FACTOR: u32 = 2;
/// ... unless its requests in flight, at their average latency, still
/// finish one in this long: RabbitMQ's confirms take 40 ms at 256 in
/// flight (one every 0.16 ms), a receiver that takes 10 s one every 40 ms.
const STALLED_GAP: Duration = Duration::from_millis(1);
/// At its share, this long without a finished request is slowing.
const SLOWING_AFTER: Duration = Duration::from_millis(10);
/// How much further a claim looks when an endpoint is slowing.
const SCAN_FACTOR: usize = 4;
const SCAN_MAX: usize = 1024;
/// When every endpoint the worker sends to has less room than the claim
/// wants, together, and none is stalled (a stalled one's backlog is moved
/// aside, as much as a claim can), the claim looks at their room and this
/// many more due deliveries (another endpoint's, or theirs as room
/// appears), not at all it wants: a candidate is locked before its
/// endpoint's room is known, so looking at 256 to take the 20 a busy
/// endpoint has room for locked 236 rows for nothing (a broker whose
/// confirms free a few slots at a time was claimed that way).
const SCAN_BEYOND_ROOM: usize = 64;
/// Weight of the newest request in an endpoint's average latency.
const LATENCY_WEIGHT: f64 = 0.2;
/// Latencies of this many endpoints are remembered at most (then forgotten
/// all at once: they are relearnt within a request each).
const LATENCY_MEMORY: usize = 100_000;

#[derive(Debug)]
pub struct Shares {
    share: usize,
    state: Mutex<State>,
    /// Notified whenever a request finishes.
    progress: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Endpoints with requests in flight.
    active: HashMap<Uuid, Load>,
    /// Recent average request duration per endpoint.
    latency: HashMap<Uuid, Duration>,
}

#[derive(Debug)]
struct Load {
    in_flight: usize,
    /// When a request last started from idle or finished.
    last_progress: Instant,
}

impl State {
    /// How long `endpoint` may go without a finished request before it is stalled.
    fn pause_limit(&self, endpoint: &Uuid) -> Duration {
        self.latency.get(endpoint).map_or(STALLED_AFTER, |average| (*average * PAUSE_FACTOR).max(STALLED_AFTER))
    }
}

/// What the claim needs to know from the shares.
#[derive(Debug, Default, PartialEq)]
pub struct Limits {
    /// Endpoints with less room than the claim wants, and their room.
    pub busy: Vec<(Uuid, usize)>,
    /// Those of them at their share and stalled.
    pub stalled: Vec<Uuid>,
    /// Due deliveries to look at.
    pub scan: usize,
    /// Some endpoint is at its share and moving: a claim that found little
    /// may have found only its deliveries.
    pub full_and_moving: bool,
    /// Every endpoint with requests in flight has less room than a fair
    /// batch (a quarter of its share) and none is stalled: until one makes
    /// room (or stalls), a claim would take their backlogs a few rows at a
    /// time, or lock their first rows only to leave them — with a broker
    /// whose confirms come in bursts, a third of all claims found nothing,
    /// and locked 1,024 rows each time it paused past [`SLOWING_AFTER`].
    /// Another endpoint's deliveries behind theirs wait as long: at most
    /// until one of them makes room or stalls ([`STALLED_AFTER`]).
    pub too_little_room: bool,
}

impl Shares {
    pub fn new(share: usize) -> Self {
        Self { share: share.max(1), state: Mutex::default(), progress: Notify::new() }
    }

    pub fn share(&self) -> usize {
        self.share
    }

    pub fn started(&self, endpoint: Uuid) {
        let mut state = self.state.lock().expect("not poisoned");
        let load = state.active.entry(endpoint).or_insert_with(|| Load { in_flight: 0, last_progress: Instant::now() });
        load.in_flight += 1;
    }

    pub fn finished(&self, endpoint: Uuid, took: Duration) {
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(load) = state.active.get_mut(&endpoint) {
            load.in_flight -= 1;
            load.last_progress = Instant::now();
            if load.in_flight == 0 {
                state.active.remove(&endpoint);
            }
        }
        if state.latency.len() >= LATENCY_MEMORY {
            state.latency.clear();
        }
        let average = state.latency.entry(endpoint).or_insert(took);
        *average = average.mul_f64(1.0 - LATENCY_WEIGHT) + took.mul_f64(LATENCY_WEIGHT);
        drop(state);
        self.progress.notify_waiters();
    }

    /// Room worth a claim for an endpoint at its share: a quarter of it.
    fn fair_batch(&self) -> usize {
        (self.share / 4).max(1)
    }

    /// Requests to `endpoint` in flight right now.
    pub fn in_flight(&self, endpoint: Uuid) -> usize {
        self.state.lock().expect("not poisoned").active.get(&endpoint).map_or(0, |load| load.in_flight)
    }

    /// Waits until the endpoints at their share that are not stalled have
    /// room for a fair batch again (a quarter of the share), or `timeout`:
    /// claiming sooner would find only their deliveries, or take them a few
    /// at a time.
    pub async fn wait_for_room(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let enough = self.fair_batch();
        loop {
            let progressed = self.progress.notified();
            let roomy = {
                let state = self.state.lock().expect("not poisoned");
                let now = Instant::now();
                state
                    .active
                    .iter()
                    .filter(|(endpoint, load)| {
                        now.saturating_duration_since(load.last_progress) < state.pause_limit(endpoint)
                    })
                    .all(|(_, load)| self.share.saturating_sub(load.in_flight) >= enough)
            };
            if roomy || tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return;
            }
        }
    }

    /// The limits for a claim of up to `wanted` deliveries.
    pub fn limits(&self, wanted: usize, now: Instant) -> Limits {
        let state = self.state.lock().expect("not poisoned");
        let mut limits = Limits { scan: wanted, ..Limits::default() };
        let mut slowing = false;
        let mut some_room = false;
        for (endpoint, load) in &state.active {
            let room = self.share.saturating_sub(load.in_flight);
            some_room |= room >= wanted.min(self.fair_batch());
            if room >= wanted {
                continue;
            }
            limits.busy.push((*endpoint, room));
            if room > 0 {
                continue;
            }
            let quiet = now.saturating_duration_since(load.last_progress);
            let slow = state.latency.get(endpoint).is_some_and(|average| {
                *average >= STALLED_AFTER && *average / load.in_flight.max(1) as u32 >= STALLED_GAP
            });
            if slow || quiet >= state.pause_limit(endpoint) {
                limits.stalled.push(*endpoint);
            } else if quiet >= SLOWING_AFTER {
                slowing = true;
            } else {
                limits.full_and_moving = true;
            }
        }
        limits.too_little_room = !state.active.is_empty() && !some_room && limits.stalled.is_empty();
        if slowing {
            limits.scan = (wanted * SCAN_FACTOR).clamp(wanted, SCAN_MAX.max(wanted));
        } else if !limits.busy.is_empty() && limits.busy.len() == state.active.len() && limits.stalled.is_empty() {
            let room: usize = limits.busy.iter().map(|(_, room)| room).sum();
            limits.scan = (room + SCAN_BEYOND_ROOM).clamp(1, wanted.max(1));
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(1);

    /// `endpoint` with `in_flight` requests, its average latency `took`.
    fn load(shares: &Shares, endpoint: Uuid, took: Duration, in_flight: usize) {
        shares.started(endpoint);
        shares.finished(endpoint, took);
        (0..in_flight).for_each(|_| shares.started(endpoint));
    }

    #[test]
    fn endpoints_with_room_for_the_whole_claim_are_not_mentioned() {
        let shares = Shares::new(4);
        let a = Uuid::now_v7();
        shares.started(a);
        assert_eq!(shares.limits(3, Instant::now()), Limits { scan: 3, ..Limits::default() });
        let limits = shares.limits(8, Instant::now());
        assert_eq!(limits.busy, vec![(a, 3)]);
        assert_eq!(limits.scan, 8, "room left: nothing to look past");
    }

    #[test]
    fn a_full_endpoint_moves_then_slows_then_stalls_while_nothing_finishes() {
        let shares = Shares::new(1);
        let a = Uuid::now_v7();
        shares.started(a);
        let now = Instant::now();
        let moving = shares.limits(8, now);
        assert!(moving.full_and_moving && moving.stalled.is_empty());
        assert_eq!(moving.scan, 8);
        let slowing = shares.limits(8, now + SLOWING_AFTER);
        assert!(!slowing.full_and_moving && slowing.stalled.is_empty());
        assert_eq!(slowing.scan, 32, "looks past its backlog");
        let stalled = shares.limits(8, now + STALLED_AFTER);
        assert_eq!(stalled.stalled, vec![a]);
    }

    #[test]
    fn no_claim_is_worth_making_while_every_endpoint_lacks_room_and_none_is_stalled() {
        let shares = Shares::new(2);
        assert!(!shares.limits(8, Instant::now()).too_little_room, "nothing in flight");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        load(&shares, a, FAST, 2);
        let now = Instant::now();
        assert!(shares.limits(8, now).too_little_room, "moving");
        assert!(shares.limits(8, now + SLOWING_AFTER).too_little_room, "slowing");
        assert!(!shares.limits(8, now + STALLED_AFTER).too_little_room, "stalled: a claim holds its backlog");
        load(&shares, b, FAST, 1);
        assert!(!shares.limits(8, now).too_little_room, "b has room");

        let shares = Shares::new(8);
        load(&shares, a, FAST, 7);
        assert!(shares.limits(8, Instant::now()).too_little_room, "room for 1, less than a quarter of 8");
        assert!(!shares.limits(1, Instant::now()).too_little_room, "room for all the claim wants");
    }

    #[tokio::test]
    async fn waiting_for_room_ends_when_a_request_finishes_and_leaves_enough() {
        let shares = std::sync::Arc::new(Shares::new(4));
        let a = Uuid::now_v7();
        load(&shares, a, FAST, 4);
        let waiting = tokio::spawn({
            let shares = shares.clone();
            async move { shares.wait_for_room(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        shares.finished(a, FAST);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken by the finish").unwrap();
    }

    #[test]
    fn a_pause_twice_as_long_as_its_requests_take_stalls_an_endpoint() {
        let shares = Shares::new(256);
        let broker = Uuid::now_v7();
        load(&shares, broker, Duration::from_millis(40), 256);
        let now = Instant::now();
        assert!(shares.limits(8, now + STALLED_AFTER).stalled.is_empty(), "a 50 ms pause of 40 ms confirms");
        assert_eq!(shares.limits(8, now + Duration::from_millis(80)).stalled, vec![broker]);
    }

    #[test]
    fn a_slow_endpoint_is_stalled_as_soon_as_it_fills_its_share() {
        let shares = Shares::new(1);
        let (slow, fast) = (Uuid::now_v7(), Uuid::now_v7());
        for (endpoint, took) in [(slow, Duration::from_secs(10)), (fast, FAST)] {
            shares.started(endpoint);
            shares.finished(endpoint, took);
            shares.started(endpoint);
        }
        let limits = shares.limits(8, Instant::now());
        assert_eq!(limits.stalled, vec![slow]);
        assert!(limits.full_and_moving, "the fast one is only busy");
    }

    #[test]
    fn slow_requests_that_finish_often_between_them_are_an_endpoint_that_moves() {
        let shares = Shares::new(256);
        let (broker, slow) = (Uuid::now_v7(), Uuid::now_v7());
        load(&shares, broker, Duration::from_millis(60), 256);
        load(&shares, slow, Duration::from_secs(1), 64);
        let limits = shares.limits(8, Instant::now());
        assert!(limits.stalled.is_empty(), "the slow one has room left: not judged");
        assert!(limits.full_and_moving, "60 ms over 256 in flight: one finishes every 0.23 ms");
        (0..192).for_each(|_| shares.started(slow));
        let limits = shares.limits(8, Instant::now());
        assert_eq!(limits.stalled, vec![slow], "1 s over 256 in flight: one every 3.9 ms");
    }

    #[test]
    fn a_claim_for_busy_moving_endpoints_looks_at_their_room_and_a_little_more() {
        let shares = Shares::new(256);
        let a = Uuid::now_v7();
        load(&shares, a, FAST, 236);
        let limits = shares.limits(256, Instant::now());
        assert_eq!(limits.busy, vec![(a, 20)]);
        assert_eq!(limits.scan, 20 + SCAN_BEYOND_ROOM, "not 256 candidates locked to take 20");
        let b = Uuid::now_v7();
        shares.started(b);
        assert_eq!(shares.limits(256, Instant::now()).scan, 256, "b has room for the whole claim");
    }

    #[test]
    fn a_stalled_endpoints_backlog_is_looked_at_in_full() {
        let shares = Shares::new(4);
        let a = Uuid::now_v7();
        load(&shares, a, Duration::from_secs(10), 4);
        let limits = shares.limits(16, Instant::now());
        assert_eq!(limits.stalled, vec![a]);
        assert_eq!(limits.scan, 16, "its held backlog is moved aside as fast as before");
    }

    #[test]
    fn finished_endpoints_leave_the_active_set() {
        let shares = Shares::new(1);
        let a = Uuid::now_v7();
        shares.started(a);
        shares.finished(a, FAST);
        assert_eq!(shares.limits(5, Instant::now()).busy, vec![]);
        assert!(shares.state.lock().unwrap().active.is_empty());
    }
}
