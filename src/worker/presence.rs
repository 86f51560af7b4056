//! Whether producers should wake this worker: its entry in
//! `hookline.idle_workers`, which the claim statement itself keeps.
//!
//! A producer NOTIFYs only while some worker is registered there, and
//! PostgreSQL serialises the commits of notifying transactions (each holds
//! a database-wide lock through its WAL flush). So the worker is in one of
//! two modes:
//! - *notified*, at a light load: registered, it sleeps right after each
//!   claim and a NOTIFY wakes it per event — one claim per wake, no
//!   registry writes, the lowest latency;
//! - *polling*, while work flows (a claim fills its free slots, or
//!   [`BUSY_DELIVERIES`] come within a [`BUSY_WINDOW`]): deregistered, so
//!   producers commit in parallel, it claims again at once after a claim
//!   that found [`GATHER`] or more deliveries (or filled its slots), and
//!   after a [`POLL_GAP`] otherwise — a claim costs the database about the
//!   same for one delivery as for thirty, so small batches are left to grow
//!   for a moment instead of being claimed back to back. After [`POLL_IDLE`]
//!   without work it registers again, in the same statement as one more
//!   claim. A producer that looked at the registry just before that commit
//!   may commit after the claim without notifying, so a freshly registered
//!   worker re-checks at growing intervals ([`Presence::recheck_within`]).
//!
//! No IO: the claim loop asks what the next claim should do and reports
//! what it got.

use std::time::{Duration, Instant};

/// This many deliveries claimed within one window (500/s) is a steady flow:
/// stop asking producers to notify. (A rate, not the gap between two
/// wakes: scheduling jitter makes single gaps short now and then.)
pub const BUSY_DELIVERIES: usize = 50;
pub const BUSY_WINDOW: Duration = Duration::from_millis(100);
/// While polling, how long to wait after a claim that found fewer than
/// [`GATHER`] deliveries (none included).
pub const POLL_GAP: Duration = Duration::from_millis(1);
/// While polling, a claim that found this many is followed by another at once.
pub const GATHER: usize = 16;
/// While polling, how long without work before asking for NOTIFYs again.
pub const POLL_IDLE: Duration = Duration::from_millis(25);
/// The first re-check after registering; they grow with the time since.
const FIRST_RECHECK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Notified,
    Polling,
}

#[derive(Debug)]
pub struct Presence {
    mode: Mode,
    registered: bool,
    registered_at: Instant,
    /// While polling: since when claims have found nothing.
    empty_since: Option<Instant>,
    /// Deliveries claimed since `window_start`.
    window_start: Instant,
    window_claimed: usize,
}

/// What the claim loop does after a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    ClaimAgain,
    /// Claim again after this pause (or a NOTIFY).
    Poll(Duration),
    /// Sleep until a NOTIFY, the next due delivery or a re-check.
    Sleep,
}

impl Presence {
    /// A worker starts polling: it registers once it finds nothing to do.
    pub fn new(now: Instant) -> Self {
        Presence {
            mode: Mode::Polling,
            registered: false,
            registered_at: now,
            empty_since: None,
            window_start: now,
            window_claimed: 0,
        }
    }

    /// What the next claim does with the registration: `Some(true)`
    /// register, `Some(false)` deregister, `None` leave it.
    pub fn intent(&self) -> Option<bool> {
        match (self.mode, self.registered) {
            (Mode::Notified, false) => Some(true),
            (Mode::Polling, true) => Some(false),
            _ => None,
        }
    }

    /// Records a claim that applied `intent` and found `got` of the
    /// `wanted` deliveries at `now`; says what comes next.
    pub fn after_claim(&mut self, intent: Option<bool>, got: usize, wanted: usize, now: Instant) -> Next {
        match intent {
            Some(true) => {
                self.registered = true;
                self.registered_at = now;
            }
            Some(false) => self.registered = false,
            None => {}
        }
        if got > 0 {
            if now.saturating_duration_since(self.window_start) > BUSY_WINDOW {
                (self.window_start, self.window_claimed) = (now, 0);
            }
            self.window_claimed += got;
            if got >= wanted || self.window_claimed >= BUSY_DELIVERIES {
                self.mode = Mode::Polling;
            }
            self.empty_since = None;
        }
        match self.mode {
            Mode::Polling if got >= wanted.min(GATHER) => Next::ClaimAgain,
            Mode::Polling if got > 0 => Next::Poll(POLL_GAP),
            Mode::Polling => {
                let empty_since = *self.empty_since.get_or_insert(now);
                if now.saturating_duration_since(empty_since) >= POLL_IDLE {
                    self.mode = Mode::Notified;
                    Next::ClaimAgain // registers, and claims once more
                } else {
                    Next::Poll(POLL_GAP)
                }
            }
            Mode::Notified if self.registered => Next::Sleep,
            Mode::Notified => Next::ClaimAgain,
        }
    }

