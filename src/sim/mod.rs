//! A deterministic simulator: the real node core on in-memory links and a virtual clock.
//!
//! [`Sim`] runs many nodes — the same core, socket state machines, handshakes (noise
//! included), gossip and requests as [`Network`](crate::Network) — in one thread, with
//! no socket, no thread and no clock: mio is replaced by links that carry bytes with a
//! latency, a seeded jitter and a bandwidth, and time moves only when the simulator
//! runs the next scheduled action. Every source of randomness (gossip ids, ping
//! nonces, noise keys and ephemerals, link jitter, faults) comes from one generator
//! seeded with [`SimConfig::seed`], so a seed fixes the whole run, and
//! [`Sim::trace_hash`] identifies it: the same seed gives the same hash, bit for bit,
//! in any process.
//!
//! The one clock read is at [`Sim::new`], to have an `Instant` to count from; nothing
//! depends on its value, and traces record time as an offset from it.
//!
//! ```
//! use p2p::sim::{Sim, SimConfig};
//! use p2p::{Bytes, Event};
//!
//! let mut sim = Sim::new(SimConfig { seed: 7, ..SimConfig::default() })?;
//! let (a, b, c) = (sim.add_node(), sim.add_node(), sim.add_node());
//! sim.dial(a, b)?;
//! sim.dial(b, c)?;
//! assert!(sim.run_until(|sim| sim.node(a).peers() == 1 && sim.node(c).peers() == 1, 10_000));
//!
//! sim.broadcast(a, Bytes::from_static(b"block 1"))?;
//! let reached = |sim: &Sim| sim.node(c).events().iter().any(|e| matches!(e, Event::Broadcast { .. }));
//! assert!(sim.run_until(reached, 10_000));
//! println!("run {:016x}", sim.trace_hash());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{Config, ConfigError};
use crate::error::SendError;
use crate::event::Event;
use crate::id::{GossipId, RequestId};
use crate::node::{ConnId, Node, Stats};
use crate::payload::Payload;
use crate::peer::PeerId;
use crate::rng::Rng;
use crate::secure::LocalKey;
use crate::socket::PeerStats;

mod link;
use link::{Direction, Link, Links};

/// How the simulated network behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Fixes every random choice of the run.
    pub seed: u64,
    /// One-way delay of every link.
    pub latency: Duration,
    /// Up to this much more delay, drawn per delivery (bytes stay in order).
    pub jitter: Duration,
    /// Bytes per second each link carries in each direction.
    pub bandwidth: u64,
    /// Bytes a direction holds in flight and unread (the socket buffers): a sender
    /// that fills it waits, so a slow reader pushes back.
    pub window: usize,
    /// The probability, in millionths, that a dial is refused although its target is up.
    pub refuse_per_million: u32,
    /// The configuration every node starts from (`Config::default()`: noise-xx when
    /// the feature is on, with keys drawn from the seed).
    pub node: Config,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(1),
            bandwidth: 125_000_000,
            window: 256 * 1024,
            refuse_per_million: 0,
            node: Config::default(),
        }
    }
}

/// A node's index in the simulation.
pub type NodeIndex = usize;

pub use crate::error::SimDialError;

/// What the simulator does at a point in virtual time.
#[derive(Debug)]
enum Action {
    /// A dial's first packet reaches the listener.
    Syn { link: usize },
    /// The listener's answer reaches the dialler: connected.
    SynAck { link: usize },
    /// The dial was refused.
    Refused { link: usize },
    /// Bytes reach the receiving end of `dir`.
    Deliver {
        link: usize,
        dir: usize,
        bytes: Bytes,
        /// Its place in the direction's stream.
        n: u64,
    },
    /// The sender of `dir` shut its write side, in order after its bytes.
    Fin { link: usize, dir: usize },
    /// The receiving end of `dir` sees the connection reset.
    Reset { link: usize, dir: usize },
    /// A node's timers may be due.
    Timer { node: NodeIndex },
}

/// An action and when it runs; ties run in the order they were scheduled.
#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The actions to come, earliest first.
#[derive(Debug, Default)]
struct Agenda {
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
}

impl Agenda {
    fn push(&mut self, at: Instant, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            action,
        }));
    }
}

