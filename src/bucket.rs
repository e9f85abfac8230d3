//! A token bucket in exact integers, for every rate limit of the node.

use std::time::Instant;

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
