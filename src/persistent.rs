//! Persistent peers: addresses the node keeps dialling, with backoff, for as long as
//! the application wants them.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::node::ConnId;
use crate::peer::PeerId;
use crate::rng::Rng;
use crate::timers::Timers;

/// How long to wait before the next dial of a persistent peer that has failed
/// `failures` times in a row since its last lasting session (0 after one ended):
/// `base` doubled per failure, at most `cap`, less a random part of up to `jitter` of
/// it, so that many nodes that lost the same peer at once do not redial it in step.
/// `draw` is 64 random bits.
pub(crate) fn backoff(
    failures: u32,
    base: Duration,
    cap: Duration,
    jitter: f64,
    draw: u64,
) -> Duration {
    let full = base
        .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    // The part taken off, in 32-bit fixed point: `jitter` times a uniform draw in
    // [0, 1), applied in integers so that no wait, however long, can overflow a float.
    let fraction = (draw >> 32) as f64 / (1u64 << 32) as f64;
    let scaled = (jitter.clamp(0.0, 1.0) * fraction * (1u64 << 32) as f64) as u128;
    let off = (full.as_nanos() * scaled) >> 32;
    let off = Duration::new(
        u64::try_from(off / 1_000_000_000).unwrap_or(u64::MAX),
        (off % 1_000_000_000) as u32,
    );
    full.saturating_sub(off)
}

/// What the node knows of one persistent peer.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The id the application expects at the address, if it said one: a different
    /// proven id closes the connection (`CloseReason::UnexpectedPeer`).
    pub(crate) expected: Option<PeerId>,
    /// The id proven at the address, once a dial to it finished its handshake (the
    /// expected one, if given): while that peer is connected, whoever dialled, the
    /// address is not dialled. Set through [`Persistent::set_known`] (indexed).
    pub(crate) known: Option<PeerId>,
    /// Our dial to the address, while it connects or handshakes.
    pub(crate) dial: Option<ConnId>,
    /// Dials that failed in a row since the last lasting session (one of at least
    /// `redial_max`; a shorter one counts as a failure).
    pub(crate) failures: u32,
    /// When the session our dial started began, while it lasts.
    pub(crate) session_since: Option<Instant>,
}

/// A redial the node scheduled, for [`crate::Event::Redialing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Redial {
    pub(crate) addr: SocketAddr,
    pub(crate) peer: Option<PeerId>,
    pub(crate) attempt: u32,
    pub(crate) after: Duration,
}

/// The persistent peers, by address, and when each is dialled next. Addresses are the
/// application's, never a peer's, so the table is as large as the application makes
/// it (the node bounds it by `max_outbound`).
#[derive(Debug, Default)]
pub(crate) struct Persistent {
    entries: HashMap<SocketAddr, Entry>,
    /// Each address's next dial, for those waiting for one.
    due: Timers<SocketAddr>,
    /// The addresses by their known id, so a peer's loss finds its own addresses
    /// without a pass over every entry. Ids come from peers: the keyed hash.
    by_peer: HashMap<PeerId, BTreeSet<SocketAddr>>,
}

impl Persistent {
    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `addr` is one.
    pub(crate) fn contains(&self, addr: &SocketAddr) -> bool {
        self.entries.contains_key(addr)
    }

    /// Whether `peer` is the id proven at one.
    pub(crate) fn is_known(&self, peer: &PeerId) -> bool {
        self.by_peer.contains_key(peer)
    }

    /// Adds `addr`, to be dialled at `now`, or changes the id it is expected to have
    /// (looked for at `now` if it waited for no dial).
    pub(crate) fn add(&mut self, addr: SocketAddr, expected: Option<PeerId>, now: Instant) {
        if let Some(entry) = self.entries.get_mut(&addr) {
            entry.expected = expected;
            if expected.is_some() && entry.known != expected {
                // One waiting for the peer it knew to go would wait for the wrong
                // one: it looks for the new one now (`redial` skips a connected one).
                if entry.dial.is_none() && self.due.get(addr).is_none() {
                    self.due.set(addr, Some(now));
                }
                self.set_known(addr, expected);
            }
            return;
        }
        self.entries.insert(
            addr,
            Entry {
                expected,
                known: None,
                dial: None,
                failures: 0,
                session_since: None,
            },
        );
        self.set_known(addr, expected);
        self.due.set(addr, Some(now));
    }

