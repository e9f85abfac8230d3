//! The seen-id cache of broadcasts and the relay rule of PROTOCOL.md §5.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// What to do with a received GOSSIP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Seen before: drop it.
    Duplicate,
    /// New: deliver once, and relay with `hops - 1` when `relay`.
    Deliver {
        /// Whether hops > 1.
        relay: bool,
    },
}

/// Remembers gossip ids, bounded in number and age; the oldest go first.
#[derive(Debug)]
pub(crate) struct Gossip {
    seen: HashSet<[u8; 16]>,
    order: VecDeque<([u8; 16], Instant)>,
    capacity: usize,
    max_age: Duration,
}

impl Gossip {
    /// A cache of at most `capacity` ids, each kept at most `max_age`.
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        Gossip {
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
            max_age,
        }
    }

    /// Applies the relay rule to a received frame's id and hops.
    pub(crate) fn receive(&mut self, id: [u8; 16], hops: u8, now: Instant) -> Verdict {
        if self.remember(id, now) {
            Verdict::Deliver { relay: hops > 1 }
        } else {
            Verdict::Duplicate
        }
    }

    /// Records `id` (one of our own broadcasts or a received one); false if already known.
    pub(crate) fn remember(&mut self, id: [u8; 16], now: Instant) -> bool {
        self.expire(now);
        if self.seen.contains(&id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some((old, _)) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(id);
        self.order.push_back((id, now));
        true
    }

    /// Forgets ids older than the maximum age.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(id, at)) = self.order.front() {
            if now.saturating_duration_since(at) < self.max_age {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&id);
        }
    }

    /// Ids remembered now.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    #[test]
    fn delivers_once_and_relays_while_hops_remain() {
        let now = Instant::now();
        let mut g = Gossip::new(16, Duration::from_secs(60));
        assert_eq!(g.receive(id(1), 3, now), Verdict::Deliver { relay: true });
        assert_eq!(g.receive(id(1), 3, now), Verdict::Duplicate);
        assert_eq!(g.receive(id(2), 1, now), Verdict::Deliver { relay: false });
        assert_eq!(g.receive(id(3), 0, now), Verdict::Deliver { relay: false });
    }

    #[test]
    fn bounded_in_count_oldest_evicted() {
        let now = Instant::now();
        let mut g = Gossip::new(3, Duration::from_secs(60));
        for n in 0..5 {
            assert!(g.remember(id(n), now));
        }
        assert_eq!(g.len(), 3);
        // 0 and 1 were evicted, so they count as new again; 4 is still known.
        assert!(!g.remember(id(4), now));
        assert!(g.remember(id(0), now));
    }

    #[test]
    fn bounded_in_age() {
        let start = Instant::now();
        let mut g = Gossip::new(100, Duration::from_secs(10));
        g.remember(id(1), start);
        g.remember(id(2), start + Duration::from_secs(5));
        g.expire(start + Duration::from_secs(10));
        assert_eq!(g.len(), 1);
        assert!(g.remember(id(1), start + Duration::from_secs(10)));
        assert!(!g.remember(id(2), start + Duration::from_secs(11)));
    }
}
