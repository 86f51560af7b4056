//! Whether producers should wake this worker: its entry in
//! `hookline.idle_workers`, which the claim statement itself keeps.
//!
//! A producer NOTIFYs only while some worker is registered there, because
//! PostgreSQL serialises the commits of notifying transactions. So:
//! - at a light load a worker stays registered and sleeps right after each
//!   claim; a NOTIFY wakes it per event: one claim per wake, no registry
//!   writes;
//! - when work flows (a claim fills the worker's free slots, or work comes
//!   again within [`BUSY_GAP`] of the last), it deregisters with its next
//!   claim and claims back to back, so producers commit in parallel;
//! - when a claim of a deregistered worker finds nothing, it registers with
//!   its next claim. A producer that looked at the registry just before that
//!   commit may commit after the claim without notifying, so a freshly
//!   registered worker re-checks at growing intervals
//!   ([`Presence::recheck_within`]).
//!
//! No IO: the claim loop asks what the next claim should do and reports
//! what it got.

use std::time::{Duration, Instant};

/// Work again this soon after the last work means a steady flow: stop
/// asking producers to notify.
pub const BUSY_GAP: Duration = Duration::from_millis(2);
/// The first re-check after registering; they grow with the time since.
const FIRST_RECHECK: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub struct Presence {
    registered: bool,
    registered_at: Instant,
    last_work: Option<Instant>,
    /// The last claim saw work flowing.
    flowing: bool,
}

/// What the claim loop does after a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    ClaimAgain,
    Sleep,
}

impl Presence {
    pub fn new(now: Instant) -> Self {
        Presence { registered: false, registered_at: now, last_work: None, flowing: true }
    }

    /// What the next claim does with the registration: `Some(true)`
    /// register, `Some(false)` deregister, `None` leave it.
    pub fn intent(&self) -> Option<bool> {
        match (self.registered, self.flowing) {
            (true, true) => Some(false),
            (false, false) => Some(true),
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
        let soon_again = self.last_work.is_some_and(|at| now.saturating_duration_since(at) < BUSY_GAP);
        self.flowing = got > 0 && (got >= wanted || soon_again);
        if got > 0 {
            self.last_work = Some(now);
        }
        if self.flowing || !self.registered { Next::ClaimAgain } else { Next::Sleep }
    }

    pub fn registered(&self) -> bool {
        self.registered
    }

    /// The registration may be gone (a database restart empties the
    /// unlogged registry): register again when next idle.
    pub fn forget(&mut self) {
        self.registered = false;
        self.flowing = true;
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

    #[test]
    fn a_light_load_keeps_the_worker_registered_and_one_claim_per_wake() {
        let t0 = Instant::now();
        let mut p = Presence::new(t0);
        // Starting up: claims back to back until one finds nothing, then registers.
        assert_eq!(p.intent(), None);
        assert_eq!(p.after_claim(None, 0, 64, t0), Next::ClaimAgain);
        assert_eq!(p.intent(), Some(true));
        assert_eq!(p.after_claim(Some(true), 0, 64, t0), Next::Sleep);
        // 200 events/s: each wake finds one, 5 ms after the last.
        for n in 1..10 {
            let at = t0 + Duration::from_millis(5 * n);
            assert_eq!(p.intent(), None, "no registry write per event");
            assert_eq!(p.after_claim(None, 1, 64, at), Next::Sleep, "sleeps right after the claim");
        }
        assert!(p.registered());
    }

    #[test]
    fn flowing_work_deregisters_and_an_empty_claim_registers_again() {
        let t0 = Instant::now();
        let mut p = Presence::new(t0);
        p.after_claim(None, 0, 64, t0);
        p.after_claim(Some(true), 0, 64, t0);
        // Woken twice within the busy gap: work flows.
        assert_eq!(p.after_claim(None, 3, 64, t0 + Duration::from_millis(10)), Next::Sleep);
        assert_eq!(p.after_claim(None, 2, 64, t0 + Duration::from_millis(11)), Next::ClaimAgain);
        assert_eq!(p.intent(), Some(false));
        assert_eq!(p.after_claim(Some(false), 5, 64, t0 + Duration::from_millis(12)), Next::ClaimAgain);
        assert!(!p.registered());
        assert_eq!(p.intent(), None, "stays deregistered while it flows");
        // A full claim alone also means flowing.
        assert_eq!(p.after_claim(None, 64, 64, t0 + Duration::from_secs(1)), Next::ClaimAgain);
        // Nothing left: register with the next claim, which also claims once more.
        assert_eq!(p.after_claim(None, 0, 64, t0 + Duration::from_secs(2)), Next::ClaimAgain);
        assert_eq!(p.intent(), Some(true));
        assert_eq!(p.after_claim(Some(true), 0, 64, t0 + Duration::from_secs(2)), Next::Sleep);
    }

    #[test]
    fn a_fresh_registration_rechecks_at_growing_intervals() {
        let t0 = Instant::now();
        let mut p = Presence::new(t0);
        p.after_claim(Some(true), 0, 8, t0);
        let settled = Duration::from_secs(1);
        assert_eq!(p.recheck_within(t0, settled), Some(FIRST_RECHECK));
        assert_eq!(p.recheck_within(t0 + Duration::from_millis(40), settled), Some(Duration::from_millis(40)));
        assert_eq!(p.recheck_within(t0 + Duration::from_secs(2), settled), None);
    }
}
