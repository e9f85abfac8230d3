//! Broadcasts waiting for the application's verdict before they are relayed
//! (`Config::validate_gossip`), bounded in count, bytes and time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use bytes::Bytes;

use crate::node::ConnId;
use crate::peer::PeerId;

/// The application's verdict on a broadcast it was handed
/// ([`Network::validate`](crate::Network::validate)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Validation {
    /// Valid: relay it to the other peers (the id is remembered either way).
    Accept,
    /// Not to be relayed, but not the sender's fault (a stale block, say).
    Ignore,
    /// Invalid: not relayed, and counted against the neighbour that sent it as a
    /// rejected frame (`Reject::RejectedBroadcast`), towards `max_rejected_frames`.
    Reject,
}

/// One broadcast waiting for its verdict.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) id: [u8; 16],
    /// The neighbour it came from, and on which connection.
    pub(crate) from: PeerId,
    pub(crate) conn: ConnId,
    /// The hops to relay it with, if it is to be relayed once accepted (it had hops
    /// left and the relay budget admitted it); its payload is kept only then.
    pub(crate) relay: Option<(u8, Bytes)>,
    pub(crate) deadline: Instant,
}

impl Pending {
    fn bytes(&self) -> usize {
        self.relay.as_ref().map_or(0, |(_, payload)| payload.len())
    }
}

/// A neighbour's rank for giving way: what it holds (a count or bytes), then its
/// oldest entry first among equals (its sequence, which names the neighbour).
type Rank = (usize, Reverse<u64>);

/// What one neighbour holds of the pending verdicts.
#[derive(Debug, Default)]
struct Source {
    /// Its pending verdicts, by arrival.
    seqs: BTreeSet<u64>,
    bytes: usize,
}

impl Source {
    /// Its ranks: by count and by bytes, ties to the one whose oldest is oldest.
    fn ranks(&self) -> Option<(Rank, Rank)> {
        let oldest = Reverse(*self.seqs.first()?);
        Some(((self.seqs.len(), oldest), (self.bytes, oldest)))
    }
}

/// The pending verdicts, by arrival (so by deadline: one timeout for all). When they
/// are too many or too large, the neighbour holding the most (in count, or in bytes)
/// gives up its oldest: one peer flooding broadcasts pushes out its own, not those
/// honest neighbours sent before. Ids and peer ids come from peers, so they are
/// looked up with the standard library's keyed hash; the choice of whom to push out
/// is by rank, not by hash order, so it repeats in the simulator.
#[derive(Debug, Default)]
pub(crate) struct Validations {
    by_id: HashMap<[u8; 16], u64>,
    queue: BTreeMap<u64, Pending>,
    next: u64,
    bytes: usize,
    sources: HashMap<PeerId, Source>,
    /// Each source's (count, oldest first) rank, the oldest's sequence in it.
    by_count: BTreeSet<Rank>,
    /// Each source's (bytes, oldest first) rank.
    by_bytes: BTreeSet<Rank>,
}

impl Validations {
    /// How many wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Adds `pending`; while more than `max` wait or their payloads take more than
    /// `max_bytes`, the neighbour holding the most (in count, or in bytes) gives up
    /// its oldest (ignored). Returns how many were dropped.
    pub(crate) fn insert(&mut self, pending: Pending, max: usize, max_bytes: usize) -> usize {
        let seq = self.next;
        self.next += 1;
        if let Some(old) = self.by_id.insert(pending.id, seq) {
            // The node hands over no id whose verdict is awaited (`contains`); were
            // one inserted again, the newer replaces it.
            self.remove(old);
        }
        self.bytes += pending.bytes();
        self.account(pending.from, seq, pending.bytes(), true);
        self.queue.insert(seq, pending);
        let mut dropped = 0;
        loop {
            let victim = if self.queue.len() > max {
                self.by_count.last()
            } else if self.bytes > max_bytes {
                self.by_bytes.last()
            } else {
                break;
            };
            let Some(&(_, Reverse(oldest))) = victim else {
                break;
            };
            if let Some(p) = self.remove(oldest) {
                self.by_id.remove(&p.id);
            }
            dropped += 1;
        }
        dropped
    }

    /// Whether a verdict on `id` is awaited.
    pub(crate) fn contains(&self, id: &[u8; 16]) -> bool {
        self.by_id.contains_key(id)
    }

    /// Takes the one waiting for `id`.
    pub(crate) fn take(&mut self, id: &[u8; 16]) -> Option<Pending> {
        let seq = self.by_id.remove(id)?;
        self.remove(seq)
    }