/// A simulated node: the core and what the simulator keeps beside it.
struct SimNode {
    /// `None` while crashed.
    node: Option<Node>,
    key: LocalKey,
    config: Config,
    addr: SocketAddr,
    events: Vec<Event>,
    /// This node's links, by its connection id; ordered, because a crash walks them
    /// and the order it schedules in is part of the run.
    links: BTreeMap<ConnId, usize>,
    /// The timer scheduled for it, if any.
    timer: Option<Instant>,
    /// Which side of a partition it is on.
    side: u8,
    /// Bytes a second it reads; `None`: as fast as they come; `Some(0)`: not at all
    /// (its deliveries wait in `unread`).
    read_rate: Option<u64>,
    /// Deliveries a node that stopped reading has not taken, in arrival order.
    unread: Vec<Action>,
    /// When it is done reading what it was given.
    read_busy_until: Instant,
}

/// A read-only view of one simulated node.
pub struct NodeView<'a> {
    sim_node: &'a SimNode,
}

impl<'a> NodeView<'a> {
    /// The node's peer id.
    pub fn id(&self) -> PeerId {
        self.sim_node.key.id
    }

    /// Whether it is up (not crashed).
    pub fn is_up(&self) -> bool {
        self.sim_node.node.is_some()
    }

    /// Every event it reported, oldest first (the caller may clear them through
    /// [`Sim::take_events`]).
    pub fn events(&self) -> &'a [Event] {
        &self.sim_node.events
    }

    /// How many peers it is connected to.
    pub fn peers(&self) -> usize {
        self.sim_node.node.as_ref().map_or(0, |n| n.peers().count())
    }

    /// How many of its peers it dialled itself (the connection serving them is
    /// outbound).
    pub fn outbound(&self) -> usize {
        self.sim_node.node.as_ref().map_or(0, |n| {
            n.peers()
                .filter(|&(_, _, d)| d == crate::event::Direction::Outbound)
                .count()
        })
    }

    /// The address it listens on, `10.x.y.z:7000`: its index plus one, lowest byte
    /// first, so that the nodes spread over the 256 network groups (/16) of 10/8
    /// as nodes on the internet spread over networks (node 0 is `10.1.0.1`, node
    /// 255 is `10.0.1.1`).
    pub fn addr(&self) -> SocketAddr {
        self.sim_node.addr
    }

    /// The addresses in its address book.
    pub fn known_addrs(&self) -> Vec<SocketAddr> {
        self.sim_node
            .node
            .as_ref()
            .map(|n| n.known_addrs())
            .unwrap_or_default()
    }

    /// The ids of the peers it is connected to.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.sim_node
            .node
            .as_ref()
            .map(|n| n.peers().map(|(id, _, _)| id).collect())
            .unwrap_or_default()
    }

    /// Whether it is connected to `peer`.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.sim_node
            .node
            .as_ref()
            .is_some_and(|n| n.is_connected(peer))
    }

    /// Its counters (zero while crashed).
    pub fn stats(&self) -> Stats {
        self.sim_node
            .node
            .as_ref()
            .map(|n| n.stats())
            .unwrap_or_default()
    }

    /// How many connections the simulator carries for it, in any phase. Its core's
    /// own count is [`Stats::connections`]; the two agree unless a closed socket was
    /// left behind.
    pub fn connections(&self) -> usize {
        self.sim_node.links.len()
    }

    /// Bytes queued for `peer` and not yet on the wire; `None` if not connected.
    pub fn queued(&self, peer: &PeerId) -> Option<usize> {
        self.sim_node.node.as_ref().and_then(|n| n.queued(peer))
    }

    /// The counters of the connection serving `peer`; `None` if not connected.
    pub fn peer_stats(&self, peer: &PeerId) -> Option<PeerStats> {
        self.sim_node.node.as_ref().and_then(|n| n.peer_stats(peer))
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &'a Config {
        &self.sim_node.config
    }
}

/// The simulation: nodes, links, a virtual clock and the schedule. See the
/// [module documentation](self).
pub struct Sim {
    config: SimConfig,
    epoch: Instant,
    now: Instant,
    rng: Rng,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, NodeIndex>,
    by_id: HashMap<PeerId, NodeIndex>,
    /// When node `.0` last reported `.1` connected or disconnected, as an index into
    /// the trace's events.
    changed: HashMap<(NodeIndex, PeerId), u64>,
    links: Links,
    agenda: Agenda,
    /// Deliveries held by a partition, in order, until it heals.
    held: Vec<Action>,
    trace: u64,
    traced: u64,
    steps: u64,
    scratch: Vec<ConnId>,
}

