//! The seen-id cache of broadcasts, the relay rule of PROTOCOL.md §5 with amendment
//! A5, and the per-peer GOSSIP rate limit.
//!
//! The cache cannot be flushed by one peer: every id is accounted to a source (the
//! neighbour it first came from, or ourselves), and when the cache is full the oldest
//! id of the source holding the most goes first. A peer flooding fresh ids therefore
//! evicts its own ids, and an id of a source holding fewer than `capacity / sources`
//! is never evicted, only expired. An id that a second source sends too is not left to
//! the first one's eviction: it moves to the source holding fewer, at once if that one
//! holds fewer by two or more, or else when it would be evicted (its `other`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::bucket::{NANOS, TokenBucket};
use crate::config::Config;
use crate::peer::PeerId;

/// What to do with a received GOSSIP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Seen before: drop it.
    Duplicate,
    /// New: deliver once, and relay with these hops if any.
    Deliver {
        /// `min(hops, hop limit) - 1` when that is at least 1 (PROTOCOL.md A5).
        relay: Option<u8>,
    },
}

/// The end of an intrusive list.
const NIL: u32 = u32::MAX;

/// Ids the cache holds at most, whatever the config says: indices are u32 to keep an
/// entry small, and 2^31 ids would take hundreds of GB.
const MAX_IDS: usize = 1 << 31;

/// An entry's neighbours in one of the lists it is in.
#[derive(Clone, Copy, Debug)]
struct Links {
    prev: u32,
    next: u32,
}

const UNLINKED: Links = Links {
    prev: NIL,
    next: NIL,
};

/// The first and last entries of a list.
#[derive(Clone, Copy, Debug)]
struct Ends {
    first: u32,
    last: u32,
}

const EMPTY: Ends = Ends {
    first: NIL,
    last: NIL,
};

/// One remembered id: in the age list of the whole cache and in its owner's list.
#[derive(Debug)]
struct Entry {
    id: [u8; 16],
    /// When it was first seen: its age counts from here, however often it comes again.
    at: Instant,
    /// The slot in `Gossip::sources` of the source it is accounted to.
    owner: u32,
    /// Another source that sent it too, the one holding fewer ids when it did: before
    /// the id is evicted with its owner's, it moves there if that one still holds fewer.
    other: Option<PeerId>,
    by_age: Links,
    by_owner: Links,
}

/// A source holding at least one id (none is kept without).
#[derive(Debug)]
struct Source {
    peer: PeerId,
    count: u32,
    /// Its ids, in the order they were accounted to it.
    ids: Ends,
}

type Field = fn(&mut Entry) -> &mut Links;

fn by_age(e: &mut Entry) -> &mut Links {
    &mut e.by_age
}

fn by_owner(e: &mut Entry) -> &mut Links {
    &mut e.by_owner
}

fn push_back(entries: &mut Slab<Entry>, ends: &mut Ends, e: u32, field: Field) {
    *field(&mut entries[e as usize]) = Links {
        prev: ends.last,
        next: NIL,
    };
    if ends.last == NIL {
        ends.first = e;
    } else {
        field(&mut entries[ends.last as usize]).next = e;
    }
    ends.last = e;
}

fn unlink(entries: &mut Slab<Entry>, ends: &mut Ends, e: u32, field: Field) {
    let Links { prev, next } = *field(&mut entries[e as usize]);
    if prev == NIL {
        ends.first = next;
    } else {
        field(&mut entries[prev as usize]).next = next;
    }
    if next == NIL {
        ends.last = prev;
    } else {
        field(&mut entries[next as usize]).prev = prev;
    }
    *field(&mut entries[e as usize]) = UNLINKED;
}

