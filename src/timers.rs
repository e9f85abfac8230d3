//! The connections' deadlines, earliest first: the next one in O(1), a change in
//! O(log n), the due ones taken without looking at the others.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

/// Heap entries allowed beyond twice the live deadlines before the heap is rebuilt,
/// so a handful of keys does not rebuild it on every change.
const SLACK: usize = 64;

/// Hashes the keys of [`Timers`] with one multiply per word (FxHash's): they are
/// connection slots and generations the node hands out, never values a peer chooses,
/// so SipHash's defence against chosen collisions would only cost time on every
/// change of a deadline.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One deadline per key, taken earliest first. A key whose deadline changes leaves its
/// old heap entry in place: an entry counts only while its instant is still its key's,
/// and a stale one is skipped when it comes up. Stale entries are dropped from the top
/// at once, so the top is always live and [`Timers::next`] is exact; the heap is rebuilt
/// from the live deadlines when it holds more than twice their number (plus
/// [`SLACK`]), so it stays within that, whatever the order of changes, at an amortised
/// constant cost per change.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    deadlines: HashMap<K, Instant, BuildHasherDefault<KeyHasher>>,
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Copy + Ord + Hash> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            deadlines: HashMap::default(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Copy + Ord + Hash> Timers<K> {
    /// Gives `key` the deadline `at`, or none; a deadline equal to the one it has
    /// costs a lookup.
    pub(crate) fn set(&mut self, key: K, at: Option<Instant>) {
        match at {
            Some(at) => {
                if self.deadlines.insert(key, at) == Some(at) {
                    return;
                }
                self.heap.push(Reverse((at, key)));
            }
            None => {
                if self.deadlines.remove(&key).is_none() {
                    return;
                }
            }
        }
        self.prune();
    }

    /// `key`'s deadline.
    pub(crate) fn get(&self, key: K) -> Option<Instant> {
        self.deadlines.get(&key).copied()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|&Reverse((at, _))| at)
    }

    /// Appends to `into` every key whose deadline is at or before `now`, in key order
    /// (so they run in the same order whatever their deadlines), and takes their
    /// deadlines away: give each its next one when it has run.
    pub(crate) fn take_due(&mut self, now: Instant, into: &mut Vec<K>) {
        let start = into.len();
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            // A key set to one instant twice has two entries: the first one taken.
            if self.deadlines.get(&key) == Some(&at) {
                self.deadlines.remove(&key);
                into.push(key);
            }
        }
        into[start..].sort_unstable();
        self.prune();
    }

    /// Keys with a deadline.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn len(&self) -> usize {
        self.deadlines.len()
    }

    fn prune(&mut self) {
        let deadlines = &self.deadlines;
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if deadlines.get(&key) == Some(&at) {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.deadlines.len() + SLACK {
            let mut entries = std::mem::take(&mut self.heap).into_vec();
            entries.clear();
            entries.extend(self.deadlines.iter().map(|(&key, &at)| Reverse((at, key))));
            self.heap = BinaryHeap::from(entries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Option<Instant> {
        Some(t0 + Duration::from_millis(ms))
    }

    #[test]
    fn due_keys_come_in_key_order_and_later_ones_stay() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for (key, ms) in [(5, 10), (1, 30), (3, 20), (2, 50), (4, 40)] {
            timers.set(key, at(t0, ms));
        }
        assert_eq!(timers.next(), at(t0, 10));
        let mut due = vec![99];
        timers.take_due(t0 + Duration::from_millis(30), &mut due);
        assert_eq!(
            due,
            [99, 1, 3, 5],
            "appended, in key order, not deadline order"
        );
        assert_eq!((timers.get(1), timers.get(4)), (None, at(t0, 40)));
        assert_eq!(timers.next(), at(t0, 40));
        let mut due = Vec::new();
        timers.take_due(t0 + Duration::from_millis(100), &mut due);
        assert_eq!(due, [2, 4]);
        assert_eq!((timers.next(), timers.len()), (None, 0));
    }

    #[test]
    fn a_moved_or_cleared_deadline_leaves_no_timer_behind() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(1, at(t0, 10));
        timers.set(2, at(t0, 20));
        timers.set(1, at(t0, 30));
        assert_eq!(timers.next(), at(t0, 20), "1's old deadline is stale");
        timers.set(2, None);
        assert_eq!(timers.next(), at(t0, 30), "2 has none");
        // Away and back: two entries at one instant, one key due once.
        timers.set(3, at(t0, 5));
        timers.set(3, at(t0, 6));
        timers.set(3, at(t0, 5));
        let mut due = Vec::new();
        timers.take_due(t0 + Duration::from_millis(25), &mut due);
        assert_eq!(due, [3]);
        timers.take_due(t0 + Duration::from_millis(29), &mut due);
        assert_eq!(due, [3], "nothing else was due");
        timers.take_due(t0 + Duration::from_millis(30), &mut due);
        assert_eq!(due, [3, 1]);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn the_heap_stays_within_twice_the_live_deadlines() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for key in 0..100u32 {
            timers.set(key, at(t0, 1_000_000));
        }
        // One key's deadline moves later and later, as a busy connection's keepalive
        // does, behind the others': its old entries are never on top.
        for ms in 0..100_000u64 {
            timers.set(7, at(t0, 2_000_000 + ms));
            assert!(
                timers.heap.len() <= 2 * 100 + SLACK + 1,
                "{}",
                timers.heap.len()
            );
        }
        assert_eq!(timers.len(), 100);
        assert_eq!(timers.next(), at(t0, 1_000_000));
        let mut due = Vec::new();
        timers.take_due(t0 + Duration::from_secs(10_000), &mut due);
        assert_eq!(due, (0..100).collect::<Vec<_>>());
        assert!(timers.heap.is_empty());
    }
}