/// FNV-1a: a stable hash, the same in every process and Rust version.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Feeds formatted text to [`fnv`] as it is written, without building a string.
struct FnvWriter(u64);

impl std::fmt::Write for FnvWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 = fnv(self.0, s.as_bytes());
        Ok(())
    }
}

impl Sim {
    /// An empty simulation; fails if the node configuration is one
    /// [`Network::new`](crate::Network::new) would refuse.
    pub fn new(config: SimConfig) -> Result<Sim, ConfigError> {
        config.node.validate()?;
        let epoch = Instant::now();
        Ok(Sim {
            rng: Rng::from_seed(config.seed),
            config,
            epoch,
            now: epoch,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            changed: HashMap::new(),
            links: Links::default(),
            agenda: Agenda::default(),
            held: Vec::new(),
            trace: FNV_OFFSET,
            traced: 0,
            steps: 0,
            scratch: Vec::new(),
        })
    }

    /// Adds a node with the simulation's node configuration and returns its index.
    pub fn add_node(&mut self) -> NodeIndex {
        let config = self.config.node.clone();
        self.add(config)
    }

    /// Adds a node with its own configuration (its security, limits and timers; its
    /// key is drawn from the seed, so a `keypair` or plaintext `peer_id` is ignored);
    /// fails if [`Network::new`](crate::Network::new) would refuse the configuration.
    pub fn add_node_with(&mut self, config: Config) -> Result<NodeIndex, ConfigError> {
        config.validate()?;
        Ok(self.add(config))
    }

    /// Adds a node whose configuration was validated.
    fn add(&mut self, config: Config) -> NodeIndex {
        let index = self.nodes.len();
        let mut secret = [0u8; 32];
        self.rng.fill(&mut secret);
        let id = match (config.security, crate::secure::public_id(&secret)) {
            (crate::wire::Security::NoiseXx, Some(id)) => id,
            _ => {
                let mut id = [0u8; 32];
                self.rng.fill(&mut id);
                PeerId::from_bytes(id)
            }
        };
        let key = LocalKey {
            id,
            secret: secret.into(),
        };
        // A network group (/16) each: the address book's and discovery's shares see
        // as many networks as nodes.
        let [hi, mid, lo] = {
            let [_, hi, mid, lo] = (index as u32 + 1).to_be_bytes();
            [hi, mid, lo]
        };
        let addr = SocketAddr::from((Ipv4Addr::new(10, lo, mid, hi.wrapping_add(1)), 7000));
        self.by_addr.insert(addr, index);
        self.by_id.insert(id, index);
        self.nodes.push(SimNode {
            node: None,
            key,
            config,
            addr,
            events: Vec::new(),
            links: BTreeMap::new(),
            timer: None,
            side: 0,
            read_rate: None,
            unread: Vec::new(),
            read_busy_until: self.now,
        });
        self.boot(index);
        index
    }

    /// Starts (or restarts) node `index` with a fresh core and its old key.
    fn boot(&mut self, index: NodeIndex) {
        let seed = self.rng.next_u64();
        let sim_node = &mut self.nodes[index];
        let mut node = Node::new(
            sim_node.config.clone(),
            sim_node.key.clone(),
            Rng::from_seed(seed),
        );
        // It listens on its address, and tells its peers so (ADDRS).
        node.add_listen_addr(sim_node.addr);
        sim_node.node = Some(node);
        sim_node.timer = None;
    }

