//! A token bucket in exact integers, for every rate limit of the node, and the
//! rate-limited count of what a limit dropped.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, holding at most `burst`, full at first.
/// Tokens are counted in billionths, so refills are exact in integers whatever the
/// steps of the clock.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: u128,
    burst: u128,
    nanos: u128,
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
        self.nanos >= tokens as u128 * NANOS
    }

    /// Takes `tokens`, which [`TokenBucket::holds`] said are there.
    pub(crate) fn take(&mut self, tokens: usize) {
        self.nanos -= tokens as u128 * NANOS;
    }

    /// The tokens held, in billionths.
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
    fn drops_are_reported_at_most_once_a_second() {
        let start = Instant::now();
        let mut log = DropLog::default();
        assert_eq!(log.dropped(start), Some(1));
        assert_eq!(log.dropped(start + Duration::from_millis(500)), None);
        assert_eq!(log.dropped(start + Duration::from_millis(900)), None);
        assert_eq!(log.dropped(start + Duration::from_millis(1000)), Some(3));
    }
}