/// Remembers gossip ids, bounded in number and age, evicting fairly between sources.
///
/// Memory: at most `capacity` entries (96 bytes each in the slab) and their index
/// (about 42 bytes an id at a hash table's load), about 140 bytes an id, 9 MiB at the
/// default 65,536; and one record of about 150 bytes per source holding an id, so at
/// most 300 bytes an id if every id came from a different source. Each operation
/// costs O(1) hash lookups and O(log sources) for the ordered counts; the second
/// chance of eviction is O(1) amortised, as each pass clears an `other` that a
/// received duplicate set.
#[derive(Debug)]
pub(crate) struct Gossip {
    ids: HashMap<[u8; 16], u32>,
    entries: Slab<Entry>,
    /// Every entry, oldest first.
    age: Ends,
    sources: Slab<Source>,
    source_of: HashMap<PeerId, u32>,
    /// `(count, slot)` of every source; the last holds the most.
    by_count: BTreeSet<(u32, u32)>,
    capacity: usize,
    max_age: Duration,
    hop_limit: u8,
}

impl Gossip {
    /// A cache of at most `capacity` ids, each kept at most `max_age`, for a node
    /// whose broadcasts start with `hop_limit` hops.
    pub(crate) fn new(capacity: usize, max_age: Duration, hop_limit: u8) -> Self {
        let capacity = capacity.clamp(1, MAX_IDS);
        let initial = capacity.min(1 << 16);
        Gossip {
            ids: HashMap::with_capacity(initial),
            entries: Slab::with_capacity(initial),
            age: EMPTY,
            sources: Slab::new(),
            source_of: HashMap::new(),
            by_count: BTreeSet::new(),
            capacity,
            max_age,
            hop_limit,
        }
    }

    /// Applies the relay rule to a frame `from` a neighbour: deliver a new id once,
    /// relay it with `min(hops, hop limit) - 1` while that is at least 1. A peer's
    /// hops can thus shorten a broadcast's reach but never lengthen it past ours.
    pub(crate) fn receive(
        &mut self,
        id: [u8; 16],
        hops: u8,
        from: PeerId,
        now: Instant,
    ) -> Verdict {
        if !self.remember(id, from, now) {
            return Verdict::Duplicate;
        }
        let hops = hops.min(self.hop_limit);
        Verdict::Deliver {
            relay: (hops > 1).then(|| hops - 1),
        }
    }

    /// Records `id` as sent by `from` (ourselves for our own broadcasts); false if
    /// already known.
    pub(crate) fn remember(&mut self, id: [u8; 16], from: PeerId, now: Instant) -> bool {
        self.expire(now);
        if let Some(&e) = self.ids.get(&id) {
            self.seen_again(e, from);
            return false;
        }
        if self.ids.len() >= self.capacity {
            self.evict();
        }
        let owner = self.source(from);
        let e = self.entries.insert(Entry {
            id,
            at: now,
            owner,
            other: None,
            by_age: UNLINKED,
            by_owner: UNLINKED,
        }) as u32;
        push_back(&mut self.entries, &mut self.age, e, by_age);
        self.account(e, owner);
        self.ids.insert(id, e);
        true
    }

    /// Forgets ids older than the maximum age.
    pub(crate) fn expire(&mut self, now: Instant) {
        while self.age.first != NIL {
            let e = self.age.first;
            if now.saturating_duration_since(self.entries[e as usize].at) < self.max_age {
                break;
            }
            self.forget(e);
        }
    }

    /// Ids remembered now.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// `from` sent an id we hold: a source other than its owner may take it over.
    fn seen_again(&mut self, e: u32, from: PeerId) {
        let owner = self.entries[e as usize].owner;
        let (owner_peer, owner_count) = {
            let s = &self.sources[owner as usize];
            (s.peer, s.count)
        };
        if owner_peer == from {
            return;
        }
        // By two or more, so that two sources sending the same ids do not swap them
        // back and forth.
        if self.count_of(&from) + 1 < owner_count {
            if self.entries[e as usize].other == Some(from) {
                self.entries[e as usize].other = None;
            }
            self.reaccount(e, from);
            self.note_other(e, owner_peer);
        } else {
            self.note_other(e, from);
        }
    }

