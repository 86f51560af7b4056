//! When to try a failed delivery again: pure functions, no clock, no IO.

use std::time::Duration;

/// Seconds to wait before each retry, after the first attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(Vec<f64>);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextAttempt {
    /// Try again after this delay.
    After(Duration),
    /// No retries left: the delivery goes to the dead-letter queue.
    Dead,
}

impl RetrySchedule {
    /// SPEC §5: 1 s, 5 s, 30 s, 2 min, 10 min, 30 min, then dead.
    pub fn standard() -> Self {
        Self(vec![1.0, 5.0, 30.0, 120.0, 600.0, 1800.0])
    }

    pub fn new(delays_s: Vec<f64>) -> Result<Self, String> {
        match delays_s.iter().find(|d| !d.is_finite() || **d < 0.0) {
            Some(bad) => Err(format!("retry delays must be non-negative seconds, got {bad}")),
            None => Ok(Self(delays_s)),
        }
    }

    /// Parses `1,5,30` (seconds, fractions allowed; empty = never retry).
    pub fn parse(list: &str) -> Result<Self, String> {
        let delays = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<f64>().map_err(|_| format!("`{s}` is not a number of seconds")))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(delays)
    }

    pub fn delays(&self) -> &[f64] {
        &self.0
    }

    /// Attempts a delivery gets in all: the first plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        self.0.len() as u32 + 1
    }

    /// The decision after attempt number `attempts_made` (1-based) failed.
    ///
    /// `jitter` in `[-1, 1]` spreads the delay by up to ±10% so retries of a
    /// burst do not arrive together. `retry_after` (from a 429/503) raises the
    /// delay, clamped to `retry_after_cap`; it never revives a dead delivery.
    pub fn next_attempt(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        retry_after_cap: Duration,
        jitter: f64,
    ) -> NextAttempt {
        let Some(&base_s) = self.0.get(attempts_made.saturating_sub(1) as usize) else {
            return NextAttempt::Dead;
        };
        let jittered = Duration::from_secs_f64(base_s * (1.0 + 0.1 * jitter.clamp(-1.0, 1.0)));
        let delay = match retry_after {
            Some(asked) => jittered.max(asked.min(retry_after_cap)),
            None => jittered,
        };
        NextAttempt::After(delay)
    }
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(3600);

    #[test]
    fn standard_schedule_walks_the_delays_then_dies() {
        let s = RetrySchedule::standard();
        let expected = [1.0, 5.0, 30.0, 120.0, 600.0, 1800.0];
        for (i, secs) in expected.iter().enumerate() {
            assert_eq!(
                s.next_attempt(i as u32 + 1, None, CAP, 0.0),
                NextAttempt::After(Duration::from_secs_f64(*secs)),
                "after attempt {}",
                i + 1
            );
        }
        assert_eq!(s.next_attempt(7, None, CAP, 0.0), NextAttempt::Dead);
        assert_eq!(s.max_attempts(), 7);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let s = RetrySchedule::standard();
        let NextAttempt::After(high) = s.next_attempt(3, None, CAP, 1.0) else { panic!() };
        let NextAttempt::After(low) = s.next_attempt(3, None, CAP, -1.0) else { panic!() };
        assert_eq!(high, Duration::from_secs(33));
        assert_eq!(low, Duration::from_secs(27));
    }

    #[test]
    fn retry_after_raises_the_delay_up_to_the_cap() {
        let s = RetrySchedule::standard();
        let asked = Some(Duration::from_secs(90));
        assert_eq!(s.next_attempt(1, asked, CAP, 0.0), NextAttempt::After(Duration::from_secs(90)));
        let huge = Some(Duration::from_secs(86_400));
        assert_eq!(s.next_attempt(1, huge, CAP, 0.0), NextAttempt::After(CAP));
        // A shorter Retry-After never shortens the schedule.
        let short = Some(Duration::from_secs(2));
        assert_eq!(s.next_attempt(3, short, CAP, 0.0), NextAttempt::After(Duration::from_secs(30)));
    }

    #[test]
    fn retry_after_does_not_revive_the_last_attempt() {
        let s = RetrySchedule::parse("1").unwrap();
        assert_eq!(s.next_attempt(2, Some(Duration::from_secs(1)), CAP, 0.0), NextAttempt::Dead);
    }

    #[test]
    fn parse_accepts_fractions_and_rejects_garbage() {
        assert_eq!(RetrySchedule::parse("0.05, 1,2").unwrap().delays(), &[0.05, 1.0, 2.0]);
        assert_eq!(RetrySchedule::parse("").unwrap().max_attempts(), 1);
        assert!(RetrySchedule::parse("1,x").is_err());
        assert!(RetrySchedule::parse("-1").is_err());
    }

    #[test]
    fn retry_after_header_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
