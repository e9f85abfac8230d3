//! The in-memory link driver: TCP-like links between simulated nodes (latency, bandwidth,
//! window, partitions, resets) and the actions that move bytes over them into each node core.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use super::{Action, Agenda, FnvWriter, NodeIndex, Sim, SimConfig, fnv};
use crate::event::Event;
use crate::node::{ConnId, Flushed, Node, Sent, Wire};
use crate::queue::OutQueue;
use crate::rng::Rng;
use crate::socket::Phase;

/// One direction of a link.
#[derive(Debug)]
pub(super) struct Direction {
    /// Bytes sent and not yet read by the other end.
    pub(super) in_flight: usize,
    /// When the link finishes putting the bytes sent so far on the wire.
    pub(super) busy_until: Instant,
    /// When the last bytes sent arrive: later bytes never overtake them.
    pub(super) last_arrival: Instant,
    /// The write side was shut.
    pub(super) fin: bool,
    /// The FIN arrived while earlier bytes were still unread: the reader sees the end
    /// of the stream once it has read them, as over TCP.
    pub(super) fin_pending: bool,
    /// Deliveries sent and read so far, and those that arrived ahead of their turn
    /// (held by a partition or parked behind a slow reader while later ones were not):
    /// the receiver reads them in the order they were sent, as TCP reassembles them.
    pub(super) sent: u64,
    pub(super) read: u64,
    pub(super) early: BTreeMap<u64, Bytes>,
    /// The rest of delivery `read`, which the receiver stopped reading for want of
    /// receive budget: it stays in flight until the receiver resumes.
    pub(super) paused: Option<Bytes>,
}

/// One direction of a link as the sending node's write sequence sees it: bytes leave
/// as far as the window allows, each write one delivery after the link's latency.
struct LinkWire<'a> {
    link: usize,
    dir: usize,
    direction: &'a mut Direction,
    config: &'a SimConfig,
    rng: &'a mut Rng,
    agenda: &'a mut Agenda,
    now: Instant,
}

impl Wire for LinkWire<'_> {
    fn send(&mut self, queue: &OutQueue) -> Sent {
        let d = &mut *self.direction;
        let room = self.config.window - d.in_flight;
        let n = queue.len().min(room);
        if n == 0 {
            return Sent::Blocked;
        }
        let mut bytes = Vec::with_capacity(n);
        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let count = queue.slices(&mut slices);
        for s in &slices[..count] {
            let take = s.len().min(n - bytes.len());
            bytes.extend_from_slice(&s[..take]);
        }
        let n = bytes.len();
        d.in_flight += n;
        let wire = Duration::from_nanos(
            (n as u64).saturating_mul(1_000_000_000) / self.config.bandwidth.max(1),
        );
        d.busy_until = d.busy_until.max(self.now) + wire;
        let jitter = if self.config.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.next_u64() % (self.config.jitter.as_nanos() as u64 + 1))
        };
        let at = (d.busy_until + self.config.latency + jitter).max(d.last_arrival);
        d.last_arrival = at;
        let sent = d.sent;
        d.sent += 1;
        self.agenda.push(
            at,
            Action::Deliver {
                link: self.link,
                dir: self.dir,
                bytes: Bytes::from(bytes),
                n: sent,
            },
        );
        Sent::Wrote(n)
    }

    fn shutdown_write(&mut self) {
        let d = &mut *self.direction;
        if !d.fin {
            d.fin = true;
            let at = d.last_arrival.max(self.now + self.config.latency);
            self.agenda.push(
                at,
                Action::Fin {
                    link: self.link,
                    dir: self.dir,
                },
            );
        }
    }
}

/// A connection: end 0 dialled end 1.
#[derive(Debug)]
pub(super) struct Link {
    /// The dialler and the node dialled, for as long as the link exists.
    pub(super) nodes: [NodeIndex; 2],
    /// Each end's node and connection; `None` once that end is gone.
    pub(super) ends: [Option<(NodeIndex, ConnId)>; 2],
    pub(super) dirs: [Direction; 2],
}

/// The links, by an id never reused: an action scheduled for a link that is gone must
/// find nothing, not the link that took its place.
#[derive(Debug, Default)]
pub(super) struct Links {
    pub(super) map: BTreeMap<usize, Link>,
    pub(super) next: usize,
}