    /// Keeps `peer` as the entry's `other` if it holds fewer ids than the one kept.
    fn note_other(&mut self, e: u32, peer: PeerId) {
        let kept = self.entries[e as usize].other;
        let better = match kept {
            None => true,
            Some(kept) => self.count_of(&peer) < self.count_of(&kept),
        };
        if better {
            self.entries[e as usize].other = Some(peer);
        }
    }

    /// Makes room for one id: the oldest of the source holding the most goes, unless
    /// another source sent it too and holds fewer, in which case it moves there.
    fn evict(&mut self) {
        while let Some(&(count, s)) = self.by_count.last() {
            let e = self.sources[s as usize].ids.first;
            let owner_peer = self.sources[s as usize].peer;
            // Each pass that moves an id clears its `other`, set once per duplicate
            // received: this loop is O(1) amortised.
            if let Some(other) = self.entries[e as usize].other.take()
                && other != owner_peer
                && self.count_of(&other) + 1 < count
            {
                self.reaccount(e, other);
                continue;
            }
            self.forget(e);
            return;
        }
    }

    /// Ids accounted to `peer`.
    fn count_of(&self, peer: &PeerId) -> u32 {
        self.source_of
            .get(peer)
            .map_or(0, |&s| self.sources[s as usize].count)
    }

    /// The slot of `peer`'s record, made if it has none.
    fn source(&mut self, peer: PeerId) -> u32 {
        if let Some(&s) = self.source_of.get(&peer) {
            return s;
        }
        let s = self.sources.insert(Source {
            peer,
            count: 0,
            ids: EMPTY,
        }) as u32;
        self.source_of.insert(peer, s);
        self.by_count.insert((0, s));
        s
    }

    fn set_count(&mut self, s: u32, count: u32) {
        let source = &mut self.sources[s as usize];
        self.by_count.remove(&(source.count, s));
        source.count = count;
        self.by_count.insert((count, s));
    }

    /// Accounts `e` to source `s`, as its newest.
    fn account(&mut self, e: u32, s: u32) {
        self.entries[e as usize].owner = s;
        push_back(
            &mut self.entries,
            &mut self.sources[s as usize].ids,
            e,
            by_owner,
        );
        let count = self.sources[s as usize].count + 1;
        self.set_count(s, count);
    }

    /// Takes `e` off its owner's account, dropping the owner's record if it is empty.
    fn unaccount(&mut self, e: u32) {
        let s = self.entries[e as usize].owner;
        unlink(
            &mut self.entries,
            &mut self.sources[s as usize].ids,
            e,
            by_owner,
        );
        let count = self.sources[s as usize].count - 1;
        if count == 0 {
            let source = self.sources.remove(s as usize);
            self.by_count.remove(&(1, s));
            self.source_of.remove(&source.peer);
        } else {
            self.set_count(s, count);
        }
    }

    fn reaccount(&mut self, e: u32, to: PeerId) {
        self.unaccount(e);
        let s = self.source(to);
        self.account(e, s);
    }

    fn forget(&mut self, e: u32) {
        unlink(&mut self.entries, &mut self.age, e, by_age);
        self.unaccount(e);
        let entry = self.entries.remove(e as usize);
        self.ids.remove(&entry.id);
    }

