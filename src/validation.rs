//! Broadcasts waiting for the application's verdict before they are relayed
//! (`Config::validate_gossip`), bounded in count, bytes and time.

use std::collections::{BTreeMap, HashMap};
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

/// The pending verdicts, oldest first. Ids come from peers, so they are looked up
/// with the standard library's keyed hash.
#[derive(Debug, Default)]
pub(crate) struct Validations {
    by_id: HashMap<[u8; 16], u64>,
    queue: BTreeMap<u64, Pending>,
    next: u64,
    bytes: usize,
}

impl Validations {
    /// How many wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Adds `pending`; the oldest are dropped (ignored) while more than `max` wait
    /// or their payloads take more than `max_bytes`. Returns how many were dropped.
    pub(crate) fn insert(&mut self, pending: Pending, max: usize, max_bytes: usize) -> usize {
        let seq = self.next;
        self.next += 1;
        self.bytes += pending.bytes();
        if let Some(old) = self.by_id.insert(pending.id, seq) {
            // The node hands over no id whose verdict is awaited (`contains`); were
            // one inserted again, the newer replaces it.
            if let Some(old) = self.queue.remove(&old) {
                self.bytes -= old.bytes();
            }
        }
        self.queue.insert(seq, pending);
        let mut dropped = 0;
        while self.queue.len() > max || self.bytes > max_bytes {
            if self.pop_oldest().is_none() {
                break;
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
        let pending = self.queue.remove(&seq)?;
        self.bytes -= pending.bytes();
        Some(pending)
    }

    /// Drops (ignores) those whose time ran out by `now`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while self
            .queue
            .first_key_value()
            .is_some_and(|(_, p)| p.deadline <= now)
        {
            self.pop_oldest();
            expired += 1;
        }
        expired
    }

    /// When the oldest runs out of time (deadlines come in order: one timeout for all).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(_, p)| p.deadline)
    }

    fn pop_oldest(&mut self) -> Option<Pending> {
        let (_, pending) = self.queue.pop_first()?;
        self.by_id.remove(&pending.id);
        self.bytes -= pending.bytes();
        Some(pending)
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
