//! A token bucket in exact integers, for every rate limit of the node, and the
//! rate-limited count of what a limit dropped.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, holding at most `burst`, full at first. A
/// token is counted as `unit` parts, a second in nanoseconds, and `rate` parts are
/// added each nanosecond, so refills are exact in integers whatever the steps of the
/// clock.
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
    fn drops_are_reported_at_most_once_a_second() {
        let start = Instant::now();
        let mut log = DropLog::default();
        assert_eq!(log.dropped(start), Some(1));
        assert_eq!(log.dropped(start + Duration::from_millis(500)), None);
        assert_eq!(log.dropped(start + Duration::from_millis(900)), None);
        assert_eq!(log.dropped(start + Duration::from_millis(1000)), Some(3));
    }
}

/// Events of the last `window`, counted exactly: a sliding window, not buckets of
/// fixed time. It holds one instant per event still inside the window, so its memory
/// is bounded by the limit it is checked against (the caller stops at the limit).
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    window: Duration,
    times: std::collections::VecDeque<Instant>,
}

impl SlidingWindow {
    /// An empty window of length `window`.
    pub(crate) fn new(window: Duration) -> Self {
        SlidingWindow {
            window,
            times: std::collections::VecDeque::new(),
        }
    }

    /// Counts an event at `now`; returns how many fell within the window ending at
    /// `now`, this one included. `now` never going back is assumed; an earlier one
    /// counts as `now` of the latest event.
    pub(crate) fn record(&mut self, now: Instant) -> usize {
        let now = self.times.back().map_or(now, |&last| last.max(now));
        while let Some(&first) = self.times.front() {
            if now.saturating_duration_since(first) < self.window {
                break;
            }
            self.times.pop_front();
        }
        self.times.push_back(now);
        self.times.len()
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn counts_exactly_the_events_of_the_last_window() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut w = SlidingWindow::new(minute);
        // 100 events spread over 50 s all fall within one minute.
        for i in 0..100u64 {
            assert_eq!(
                w.record(start + Duration::from_millis(500 * i)),
                i as usize + 1
            );
        }
        // One a minute apart never add up.
        let mut w = SlidingWindow::new(minute);
        for i in 0..10u32 {
            assert_eq!(w.record(start + minute * i), 1);
        }
        // The edge: an event exactly a window old has left it.
        let mut w = SlidingWindow::new(minute);
        w.record(start);
        assert_eq!(w.record(start + minute - Duration::from_nanos(1)), 2);
        assert_eq!(w.record(start + minute), 2);
        assert_eq!(w.record(start + 2 * minute), 1);
    }
}