    /// Checks every invariant of the structure (tests only).
    #[cfg(test)]
    fn check(&self) {
        assert!(self.ids.len() <= self.capacity);
        assert_eq!(self.ids.len(), self.entries.len());
        assert!(self.sources.len() <= self.ids.len());
        assert_eq!(self.sources.len(), self.source_of.len());
        assert_eq!(self.sources.len(), self.by_count.len());
        let mut total = 0;
        for (s, source) in &self.sources {
            assert!(source.count > 0);
            assert!(self.by_count.contains(&(source.count, s as u32)));
            let mut n = 0;
            let mut e = source.ids.first;
            while e != NIL {
                assert_eq!(self.entries[e as usize].owner, s as u32);
                n += 1;
                e = self.entries[e as usize].by_owner.next;
            }
            assert_eq!(n, source.count);
            total += n as usize;
        }
        assert_eq!(total, self.ids.len());
        let (mut n, mut e, mut last) = (0, self.age.first, None);
        while e != NIL {
            let entry = &self.entries[e as usize];
            assert_eq!(self.ids.get(&entry.id), Some(&e));
            assert!(last.is_none_or(|at| at <= entry.at));
            last = Some(entry.at);
            n += 1;
            e = entry.by_age.next;
        }
        assert_eq!(n, self.ids.len());
    }
}

/// The node's budget of new broadcasts it relays per second: half of
/// `max_gossip_rate`, shared between peers by a dynamic threshold. A broadcast from a
/// peer is relayed only while what that peer had relayed in the last second or so
/// (its [`RelayShare`]) is no more than what the budget has left: a peer flooding
/// settles where its share equals what is left, so the budget never runs dry for
/// peers sending less (one flooder takes about half of what they leave, N of them
/// 1/(N+1) each). Half, because every neighbour takes at most `max_gossip_rate` from us
/// per connection: were we to relay all a flooder is allowed, our relays would fill
/// that limit and our neighbours would drop the honest broadcasts we relay beside the
/// flood. A broadcast over the budget is still delivered and remembered; it is only
/// not relayed by us.
#[derive(Debug)]
pub(crate) struct RelayBudget {
    left: TokenBucket,
}

/// What one connection had relayed recently: a moving sum over about
/// [`RELAY_WINDOW`], which decays in proportion to itself, so that it stays near the
/// peer's rate times the window (a fixed-rate decay would forget a flooder as fast as
/// it sends, and the threshold would stop binding).
#[derive(Debug)]
pub(crate) struct RelayShare {
    /// Billionths of a broadcast.
    used: u128,
    last: Instant,
}

/// The window of a [`RelayShare`]'s moving sum.
const RELAY_WINDOW: Duration = Duration::from_secs(1);

impl RelayShare {
    fn decay(&mut self, now: Instant) {
        let window = RELAY_WINDOW.as_nanos();
        let elapsed = now
            .saturating_duration_since(self.last)
            .as_nanos()
            .min(window);
        self.used -= self.used * elapsed / window;
        self.last = self.last.max(now);
    }
}

impl RelayBudget {
    /// A full budget for a per-connection GOSSIP rate of `rate` frames a second.
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        let rate = (rate as usize / 2).max(1);
        RelayBudget {
            left: TokenBucket::new(rate, rate, now),
        }
    }

    /// A fresh share for a new connection.
    pub(crate) fn share(&self, now: Instant) -> RelayShare {
        RelayShare { used: 0, last: now }
    }

    /// Whether a new broadcast from the peer holding `share` may be relayed; if so,
    /// its token is taken from both.
    pub(crate) fn admit(&mut self, share: &mut RelayShare, now: Instant) -> bool {
        self.left.refill(now);
        share.decay(now);
        if !self.left.holds(1) || share.used > self.left.level() {
            return false;
        }
        self.left.take(1);
        share.used += NANOS;
        true
    }

    /// A broadcast of our own: it goes to every neighbour too, so it takes a token if
    /// one is left (it is never refused for it).
    pub(crate) fn spend(&mut self, now: Instant) {
        self.left.refill(now);
        if self.left.holds(1) {
            self.left.take(1);
        }
    }
}

/// The GOSSIP rate limit of one connection: frames and bytes a second, each a token
/// bucket. Kept per connection (in its socket), so the hot path needs no lookup and
/// the state goes with the connection; a peer that reconnects for a full bucket pays
/// a handshake each time, which the per-address handshake rate bounds.
#[derive(Debug)]
pub(crate) struct GossipLimit {
    frames: TokenBucket,
    bytes: TokenBucket,
}

