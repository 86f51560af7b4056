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
//! - *stalled* when its requests are slow (by their recent average) or none
//!   has finished for longer: the claim holds its waiting deliveries, out of
//!   the due index, until one of its requests completes, instead of leaving
//!   them in front of everyone else's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

/// At its share, slower than this (on average, or since a request last
/// finished) is stalled. Healthy endpoints answer within milliseconds.
pub const STALLED_AFTER: Duration = Duration::from_millis(50);
/// At its share, this long without a finished request is slowing.
const SLOWING_AFTER: Duration = Duration::from_millis(10);
/// How much further a claim looks when an endpoint is slowing.
const SCAN_FACTOR: usize = 4;
const SCAN_MAX: usize = 1024;
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

    /// Requests to `endpoint` in flight right now.
    pub fn in_flight(&self, endpoint: Uuid) -> usize {
        self.state.lock().expect("not poisoned").active.get(&endpoint).map_or(0, |load| load.in_flight)
    }

    /// Waits until the moving endpoints at their share have room for a fair
    /// batch again (a quarter of the share), or `timeout`: claiming sooner
    /// would find only their deliveries, or take them a few at a time.
    pub async fn wait_for_room(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let enough = (self.share / 4).max(1);
        loop {
            let progressed = self.progress.notified();
            let roomy = {
                let state = self.state.lock().expect("not poisoned");
                let now = Instant::now();
                state
                    .active
                    .values()
                    .filter(|load| now.saturating_duration_since(load.last_progress) < SLOWING_AFTER)
                    .all(|load| self.share.saturating_sub(load.in_flight) >= enough)
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
        for (endpoint, load) in &state.active {
            let room = self.share.saturating_sub(load.in_flight);
            if room >= wanted {
                continue;
            }
            limits.busy.push((*endpoint, room));
            if room > 0 {
                continue;
            }
            let quiet = now.saturating_duration_since(load.last_progress);
            let slow = state.latency.get(endpoint).is_some_and(|average| *average >= STALLED_AFTER);
            if slow || quiet >= STALLED_AFTER {
                limits.stalled.push(*endpoint);
            } else if quiet >= SLOWING_AFTER {
                slowing = true;
            } else {
                limits.full_and_moving = true;
            }
        }
        if slowing {
            limits.scan = (wanted * SCAN_FACTOR).clamp(wanted, SCAN_MAX.max(wanted));
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(1);

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
    fn finished_endpoints_leave_the_active_set() {
        let shares = Shares::new(1);
        let a = Uuid::now_v7();
        shares.started(a);
        shares.finished(a, FAST);
        assert_eq!(shares.limits(5, Instant::now()).busy, vec![]);
        assert!(shares.state.lock().unwrap().active.is_empty());
    }
}