impl Links {
    pub(super) fn insert(&mut self, link: Link) -> usize {
        let id = self.next;
        self.next += 1;
        self.map.insert(id, link);
        id
    }

    pub(super) fn get(&self, id: usize) -> Option<&Link> {
        self.map.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: usize) -> Option<&mut Link> {
        self.map.get_mut(&id)
    }

    pub(super) fn remove(&mut self, id: usize) {
        self.map.remove(&id);
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

impl std::ops::Index<usize> for Links {
    type Output = Link;

    /// The link a node's connection maps to, which exists while the map holds it.
    fn index(&self, id: usize) -> &Link {
        &self.map[&id]
    }
}

impl std::ops::IndexMut<usize> for Links {
    fn index_mut(&mut self, id: usize) -> &mut Link {
        self.map.get_mut(&id).expect("a node's link is in the map")
    }
}

impl Sim {
    pub(super) fn run(&mut self, action: Action) {
        let now = self.now;
        if let Action::Deliver { link, dir, .. }
        | Action::Fin { link, dir }
        | Action::Reset { link, dir } = action
            && self.across_partition(link, dir)
        {
            self.held.push(action);
            return;
        }
        match action {
            Action::Syn { link } => {
                let Some(l) = self.links.get(link) else {
                    return;
                };
                let (to, Some((from, _))) = (l.nodes[1], l.ends[0]) else {
                    return;
                };
                let from_addr = self.nodes[from].addr;
                let refused = self.config.refuse_per_million > 0
                    && (self.rng.next_u64() % 1_000_000)
                        < u64::from(self.config.refuse_per_million);
                let accepted = if refused || self.nodes[to].side != self.nodes[from].side {
                    None
                } else {
                    self.core(to)
                        .and_then(|n| n.handle_accept(from_addr, now))
                        .map(|c| (to, c))
                };
                let back = now + self.config.latency;
                match accepted {
                    Some((to, c)) => {
                        if let Some(l) = self.links.get_mut(link) {
                            l.ends[1] = Some((to, c));
                        }
                        self.nodes[to].links.insert(c, link);
                        self.schedule(back, Action::SynAck { link });
                        self.settle(to);
                    }
                    None => self.schedule(back, Action::Refused { link }),
                }
            }
            Action::SynAck { link } => {
                self.at_end(self.receiver(link, 1), |node, conn| {
                    node.handle_connected(conn, now)
                });
            }
            Action::Refused { link } => self.at_end(self.receiver(link, 1), |node, conn| {
                node.handle_connect_failed(conn, std::io::ErrorKind::ConnectionRefused, now)
            }),
            Action::Deliver {
                link,
                dir,
                bytes,
                n,
            } => self.deliver(link, dir, bytes, n),
            Action::Fin { link, dir } => {
                let unread = self.links.get_mut(link).is_some_and(|l| {
                    let d = &mut l.dirs[dir];
                    d.fin_pending = d.read < d.sent;
                    d.fin_pending
                });
                if !unread {
                    self.at_end(self.receiver(link, dir), |node, conn| {
                        node.handle_eof(conn, now)
                    });
                }
            }
            Action::Reset { link, dir } => self.at_end(self.receiver(link, dir), |node, conn| {
                node.handle_io_error(conn, std::io::ErrorKind::ConnectionReset, now)
            }),
            Action::Timer { node: index } => {
                if self.nodes[index].timer == Some(now) {
                    self.nodes[index].timer = None;
                    if let Some(node) = self.core(index) {
                        node.handle_timeout(now);
                    }
                    self.settle(index);
                }
            }
        }
    }

    /// Whether `dir` of `link` crosses the partition (its sender's side is not its
    /// receiver's; a crashed end counts from where it was).
    fn across_partition(&self, link: usize, dir: usize) -> bool {
        self.links
            .get(link)
            .is_some_and(|l| self.nodes[l.nodes[dir]].side != self.nodes[l.nodes[1 - dir]].side)
    }

    /// Runs `f` on the core holding `end`, if it is up, then settles that node.
    fn at_end(&mut self, end: Option<(NodeIndex, ConnId)>, f: impl FnOnce(&mut Node, ConnId)) {
        if let Some((index, conn)) = end
            && let Some(node) = self.core(index)
        {
            f(node, conn);
            self.settle(index);
        }
    }

    /// The end that reads `dir` of `link` (the dialler for `dir` 1), if it is still
    /// there.
    fn receiver(&self, link: usize, dir: usize) -> Option<(NodeIndex, ConnId)> {
        self.links.get(link).and_then(|l| l.ends[1 - dir])
    }

    fn deliver(&mut self, link: usize, dir: usize, bytes: Bytes, n: u64) {
        let Some((to, conn)) = self.receiver(link, dir) else {
            return;
        };
        // Bytes that overtook earlier ones wait for them.
        let d = &mut self.links[link].dirs[dir];
        if n != d.read {
            d.early.insert(n, bytes);
            return;
        }
        // A node that stopped reading takes nothing; the bytes stay in flight.
        if self.nodes[to].read_rate == Some(0) {
            let delivery = Action::Deliver {
                link,
                dir,
                bytes,
                n,
            };
            self.nodes[to].unread.push(delivery);
            return;
        }
        // A slow reader takes the bytes later; they stay in flight until then.
        if let Some(rate) = self.nodes[to].read_rate {
            let now = self.now;
            let ready = self.nodes[to].read_busy_until;
            if ready > now {
                self.schedule(
                    ready,
                    Action::Deliver {
                        link,
                        dir,
                        bytes,
                        n,
                    },
                );
                return;
            }
            let cost =
                Duration::from_nanos((bytes.len() as u64).saturating_mul(1_000_000_000) / rate);
            self.nodes[to].read_busy_until = now + cost;
        }
        let now = self.now;
        // The wire bytes join the trace too (their start: handshake messages and
        // record headers), so a run whose keys were not seeded would not repeat.
        let head = &bytes[..bytes.len().min(64)];
        let mut hash = fnv(
            self.trace,
            &((now - self.epoch).as_nanos() as u64).to_le_bytes(),
        );
        hash = fnv(hash, &(link as u64 * 2 + dir as u64).to_le_bytes());
        hash = fnv(hash, &(bytes.len() as u64).to_le_bytes());
        self.trace = fnv(hash, head);
        let len = bytes.len();
        let mut rest = bytes;
        let mut paused = false;
        if let Some(node) = self.core(to) {
            let taken = node.handle_bytes(conn, &rest, now);
            rest.advance(taken);
            paused = !rest.is_empty() && node.is_read_paused(conn);
        }
        let read = if paused { len - rest.len() } else { len };
        let sender = self.links.get_mut(link).and_then(|l| {
            l.dirs[dir].in_flight -= read;
            if paused {
                l.dirs[dir].paused = Some(rest);
            }
            l.ends[dir]
        });
        self.settle(to);
        // The sender's window opened: what waited on it leaves now.
        if let Some((sender, conn)) = sender
            && self.nodes[sender].node.is_some()
        {
            self.pump(sender, conn);
            self.settle(sender);
        }
        if paused {
            return;
        }
        // The next bytes, if they arrived ahead of these; or the end of the stream, if
        // it arrived ahead of them and these were the last.
        let mut eof = false;
        let next = self.links.get_mut(link).and_then(|l| {
            let d = &mut l.dirs[dir];
            d.read += 1;
            eof = d.fin_pending && d.read == d.sent;
            d.fin_pending &= !eof;
            d.early.remove(&d.read).map(|b| (b, d.read))
        });
        if let Some((bytes, n)) = next {
            self.deliver(link, dir, bytes, n);
        } else if eof {
            let now = self.now;
            self.at_end(self.receiver(link, dir), |node, conn| {
                node.handle_eof(conn, now)
            });
        }
    }

    /// After anything touched node `index`: moves its output onto its links, frees
    /// its closed sockets, records its events and schedules its next timer.
    pub(super) fn settle(&mut self, index: NodeIndex) {
        while let Some((conn, addr)) = self.nodes[index].node.as_mut().and_then(|n| n.poll_dial()) {
            self.connect(index, conn, addr);
        }
        let Some(node) = self.nodes[index].node.as_mut() else {
            return;
        };
        let mut dirty = std::mem::take(&mut self.scratch);
        node.poll_flush(&mut dirty);
        for &conn in &dirty {
            self.pump(index, conn);
        }
        dirty.clear();
        if let Some(node) = self.nodes[index].node.as_mut() {
            node.poll_read(&mut dirty);
        }
        for &conn in &dirty {
            self.resume_reading(index, conn);
        }
        dirty.clear();
        self.scratch = dirty;
        self.record(index);
        let next = self.nodes[index]
            .node
            .as_ref()
            .and_then(|n| n.poll_timeout());
        if let Some(at) = next {
            let at = at.max(self.now);
            if self.nodes[index].timer.is_none_or(|t| t > at) {
                self.nodes[index].timer = Some(at);
                self.schedule(at, Action::Timer { node: index });
            }
        }
    }

    /// Node `index` reads `conn` again after a pause: the rest of the delivery it
    /// stopped in is read now.
    fn resume_reading(&mut self, index: NodeIndex, conn: ConnId) {
        let Some(&link) = self.nodes[index].links.get(&conn) else {
            return;
        };
        let Some(l) = self.links.get_mut(link) else {
            return;
        };
        // The direction this end reads: the one whose receiver it is.
        let dir = usize::from(l.ends[0] == Some((index, conn)));
        if let Some(rest) = l.dirs[dir].paused.take() {
            let n = l.dirs[dir].read;
            let now = self.now;
            self.schedule(
                now,
                Action::Deliver {
                    link,
                    dir,
                    bytes: rest,
                    n,
                },
            );
        }
    }

    /// Moves what `conn` of node `index` has to send onto its link, as far as the
    /// window allows, and its half-close or close after it.
    fn pump(&mut self, index: NodeIndex, conn: ConnId) {
        let now = self.now;
        let Some(&link) = self.nodes[index].links.get(&conn) else {
            return;
        };
        let dir = usize::from(self.links[link].ends[1].is_some_and(|e| e == (index, conn)));
        let connected = self.links[link].ends[1].is_some();
        let Some(node) = self.nodes[index].node.as_mut() else {
            return;
        };
        // Until the other end accepts, a dial has nowhere to send; it may still close.
        if !connected && node.phase(conn) != Some(Phase::Closed) {
            return;
        }
        let mut wire = LinkWire {
            link,
            dir,
            direction: &mut self.links[link].dirs[dir],
            config: &self.config,
            rng: &mut self.rng,
            agenda: &mut self.agenda,
            now,
        };
        if node.flush(conn, &mut wire, now) != Flushed::Freed {
            return;
        }
        self.nodes[index].links.remove(&conn);
        let l = &mut self.links[link];
        l.ends[dir] = None;
        // A close without a shut write side reaches the other end as its end.
        if !l.dirs[dir].fin && l.ends[1 - dir].is_some() {
            l.dirs[dir].fin = true;
            let at = l.dirs[dir].last_arrival.max(now + self.config.latency);
            self.agenda.push(at, Action::Fin { link, dir });
        }
        if l.ends.iter().all(Option::is_none) {
            self.links.remove(link);
        }
    }

    /// Appends node `index`'s new events to its list and to the trace.
    fn record(&mut self, index: NodeIndex) {
        let sim_node = &mut self.nodes[index];
        let Some(node) = sim_node.node.as_mut() else {
            return;
        };
        let start = sim_node.events.len();
        node.poll_events(&mut sim_node.events);
        let at = (self.now - self.epoch).as_nanos() as u64;
        for event in &sim_node.events[start..] {
            if let Event::PeerConnected { peer, .. } | Event::PeerDisconnected { peer, .. } = event
            {
                self.changed.insert((index, *peer), self.traced);
            }
            let mut hash = fnv(self.trace, &at.to_le_bytes());
            hash = fnv(hash, &(index as u64).to_le_bytes());
            let mut writer = FnvWriter(hash);
            // Writing into a hash cannot fail.
            let _ = write!(writer, "{event:?}");
            self.trace = writer.0;
            self.traced += 1;
        }
    }
}