impl GossipLimit {
    /// Full buckets for `config`'s rates. The byte bucket holds at least one frame of
    /// `max_frame_size`, so a largest gossip can pass.
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        let frames = config.max_gossip_rate as usize;
        let bytes = config.max_gossip_bytes_rate;
        GossipLimit {
            frames: TokenBucket::new(frames, frames, now),
            bytes: TokenBucket::new(bytes, bytes.max(config.max_frame_size), now),
        }
    }

    /// Whether a GOSSIP frame whose body (id, hops and payload) is `body` bytes is
    /// within both rates; if so, its tokens are taken.
    pub(crate) fn admit(&mut self, body: usize, now: Instant) -> bool {
        self.frames.refill(now);
        self.bytes.refill(now);
        if !(self.frames.holds(1) && self.bytes.holds(body)) {
            return false;
        }
        self.frames.take(1);
        self.bytes.take(body);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id
    }

    fn peer(n: u8) -> PeerId {
        PeerId::from_bytes([n; 32])
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// Ourselves, as the source of our own broadcasts.
    fn g_local() -> PeerId {
        peer(0)
    }

    #[test]
    fn delivers_once_and_relays_while_hops_remain() {
        let now = Instant::now();
        let mut g = Gossip::new(16, Duration::from_secs(60), 16);
        let p = peer(1);
        assert_eq!(
            g.receive(id(1), 3, p, now),
            Verdict::Deliver { relay: Some(2) }
        );
        assert_eq!(g.receive(id(1), 3, p, now), Verdict::Duplicate);
        assert_eq!(
            g.receive(id(2), 1, p, now),
            Verdict::Deliver { relay: None }
        );
        assert_eq!(
            g.receive(id(3), 0, p, now),
            Verdict::Deliver { relay: None }
        );
        g.check();
    }

    #[test]
    fn relayed_hops_never_exceed_the_local_limit() {
        let now = Instant::now();
        let mut g = Gossip::new(16, HOUR, 16);
        let p = peer(1);
        assert_eq!(
            g.receive(id(1), 255, p, now),
            Verdict::Deliver { relay: Some(15) }
        );
        assert_eq!(
            g.receive(id(2), 16, p, now),
            Verdict::Deliver { relay: Some(15) }
        );
        assert_eq!(
            g.receive(id(3), 17, p, now),
            Verdict::Deliver { relay: Some(15) }
        );
        assert_eq!(
            g.receive(id(4), 2, p, now),
            Verdict::Deliver { relay: Some(1) }
        );
        let mut one = Gossip::new(16, HOUR, 1);
        assert_eq!(
            one.receive(id(1), 255, p, now),
            Verdict::Deliver { relay: None }
        );
    }

    #[test]
    fn bounded_in_count_oldest_evicted() {
        let now = Instant::now();
        let mut g = Gossip::new(3, Duration::from_secs(60), 16);
        let p = peer(1);
        for n in 0..5 {
            assert!(g.remember(id(n), p, now));
        }
        assert_eq!(g.len(), 3);
        g.check();
        // One source: plain first-in first-out. 0 and 1 were evicted, so they count as
        // new again; 4 is still known.
        assert!(!g.remember(id(4), p, now));
        assert!(g.remember(id(0), p, now));
    }

    #[test]
    fn bounded_in_age() {
        let start = Instant::now();
        let mut g = Gossip::new(100, Duration::from_secs(10), 16);
        let p = peer(1);
        g.remember(id(1), p, start);
        g.remember(id(2), p, start + Duration::from_secs(5));
        g.expire(start + Duration::from_secs(10));
        assert_eq!(g.len(), 1);
        assert!(g.remember(id(1), p, start + Duration::from_secs(10)));
        assert!(!g.remember(id(2), p, start + Duration::from_secs(11)));
        g.check();
    }

    #[test]
    fn evicts_the_oldest_of_the_source_holding_most() {
        let now = Instant::now();
        let mut g = Gossip::new(8, HOUR, 16);
        for n in 0..3 {
            g.remember(id(n), peer(1), now);
        }
        for n in 10..15 {
            g.remember(id(n), peer(2), now);
        }
        // Full: 3 of peer 1, 5 of peer 2. A new id of peer 3 evicts peer 2's oldest.
        assert!(g.remember(id(20), peer(3), now));
        g.check();
        assert_eq!(g.len(), 8);
        assert_eq!((g.count_of(&peer(1)), g.count_of(&peer(2))), (3, 4));
        assert!(!g.remember(id(11), peer(3), now), "11 is still known");
        assert!(g.remember(id(10), peer(3), now), "10 was evicted");
    }

    #[test]
    fn a_flooding_source_evicts_only_its_own_ids() {
        let now = Instant::now();
        let mut g = Gossip::new(64, HOUR, 16);
        let (honest, flooder) = (peer(1), peer(2));
        for n in 0..10 {
            g.remember(id(n), honest, now);
        }
        g.remember(id(u32::MAX), g_local(), now);
        for n in 100..100_000 {
            assert!(g.remember(id(n), flooder, now));
        }
        g.check();
        assert_eq!(g.len(), 64);
        for n in 0..10 {
            assert!(
                !g.remember(id(n), flooder, now),
                "honest id {n} was evicted"
            );
        }
        assert!(
            !g.remember(id(u32::MAX), honest, now),
            "our own id was evicted"
        );
    }

    #[test]
    fn an_id_first_sent_by_the_flooder_then_by_an_honest_peer_stays() {
        let now = Instant::now();
        let mut g = Gossip::new(64, HOUR, 16);
        let (honest, flooder) = (peer(1), peer(2));
        // The honest peer is busy: it holds more ids than the flooder when both send
        // `shared`, so the id is not moved at once, only marked.
        for n in 0..20 {
            g.remember(id(n), honest, now);
        }
        let shared = id(500);
        assert!(g.remember(shared, flooder, now));
        assert!(!g.remember(shared, honest, now));
        for n in 1000..50_000 {
            assert!(g.remember(id(n), flooder, now));
        }
        g.check();
        assert!(
            !g.remember(shared, honest, now),
            "the shared id was evicted"
        );
        assert!(
            !g.remember(shared, flooder, now),
            "the shared id was evicted"
        );
        for n in 0..20 {
            assert!(
                !g.remember(id(n), flooder, now),
                "honest id {n} was evicted"
            );
        }
    }

    #[test]
    fn a_second_source_holding_fewer_takes_an_id_at_once() {
        let now = Instant::now();
        let mut g = Gossip::new(64, HOUR, 16);
        let (honest, flooder) = (peer(1), peer(2));
        for n in 0..10 {
            g.remember(id(n), flooder, now);
        }
        assert!(!g.remember(id(3), honest, now));
        g.check();
        assert_eq!((g.count_of(&honest), g.count_of(&flooder)), (1, 9));
        // And the two do not swap it back and forth.
        assert!(!g.remember(id(3), flooder, now));
        assert_eq!((g.count_of(&honest), g.count_of(&flooder)), (1, 9));
    }

    #[test]
    fn many_sources_stay_within_bounds() {
        let start = Instant::now();
        let mut g = Gossip::new(50, Duration::from_secs(30), 16);
        // A deterministic mix of fresh ids, duplicates from other sources and time
        // passing, checked against every invariant along the way.
        let mut x: u32 = 12345;
        for step in 0..20_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let now = start + Duration::from_millis(u64::from(step) * 7);
            let source = peer((x >> 8) as u8 % 7);
            let n = if x.is_multiple_of(3) {
                step
            } else {
                (x >> 12) % 200
            };
            g.remember(id(n), source, now);
            if step.is_multiple_of(97) {
                g.check();
            }
            assert!(g.len() <= 50);
            assert!(g.sources.len() <= 50);
        }
        g.check();
        g.expire(start + Duration::from_secs(3600));
        assert_eq!(g.len(), 0);
        assert_eq!(
            (g.sources.len(), g.by_count.len(), g.source_of.len()),
            (0, 0, 0)
        );
    }

    fn limit_config(rate: u32, bytes: usize) -> Config {
        Config {
            max_gossip_rate: rate,
            max_gossip_bytes_rate: bytes,
            max_frame_size: 1000,
            ..Config::default()
        }
    }

    #[test]
    fn frames_over_the_rate_are_refused_then_refilled() {
        let start = Instant::now();
        let mut limit = GossipLimit::new(&limit_config(10, 1 << 20), start);
        let admitted = (0..100).filter(|_| limit.admit(20, start)).count();
        assert_eq!(admitted, 10, "the burst is the rate");
        assert!(!limit.admit(20, start + Duration::from_millis(99)));
        assert!(limit.admit(20, start + Duration::from_millis(100)));
        assert!(!limit.admit(20, start + Duration::from_millis(100)));
        // A long silence refills no more than the burst.
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| limit.admit(20, later)).count(), 10);
    }

    #[test]
    fn bytes_over_the_rate_are_refused_and_a_largest_frame_passes() {
        let start = Instant::now();
        // 100 bytes a second, but frames of up to 1000 bytes: the bucket holds 1000.
        let mut limit = GossipLimit::new(&limit_config(1000, 100), start);
        assert!(limit.admit(1000, start));
        assert!(!limit.admit(17, start));
        assert!(!limit.admit(17, start + Duration::from_millis(169)));
        assert!(limit.admit(17, start + Duration::from_millis(170)));
        // A frame refused for bytes takes no frame token, and the reverse.
        let mut limit = GossipLimit::new(&limit_config(2, 1000), start);
        assert!(!limit.admit(1001, start));
        assert!(limit.admit(10, start));
        assert!(limit.admit(10, start));
        assert!(!limit.admit(10, start));
    }
}

