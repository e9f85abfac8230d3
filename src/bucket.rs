//! A token bucket in exact integers, for every rate limit of the node, and the
//! rate-limited count of what a limit dropped.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a period (a second unless made by
/// [`TokenBucket::per`]), holding at most `burst`, full at first. A token is counted
/// as `unit` parts, the period in nanoseconds, and `rate` parts are added each
/// nanosecond, so refills are exact in integers whatever the steps of the clock.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: u128,
    burst: u128,
    nanos: u128,
    /// Parts a token is counted as: the refill period in nanoseconds.
    unit: u128,
    last: Instant,
}

pub(crate) const NANOS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: usize, burst: usize, now: Instant) -> Self {
        let burst = burst as u128 * NANOS;
        TokenBucket {
            rate: rate as u128,
            burst,
            nanos: burst,
            unit: NANOS,
            last: now,
        }
    }

    /// A full bucket at `now` holding `tokens`, which refills by `tokens` every
    /// `period` (at least a nanosecond): a rate that need not be whole tokens a second.
    pub(crate) fn per(tokens: usize, period: Duration, now: Instant) -> Self {
        let unit = period.as_nanos().max(1);
        let burst = (tokens as u128).saturating_mul(unit);
        TokenBucket {
            rate: tokens as u128,
            burst,
            nanos: burst,
            unit,
            last: now,
        }
    }

    /// Adds what `now` brings (a clock that went back adds none).
    pub(crate) fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.nanos = self
            .nanos
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.burst);
        self.last = self.last.max(now);
    }

    /// Whether `tokens` are there.
    pub(crate) fn holds(&self, tokens: usize) -> bool {
        self.nanos >= tokens as u128 * self.unit
    }

    /// Takes `tokens`, which [`TokenBucket::holds`] said are there.
    pub(crate) fn take(&mut self, tokens: usize) {
        self.nanos -= tokens as u128 * self.unit;
    }

    /// The tokens held, in parts of a token (billionths for [`TokenBucket::new`]).
    pub(crate) fn level(&self) -> u128 {
        self.nanos
    }

    /// Whether it holds all it can.
    pub(crate) fn is_full(&self) -> bool {
        self.nanos == self.burst
    }
}

/// How often a connection logs what a limit dropped, at most.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Frames a limit dropped on one connection since the last log line about them: each
/// is counted in the stats, the log line only sums them up, at most once a second.
#[derive(Debug, Default)]
pub(crate) struct DropLog {
    unlogged: u64,
    logged: Option<Instant>,
}

impl DropLog {
    /// Counts a dropped frame; returns how many were dropped since the last report
    /// when one is due.
    pub(crate) fn dropped(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= DROP_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_per_period_refills_its_tokens_over_that_period_exactly() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut bucket = TokenBucket::per(3, minute, start);
        for _ in 0..3 {
            assert!(bucket.holds(1));
            bucket.take(1);
        }
        assert!(!bucket.holds(1));
        // One token a 20 s.
        bucket.refill(start + Duration::from_secs(20) - Duration::from_nanos(1));
        assert!(!bucket.holds(1));
        bucket.refill(start + Duration::from_secs(20));
        assert!(bucket.holds(1) && !bucket.holds(2));
        bucket.refill(start + Duration::from_secs(3600));
        assert!(bucket.is_full() && bucket.holds(3) && !bucket.holds(4));
    }

    #[test]
    fn drops_are_reported_at_most_once_a_second() {
        let start = Instant::now();
        let mut log = DropLog::default();
        assert_eq!(log.dropped(start), Some(1));
        assert_eq!(log.dropped(start + Duration::from_millis(500)), None);
        assert_eq!(log.dropped(start + Duration::from_millis(900)), None);
        assert_eq!(log.dropped(start + Duration::from_millis(1000)), Some(3));
    }
}