    /// How many nodes there are (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A view of node `index`. Panics if there is no such node (a caller's bug).
    pub fn node(&self, index: NodeIndex) -> NodeView<'_> {
        NodeView {
            sim_node: &self.nodes[index],
        }
    }

    /// Takes the events node `index` reported so far.
    pub fn take_events(&mut self, index: NodeIndex) -> Vec<Event> {
        std::mem::take(&mut self.nodes[index].events)
    }

    /// The virtual time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// The hash of every event every node reported so far, with its node and virtual
    /// time, and of every delivery of bytes (its link, length and first 64 bytes): the
    /// run's fingerprint.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// How many events the trace holds.
    pub fn trace_len(&self) -> u64 {
        self.traced
    }

    /// How many actions ran.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The index of the node whose id is `peer`.
    pub fn index_of(&self, peer: &PeerId) -> Option<NodeIndex> {
        self.by_id.get(peer).copied()
    }

    /// How many links exist, counting one whose ends are closing: zero once every
    /// connection of every node is closed and freed.
    pub fn open_links(&self) -> usize {
        self.links.len()
    }

    /// Which nodes `origin` reaches now, through connections both ends count as
    /// connected (`origin` itself included; nothing if it is down).
    pub fn reachable(&self, origin: NodeIndex) -> Vec<bool> {
        self.reach(origin, u64::MAX, |_, _| true)
    }

    /// Which nodes `origin` reaches now through connections that neither end
    /// reported opened or lost since the trace held `mark` events: the nodes that
    /// stayed connected to it since then. Take `mark` from [`Sim::trace_len`] when a
    /// broadcast leaves, and this gives, later, the nodes it must have reached.
    ///
    /// ```
    /// # use p2p::sim::{Sim, SimConfig};
    /// # let mut sim = Sim::new(SimConfig::default()).unwrap();
    /// # let (a, b) = (sim.add_node(), sim.add_node());
    /// # sim.dial(a, b).unwrap();
    /// # sim.run_until(|sim| sim.node(b).peers() == 1, 10_000);
    /// let mark = sim.trace_len();
    /// sim.broadcast(a, p2p::Bytes::from_static(b"x")).unwrap();
    /// sim.reset(a, b);
    /// sim.run_for(std::time::Duration::from_secs(1));
    /// assert!(!sim.reachable_unchanged_since(a, mark)[b]); // b may have missed it
    /// ```
    pub fn reachable_unchanged_since(&self, origin: NodeIndex, mark: u64) -> Vec<bool> {
        self.reach(origin, mark, |_, _| true)
    }

    /// [`Sim::reachable_unchanged_since`], through only the connections between nodes
    /// `i` and `j` for which `through(i, j)` holds: for instance those on which no
    /// broadcast was dropped at a full queue, which [PROTOCOL.md](crate::protocol) lets miss one.
    pub fn reachable_unchanged_since_through(
        &self,
        origin: NodeIndex,
        mark: u64,
        through: impl Fn(NodeIndex, NodeIndex) -> bool,
    ) -> Vec<bool> {
        self.reach(origin, mark, through)
    }

    /// Whether `a` and `b` count each other as connected now, and neither reported
    /// that connection opened or lost since the trace held `mark` events (`u64::MAX`:
    /// connected now, whenever since).
    pub fn connected_unchanged_since(&self, a: NodeIndex, b: NodeIndex, mark: u64) -> bool {
        let (Some(x), Some(y)) = (self.nodes.get(a), self.nodes.get(b)) else {
            return false;
        };
        let (ida, idb) = (x.key.id, y.key.id);
        let holds =
            |n: &SimNode, peer: &PeerId| n.node.as_ref().is_some_and(|c| c.is_connected(peer));
        let steady =
            |i: NodeIndex, peer: PeerId| self.changed.get(&(i, peer)).is_none_or(|&at| at < mark);
        holds(x, &idb) && holds(y, &ida) && steady(a, idb) && steady(b, ida)
    }

    fn reach(
        &self,
        origin: NodeIndex,
        mark: u64,
        through: impl Fn(NodeIndex, NodeIndex) -> bool,
    ) -> Vec<bool> {
        let mut seen = vec![false; self.nodes.len()];
        if self.nodes.get(origin).is_none_or(|n| n.node.is_none()) {
            return seen;
        }
        seen[origin] = true;
        let mut stack = vec![origin];
        while let Some(i) = stack.pop() {
            let Some(core) = self.nodes[i].node.as_ref() else {
                continue;
            };
            for (peer, _, _) in core.peers() {
                if let Some(&j) = self.by_id.get(&peer)
                    && !seen[j]
                    && self.connected_unchanged_since(i, j, mark)
                    && through(i, j)
                {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        seen
    }

    fn schedule(&mut self, at: Instant, action: Action) {
        self.agenda.push(at, action);
    }

    fn core(&mut self, index: NodeIndex) -> Option<&mut Node> {
        self.nodes.get_mut(index).and_then(|n| n.node.as_mut())
    }

    /// Node `from` dials node `to`; the result arrives as events, as with
    /// [`Network::dial`](crate::Network::dial).
    pub fn dial(&mut self, from: NodeIndex, to: NodeIndex) -> Result<(), SimDialError> {
        let addr = self.nodes.get(to).ok_or(SimDialError::NoNode(to))?.addr;
        let now = self.now;
        let node = self.core(from).ok_or(SimDialError::NoNode(from))?;
        let conn = node.dial(addr, now)?;
        self.connect(from, conn, addr);
        self.settle(from);
        Ok(())
    }

    /// Node `from` makes node `to` a persistent peer, as
    /// [`Network::add_peer`](crate::Network::add_peer) (expecting `to`'s id if
    /// `expected`): it dials `to` on its next timer, and again whenever the session
    /// ends, with backoff.
    pub fn add_peer(
        &mut self,
        from: NodeIndex,
        to: NodeIndex,
        expected: Option<PeerId>,
    ) -> Result<(), SimDialError> {
        let addr = self.nodes.get(to).ok_or(SimDialError::NoNode(to))?.addr;
        let now = self.now;
        let node = self.core(from).ok_or(SimDialError::NoNode(from))?;
        node.add_peer(addr, expected, now)?;
        self.settle(from);
        Ok(())
    }

    /// Node `from` learns `addr` as a seed, as
    /// [`Network::add_addr`](crate::Network::add_addr): with
    /// [`Config::target_outbound`] set, it may dial it, and learns more addresses
    /// from the peers it dials. `sim.node(to).addr()` is node `to`'s; a dial to an
    /// address no node listens on is refused. False if the book knew it already (or
    /// the node is missing or down).
    pub fn add_addr(&mut self, from: NodeIndex, addr: SocketAddr) -> bool {
        let now = self.now;
        let added = self.core(from).is_some_and(|n| n.add_addr(addr, now));
        self.settle(from);
        added
    }

    /// Node `from` stops dialling node `to` again, as
    /// [`Network::remove_peer`](crate::Network::remove_peer); false if it was not a
    /// persistent peer (or either node is gone).
    pub fn remove_peer(&mut self, from: NodeIndex, addr: SocketAddr) -> bool {
        self.core(from).is_some_and(|n| n.remove_peer(&addr))
    }

    /// Node `index` bans `peer`, as [`Network::ban`](crate::Network::ban); false if
    /// the node is down or its ban table is full.
    pub fn ban(&mut self, index: NodeIndex, peer: &PeerId, duration: Duration) -> bool {
        let now = self.now;
        let banned = self
            .core(index)
            .is_some_and(|n| n.ban(*peer, duration, now));
        self.settle(index);
        banned
    }

    /// Node `index` gives its verdict on broadcast `id`, as
    /// [`Network::validate`](crate::Network::validate).
    pub fn validate(
        &mut self,
        index: NodeIndex,
        id: GossipId,
        verdict: crate::validation::Validation,
    ) -> bool {
        let now = self.now;
        let judged = self
            .core(index)
            .is_some_and(|n| n.validate(id, verdict, now));
        self.settle(index);
        judged
    }

    /// Node `index` lifts the ban of `peer`, as [`Network::unban`](crate::Network::unban).
    pub fn unban(&mut self, index: NodeIndex, peer: &PeerId) -> bool {
        let now = self.now;
        let unbanned = self.core(index).is_some_and(|n| n.unban(peer, now));
        self.settle(index);
        unbanned
    }

    /// Node `index` replaces its allowlist, as
    /// [`Network::set_allowlist`](crate::Network::set_allowlist).
    pub fn set_allowlist(
        &mut self,
        index: NodeIndex,
        allowlist: Option<std::collections::HashSet<PeerId>>,
    ) {
        let now = self.now;
        if let Some(node) = self.core(index) {
            node.set_allowlist(allowlist, now);
        }
        self.settle(index);
    }

    /// Opens the link of dial `conn` from node `from` to `addr`: its SYN leaves now.
    /// An address no node has is refused when the SYN would have arrived.
    pub(super) fn connect(&mut self, from: NodeIndex, conn: ConnId, addr: SocketAddr) {
        let to = self.by_addr.get(&addr).copied().unwrap_or(from);
        let link = self.links.insert(Link {
            nodes: [from, to],
            ends: [Some((from, conn)), None],
            dirs: [self.direction(), self.direction()],
        });
        self.nodes[from].links.insert(conn, link);
        let at = self.now + self.config.latency;
        if self.by_addr.contains_key(&addr) {
            self.schedule(at, Action::Syn { link });
        } else {
            self.schedule(at + self.config.latency, Action::Refused { link });
        }
    }

    fn direction(&self) -> Direction {
        Direction {
            in_flight: 0,
            busy_until: self.now,
            last_arrival: self.now,
            fin: false,
            fin_pending: false,
            sent: 0,
            read: 0,
            early: BTreeMap::new(),
            paused: None,
        }
    }

    /// Node `index` broadcasts `payload` to the network.
    pub fn broadcast(
        &mut self,
        index: NodeIndex,
        payload: impl Payload,
    ) -> Result<GossipId, SendError> {
        self.command(index, |node, now| {
            node.broadcast(payload.into_payload(), now)
        })
    }

    /// Node `index` sends a MESSAGE to `peer`.
    pub fn send(
        &mut self,
        index: NodeIndex,
        peer: &PeerId,
        payload: impl Payload,
    ) -> Result<(), SendError> {
        self.command(index, |node, _| node.send(peer, payload.into_payload()))
    }

    /// Node `index` sends a REQUEST to `peer`; the answer arrives as an event.
    pub fn request(
        &mut self,
        index: NodeIndex,
        peer: &PeerId,
        id: RequestId,
        payload: impl Payload,
    ) -> Result<(), SendError> {
        self.command(index, |node, now| {
            node.request_with_id(peer, id, payload.into_payload(), now)
        })
    }

    /// Node `index` answers request `id` of `peer`; as
    /// [`Network::respond`](crate::Network::respond), an id not received from `peer`
    /// or answered already is refused with `SendError::UnknownRequest`.
    pub fn respond(
        &mut self,
        index: NodeIndex,
        peer: &PeerId,
        id: RequestId,
        payload: impl Payload,
    ) -> Result<(), SendError> {
        self.command(index, |node, _| {
            node.respond(peer, id, payload.into_payload())
        })
    }

    /// Runs a command on node `index` (refused as shut down if it is not up), then
    /// moves what it queued; a refused command changes nothing to settle.
    fn command<R>(
        &mut self,
        index: NodeIndex,
        f: impl FnOnce(&mut Node, Instant) -> Result<R, SendError>,
    ) -> Result<R, SendError> {
        let now = self.now;
        let node = self.core(index).ok_or(SendError::ShuttingDown)?;
        let result = f(node, now)?;
        self.settle(index);
        Ok(result)
    }

    /// Node `index` shuts down: every connection closes gracefully (GOODBYE 0) and
    /// new ones are refused, as [`Network::shutdown`](crate::Network::shutdown) does.
    pub fn shutdown(&mut self, index: NodeIndex) {
        let now = self.now;
        if let Some(node) = self.core(index) {
            node.shutdown(now);
            self.settle(index);
        }
    }

    /// Node `index` closes every connection to `peer`.
    pub fn disconnect(&mut self, index: NodeIndex, peer: &PeerId) -> bool {
        let now = self.now;
        let Some(node) = self.core(index) else {
            return false;
        };
        let done = node.disconnect(peer, now);
        self.settle(index);
        done
    }

    /// Node `index` reads at most `rate` bytes a second from now on (`None`: at once;
    /// `Some(0)`: not at all, as [`Sim::stop_reading`]): its peers' windows fill and
    /// their queues grow, as behind a slow peer. Bytes a stopped node did not read are
    /// read from now on, in order.
    pub fn set_read_rate(&mut self, index: NodeIndex, rate: Option<u64>) {
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        node.read_rate = rate;
        if rate != Some(0) {
            let now = self.now;
            for action in std::mem::take(&mut self.nodes[index].unread) {
                self.schedule(now, action);
            }
        }
    }

    /// Node `index` stops reading every connection, as a hostile peer that never
    /// reads: its peers' windows fill, their queues towards it stop moving, and their
    /// `write_timeout` closes them. Its own sends still leave.
    pub fn stop_reading(&mut self, index: NodeIndex) {
        self.set_read_rate(index, Some(0));
    }

    /// Splits the network: nodes in `island` reach each other, the others reach each
    /// other, and no byte crosses between the two until [`Sim::heal`]. Bytes sent
    /// across wait, as TCP retransmits would; new dials across are refused.
    pub fn partition(&mut self, island: &[NodeIndex]) {
        for n in &mut self.nodes {
            n.side = 0;
        }
        for &i in island {
            if let Some(n) = self.nodes.get_mut(i) {
                n.side = 1;
            }
        }
        // What the previous partition held is judged again, in order, under this one.
        let now = self.now;
        for action in std::mem::take(&mut self.held) {
            self.schedule(now, action);
        }
    }

    /// Ends a partition: the bytes it held arrive, in order, from now on.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.side = 0;
        }
        let now = self.now;
        for action in std::mem::take(&mut self.held) {
            self.schedule(now, action);
        }
    }

    /// Resets the connection between `a` and `b` (either dialled), as a middlebox
    /// would: each end sees the reset, `a` at once and `b` one latency later. False if
    /// they share no connection.
    pub fn reset(&mut self, a: NodeIndex, b: NodeIndex) -> bool {
        let found = self.links.map.iter().find_map(|(&key, link)| {
            let (x, y) = (link.ends[0]?.0, link.ends[1]?.0);
            if (x, y) == (a, b) {
                Some((key, 1usize))
            } else if (x, y) == (b, a) {
                Some((key, 0usize))
            } else {
                None
            }
        });
        let Some((link, dir_to_a)) = found else {
            return false;
        };
        let now = self.now;
        self.schedule(
            now,
            Action::Reset {
                link,
                dir: dir_to_a,
            },
        );
        self.schedule(
            now + self.config.latency,
            Action::Reset {
                link,
                dir: 1 - dir_to_a,
            },
        );
        true
    }

    /// Crashes node `index`: its core is dropped with everything queued, and each of
    /// its peers sees a reset one latency later (its host's kernel answers for it).
    pub fn crash(&mut self, index: NodeIndex) {
        self.halt(index, true);
    }

    /// Crashes node `index` as a host that loses power does: its core is dropped and
    /// its peers are told nothing. Their connections to it look alive until their own
    /// keepalives give up; bytes sent on them are lost, and once a window's worth is
    /// unacknowledged their queues grow, as towards a dead host.
    pub fn power_off(&mut self, index: NodeIndex) {
        self.halt(index, false);
    }

    /// Drops node `index`'s core; `reset` tells its peers.
    fn halt(&mut self, index: NodeIndex, reset: bool) {
        let Some(sim_node) = self.nodes.get_mut(index) else {
            return;
        };
        if sim_node.node.take().is_none() {
            return;
        }
        let links: Vec<usize> = std::mem::take(&mut sim_node.links).into_values().collect();
        let at = self.now + self.config.latency;
        for link in links {
            let Some(l) = self.links.get_mut(link) else {
                continue;
            };
            let side = usize::from(l.ends[1].is_some_and(|(n, _)| n == index));
            l.ends[side] = None;
            if l.ends.iter().all(Option::is_none) {
                self.links.remove(link);
                continue;
            }
            // The direction towards the other end.
            if reset {
                self.schedule(at, Action::Reset { link, dir: side });
            }
        }
    }

    /// Restarts a crashed (or powered-off) node `index` with its old key and a fresh
    /// core.
    pub fn restart(&mut self, index: NodeIndex) {
        if self.nodes.get(index).is_some_and(|n| n.node.is_none()) {
            self.boot(index);
        }
    }

    /// Runs the next scheduled action; false if nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(next)) = self.agenda.queue.pop() else {
            return false;
        };
        self.now = self.now.max(next.at);
        self.steps += 1;
        self.run(next.action);
        true
    }

    /// Steps until `done` holds (true) or `limit` steps ran (false).
    pub fn run_until(&mut self, mut done: impl FnMut(&Sim) -> bool, limit: u64) -> bool {
        for _ in 0..limit {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    /// Steps through everything scheduled up to `d` from now, then sets the clock there.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self
            .agenda
            .queue
            .peek()
            .is_some_and(|Reverse(next)| next.at <= end)
        {
            self.step();
        }
        self.now = end;
    }
}