#[cfg(test)]
mod relay_tests {
    use super::*;

    /// Relayed broadcasts of a flooder (40 a second) and of an honest peer (10 a
    /// second) through a budget of 20 a second, over 5 s.
    fn relayed(flooders: usize) -> (usize, usize) {
        let t0 = Instant::now();
        let mut budget = RelayBudget::new(40, t0);
        let mut shares: Vec<RelayShare> = (0..flooders).map(|_| budget.share(t0)).collect();
        let mut honest = budget.share(t0);
        let (mut flood, mut kept) = (0, 0);
        for ms in 0..5000u64 {
            let now = t0 + Duration::from_millis(ms);
            for share in &mut shares {
                if ms % 25 == 0 && budget.admit(share, now) {
                    flood += 1;
                }
            }
            if ms % 100 == 0 && budget.admit(&mut honest, now) {
                kept += 1;
            }
        }
        (flood, kept)
    }

    #[test]
    fn flooders_leave_room_for_a_peer_sending_less() {
        // One flooder: the honest peer, under half the budget, loses nothing.
        let (flood, honest) = relayed(1);
        assert_eq!(honest, 50, "honest relayed {honest}/50");
        assert!(
            flood > 0 && flood + honest <= 20 * 5 + 20,
            "{flood} + {honest}"
        );
        // Three: the honest peer asks for more than a fair quarter of the budget, and
        // gets at least that quarter (25 of 120 tokens over 5 s, burst included).
        let (flood, honest) = relayed(3);
        assert!(honest >= 25, "honest relayed {honest}/50");
        assert!(flood + honest <= 20 * 5 + 20, "{flood} + {honest}");
    }
}