    /// Drops (ignores) those whose time ran out by `now`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some((&seq, p)) = self.queue.first_key_value()
            && p.deadline <= now
        {
            let id = p.id;
            self.remove(seq);
            self.by_id.remove(&id);
            expired += 1;
        }
        expired
    }

    /// When the oldest runs out of time (deadlines come in order: one timeout for all).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(_, p)| p.deadline)
    }

    /// Takes the entry `seq` out of the queue and its source's count (not `by_id`).
    fn remove(&mut self, seq: u64) -> Option<Pending> {
        let pending = self.queue.remove(&seq)?;
        self.bytes -= pending.bytes();
        self.account(pending.from, seq, pending.bytes(), false);
        Some(pending)
    }

    /// Adds (or removes) entry `seq` of `bytes` to what `from` holds, keeping the
    /// ranks and forgetting a source that holds nothing.
    fn account(&mut self, from: PeerId, seq: u64, bytes: usize, add: bool) {
        let source = self.sources.entry(from).or_default();
        if let Some((count, size)) = source.ranks() {
            self.by_count.remove(&count);
            self.by_bytes.remove(&size);
        }
        if add {
            source.seqs.insert(seq);
            source.bytes += bytes;
        } else {
            source.seqs.remove(&seq);
            source.bytes -= bytes;
        }
        match source.ranks() {
            Some((count, size)) => {
                self.by_count.insert(count);
                self.by_bytes.insert(size);
            }
            None => {
                self.sources.remove(&from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pending(n: u8, size: usize, deadline: Instant) -> Pending {
        Pending {
            id: [n; 16],
            from: PeerId::from_bytes([1; 32]),
            conn: ConnId {
                key: 0,
                generation: 0,
            },
            relay: Some((3, Bytes::from(vec![0; size]))),
            deadline,
        }
    }

    #[test]
    fn the_oldest_go_first_when_the_count_or_the_bytes_are_full() {
        let now = Instant::now();
        let mut v = Validations::default();
        for n in 0..3 {
            assert_eq!(v.insert(pending(n, 10, now), 3, 100), 0);
        }
        assert_eq!(v.insert(pending(3, 10, now), 3, 100), 1, "count full");
        assert!(v.take(&[0; 16]).is_none(), "the oldest went");
        assert_eq!(
            v.insert(pending(4, 85, now), 3, 100),
            2,
            "bytes full: two go"
        );
        assert_eq!(v.len(), 2);
        assert!(v.take(&[3; 16]).is_some());
        assert!(v.take(&[4; 16]).is_some());
        assert_eq!((v.len(), v.bytes), (0, 0));
        // One larger than the whole allowance is not kept either.
        assert_eq!(v.insert(pending(5, 200, now), 3, 100), 1);
        assert_eq!((v.len(), v.bytes), (0, 0));
    }

    #[test]
    fn the_neighbour_holding_the_most_gives_way() {
        let now = Instant::now();
        let from = |n: u8, source: u8, size: usize| Pending {
            from: PeerId::from_bytes([source; 32]),
            ..pending(n, size, now)
        };
        let mut v = Validations::default();
        v.insert(from(0, 1, 10), 4, 1000);
        for n in 1..=4 {
            assert_eq!(v.insert(from(n, 2, 10), 4, 1000), u8::from(n == 4) as usize);
        }
        assert!(v.contains(&[0; 16]), "the honest one stays");
        assert!(!v.contains(&[1; 16]), "the flooder's oldest went");
        // By bytes: the one holding the most bytes gives way, whatever the count.
        let mut v = Validations::default();
        for n in 0..10 {
            v.insert(from(n, 1, 10), 100, 1000);
        }
        v.insert(from(10, 2, 800), 100, 1000);
        v.insert(from(11, 3, 50), 100, 1000);
        assert_eq!(v.insert(from(12, 2, 100), 100, 1000), 1);
        assert!(!v.contains(&[10; 16]), "source 2 held the most bytes");
        assert!((0..10).all(|n| v.contains(&[n; 16])) && v.contains(&[11; 16]));
        assert_eq!(v.bytes, 250);
        while v.expire(now) > 0 {}
        assert_eq!(
            (v.len(), v.bytes, v.by_id.len(), v.sources.len()),
            (0, 0, 0, 0)
        );
        assert!(v.by_count.is_empty() && v.by_bytes.is_empty());
    }

    #[test]
    fn verdicts_run_out_in_order_and_a_reused_id_replaces_its_entry() {
        let now = Instant::now();
        let mut v = Validations::default();
        v.insert(pending(1, 10, now + Duration::from_secs(1)), 10, 1000);
        v.insert(pending(2, 10, now + Duration::from_secs(2)), 10, 1000);
        assert_eq!(v.next_deadline(), Some(now + Duration::from_secs(1)));
        assert_eq!(v.expire(now), 0);
        assert_eq!(v.expire(now + Duration::from_secs(1)), 1);
        assert!(v.take(&[1; 16]).is_none());
        v.insert(pending(2, 30, now + Duration::from_secs(3)), 10, 1000);
        assert_eq!((v.len(), v.bytes), (1, 30));
        assert_eq!(v.next_deadline(), Some(now + Duration::from_secs(3)));
        assert_eq!(v.expire(now + Duration::from_secs(3)), 1);
        assert_eq!((v.len(), v.bytes, v.by_id.len()), (0, 0, 0));
    }
}
