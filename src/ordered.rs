//! A table of request ids that also knows their order, for a connection's request tables.

use std::collections::{HashMap, VecDeque};

/// Ids, each with a stamp (a deadline, an arrival number), looked up by id and taken
/// in the order they were inserted. Removing an id leaves its queue entry in place:
/// an entry counts only while its stamp is still its id's, so an id removed and
/// inserted again takes its new place, not its old one. Dead entries are dropped from
/// the front at once, so the first entry is always live, and the whole queue is
/// compacted when it holds more than twice `cap`: it stays within that, whatever the
/// order of removals, at an amortised constant cost.
#[derive(Debug)]
pub(crate) struct OrderedIds<S> {
    stamps: HashMap<u64, S>,
    order: VecDeque<(S, u64)>,
    cap: usize,
}

impl<S: Copy + PartialEq> OrderedIds<S> {
    /// An empty table whose queue is compacted beyond twice `cap`.
    pub(crate) fn new(cap: usize) -> Self {
        OrderedIds {
            stamps: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// Ids held.
    pub(crate) fn len(&self) -> usize {
        self.stamps.len()
    }

    /// Whether `id` is held.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.stamps.contains_key(&id)
    }

    /// Holds `id` with `stamp`, last in order; an id held already moves there.
    pub(crate) fn insert(&mut self, id: u64, stamp: S) {
        self.stamps.insert(id, stamp);
        self.order.push_back((stamp, id));
        self.prune();
    }

    /// Lets `id` go; its stamp, if it was held.
    pub(crate) fn remove(&mut self, id: u64) -> Option<S> {
        let stamp = self.stamps.remove(&id)?;
        self.prune();
        Some(stamp)
    }

    /// The first id in order, with its stamp.
    pub(crate) fn first(&self) -> Option<(S, u64)> {
        self.order.front().copied()
    }

    /// Lets the first id in order go, and returns it with its stamp.
    pub(crate) fn pop_first(&mut self) -> Option<(S, u64)> {
        let (stamp, id) = self.first()?;
        self.remove(id);
        Some((stamp, id))
    }

    /// Lets every id go, freeing the memory held; returns them, in no order.
    pub(crate) fn take_all(&mut self) -> Vec<u64> {
        let ids = self.stamps.keys().copied().collect();
        *self = OrderedIds::new(self.cap);
        ids
    }

    fn prune(&mut self) {
        let stamps = &self.stamps;
        let live = |(stamp, id): &(S, u64)| stamps.get(id) == Some(stamp);
        while let Some(entry) = self.order.front() {
            if live(entry) {
                break;
            }
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.cap {
            self.order.retain(live);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_inserted_again_takes_its_new_place() {
        let mut t = OrderedIds::new(4);
        for (id, stamp) in [(1, 10), (2, 11), (3, 12)] {
            t.insert(id, stamp);
        }
        assert_eq!(t.remove(1), Some(10));
        t.insert(1, 13);
        assert_eq!(t.pop_first(), Some((11, 2)));
        assert_eq!(t.pop_first(), Some((12, 3)));
        assert_eq!(t.pop_first(), Some((13, 1)));
        assert_eq!(t.pop_first(), None);
    }

    #[test]
    fn the_queue_stays_within_twice_the_cap_whatever_is_removed() {
        let mut t = OrderedIds::new(8);
        t.insert(0, 0u64);
        for n in 1..10_000u64 {
            t.insert(n, n);
            t.remove(n);
            assert!(t.order.len() <= 2 * 8 + 1, "{}", t.order.len());
        }
        assert_eq!((t.len(), t.first()), (1, Some((0, 0))));
        assert_eq!(t.take_all(), vec![0]);
        assert_eq!((t.len(), t.order.len()), (0, 0));
    }
}