    pub fn registered(&self) -> bool {
        self.registered
    }

    /// The registration may be gone (a database restart empties the
    /// unlogged registry): start over, polling.
    pub fn forget(&mut self) {
        self.registered = false;
        self.mode = Mode::Polling;
        self.empty_since = None;
    }

    /// While freshly registered, sleep at most this long before claiming
    /// again (the race with producers above); `None` once `settled`.
    pub fn recheck_within(&self, now: Instant, settled: Duration) -> Option<Duration> {
        let since = now.saturating_duration_since(self.registered_at);
        (self.registered && since < settled).then(|| since.max(FIRST_RECHECK))
    }

    /// How long the worker has been registered (to refresh its entry).
    pub fn registered_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.registered_at)
    }

    /// Marks the entry refreshed.
    pub fn refreshed(&mut self, now: Instant) {
        self.registered_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Starts a worker and lets it settle, idle and registered, at `t0`.
    fn settled(t0: Instant) -> Presence {
        let mut p = Presence::new(t0);
        assert_eq!(p.intent(), None);
        assert_eq!(p.after_claim(None, 0, 64, t0), Next::Poll(POLL_GAP));
        assert_eq!(p.after_claim(None, 0, 64, t0 + POLL_IDLE), Next::ClaimAgain);
        assert_eq!(p.intent(), Some(true));
        assert_eq!(p.after_claim(Some(true), 0, 64, t0 + POLL_IDLE), Next::Sleep);
        p
    }

    #[test]
    fn a_light_load_keeps_the_worker_registered_and_one_claim_per_wake() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        // 200 events/s: each wake finds one, 5 ms after the last.
        for n in 1..10 {
            let at = t0 + POLL_IDLE + ms(5 * n);
            assert_eq!(p.intent(), None, "no registry write per event");
            assert_eq!(p.after_claim(None, 1, 64, at), Next::Sleep, "sleeps right after the claim");
        }
        assert!(p.registered());
    }

    #[test]
    fn flowing_work_switches_to_polling_until_it_stops() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        let t = t0 + POLL_IDLE;
        // 50 deliveries within 100 ms: work flows.
        assert_eq!(p.after_claim(None, 3, 64, t + ms(10)), Next::Sleep);
        assert_eq!(p.after_claim(None, 1, 64, t + ms(11)), Next::Sleep, "one short gap is no flow");
        assert_eq!(p.after_claim(None, 46, 64, t + ms(20)), Next::ClaimAgain);
        assert_eq!(p.intent(), Some(false), "deregisters with the next claim");
        assert_eq!(p.after_claim(Some(false), 20, 64, t + ms(21)), Next::ClaimAgain);
        assert_eq!(p.after_claim(None, 5, 64, t + ms(22)), Next::Poll(POLL_GAP), "a small batch is left to grow");
        assert!(!p.registered());
        assert_eq!(p.intent(), None, "still deregistered");
        // Quiet for POLL_IDLE: registers with the next claim, which claims once more.
        assert_eq!(p.after_claim(None, 0, 64, t + ms(23)), Next::Poll(POLL_GAP));
        assert_eq!(p.after_claim(None, 0, 64, t + ms(23) + POLL_IDLE), Next::ClaimAgain);
        assert_eq!(p.intent(), Some(true));
        assert_eq!(p.after_claim(Some(true), 0, 64, t + ms(23) + POLL_IDLE), Next::Sleep);
    }

    #[test]
    fn many_deliveries_per_wake_mean_work_flows() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        // Fan-out 10 at 200 events/s: 10 deliveries every 5 ms.
        let t = t0 + POLL_IDLE + Duration::from_secs(1);
        let nexts: Vec<Next> = (0..5).map(|n| p.after_claim(None, 10, 64, t + ms(5 * n))).collect();
        assert_eq!(nexts[..4], [Next::Sleep; 4]);
        assert_eq!(nexts[4], Next::Poll(POLL_GAP), "50 within 100 ms: polling");
        assert_eq!(p.intent(), Some(false));
    }

    #[test]
    fn a_full_claim_alone_means_work_flows() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        assert_eq!(p.after_claim(None, 64, 64, t0 + Duration::from_secs(1)), Next::ClaimAgain);
        assert_eq!(p.intent(), Some(false));
    }

    #[test]
    fn a_fresh_registration_rechecks_at_growing_intervals() {
        let t0 = Instant::now();
        let p = settled(t0);
        let (t, settled) = (t0 + POLL_IDLE, Duration::from_secs(1));
        assert_eq!(p.recheck_within(t, settled), Some(FIRST_RECHECK));
        assert_eq!(p.recheck_within(t + ms(40), settled), Some(ms(40)));
        assert_eq!(p.recheck_within(t + Duration::from_secs(2), settled), None);
    }
}