    /// Forgets `addr`; a dial under way goes on as an ordinary one. False if it was
    /// not one.
    pub(crate) fn remove(&mut self, addr: &SocketAddr) -> bool {
        self.due.set(*addr, None);
        self.set_known(*addr, None);
        self.entries.remove(addr).is_some()
    }

    /// Records `peer` as the id known at `addr`, keeping the index by id.
    pub(crate) fn set_known(&mut self, addr: SocketAddr, peer: Option<PeerId>) {
        let Some(entry) = self.entries.get_mut(&addr) else {
            return;
        };
        let old = std::mem::replace(&mut entry.known, peer);
        if old == peer {
            return;
        }
        if let Some(old) = old
            && let Some(addrs) = self.by_peer.get_mut(&old)
        {
            addrs.remove(&addr);
            if addrs.is_empty() {
                self.by_peer.remove(&old);
            }
        }
        if let Some(peer) = peer {
            self.by_peer.entry(peer).or_default().insert(addr);
        }
    }

    /// A dial of `addr` failed, or could not start: its next wait is one step longer.
    pub(crate) fn failed(&mut self, addr: &SocketAddr) {
        if let Some(entry) = self.entries.get_mut(addr) {
            entry.failures = entry.failures.saturating_add(1);
        }
    }

    /// The session our dial of `addr` began ended at `now`: one that lasted `lasting`
    /// starts the backoff over, a shorter one counts as a failed dial (a peer that
    /// takes the handshake and closes is backed off too). One the peer dialled
    /// itself (no start recorded) counts as lasting.
    pub(crate) fn session_ended(&mut self, addr: &SocketAddr, lasting: Duration, now: Instant) {
        if let Some(entry) = self.entries.get_mut(addr) {
            match entry.session_since.take() {
                Some(since) if now.saturating_duration_since(since) < lasting => {
                    entry.failures = entry.failures.saturating_add(1);
                }
                _ => entry.failures = 0,
            }
        }
    }

    /// The entry of `addr`.
    pub(crate) fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Entry> {
        self.entries.get_mut(addr)
    }

    /// The addresses whose proven id is `peer` and that wait for no dial: those to
    /// dial again now that the peer is gone.
    pub(crate) fn idle_for(&self, peer: PeerId) -> Vec<SocketAddr> {
        // In address order: a fixed order keeps simulated runs reproducible.
        self.by_peer
            .get(&peer)
            .into_iter()
            .flatten()
            .filter(|addr| {
                self.entries.get(*addr).is_some_and(|e| e.dial.is_none())
                    && self.due.get(**addr).is_none()
            })
            .copied()
            .collect()
    }

    /// Schedules the next dial of `addr` after its backoff, drawing the jitter from
    /// `rng`; `None` if it is not one.
    pub(crate) fn schedule(
        &mut self,
        addr: SocketAddr,
        (base, cap, jitter): (Duration, Duration, f64),
        rng: &mut Rng,
        now: Instant,
    ) -> Option<Redial> {
        let entry = self.entries.get(&addr)?;
        let after = backoff(entry.failures, base, cap, jitter, rng.next_u64());
        self.due.set(addr, Some(now + after));
        Some(Redial {
            addr,
            peer: entry.known,
            attempt: entry.failures + 1,
            after,
        })
    }

    /// Schedules the next dial of `addr` at `at` (the end of its peer's ban), its
    /// backoff unchanged; `None` if it is not one.
    pub(crate) fn schedule_at(
        &mut self,
        addr: SocketAddr,
        at: Instant,
        now: Instant,
    ) -> Option<Redial> {
        let entry = self.entries.get(&addr)?;
        self.due.set(addr, Some(at));
        Some(Redial {
            addr,
            peer: entry.known,
            attempt: entry.failures + 1,
            after: at.saturating_duration_since(now),
        })
    }

    /// Makes every entry `which` picks due at `now`, from the first wait.
    pub(crate) fn restart(&mut self, mut which: impl FnMut(&Entry) -> bool, now: Instant) {
        for (addr, entry) in &mut self.entries {
            if which(entry) {
                entry.failures = 0;
                self.due.set(*addr, Some(now));
            }
        }
    }

    /// Makes the addresses known to be `peer` and not being dialled due at `now`,
    /// from the first wait.
    pub(crate) fn restart_known(&mut self, peer: PeerId, now: Instant) {
        for addr in self.by_peer.get(&peer).into_iter().flatten() {
            if let Some(entry) = self.entries.get_mut(addr).filter(|e| e.dial.is_none()) {
                entry.failures = 0;
                self.due.set(*addr, Some(now));
            }
        }
    }

    /// When the next dial is due.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.due.next()
    }

    /// Takes the addresses due by `now` into `into`, earliest first.
    pub(crate) fn take_due(&mut self, now: Instant, into: &mut Vec<SocketAddr>) {
        self.due.take_due(now, into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap() {
        let no_jitter = |n| backoff(n, BASE, CAP, 0.0, u64::MAX);
        assert_eq!(no_jitter(0), BASE);
        assert_eq!(no_jitter(1), 2 * BASE);
        assert_eq!(no_jitter(5), 32 * BASE);
        assert_eq!(no_jitter(6), CAP);
        assert_eq!(no_jitter(40), CAP, "a shift past the width saturates");
        assert_eq!(no_jitter(u32::MAX), CAP);
        assert_eq!(
            backoff(100, Duration::MAX, Duration::MAX, 0.0, 0),
            Duration::MAX
        );
    }

    #[test]
    fn jitter_takes_up_to_its_fraction_off_and_follows_the_draw() {
        let full = 4 * BASE;
        assert_eq!(
            backoff(2, BASE, CAP, 0.5, 0),
            full,
            "draw 0 takes nothing off"
        );
        let most = backoff(2, BASE, CAP, 0.5, u64::MAX);
        assert!(most > full / 2 && most < full, "{most:?}");
        let half = backoff(2, BASE, CAP, 0.5, 1 << 63);
        assert_eq!(half, full.mul_f64(0.75));
        assert_eq!(
            backoff(100, Duration::MAX, Duration::MAX, 1.0, 1 << 63),
            Duration::MAX - Duration::MAX / 2,
            "no overflow at the longest wait"
        );
        // Out-of-range jitter is clamped, never negative or above the full wait.
        assert_eq!(backoff(2, BASE, CAP, 7.0, 1 << 63), full / 2);
        assert_eq!(backoff(2, BASE, CAP, -1.0, u64::MAX), full);
        // Different draws spread the waits: nodes do not redial in step.
        let mut rng = Rng::from_seed(1);
        let waits: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| backoff(3, BASE, CAP, 0.5, rng.next_u64()))
            .collect();
        assert!(waits.len() > 15, "{waits:?}");
    }

    #[test]
    fn an_added_address_is_due_at_once_and_a_removed_one_never() {
        let now = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) =
            ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap());
        let mut table = Persistent::default();
        table.add(a, None, now);
        table.add(b, None, now);
        assert_eq!(table.len(), 2);
        assert_eq!(table.next(), Some(now));
        assert!(table.remove(&b));
        assert!(!table.remove(&b));
        let mut due = Vec::new();
        table.take_due(now, &mut due);
        assert_eq!(due, vec![a]);
        assert_eq!(table.next(), None);
    }

    #[test]
    fn a_schedule_counts_the_attempt_and_keeps_the_known_id() {
        let now = Instant::now();
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let id = PeerId::from_bytes([4; 32]);
        let mut table = Persistent::default();
        table.add(addr, Some(id), now);
        table.take_due(now, &mut Vec::new());
        table.get_mut(&addr).unwrap().failures = 2;
        let mut rng = Rng::from_seed(3);
        let redial = table
            .schedule(addr, (BASE, CAP, 0.0), &mut rng, now)
            .unwrap();
        assert_eq!(
            redial,
            Redial {
                addr,
                peer: Some(id),
                attempt: 3,
                after: 4 * BASE
            }
        );
        assert_eq!(table.next(), Some(now + 4 * BASE));
        // While it waits for a dial, the peer going away schedules nothing more.
        assert!(table.idle_for(id).is_empty());
        table.take_due(now + 4 * BASE, &mut Vec::new());
        assert_eq!(table.idle_for(id), vec![addr]);
    }

    #[test]
    fn the_index_by_id_follows_the_known_ids() {
        let now = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) =
            ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap());
        let (p, q) = (PeerId::from_bytes([1; 32]), PeerId::from_bytes([2; 32]));
        let mut table = Persistent::default();
        table.add(b, Some(p), now);
        table.add(a, None, now);
        table.take_due(now, &mut Vec::new());
        table.set_known(a, Some(p));
        assert_eq!(table.idle_for(p), vec![a, b], "in address order");
        table.add(b, Some(q), now);
        assert_eq!(table.idle_for(p), vec![a]);
        assert!(table.idle_for(q).is_empty(), "due at once: it looks for q");
        assert!(table.remove(&a) && table.remove(&b));
        assert!(table.by_peer.is_empty());
    }
}
