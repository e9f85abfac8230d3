//! The node core, sans-IO: the slab of sockets, the peer table, limits, gossip, requests, events.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use slab::Slab;

use crate::addrbook::{Book, Limits, Source, is_public, is_remote};
use crate::bucket::TokenBucket;
use crate::budget::{Budgets, within_fair_share};
use crate::config::Config;
use crate::discovery::{self, DISCOVERY_DIAL_RATE, DISCOVERY_INTERVAL};
use crate::duplicate;
use crate::error::{CloseReason, DialError, SendError};
use crate::event::{Direction, Event};
use crate::gossip::{Gossip, RelayBudget, Verdict};
use crate::id::{GossipId, RequestId};
use crate::peer::PeerId;
use crate::persistent::Persistent;
use crate::queue::OutQueue;
use crate::rng::Rng;
use crate::secure::LocalKey;
use crate::slots::{HandshakeRate, Held, Slots, addr_key};
use crate::socket::{Frames, Output, PeerStats, Phase, Socket};
use crate::timers::Timers;
use crate::validation::{Pending, Validation, Validations};
use crate::wire::{Frame, GoodbyeReason, LEN_FIELD, Security};

/// Frames decoded per batch before their outputs are handled.
const FRAME_BATCH: usize = 64;

/// Debug builds check the node's indexes against a pass over its sockets each turn
/// while it holds at most this many.
#[cfg(debug_assertions)]
const CHECKED_UP_TO: usize = 1024;

/// Hashes a [`PeerId`] by its first eight bytes. The peer table holds at most the
/// connection limits' worth of ids, so a peer choosing colliding ids gains nothing
/// worth SipHash's cost on every send.
#[derive(Default)]
struct PeerIdHasher(u64);

impl Hasher for PeerIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // `PeerId` hashes its length first (write_usize), then its 32 bytes here.
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The peer table: one serving connection per connected peer.
type PeerTable = HashMap<PeerId, ConnId, BuildHasherDefault<PeerIdHasher>>;

/// Per connected peer, the open connections serving it that the application was told
/// about, in slab order: [`Node::serving`] without a pass over every socket. A peer
/// has more than one only while the duplicate rule settles, so a list is bounded by
/// the connections the peer itself holds (the connection limits).
type ServingTable = HashMap<PeerId, Vec<ConnId>, BuildHasherDefault<PeerIdHasher>>;

/// The most peers banned at once ([`Node::ban`]): the application bans them, but a
/// loop banning every id a peer makes up must not grow the table for good.
pub(crate) const MAX_BANS: usize = 65_536;

/// What discovery sees of the connections ([`Node::discovery_view`]).
struct DiscoveryView {
    /// Addresses dialled, connected, or listened on by a connected peer.
    in_use: HashSet<SocketAddr>,
    /// The outbound connections, by group and by the teller of their address.
    outbound: discovery::Outbound,
    /// Open outbound connections whose peer may be asked for addresses now.
    askable: Vec<ConnId>,
    /// The same, inbound.
    askable_inbound: Vec<ConnId>,
    /// Open (announced) outbound connections whose peers understand GETADDRS.
    open_outbound: usize,
}

/// The inbound peers a node with no outbound connection asks for addresses per
/// discovery round ([`Node::discover`]).
const MAX_INBOUND_ASKED: usize = 2;

/// The most addresses remembered as this node's own ([`Node`]'s `self_addrs`).
const MAX_SELF_ADDRS: usize = 16;

/// A connection's slot and generation; a stale id never reaches the socket that
/// reused its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId {
    /// The slab key.
    pub key: usize,
    /// The generation of the socket in that slot.
    pub generation: u32,
}

/// A connection's outgoing byte stream as a driver holds it (a TCP socket, a simulated
/// link, a test pipe): the only IO [`Node::flush`] does.
pub(crate) trait Wire {
    /// Writes a prefix of what `queue` holds (its slices, front first).
    fn send(&mut self, queue: &OutQueue) -> Sent;
    /// Shuts the write side: the peer reads the end of the stream after what was sent.
    fn shutdown_write(&mut self);
}

/// What one [`Wire::send`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Wrote this many bytes (0 only if nothing was asked for).
    Wrote(usize),
    /// Took nothing now: the socket would block, or the link's window is full. The
    /// driver flushes again once it can take more.
    Blocked,
    /// The write failed: the connection is lost.
    Failed(std::io::ErrorKind),
}

/// Where a connection stands after [`Node::flush`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// In service; `waiting` when bytes remain queued that the wire did not take
    /// (a driver then wants to hear when it is writable).
    Live { waiting: bool },
    /// Closed and forgotten by the node: the driver drops its socket.
    Freed,
    /// Nothing to do: the id is stale, or the connection is still dialling.
    Idle,
}

/// Whole-node counters, readable at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Peers connected now.
    pub peers: usize,
    /// Connections in any phase now.
    pub connections: usize,
    /// Connections still dialling or handshaking.
    pub handshaking: usize,
    /// Bytes queued for all peers (under noise, frames not yet sealed count with the
    /// overhead of the records they may take): at most `max_write_buffer_total`.
    pub queued_bytes: usize,
    /// Counters summed over every connection, open or closed.
    pub totals: PeerStats,
    /// Inbound connections refused at accept (limits, rate or shutdown).
    pub refused_inbound: u64,
    /// Of `refused_inbound`, those refused because their address started handshakes
    /// over `handshake_rate_per_ip`.
    pub rate_limited_accepts: u64,
    /// Inbound handshakes evicted from a full pending table by a connection from an
    /// address with fewer pending ones (`CloseReason::Evicted`; each also counts in
    /// `failed_handshakes`).
    pub evicted_handshakes: u64,
    /// Bytes that graceful closes of connections serving a peer could not flush
    /// before `close_timeout` or a failure ended them (each such close also gives
    /// `Event::Unflushed`).
    pub unflushed_bytes: u64,
    /// Connections not read now because the receive budget
    /// (`max_read_buffer_total`) is spent and they need more of it.
    pub read_paused: usize,
    /// Connections that closed before their handshake finished.
    pub failed_handshakes: u64,
    /// GOSSIP frames dropped as already seen.
    pub duplicate_gossip: u64,
    /// New broadcasts delivered but not relayed: the relay budget (half of
    /// `max_gossip_rate` a second, shared fairly between peers) was spent.
    pub unrelayed_gossip: u64,
    /// Peers closed after the handshake because they are not on the allowlist.
    pub not_allowed: u64,
    /// Gossip ids remembered now (at most `gossip_cache_size`).
    pub gossip_ids: usize,
    /// Broadcasts waiting for the application's verdict (`Config::validate_gossip`).
    pub pending_validations: usize,
    /// Broadcasts ignored for want of a verdict: not judged within
    /// `validation_timeout`, or pushed out by newer ones.
    pub dropped_validations: u64,
    /// Addresses in the address book now (at most `address_book_size`).
    pub known_addrs: usize,
    /// Dials the node made by itself to keep `target_outbound` outbound connections.
    pub discovery_dials: u64,
    /// Bytes received and not yet taken as frames, over all connections: at most
    /// `max_read_buffer_total` plus what each connection holds of its own, one read
    /// chunk of 64 KiB (under noise, one sealed record and one opened besides).
    pub buffered_bytes: usize,
    /// Requests of ours waiting for a response, over all connections.
    pub pending_requests: usize,
    /// Requests from peers delivered and not yet answered, over all connections: at
    /// most `max_pending_requests` per connection (`PeerStats::forgotten_requests`
    /// counts those forgotten for it).
    pub unanswered_requests: usize,
}

#[derive(Debug)]
struct Entry {
    generation: u32,
    socket: Socket,
    /// The connection serves a peer the application was told about.
    announced: bool,
    /// Creation order, to tell which of two dials came later.
    created: u64,
    /// When it was dialled or accepted.
    since: Instant,
    dirty: bool,
    /// The remote address as the per-address limits count it.
    addr_key: IpAddr,
    /// What it is counted as holding in [`Node::slots`] now.
    held: Held,
    /// Listed in [`Node::serving`] (open, announced).
    listed: bool,
    /// The deadline [`Node::timers`] holds for it: never later than its socket's
    /// next one (see [`Node::retime`]).
    armed: Option<Instant>,
    /// The addresses the peer said it listens on (ADDRS).
    listen_addrs: Vec<SocketAddr>,
    /// Ours were told on it (once a connection).
    addrs_sent: bool,
    /// Dialled by discovery ([`Node::discover`]): the connections it may rotate.
    discovered: bool,
    /// An address a dial of ours reached this connection's peer at, found when the
    /// duplicate rule met the two: discovery does not dial it while the peer is
    /// connected (a peer that does not tell it as its own would be dialled again and
    /// again, each dial meeting the rule).
    alias: Option<SocketAddr>,
}

/// The addresses of `listen` that a peer connected from `seen` claims at its own IP:
/// the only ones its word counts for (others' addresses it claims are checked by
/// nobody).
fn own_claims(listen: &[SocketAddr], seen: SocketAddr) -> impl Iterator<Item = &SocketAddr> {
    let ip = seen.ip().to_canonical();
    listen.iter().filter(move |a| a.ip() == ip)
}

/// The earlier of `at` and `by`, where `None` is "never".
fn earliest(at: Option<Instant>, by: Option<Instant>) -> Option<Instant> {
    match (at, by) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The live entry of `conn`, if its slot still holds that generation. A free function
/// over the slab, so callers can borrow other fields of the node beside it.
fn slot_mut(sockets: &mut Slab<Entry>, conn: ConnId) -> Option<&mut Entry> {
    sockets
        .get_mut(conn.key)
        .filter(|e| e.generation == conn.generation)
}

/// How much `socket`'s queue grows by a frame of `len` wire bytes, if that stays
/// within the queue's fair share of `room`, the global write room left
/// ([`within_fair_share`]).
fn fair_growth(socket: &Socket, len: usize, room: usize) -> Option<usize> {
    let (queued, growth) = socket.queued_and_growth(len);
    within_fair_share(queued, growth, room).then_some(growth)
}

/// Pushes the event a frame's output is by itself onto `events`, or gives the output
/// back if it is not one.
#[inline(always)]
fn push_frame_event(events: &mut Vec<Event>, peer: PeerId, output: Output) -> Option<Output> {
    match output {
        Output::Message(payload) => events.push(Event::Message { peer, payload }),
        Output::Request { id, payload } => events.push(Event::Request {
            peer,
            id: RequestId(id),
            payload,
        }),
        Output::Response { id, payload } => events.push(Event::Response {
            peer,
            id: RequestId(id),
            payload,
        }),
        Output::Rejected { reason, count } => events.push(Event::FrameRejected {
            peer,
            reason,
            count,
        }),
        output => return Some(output),
    }
    None
}

/// The node's events and the peer a socket serves, lent to it while it takes frames.
struct FrameTo<'a> {
    peer: PeerId,
    events: &'a mut Vec<Event>,
}

/// The node's [`Frames`]: a frame the node has nothing to decide about becomes its
/// event at once, with no stop in the output queue; the rest wait there, in order.
struct FrameSink<'a, 'b> {
    to: FrameTo<'a>,
    out: &'b mut Vec<Output>,
}

impl Frames for FrameSink<'_, '_> {
    #[inline(always)]
    fn push(&mut self, output: Output) {
        if let Some(output) = push_frame_event(self.to.events, self.to.peer, output) {
            self.out.push(output);
        }
    }

    #[inline(always)]
    fn message(&mut self, payload: &[u8]) {
        self.to.events.push(Event::Message {
            peer: self.to.peer,
            payload: Bytes::copy_from_slice(payload),
        });
    }

    fn decisions(&mut self) -> &mut Vec<Output> {
        self.out
    }
}

/// The node core: every decision of the network, with no socket, no clock and no
/// random source of its own.
///
/// # The contract
///
/// A driver owns the sockets and the clock; the node owns everything else. There
/// are three drivers: the mio reactor ([`Reactor`](crate::reactor::Reactor), under
/// [`Network`](crate::Network)), the simulator ([`Sim`](crate::sim::Sim)) and the
/// test and fuzz harnesses. Every call takes `now`, the driver's clock. Randomness
/// is injected once, at [`Node::new`]: ChaCha20 in a `Network`, a seeded generator in
/// the simulator; each handshake's ephemeral key comes from a fork of it.
///
/// **Inputs.**
/// - Connections. [`Node::dial`] reserves one; the driver connects, then reports
///   [`Node::handle_connected`] or [`Node::handle_connect_failed`] (or
///   [`Node::cancel`]s it if the connect call failed at once).
///   [`Node::handle_accept`] takes an accepted connection, or refuses it (`None`:
///   the driver drops it before a byte is sent).
/// - Bytes. [`Node::read_buf`] lends the buffer to read into and says how much to
///   ask for; [`Node::handle_read`] takes what was read (the reactor reads from the
///   socket straight into the lent buffer). In-memory drivers hand over a slice with
///   [`Node::handle_bytes`], which does both. Then [`Node::handle_eof`] for the
///   peer's end of the stream and [`Node::handle_io_error`] for a failed socket.
/// - Time. [`Node::handle_timeout`] once [`Node::poll_timeout`] has passed.
/// - Commands from the application: [`Node::send`], [`Node::request_with_id`],
///   [`Node::respond`], [`Node::broadcast`], [`Node::disconnect`], [`Node::shutdown`],
///   [`Node::add_peer`], [`Node::remove_peer`].
///
/// **Outputs.**
/// - [`Node::poll_flush`]: the connections whose output, phase or interest changed.
///   For each, the driver calls [`Node::flush`] with a [`Wire`] for its socket. That
///   is the one write sequence: seal what is staged, send until the wire blocks,
///   shut the write side once a close has flushed, free the connection once closed.
///   The [`Flushed`] answer says whether bytes wait (want writability) or the
///   connection was freed (drop its socket).
/// - [`Node::poll_read`]: connections to read again without new readiness: the
///   receive budget paused them and has room again.
/// - [`Node::poll_dial`]: dials the node started itself (persistent peers, from
///   [`Node::handle_timeout`]): the driver connects each as it does those of
///   [`Node::dial`], reporting [`Node::handle_connect_error`] if the connect call
///   fails at once.
/// - [`Node::poll_timeout`]: when to call [`Node::handle_timeout`] next.
/// - [`Node::poll_events`]: what happened, for the application.
///
/// **Order.** After any batch of inputs (one readiness pass, a timeout, commands):
/// connect what `poll_dial` gives; `poll_flush` and `flush` each connection it
/// gives, until it gives none; take
/// `poll_read` for the next read pass; then `poll_events`; then arm the timer from
/// `poll_timeout`. Flushing more often is harmless: the reactor also flushes a
/// connection as soon as it turns writable, and a command such as
/// [`Network::flush`](crate::Network::flush) flushes at once.
#[derive(Debug)]
pub(crate) struct Node {
    config: Config,
    local: PeerId,
    key: LocalKey,
    rng: Rng,
    sockets: Slab<Entry>,
    next_generation: u32,
    created: u64,
    peers: PeerTable,
    gossip: Gossip,
    /// New broadcasts taken from peers per second, shared fairly; made at first use,
    /// when the clock is first known.
    relay: Option<RelayBudget>,
    events: Vec<Event>,
    dirty: Vec<ConnId>,
    /// The write and receive budgets' counts.
    budgets: Budgets,
    closed_totals: PeerStats,
    /// The connection and handshake slots held, by direction and remote address.
    slots: Slots,
    /// Handshake starts per remote address.
    handshake_rate: HandshakeRate,
    refused_inbound: u64,
    rate_limited_accepts: u64,
    evicted_handshakes: u64,
    failed_handshakes: u64,
    duplicate_gossip: u64,
    unrelayed_gossip: u64,
    not_allowed: u64,
    /// Bytes graceful closes left unsent, kept here because closed sockets are freed.
    unflushed_bytes: u64,
    shutting_down: bool,
    out: Vec<Output>,
    /// The one buffer connections are read into ([`Socket::lend_rx`]): between reads
    /// a connection holds only the bytes of its unfinished frame, so an idle one
    /// holds no read buffer.
    rx_scratch: BytesMut,
    /// The connection `rx_scratch` may be lent to, until [`Node::settle_rx`].
    rx_lent: Option<ConnId>,
    /// The one buffer records are opened into (noise), lent the same way for the
    /// time frames are taken.
    plain_scratch: BytesMut,
    targets: Vec<ConnId>,
    /// The lowest and highest request ids this node issued so far: a RESPONSE with
    /// an id within them that matches no pending request is late, not made up.
    issued: Option<(u64, u64)>,
    /// The connection that may draw on the receive budget's last largest frame's
    /// worth, which the others leave free: whatever the others hold, it can finish its
    /// frame, so pausing never deadlocks.
    read_first: Option<ConnId>,
    /// While others wait, when the first in line must have finished its frame.
    read_first_until: Option<Instant>,
    /// Connections paused for want of receive budget, in slab order.
    paused: BTreeSet<ConnId>,
    /// Every socket's next deadline ([`Socket::next_deadline`]), kept as it changes,
    /// so a turn finds the next one and the due ones without a pass over every socket.
    timers: Timers<ConnId>,
    /// Reused by [`Node::handle_timeout`] for the sockets due.
    due: Vec<ConnId>,
    /// The persistent peers and when each is dialled next.
    persistent: Persistent,
    /// Persistent peers due for a dial, taken by [`Node::handle_timeout`].
    due_addrs: Vec<SocketAddr>,
    /// Dials the node started by itself, for the driver ([`Node::poll_dial`]).
    own_dials: VecDeque<(ConnId, SocketAddr)>,
    /// The addresses listened on, for ADDRS.
    listen_addrs: Vec<SocketAddr>,
    /// The addresses learned from peers and loaded by the application.
    book: Book,
    /// When the discovery dialler runs next (`target_outbound`): set when the node
    /// may be short of outbound connections or learned an address, every
    /// [`DISCOVERY_INTERVAL`] while it stays short.
    discover_at: Option<Instant>,
    /// Addresses our own dials found to be this node (a self-connection): not
    /// learned again, not dialled again. At most [`MAX_SELF_ADDRS`].
    self_addrs: Vec<SocketAddr>,
    discovery_dials: u64,
    /// When discovery next dials one more address while at its target
    /// (`outbound_rotation`).
    rotate_at: Option<Instant>,
    /// Discovery's dials: `target_outbound` at once, then [`DISCOVERY_DIAL_RATE`] a
    /// second, whatever the peers tell. Made at first use, when the clock is known.
    discovery_budget: Option<TokenBucket>,
    /// Banned peers and until when (`None`: for good).
    bans: HashMap<PeerId, Option<Instant>>,
    /// Broadcasts waiting for the application's verdict before they are relayed.
    validations: Validations,
    dropped_validations: u64,
    /// Our dials not closing, by the address dialled: one each (see [`Node::dial`]).
    dialing: HashMap<SocketAddr, ConnId>,
    /// Inbound connections holding a handshake slot: the candidates for eviction, at
    /// most `max_pending_handshakes`.
    pending_inbound: BTreeSet<ConnId>,
    /// Connections in a graceful close, by creation order (oldest first).
    closing: BTreeMap<u64, ConnId>,
    /// The open announced connections of each peer.
    serving: ServingTable,
    /// Paused connections that may read again: edge-triggered readiness will not
    /// repeat for bytes that arrived meanwhile, so the shell reads them unasked.
    resumed: Vec<ConnId>,
}

impl Node {
    /// A node with this config (already validated), identity and random source.
    pub(crate) fn new(config: Config, key: LocalKey, rng: Rng) -> Self {
        let local = key.id;
        let book = Book::new(Limits::for_size(config.address_book_size));
        let gossip = Gossip::new(
            config.gossip_cache_size,
            config.gossip_cache_age,
            config.gossip_hops,
        );
        let handshake_rate = HandshakeRate::new(
            config.handshake_rate_per_ip,
            config
                .max_inbound
                .saturating_add(config.max_pending_handshakes),
        );
        Node {
            config,
            local,
            key,
            rng,
            sockets: Slab::new(),
            next_generation: 1,
            created: 0,
            peers: PeerTable::default(),
            gossip,
            relay: None,
            events: Vec::new(),
            dirty: Vec::new(),
            budgets: Budgets::default(),
            closed_totals: PeerStats::default(),
            slots: Slots::default(),
            handshake_rate,
            refused_inbound: 0,
            rate_limited_accepts: 0,
            evicted_handshakes: 0,
            failed_handshakes: 0,
            duplicate_gossip: 0,
            unrelayed_gossip: 0,
            not_allowed: 0,
            unflushed_bytes: 0,
            shutting_down: false,
            out: Vec::new(),
            rx_scratch: BytesMut::new(),
            rx_lent: None,
            plain_scratch: BytesMut::new(),
            targets: Vec::new(),
            issued: None,
            read_first: None,
            read_first_until: None,
            paused: BTreeSet::new(),
            timers: Timers::default(),
            due: Vec::new(),
            persistent: Persistent::default(),
            due_addrs: Vec::new(),
            own_dials: VecDeque::new(),
            bans: HashMap::new(),
            listen_addrs: Vec::new(),
            book,
            discover_at: None,
            self_addrs: Vec::new(),
            discovery_dials: 0,
            rotate_at: None,
            discovery_budget: None,
            validations: Validations::default(),
            dropped_validations: 0,
            dialing: HashMap::new(),
            pending_inbound: BTreeSet::new(),
            closing: BTreeMap::new(),
            serving: ServingTable::default(),
            resumed: Vec::new(),
        }
    }

    /// This node's id.
    pub(crate) fn local_id(&self) -> PeerId {
        self.local
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    // ---- connections coming and going ----

    fn insert(&mut self, socket: Socket, now: Instant) -> ConnId {
        let generation = self.next_generation;
        // Generation 0 is never used, so no live id equals a zeroed one.
        self.next_generation = self.next_generation.checked_add(1).unwrap_or(1);
        self.budgets.requeue(0, socket.queued());
        let addr_key = addr_key(socket.addr().ip(), self.config.ipv6_prefix_len);
        let held = Held::of(socket.phase());
        let key = self.sockets.insert(Entry {
            generation,
            socket,
            announced: false,
            dirty: false,
            created: self.created,
            since: now,
            addr_key,
            held,
            listed: false,
            armed: None,
            listen_addrs: Vec::new(),
            addrs_sent: false,
            discovered: false,
            alias: None,
        });
        self.created += 1;
        let conn = ConnId { key, generation };
        self.rehold(conn, Held::default(), held);
        self.retime(conn);
        self.mark_dirty(conn);
        conn
    }

    /// Counts `conn` as holding `to` instead of `from`, in the slot counts and in the
    /// sets kept beside them. Every change of phase comes through here.
    fn rehold(&mut self, conn: ConnId, from: Held, to: Held) {
        let Some(entry) = self.entry(conn) else {
            return;
        };
        let (direction, addr, addr_key, created) = (
            entry.socket.direction(),
            entry.socket.addr(),
            entry.addr_key,
            entry.created,
        );
        self.slots.remove(direction, addr_key, from);
        self.slots.add(direction, addr_key, to);
        if direction == Direction::Outbound && from.slot != to.slot {
            if to.slot {
                self.dialing.insert(addr, conn);
            } else if self.dialing.get(&addr) == Some(&conn) {
                self.dialing.remove(&addr);
            }
        }
        if direction == Direction::Inbound && from.pending != to.pending {
            if to.pending {
                self.pending_inbound.insert(conn);
            } else {
                self.pending_inbound.remove(&conn);
            }
        }
        if from.closing != to.closing {
            if to.closing {
                self.closing.insert(created, conn);
            } else {
                self.closing.remove(&created);
            }
        }
    }

    /// Lists `conn` in [`Node::serving`] while it is open and announced, and only then.
    fn relist(&mut self, conn: ConnId) {
        let Some(entry) = slot_mut(&mut self.sockets, conn) else {
            return;
        };
        let serves = entry.announced && entry.socket.phase() == Phase::Open;
        // A connection is announced only once its peer is known, and keeps it.
        let Some(peer) = entry.socket.remote() else {
            return;
        };
        if serves == entry.listed {
            return;
        }
        entry.listed = serves;
        let list = self.serving.entry(peer).or_default();
        match list.binary_search(&conn) {
            Err(at) if serves => list.insert(at, conn),
            Ok(at) if !serves => {
                list.remove(at);
            }
            _ => {}
        }
        if list.is_empty() {
            self.serving.remove(&peer);
        }
    }

    /// Keeps `conn`'s deadline in [`Node::timers`] after its socket changed.
    fn retime(&mut self, conn: ConnId) {
        let Some(entry) = slot_mut(&mut self.sockets, conn) else {
            return;
        };
        let at = entry.socket.next_deadline();
        // A later deadline leaves the earlier one armed: it fires, the socket finds
        // nothing due, and the later one is armed then. Nearly every read pushes the
        // keepalive's deadline later; this keeps those off the timer heap, at the
        // cost of one early wakeup per connection and ping interval.
        let later = matches!((entry.armed, at), (Some(armed), Some(at)) if at >= armed);
        if later || entry.armed == at {
            return;
        }
        entry.armed = at;
        self.timers.set(conn, at);
    }

    /// Takes `conn`, about to leave the slab, out of every count and set.
    fn unlink(&mut self, conn: ConnId) {
        let Some(entry) = slot_mut(&mut self.sockets, conn) else {
            return;
        };
        let held = std::mem::take(&mut entry.held);
        self.rehold(conn, held, Held::default());
        // Closed, or a dial that never connected: listed nowhere, and nothing to relist.
        debug_assert!(self.entry(conn).is_none_or(|e| !e.listed));
        self.timers.set(conn, None);
    }

    /// Connections dialling or handshaking, both ways.
    fn handshaking(&self) -> usize {
        self.slots.pending_inbound + self.slots.pending_dials
    }

    /// Reserves a socket for a dial; the shell connects and reports back.
    pub(crate) fn dial(&mut self, addr: SocketAddr, now: Instant) -> Result<ConnId, DialError> {
        if self.shutting_down {
            return Err(DialError::ShuttingDown);
        }
        // Our own budgets: inbound connections never take from them.
        if self.slots.outbound >= self.config.max_outbound {
            return Err(DialError::OutboundLimit(self.config.max_outbound));
        }
        if self.slots.pending_dials >= self.config.max_pending_dials {
            return Err(DialError::HandshakeLimit(self.config.max_pending_dials));
        }
        // Two dials to one peer would both be initiated by us, and the two ends could
        // disagree on which is newer (PROTOCOL.md §2.3); one dial per address avoids it.
        if self.dialing.contains_key(&addr) {
            return Err(DialError::AlreadyDialing(addr));
        }
        let socket = Socket::outbound(&self.config, &self.key, self.rng.fork(), addr, now);
        Ok(self.insert(socket, now))
    }

    /// A connection was accepted. `None`: refused, the shell drops it before any byte is sent.
    pub(crate) fn handle_accept(&mut self, addr: SocketAddr, now: Instant) -> Option<ConnId> {
        let from = addr_key(addr.ip(), self.config.ipv6_prefix_len);
        let victim = match self.admit(from, now) {
            Ok(victim) => victim,
            Err(why) => {
                self.refused_inbound += 1;
                log::debug!("refused inbound connection from {addr}: {why}");
                return None;
            }
        };
        if let Some(victim) = victim {
            self.evicted_handshakes += 1;
            log::debug!("evicting a pending handshake for one from {addr}");
            self.with_socket(victim, now, |s, _, out| s.abort(CloseReason::Evicted, out));
        }
        let socket = Socket::inbound(&self.config, &self.key, self.rng.fork(), addr, now);
        Some(self.insert(socket, now))
    }

    /// Whether a connection from the remote address `from` may start a handshake now,
    /// and if so, which pending one it evicts; takes its handshake token. The
    /// connection limits first, then the token, so that connections refused anyway do
    /// not spend their address's tokens.
    fn admit(&mut self, from: IpAddr, now: Instant) -> Result<Option<ConnId>, &'static str> {
        if self.shutting_down {
            return Err("shutting down");
        }
        if self.slots.inbound >= self.config.max_inbound {
            return Err("max_inbound");
        }
        let here = self.slots.at(from);
        if here.inbound >= self.config.max_inbound_per_ip {
            return Err("max_inbound_per_ip");
        }
        if here.pending >= self.config.max_pending_handshakes_per_ip {
            return Err("max_pending_handshakes_per_ip");
        }
        let victim = if self.slots.pending_inbound >= self.config.max_pending_handshakes {
            Some(
                self.eviction_victim(here.pending)
                    .ok_or("max_pending_handshakes")?,
            )
        } else {
            None
        };
        if !self.handshake_rate.take(from, now) {
            self.rate_limited_accepts += 1;
            return Err("handshake_rate_per_ip");
        }
        Ok(victim)
    }

    /// The pending inbound connection a newcomer whose address has `pending`
    /// handshakes evicts from a full table: among the addresses holding the most, and
    /// more than `pending`, the one that made the least progress (fewest whole
    /// handshake messages, then oldest). `None` if no address holds more. One pass over the
    /// pending handshakes (at most `max_pending_handshakes`), only when the table is
    /// full; the rank ends with the creation number, so the choice repeats in the
    /// simulator.
    fn eviction_victim(&self, pending: usize) -> Option<ConnId> {
        self.pending_inbound
            .iter()
            .filter_map(|&conn| self.entry(conn).map(|e| (conn, e)))
            .map(|(conn, e)| {
                let holds = self.slots.at(e.addr_key).pending;
                // Least progress first (whole handshake messages, never padding
                // bytes), then the oldest.
                let rank = (
                    std::cmp::Reverse(holds),
                    e.socket.handshake_progress(),
                    e.created,
                );
                (rank, holds, conn)
            })
            .min_by_key(|&(rank, _, _)| rank)
            .filter(|&(_, holds, _)| holds > pending)
            .map(|(_, _, conn)| conn)
    }

    /// Frees the slot of a dial whose connect call failed at once, with no event.
    pub(crate) fn cancel(&mut self, conn: ConnId) {
        if self.entry(conn).is_some() {
            self.unlink(conn);
            let entry = self.sockets.remove(conn.key);
            self.budgets.requeue(entry.socket.queued(), 0);
        }
    }

    /// The connect call of a dial the node started itself ([`Node::poll_dial`])
    /// failed at once: the dial ends as `DialFailed`, and the peer is dialled again
    /// after its backoff.
    pub(crate) fn handle_connect_error(
        &mut self,
        conn: ConnId,
        kind: std::io::ErrorKind,
        now: Instant,
    ) {
        let Some(addr) = self.entry(conn).map(|e| e.socket.addr()) else {
            return;
        };
        self.cancel(conn);
        self.book.failed(&addr);
        self.wake_discovery(now);
        self.events.push(Event::DialFailed {
            addr,
            reason: CloseReason::ConnectFailed(kind),
        });
        self.persistent_dial_failed(conn, addr, now);
    }

    /// Makes `addr` a persistent peer: dialled on the next [`Node::handle_timeout`]
    /// (due now), and again after a backoff whenever its session ends or a dial fails.
    /// With `expected`, a different proven id closes the connection
    /// (`UnexpectedPeer`). Adding it again only changes `expected`.
    pub(crate) fn add_peer(
        &mut self,
        addr: SocketAddr,
        expected: Option<PeerId>,
        now: Instant,
    ) -> Result<(), DialError> {
        if self.shutting_down {
            return Err(DialError::ShuttingDown);
        }
        // Each needs an outbound slot while it is dialled, beside the ones discovery
        // keeps (`target_outbound`): more could never all be, and discovery would take
        // the slot of one that dropped for good.
        let room = self
            .config
            .max_outbound
            .saturating_sub(self.config.target_outbound);
        if !self.persistent.contains(&addr) && self.persistent.len() >= room {
            return Err(DialError::OutboundLimit(self.config.max_outbound));
        }
        self.persistent.add(addr, expected, now);
        Ok(())
    }

    /// Stops dialling `addr` again; a connection or dial to it goes on as any other.
    /// False if it was not a persistent peer.
    pub(crate) fn remove_peer(&mut self, addr: &SocketAddr) -> bool {
        self.persistent.remove(addr)
    }

    /// The next dial the node started itself (a persistent peer's), oldest first: the
    /// driver connects it as it does those of [`Node::dial`], then reports
    /// [`Node::handle_connected`] or [`Node::handle_connect_failed`], or
    /// [`Node::handle_connect_error`] if the connect call failed at once.
    pub(crate) fn poll_dial(&mut self) -> Option<(ConnId, SocketAddr)> {
        self.own_dials.pop_front()
    }

    /// Dials the persistent peer at `addr`, unless a dial to it is under way or the
    /// peer it proved is connected (its loss schedules the next dial).
    fn redial(&mut self, addr: SocketAddr, now: Instant) {
        let Some(entry) = self.persistent.get_mut(&addr) else {
            return;
        };
        let (known, dialling) = (entry.known, entry.dial.is_some());
        let connected = known.is_some_and(|peer| self.peers.contains_key(&peer));
        if dialling || connected || self.shutting_down {
            return;
        }
        if known.is_some_and(|peer| self.is_banned(&peer, now)) {
            // Not a failure: it waits for the ban's end (or an unban), announced so.
            return self.schedule_redial(addr, now);
        }
        if self.adopt_dial(addr, now) {
            return;
        }
        match self.dial(addr, now) {
            Ok(conn) => {
                if let Some(entry) = self.persistent.get_mut(&addr) {
                    entry.dial = Some(conn);
                }
                self.own_dials.push_back((conn, addr));
            }
            Err(why) => {
                log::info!("persistent peer {addr}: not dialled: {why}");
                self.persistent.failed(&addr);
                self.schedule_redial(addr, now);
            }
        }
    }

    /// A dial of the application's to the persistent address `addr` (one per
    /// address) is the peer's: still under way, it is taken as the persistent dial; open,
    /// its session is the peer's (if it proved the id expected, if any), so the
    /// address waits for it to end instead of being refused `AlreadyDialing` at every
    /// wait. False if there is none to take.
    fn adopt_dial(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let Some(&conn) = self.dialing.get(&addr) else {
            return false;
        };
        let Some(socket) = self.entry(conn).map(|e| &e.socket) else {
            return false;
        };
        let (phase, remote) = (socket.phase(), socket.remote());
        let Some(entry) = self.persistent.get_mut(&addr) else {
            return false;
        };
        match remote {
            _ if matches!(phase, Phase::Opening | Phase::Authenticating) => {
                entry.dial = Some(conn);
            }
            Some(peer) if entry.expected.is_none_or(|e| e == peer) => {
                entry.session_since = Some(now);
                self.persistent.set_known(addr, Some(peer));
            }
            _ => return false,
        }
        true
    }

    /// If `conn` was the dial of a persistent peer, it failed: dial again after the
    /// backoff, one failure longer.
    fn persistent_dial_failed(&mut self, conn: ConnId, addr: SocketAddr, now: Instant) {
        if let Some(entry) = self
            .persistent
            .get_mut(&addr)
            .filter(|e| e.dial == Some(conn))
        {
            entry.dial = None;
            self.persistent.failed(&addr);
            self.schedule_redial(addr, now);
        }
    }

    /// Schedules the next dial of the persistent peer at `addr` and tells the
    /// application when: after its backoff, or if the peer it is known to be is
    /// banned, at the ban's end (for a ban for good, not until [`Node::unban`], and
    /// nothing is announced): an announced dial always follows.
    fn schedule_redial(&mut self, addr: SocketAddr, now: Instant) {
        if self.shutting_down {
            return;
        }
        let known = self.persistent.get_mut(&addr).and_then(|e| e.known);
        let scheduled = match known.and_then(|peer| self.ban_end(&peer, now)) {
            Some(None) => {
                log::info!("persistent peer {addr}: not dialled while banned");
                return;
            }
            Some(Some(end)) => self.persistent.schedule_at(addr, end, now),
            None => {
                let c = &self.config;
                let backoff = (c.redial_base, c.redial_max, c.redial_jitter);
                self.persistent.schedule(addr, backoff, &mut self.rng, now)
            }
        };
        if let Some(r) = scheduled {
            log::info!(
                "persistent peer {addr}: dial {} in {:?}",
                r.attempt,
                r.after
            );
            self.events.push(Event::Redialing {
                addr: r.addr,
                peer: r.peer,
                attempt: r.attempt,
                after: r.after,
            });
        }
    }

    /// Forgets the receive budget `socket` held, as its entry leaves the slab.
    fn forget_reads(&mut self, conn: ConnId, socket: &Socket, now: Instant) {
        self.budgets.recharge(socket.charged(), 0);
        if socket.is_paused() {
            self.paused.remove(&conn);
        }
        if socket.charged() > 0 || self.read_first == Some(conn) {
            self.read_released(conn, now);
        }
    }

    /// Frees a closed socket's slot; false if `conn` is stale or not closed.
    pub(crate) fn remove(&mut self, conn: ConnId, now: Instant) -> bool {
        if self.phase(conn) != Some(Phase::Closed) {
            return false;
        }
        self.unlink(conn);
        let entry = self.sockets.remove(conn.key);
        self.forget_reads(conn, &entry.socket, now);
        if let Some(reason) = entry.socket.close_reason() {
            log::trace!("freed connection with {}: {reason}", entry.socket.addr());
        }
        self.budgets.requeue(entry.socket.queued(), 0);
        self.closed_totals.add(entry.socket.stats());
        true
    }

    fn entry(&self, conn: ConnId) -> Option<&Entry> {
        self.sockets
            .get(conn.key)
            .filter(|e| e.generation == conn.generation)
    }

    fn entry_mut(&mut self, conn: ConnId) -> Option<&mut Entry> {
        slot_mut(&mut self.sockets, conn)
    }

    /// The phase of a connection; `None` for a stale id.
    pub(crate) fn phase(&self, conn: ConnId) -> Option<Phase> {
        self.entry(conn).map(|e| e.socket.phase())
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(entry) = self.entry_mut(conn)
            && !entry.dirty
        {
            entry.dirty = true;
            self.dirty.push(conn);
        }
    }

    /// Moves the connections whose output, phase or interest may have changed into `into`.
    pub(crate) fn poll_flush(&mut self, into: &mut Vec<ConnId>) {
        for conn in self.dirty.drain(..) {
            if let Some(entry) = slot_mut(&mut self.sockets, conn) {
                entry.dirty = false;
                into.push(conn);
            }
        }
    }

    /// Runs `f` on a socket, keeping the global byte count, then handles its outputs.
    fn with_socket<R>(
        &mut self,
        conn: ConnId,
        now: Instant,
        f: impl FnOnce(&mut Socket, &mut Rng, &mut Vec<Output>) -> R,
    ) -> Option<R> {
        let result = self.with_socket_events(conn, now, |s, rng, out, _| f(s, rng, out));
        self.retime(conn);
        result
    }

    /// [`Node::with_socket`] without re-arming the socket's timer: for the steps of
    /// a read ([`Node::read_buf`], [`Node::handle_read`]), which
    /// [`Node::take_frames`] ends by re-arming once, not after each step.
    fn with_socket_untimed<R>(
        &mut self,
        conn: ConnId,
        now: Instant,
        f: impl FnOnce(&mut Socket, &mut Rng, &mut Vec<Output>) -> R,
    ) -> Option<R> {
        self.with_socket_events(conn, now, |s, rng, out, _| f(s, rng, out))
    }

    /// [`Node::with_socket_untimed`], `f` also given the events and the peer the
    /// socket serves, to turn frames into events as it takes them ([`FrameSink`]).
    fn with_socket_events<R>(
        &mut self,
        conn: ConnId,
        now: Instant,
        f: impl FnOnce(&mut Socket, &mut Rng, &mut Vec<Output>, FrameTo<'_>) -> R,
    ) -> Option<R> {
        let connections = self.sockets.len();
        let read_room = self.read_room(conn);
        let entry = slot_mut(&mut self.sockets, conn)?;
        entry.socket.set_read_room(read_room);
        entry.socket.set_issued(self.issued);
        let charged = entry.socket.charged();
        // PINGs and PONGs stay under the global cap too, leaving every connection
        // room for its GOODBYE.
        entry.socket.set_control_budget(
            self.budgets
                .control_room(self.config.max_write_buffer_total, connections),
        );
        let mut out = std::mem::take(&mut self.out);
        let before = entry.socket.queued();
        let to = FrameTo {
            peer: entry.socket.peer(),
            events: &mut self.events,
        };
        let result = f(&mut entry.socket, &mut self.rng, &mut out, to);
        let after = entry.socket.queued();
        self.budgets.requeue(before, after);
        // Every phase change happens in here: keep the slot counts with it.
        let held = Held::of(entry.socket.phase());
        let was = std::mem::replace(&mut entry.held, held);
        let began_closing = held.closing && !was.closing;
        let released = entry.socket.charged() < charged;
        self.budgets.recharge(charged, entry.socket.charged());
        let peer = entry.socket.peer();
        if held != was {
            self.rehold(conn, was, held);
            self.relist(conn);
        }
        self.mark_dirty(conn);
        if released {
            self.read_released(conn, now);
        }
        for output in out.drain(..) {
            self.handle_output(conn, peer, output, now);
        }
        self.out = out;
        if began_closing {
            self.shed_closing(now);
        }
        Some(result)
    }

    // ---- the receive budget ----

    /// What `conn` may add to the receive budget now. All but the first in line leave
    /// one largest frame's worth free (`Config::validate` makes the budget hold one),
    /// so the first can always finish its frame and give the budget back.
    fn read_room(&self, conn: ConnId) -> usize {
        let free = self.budgets.read_free(self.config.max_read_buffer_total);
        if self.read_first == Some(conn) {
            free
        } else {
            free.saturating_sub(self.config.min_read_buffer_total())
        }
    }

    /// `conn` could not read on for want of receive budget. If no connection is first
    /// in line it becomes first and may try again (true); otherwise it is paused until
    /// budget returns.
    fn read_starved(&mut self, conn: ConnId, now: Instant) -> bool {
        if self.read_first.is_none() {
            self.set_first(Some(conn), now);
            return true;
        }
        // The first in line always has room for its frame; were it starved all the
        // same, it waits like the others rather than being left unread.
        if let Some(entry) = slot_mut(&mut self.sockets, conn)
            && !entry.socket.is_paused()
        {
            entry.socket.pause(now);
            self.paused.insert(conn);
            self.retime(conn);
            log::debug!("receive budget spent: pausing a connection");
        }
        false
    }

    /// `conn` gave receive budget back (a large frame finished, or the connection
    /// closed): the first in line is chosen again if it was `conn`, and every paused
    /// connection reads again.
    fn read_released(&mut self, conn: ConnId, now: Instant) {
        if self.read_first == Some(conn)
            && self
                .entry(conn)
                .is_none_or(|e| e.socket.charged() == 0 || e.socket.phase() != Phase::Open)
        {
            self.set_first(None, now);
        }
        if self.paused.is_empty() {
            return;
        }
        let paused: Vec<ConnId> = std::mem::take(&mut self.paused).into_iter().collect();
        if self.read_first.is_none() {
            // Those holding the least go first, then the oldest: a connection holding
            // much and finishing slowly must not keep the line (it has
            // `frame_timeout` once it has it), and one that just started a large
            // frame, as an honest sender of a block does, is not kept waiting behind
            // those that fill the budget.
            let first = paused.iter().copied().min_by_key(|&c| {
                self.entry(c)
                    .map(|e| (e.socket.charged(), e.socket.buffered(), e.created))
            });
            self.set_first(first, now);
        }
        for conn in paused {
            if let Some(entry) = self.entry_mut(conn) {
                entry.socket.resume(now);
                self.resumed.push(conn);
                self.retime(conn);
            }
        }
    }

    /// Makes `conn` the first in line (or nobody), with `frame_timeout` to finish its
    /// frame while others wait.
    fn set_first(&mut self, conn: Option<ConnId>, now: Instant) {
        self.read_first = conn;
        self.read_first_until = conn.map(|_| now + self.config.frame_timeout);
    }

    /// The first in line holds the budget's reserve: while others wait for it, it must
    /// finish its frame within `frame_timeout` of taking the line, or its connection
    /// closes (`FrameTimeout`, GOODBYE 4) and the line moves on. Without others
    /// waiting it may take its time (its own frame progress deadline still runs).
    fn line_timeout(&mut self, now: Instant) {
        let (Some(conn), Some(until)) = (self.read_first, self.read_first_until) else {
            return;
        };
        if until > now {
            return;
        }
        if self.paused.is_empty() {
            self.read_first_until = Some(now + self.config.frame_timeout);
            return;
        }
        let holds = self
            .entry(conn)
            .is_some_and(|e| e.socket.phase() == Phase::Open && e.socket.buffered() > 0);
        if holds {
            log::info!("closing a connection that kept the receive budget's line");
            self.close(
                conn,
                CloseReason::FrameTimeout,
                Some(GoodbyeReason::Timeout),
                now,
            );
        }
        if self.read_first == Some(conn) {
            self.set_first(None, now);
            self.read_released(conn, now);
        }
    }

    /// Moves the connections that were paused and may read again into `into`.
    pub(crate) fn poll_read(&mut self, into: &mut Vec<ConnId>) {
        into.append(&mut self.resumed);
    }

    /// Whether `conn` is paused for want of receive budget.
    pub(crate) fn is_read_paused(&self, conn: ConnId) -> bool {
        self.entry(conn).is_some_and(|e| e.socket.is_paused())
    }

    /// Turns one output of `conn`, which serves `peer` (read once per batch of
    /// outputs, not once per frame: this is the hot path of every message received),
    /// into an event or a decision.
    #[inline]
    fn handle_output(&mut self, conn: ConnId, peer: PeerId, output: Output, now: Instant) {
        let Some(output) = push_frame_event(&mut self.events, peer, output) else {
            return;
        };
        let event = match output {
            Output::RequestFailed { id, reason } => Event::RequestFailed {
                peer,
                id: RequestId(id),
                reason,
            },
            Output::Established(peer) => return self.established(conn, peer, now),
            Output::Addrs(addrs) => return self.addrs_received(conn, peer, addrs, now),
            Output::GetAddrs => return self.answer_addrs(conn, peer),
            Output::Peers(addrs) => return self.peers_received(conn, addrs, now),
            Output::Closed(reason) => return self.closed(conn, reason, now),
            Output::Gossip { id, hops, payload } => {
                return self.gossip_received(conn, peer, id, hops, payload, now);
            }
            Output::Unflushed(bytes) => return self.unflushed(conn, bytes),
            Output::Message(_)
            | Output::Request { .. }
            | Output::Response { .. }
            | Output::Rejected { .. } => return,
        };
        self.events.push(event);
    }

    /// A graceful close of `conn` ended with `bytes` unsent. Only a connection that
    /// served a peer the application knows carried its frames; others held at most
    /// our preamble, handshake and GOODBYE.
    fn unflushed(&mut self, conn: ConnId, bytes: usize) {
        let Some(entry) = self.entry(conn) else {
            return;
        };
        if let (true, Some(peer)) = (entry.announced, entry.socket.remote()) {
            self.unflushed_bytes += bytes as u64;
            self.events.push(Event::Unflushed { peer, bytes });
        }
    }

    /// The handshake finished: apply PROTOCOL.md §2.3, then announce the peer.
    fn established(&mut self, conn: ConnId, peer: PeerId, now: Instant) {
        if peer == self.local {
            if let Some(addr) = self
                .entry(conn)
                .filter(|e| e.socket.direction() == Direction::Outbound)
                .map(|e| e.socket.addr())
            {
                // Our own address, told back to us: never dialled again.
                self.book.forget(&addr);
                if self.self_addrs.len() < MAX_SELF_ADDRS && !self.self_addrs.contains(&addr) {
                    self.self_addrs.push(addr);
                }
            }
            // Graceful, so the other end of the loop reads our id before the close.
            self.close(conn, CloseReason::SelfConnection, None, now);
            return;
        }
        if let Some(allowed) = &self.config.allowlist
            && !allowed.contains(&peer)
        {
            log::info!("closing {peer:?}: not on the allowlist");
            self.not_allowed += 1;
            self.close(conn, CloseReason::NotAllowed, None, now);
            return;
        }
        if self.is_banned(&peer, now) {
            log::info!("closing {peer:?}: banned");
            self.close(
                conn,
                CloseReason::Banned,
                Some(GoodbyeReason::Misbehaving),
                now,
            );
            return;
        }
        let addr = self.entry(conn).map(|e| e.socket.addr());
        if let Some(entry) = addr
            .and_then(|addr| self.persistent.get_mut(&addr))
            .filter(|e| e.dial == Some(conn))
        {
            if entry.expected.is_some_and(|expected| expected != peer) {
                log::warn!("closing {peer:?}: not the peer expected at its address");
                self.close(conn, CloseReason::UnexpectedPeer, None, now);
                return;
            }
            // A session; the peer is known by its id from now on, so a connection it
            // makes to us keeps the address from being dialled.
            entry.session_since = Some(now);
            entry.dial = None;
            if let Some(addr) = addr {
                self.persistent.set_known(addr, Some(peer));
            }
        }
        if let Some(&other) = self.peers.get(&peer).filter(|&&c| c != conn) {
            return self.duplicate(conn, other, peer, now);
        }
        if let Some(addr) = self
            .entry(conn)
            .filter(|e| e.socket.direction() == Direction::Outbound)
            .map(|e| e.socket.addr())
        {
            self.book.reached(&addr, now);
        }
        self.peers.insert(peer, conn);
        self.announce(conn, peer);
        // A peer we dialled is asked for addresses while we look for them: one we
        // chose, where an eclipse attacker must first have been dialled.
        if self.config.target_outbound > 0
            && self
                .entry(conn)
                .is_some_and(|e| e.socket.direction() == Direction::Outbound)
        {
            self.ask_addrs(conn, now);
            // One more outbound connection: discovery may be over its target.
            self.wake_discovery(now);
        }
    }

    /// The peer of `conn` told its listening addresses: a wildcard IP becomes the one
    /// it is seen at.
    fn addrs_received(
        &mut self,
        conn: ConnId,
        peer: PeerId,
        mut addrs: Vec<SocketAddr>,
        now: Instant,
    ) {
        let Some(entry) = self.entry_mut(conn) else {
            return;
        };
        // Plain IPv4 for an IPv4-mapped address (a dual-stack socket sees an IPv4 peer
        // so), both for the IP seen and for those told; a seen IPv6 one keeps its
        // scope, without which a link-local address reaches nothing.
        let seen = entry.socket.addr();
        // Port 0 reaches nobody: such an address is dropped, the rest kept.
        addrs.retain(|a| a.port() != 0);
        for addr in &mut addrs {
            addr.set_ip(addr.ip().to_canonical());
            if addr.ip().is_unspecified() {
                *addr = match (seen, seen.ip().to_canonical()) {
                    (SocketAddr::V6(v6), IpAddr::V6(ip)) => {
                        SocketAddr::V6(SocketAddrV6::new(ip, addr.port(), 0, v6.scope_id()))
                    }
                    (_, ip) => SocketAddr::new(ip, addr.port()),
                };
            }
        }
        entry.listen_addrs = addrs.clone();
        self.learn(&addrs, &seen, now);
        // Its own addresses at the IP it connects from: a node is there.
        for addr in own_claims(&addrs, seen) {
            self.book.vouch(addr);
        }
        log::debug!("{peer:?} listens on {addrs:?}");
        self.events.push(Event::PeerAddrs { peer, addrs });
    }

    /// Puts what the peer connected from `seen` told in the book (not our own
    /// addresses), and looks for outbound connections if any was new.
    fn learn(&mut self, addrs: &[SocketAddr], seen: &SocketAddr, now: Instant) {
        let mut learned = false;
        for addr in addrs {
            if !self.is_own_addr(addr) {
                learned |= self.book.add_told(*addr, seen);
            }
        }
        if learned {
            self.wake_discovery(now);
        }
    }

    /// Whether `addr` is one of ours: listened on, advertised, or found by a dial.
    fn is_own_addr(&self, addr: &SocketAddr) -> bool {
        self.listen_addrs.contains(addr)
            || self.config.advertised_addrs.contains(addr)
            || self.self_addrs.contains(addr)
    }

    /// A PEERS frame on `conn`, answering our GETADDRS: addresses of other nodes, to
    /// the book. Unlike a peer's own addresses (ADDRS), a wildcard IP means nothing
    /// here and is dropped, as is port 0.
    fn peers_received(&mut self, conn: ConnId, addrs: Vec<SocketAddr>, now: Instant) {
        let Some(seen) = self.entry(conn).map(|e| e.socket.addr()) else {
            return;
        };
        let addrs: Vec<SocketAddr> = addrs
            .into_iter()
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
            .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
            .collect();
        log::debug!("{seen} told {} addresses", addrs.len());
        self.learn(&addrs, &seen, now);
    }

    /// Answers a GETADDRS on `conn` with one PEERS: up to [`MAX_PEERS`] addresses
    /// drawn at random from the book, among those whose last dial did not fail, not
    /// the asker's own, and to a peer on a public address only public ones unless
    /// `advertise_private` (as for our own, §5.1).
    ///
    /// [`MAX_PEERS`]: crate::wire::MAX_PEERS
    fn answer_addrs(&mut self, conn: ConnId, peer: PeerId) {
        let Some(entry) = self.entry(conn) else {
            return;
        };
        let private_ok =
            !is_remote(entry.socket.addr().ip().to_canonical()) || self.config.advertise_private;
        // What the asker told as its own, and where we reached it.
        let mut theirs = entry.listen_addrs.clone();
        if entry.socket.direction() == Direction::Outbound {
            theirs.push(entry.socket.addr());
        }
        theirs.extend(entry.alias);
        let addrs = self.book.sample(
            crate::wire::MAX_PEERS,
            |a| !theirs.contains(a) && (private_ok || is_public(a.ip().to_canonical())),
            &mut self.rng,
        );
        if let Some(Err(e)) = self.queue_on(conn, &Frame::Peers(addrs), false) {
            log::debug!("addresses not queued for {peer:?}: {e}");
        }
    }

    /// Sends a GETADDRS on `conn` if its peer understands it and our last one there
    /// is old enough ([`Socket::may_ask_addrs`]).
    fn ask_addrs(&mut self, conn: ConnId, now: Instant) {
        let Some(entry) = slot_mut(&mut self.sockets, conn) else {
            return;
        };
        if !entry.socket.may_ask_addrs(now) {
            return;
        }
        entry.socket.asked_addrs(now);
        if let Some(Err(e)) = self.queue_on(conn, &Frame::GetAddrs, false) {
            log::debug!("GETADDRS not queued: {e}");
        }
    }

    /// Runs the discovery dialler at `now` (soon, if it is to run later), if there
    /// is a target to keep.
    fn wake_discovery(&mut self, now: Instant) {
        if self.config.target_outbound > 0 && !self.shutting_down {
            self.discover_at = earliest(self.discover_at, Some(now));
        }
    }

    /// The discovery dialler: while the outbound connections (dials under way
    /// included) are fewer than `target_outbound`, dials addresses from the book
    /// chosen at random and spread across network groups and tellers
    /// ([`discovery::choose`]); still short, asks the outbound peers for more
    /// addresses and runs again after [`DISCOVERY_INTERVAL`]. At the target, rotates
    /// ([`Node::rotate`]). A pass over the connections and the book, at most once per
    /// turn, and only while short or when a rotation is due.
    fn discover(&mut self, now: Instant) {
        self.discover_at = None;
        let target = self.config.target_outbound;
        if target == 0 || self.shutting_down {
            return;
        }
        if self.slots.outbound >= target {
            return self.rotate(target, now);
        }
        let mut view = self.discovery_view(now);
        self.dial_for(&mut view, target, now);
        if self.slots.outbound < target {
            // Short of addresses: ask the peers we dialled. With none open, ask the
            // peers that dialled us (a node that only ever accepted would know no one
            // else), two at random, so that no one of them is the only voice and few
            // hear the question; while one we dialled is there, what peers that
            // dialled us would say is not asked for.
            let (mut askable, mut inbound) = (view.askable, view.askable_inbound);
            if view.open_outbound == 0 {
                crate::addrbook::pick(&mut inbound, MAX_INBOUND_ASKED, &mut self.rng);
                askable.append(&mut inbound);
            }
            for conn in askable {
                self.ask_addrs(conn, now);
            }
            self.discover_at = Some(now + DISCOVERY_INTERVAL);
        }
    }

    /// What discovery needs of the connections: one pass over them.
    fn discovery_view(&self, now: Instant) -> DiscoveryView {
        // Addresses not to dial: those dialled or connected, and those the connected
        // peers listen on.
        let mut view = DiscoveryView {
            in_use: self.dialing.keys().copied().collect(),
            outbound: discovery::Outbound::default(),
            askable: Vec::new(),
            askable_inbound: Vec::new(),
            open_outbound: 0,
        };
        for (key, entry) in self.sockets.iter() {
            if !entry.held.slot {
                continue;
            }
            // What a peer claims it listens on is in use only at the IP it connects
            // from: a claim of others' addresses (checked by nobody) must not keep us
            // from dialling them.
            view.in_use
                .extend(own_claims(&entry.listen_addrs, entry.socket.addr()));
            view.in_use.extend(entry.alias);
            let outbound = entry.socket.direction() == Direction::Outbound;
            if outbound {
                let addr = entry.socket.addr();
                view.in_use.insert(addr);
                view.outbound
                    .add(addr, self.book.get(&addr).map(|k| k.source));
                // Only a peer that could be asked makes asking inbound ones needless.
                view.open_outbound += usize::from(entry.announced && entry.socket.peer_takes_pex());
            }
            if entry.announced && entry.socket.may_ask_addrs(now) {
                let conn = ConnId {
                    key,
                    generation: entry.generation,
                };
                if outbound {
                    view.askable.push(conn);
                } else {
                    view.askable_inbound.push(conn);
                }
            }
        }
        view
    }

    /// Dials addresses from the book, chosen at random with the spread, until the
    /// outbound connections `view` counts reach `target`: not ours, not in use,
    /// not a persistent peer's (dialled on their own), and not tried within their
    /// backoff.
    fn dial_for(&mut self, view: &mut DiscoveryView, target: usize, now: Instant) {
        let backoff = (self.config.redial_base, self.config.redial_max);
        let candidates: Vec<(SocketAddr, Source)> = self
            .book
            .dialable(now, backoff)
            .filter(|(addr, _)| {
                !view.in_use.contains(addr)
                    && !self.is_own_addr(addr)
                    && !self.persistent.contains(addr)
            })
            .map(|(addr, known)| (addr, known.source))
            .collect();
        // Half the configured target per teller network, whatever `target` is here
        // (one more, for a rotation).
        let per_source = (self.config.target_outbound / 2).max(1);
        let chosen = discovery::choose(
            candidates,
            &mut view.outbound,
            target,
            per_source,
            &mut self.rng,
        );
        self.dial_discovered(chosen, now);
    }

    /// Dials `addrs` for discovery, until one cannot be dialled or the dial budget
    /// is spent ([`DISCOVERY_DIAL_RATE`]).
    fn dial_discovered(&mut self, addrs: Vec<SocketAddr>, now: Instant) {
        let burst = self.config.target_outbound.max(1);
        let budget = self
            .discovery_budget
            .get_or_insert_with(|| TokenBucket::new(DISCOVERY_DIAL_RATE, burst, now));
        budget.refill(now);
        for addr in addrs {
            let Some(budget) = self.discovery_budget.as_mut().filter(|b| b.holds(1)) else {
                log::debug!("discovery: dial budget spent");
                break;
            };
            budget.take(1);
            match self.dial(addr, now) {
                Ok(conn) => {
                    log::debug!("discovery: dialling {addr}");
                    self.book.tried(&addr, now);
                    self.own_dials.push_back((conn, addr));
                    self.discovery_dials += 1;
                    if let Some(entry) = self.entry_mut(conn) {
                        entry.discovered = true;
                    }
                }
                Err(why) => {
                    log::debug!("discovery: {addr} not dialled: {why}");
                    break;
                }
            }
        }
    }

    /// Discovery at its target (`outbound_rotation`): with more open outbound
    /// connections than the target, closes one discovery made, at random but never
    /// the newest; else, when the rotation is due and no dial is under way, dials one
    /// more address, chosen as [`Node::discover`] chooses. Then waits for the next
    /// rotation.
    fn rotate(&mut self, target: usize, now: Instant) {
        let every = self.config.outbound_rotation;
        if every.is_zero() {
            return;
        }
        let mut open = 0;
        let mut discovered: Vec<(u64, ConnId)> = Vec::new();
        for (key, entry) in self.sockets.iter() {
            if entry.held.slot && entry.announced && entry.socket.direction() == Direction::Outbound
            {
                open += 1;
                // A connection discovery made that became a persistent peer's (the
                // application added it since) is the application's now.
                let persistent = self.persistent.contains(&entry.socket.addr())
                    || entry
                        .socket
                        .remote()
                        .is_some_and(|p| self.persistent.is_known(&p));
                if entry.discovered && !persistent {
                    let conn = ConnId {
                        key,
                        generation: entry.generation,
                    };
                    discovered.push((entry.created, conn));
                }
            }
        }
        if open > target {
            // The newest is spared while it is a rotation's fresh dial (younger than a
            // period), not for good: a slot must not stay one holder's.
            discovered.sort_unstable();
            let fresh_until = discovered
                .last()
                .and_then(|&(_, c)| self.entry(c))
                .and_then(|e| e.since.checked_add(every))
                .filter(|&until| until > now);
            if let Some(until) = fresh_until {
                discovered.pop();
                // Looked at again once it is no longer fresh.
                self.discover_at = earliest(self.discover_at, Some(until));
            }
            let mut victims: Vec<ConnId> = discovered.into_iter().map(|(_, c)| c).collect();
            crate::addrbook::pick(&mut victims, open - target, &mut self.rng);
            for conn in victims {
                log::debug!("discovery: rotating out an outbound connection");
                self.close(
                    conn,
                    CloseReason::Rotated,
                    Some(GoodbyeReason::Shutdown),
                    now,
                );
            }
        } else if open == self.slots.outbound {
            match self.rotate_at {
                Some(at) if at <= now => {
                    // The next a period on, whether this one finds an address or not.
                    self.rotate_at = now.checked_add(every);
                    self.discover_one_more(target, now);
                }
                Some(_) => {}
                None => self.rotate_at = now.checked_add(every),
            }
        }
        // A dial under way or a connection closing wakes discovery when it ends (a
        // rotation due meanwhile waits for that); a wake already set stays.
        let next = self.rotate_at.filter(|&at| at > now);
        self.discover_at = earliest(self.discover_at, next);
    }

    /// Dials one address beyond the target (a rotation), chosen with the spread.
    fn discover_one_more(&mut self, target: usize, now: Instant) {
        let mut view = self.discovery_view(now);
        self.dial_for(&mut view, target + 1, now);
    }

    /// Our listening addresses to tell the peer of `conn`, if it understands ADDRS:
    /// to a peer on a public address only our public ones and wildcards, unless
    /// `advertise_private`.
    fn addrs_for(&self, conn: ConnId) -> Option<Frame> {
        let entry = self.entry(conn)?;
        if entry.addrs_sent || !entry.socket.peer_takes_addrs() {
            return None;
        }
        let configured = &self.config.advertised_addrs;
        let ours = if configured.is_empty() {
            &self.listen_addrs
        } else {
            configured
        };
        let public_peer = is_remote(entry.socket.addr().ip().to_canonical());
        let addrs: Vec<SocketAddr> = ours
            .iter()
            .filter(|a| {
                let ip = a.ip().to_canonical();
                ip.is_unspecified()
                    || !public_peer
                    || self.config.advertise_private
                    || is_public(ip)
            })
            .take(crate::wire::MAX_ADDRS)
            .copied()
            .collect();
        (!addrs.is_empty()).then_some(Frame::Addrs(addrs))
    }

    /// An address this node listens on, to tell peers (ADDRS) unless
    /// `Config::advertised_addrs` says otherwise.
    pub(crate) fn add_listen_addr(&mut self, addr: SocketAddr) {
        if !self.listen_addrs.contains(&addr) {
            self.listen_addrs.push(addr);
        }
    }

    /// Tells the peer of `conn` our listening addresses, once per connection, if it
    /// understands ADDRS. Every connection kept after its handshake gets them, not only
    /// the one serving the peer: by the duplicate rule (§2.3) a second connection may
    /// take over, quietly, and must carry them too.
    fn tell_addrs(&mut self, conn: ConnId, peer: PeerId) {
        if let Some(frame) = self.addrs_for(conn) {
            if let Some(Err(e)) = self.queue_on(conn, &frame, false) {
                log::debug!("our addresses not queued for {peer:?}: {e}");
            }
            if let Some(entry) = self.entry_mut(conn) {
                entry.addrs_sent = true;
            }
        }
    }

    /// Tells the application that `conn` serves `peer` from now on.
    fn announce(&mut self, conn: ConnId, peer: PeerId) {
        self.tell_addrs(conn, peer);
        let Some(entry) = self.entry_mut(conn) else {
            return;
        };
        entry.announced = true;
        let (addr, direction) = (entry.socket.addr(), entry.socket.direction());
        self.relist(conn);
        log::info!("connected to {peer:?} at {addr} ({direction})");
        self.events.push(Event::PeerConnected {
            peer,
            addr,
            direction,
        });
    }

    /// PROTOCOL.md §2.3 for a second connection `conn` to `peer`, which `other` serves.
    fn duplicate(&mut self, conn: ConnId, other: ConnId, peer: PeerId, now: Instant) {
        let candidate = |node: &Self, c: ConnId| {
            node.entry(c).map(|e| duplicate::Candidate {
                direction: e.socket.direction(),
                created: e.created,
            })
        };
        let (Some(new), Some(old)) = (candidate(self, conn), candidate(self, other)) else {
            return;
        };
        if new.direction == Direction::Outbound
            && let Some(dialled) = self.entry(conn).map(|e| e.socket.addr())
        {
            for c in [conn, other] {
                if let Some(entry) = self.entry_mut(c) {
                    entry.alias = Some(dialled);
                }
            }
        }
        let verdict = duplicate::rule(self.local, peer, new, old);
        let loser = match verdict {
            duplicate::Verdict::CloseNew => Some(conn),
            duplicate::Verdict::CloseOld => Some(other),
            duplicate::Verdict::PeerDecides => None,
        };
        if loser != Some(conn)
            && let Some(entry) = self.entry_mut(conn)
        {
            entry.announced = true;
            self.relist(conn);
            self.tell_addrs(conn, peer);
        }
        let Some(loser) = loser else {
            // If the peer still holds the old one, it closes this one at once. If it
            // answers this PING on it instead, it kept this one: by the duplicate
            // rule it no longer holds the old one (see `received`). Under noise only:
            // there the initiator finishes each handshake before we do, so it already
            // chose when the PING arrives; in plaintext it may still be finishing the
            // old one's handshake and keep that one after answering.
            log::debug!("second connection from {peer:?}; waiting for it to close one");
            if self.config.security == Security::NoiseXx {
                self.with_socket(conn, now, |s, rng, _| s.probe(rng));
            }
            return;
        };
        let mut losers = vec![loser];
        if loser == other {
            self.peers.insert(peer, conn);
            // Every other connection initiated by the loser's initiator loses to this
            // one too: a second one the peer dialled, still waiting for the peer to
            // close one, must not outlive the rule's verdict.
            if new.direction != old.direction {
                let old_direction = Some(old.direction);
                losers.extend(
                    self.serving(peer, conn)
                        .filter(|&c| self.entry(c).map(|e| e.socket.direction()) == old_direction),
                );
            }
        }
        log::debug!("duplicate connection to {peer:?}; closing {}", losers.len());
        for loser in losers {
            self.close(
                loser,
                CloseReason::DuplicateConnection,
                Some(GoodbyeReason::DuplicateConnection),
                now,
            );
        }
    }

    /// Cuts the oldest graceful close short while more connections are closing than
    /// `max_inbound + max_outbound`. They no longer count against the connection
    /// limits (the application was told), and the peer decides when such a close ends
    /// (up to `close_timeout`), so without this a peer cycling connections could hold
    /// sockets without bound. What the one cut short had queued is reported
    /// (`Event::Unflushed`).
    fn shed_closing(&mut self, now: Instant) {
        let cap = self
            .config
            .max_inbound
            .saturating_add(self.config.max_outbound);
        while self.slots.closing > cap {
            let Some(conn) = self.closing.values().next().copied() else {
                return;
            };
            log::debug!(
                "{} connections closing; cutting the oldest short",
                self.slots.closing
            );
            self.with_socket(conn, now, |s, _, out| s.abort(CloseReason::Shutdown, out));
        }
    }

    /// Closes `conn` gracefully, saying `goodbye` if it is open.
    fn close(
        &mut self,
        conn: ConnId,
        reason: CloseReason,
        goodbye: Option<GoodbyeReason>,
        now: Instant,
    ) {
        self.with_socket(conn, now, |s, _, out| s.close(reason, goodbye, now, out));
    }

    /// The open connections serving `peer`, besides `conn`, in slab order.
    fn serving(&self, peer: PeerId, conn: ConnId) -> impl Iterator<Item = ConnId> + '_ {
        self.serving
            .get(&peer)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |c| c.key != conn.key)
    }

    fn closed(&mut self, conn: ConnId, reason: CloseReason, now: Instant) {
        if let Some(entry) = slot_mut(&mut self.sockets, conn)
            && entry.socket.is_paused()
        {
            // Out of service, it holds no budget: it reads again, to see the peer close.
            entry.socket.resume(now);
            self.paused.remove(&conn);
            self.resumed.push(conn);
            self.retime(conn);
        }
        let Some(entry) = self.entry(conn) else {
            return;
        };
        let (remote, announced) = (entry.socket.remote(), entry.announced);
        let (direction, addr) = (entry.socket.direction(), entry.socket.addr());
        let since = entry.since;
        // The peer is there through another connection (a duplicate closed): the
        // address reached it, whatever the peer said.
        let still_served = remote.is_some_and(|peer| {
            self.peers.get(&peer).is_some_and(|&c| c != conn)
                || self.serving(peer, conn).next().is_some()
        });
        let no_failure = reason.is_ours() || still_served;
        if direction == Direction::Outbound {
            // Its slot is free: look for another.
            self.wake_discovery(now);
            // A session our dial began that ended before `redial_max` (the peer took
            // the handshake and closed: it banned us, or has no room) counts as a
            // failed dial, as a persistent peer's does: such an address is backed
            // off, then forgotten, not redialled at the first wait for ever. A
            // lasting one clears the address's failures.
            let short = now.saturating_duration_since(since) < self.config.redial_max;
            if announced && !short {
                self.book.lasted(&addr);
            } else if announced && !no_failure {
                self.book.failed(&addr);
            }
        }
        if let (Some(peer), CloseReason::Misbehaving, true) = (remote, &reason, announced) {
            // A misbehaving peer loses every connection, not only the one it misbehaved on.
            let others: Vec<ConnId> = self.serving(peer, conn).collect();
            for other in others {
                self.close(
                    other,
                    CloseReason::Misbehaving,
                    Some(GoodbyeReason::Misbehaving),
                    now,
                );
            }
        }
        match remote {
            Some(peer) if self.peers.get(&peer) == Some(&conn) => {
                // A second connection the peer dialled takes over. If the peer closed
                // this one by the duplicate rule, its session goes on unseen by the
                // application; otherwise this session ended and the peer's other
                // connection is a new one.
                let alternate = self.serving(peer, conn).next();
                if let Some(alternate) = alternate.filter(|_| !self.shutting_down) {
                    self.peers.insert(peer, alternate);
                    if reason != CloseReason::Goodbye(GoodbyeReason::DuplicateConnection) {
                        log::info!("disconnected from {peer:?}: {reason}; it is connected again");
                        self.events.push(Event::PeerDisconnected { peer, reason });
                        self.announce(alternate, peer);
                    }
                    return;
                }
                self.peers.remove(&peer);
                log::info!("disconnected from {peer:?}: {reason}");
                self.events.push(Event::PeerDisconnected { peer, reason });
                // Its session ended: dial it again. A session that lasted
                // `redial_max` starts the backoff over; a shorter one counts as a
                // failed dial, so a peer that takes our handshake and then closes
                // (it banned us, or has no room) is not redialled at the first wait
                // forever. One it dialled itself counts as lasting.
                for addr in self.persistent.idle_for(peer) {
                    self.persistent
                        .session_ended(&addr, self.config.redial_max, now);
                    self.schedule_redial(addr, now);
                }
            }
            // A duplicate that served a peer still connected through another one.
            _ if announced => {}
            _ => {
                self.failed_handshakes += 1;
                log::debug!("{direction} connection with {addr} ended before it opened: {reason}");
                if direction == Direction::Outbound {
                    // A dial the duplicate rule closed reached the peer: no failure.
                    if !no_failure {
                        self.book.failed(&addr);
                    }
                    self.events.push(Event::DialFailed { addr, reason });
                    self.persistent_dial_failed(conn, addr, now);
                }
            }
        }
    }

    // ---- IO from the shell ----

    /// The dial connected.
    pub(crate) fn handle_connected(&mut self, conn: ConnId, now: Instant) {
        self.with_socket(conn, now, |s, _, _| s.connected(now));
    }

    /// The dial failed.
    pub(crate) fn handle_connect_failed(
        &mut self,
        conn: ConnId,
        kind: std::io::ErrorKind,
        now: Instant,
    ) {
        self.with_socket(conn, now, |s, _, out| {
            s.abort(CloseReason::ConnectFailed(kind), out)
        });
    }

    /// The buffer to read into for `conn` and how many bytes to ask for (at most
    /// `chunk`, never 0), or `None` if it takes no input now: not connected, or paused
    /// for want of receive budget ([`Node::poll_read`] tells when it may read again).
    /// Unless a large frame's own buffer is under way, the buffer is the node's one
    /// read buffer, lent to `conn` until the next read of any connection; `conn`
    /// keeps only what is left of an unfinished frame ([`Socket::lend_rx`]).
    pub(crate) fn read_buf(
        &mut self,
        conn: ConnId,
        chunk: usize,
        now: Instant,
    ) -> Option<(&mut BytesMut, usize)> {
        if let Some(lent) = self.rx_lent.take() {
            self.settle_rx(lent);
        }
        let entry = self.entry(conn)?;
        if matches!(entry.socket.phase(), Phase::Opening | Phase::Closed)
            || entry.socket.is_paused()
        {
            return None;
        }
        if entry.socket.has_record_waiting() {
            // Paused while opening: what it holds is taken before it reads more.
            self.take_frames(conn, now);
            if self.is_read_paused(conn) {
                return None;
            }
        }
        if let Some(entry) = slot_mut(&mut self.sockets, conn)
            && entry.socket.lend_rx(&mut self.rx_scratch)
        {
            self.rx_lent = Some(conn);
        }
        loop {
            let wants = self.size_read_buf(conn, chunk, now).flatten();
            if wants.is_some() {
                break;
            }
            let starved = self.entry(conn).is_some_and(|e| e.socket.starved());
            if !starved || !self.read_starved(conn, now) {
                return None;
            }
        }
        // Asked again for the borrow; the same answer, as nothing changed since.
        let entry = self.entry_mut(conn)?;
        entry.socket.recv_buf(chunk)
    }

    /// How much `conn` may read now (`None` inside: nothing, see
    /// [`Socket::recv_buf`]), its buffer grown under the receive budget. All that
    /// sizing a read buffer needs of [`Node::with_socket`]: it moves no deadline,
    /// queues nothing, changes no phase and has no outputs, and it runs on every read.
    fn size_read_buf(&mut self, conn: ConnId, chunk: usize, now: Instant) -> Option<Option<usize>> {
        let read_room = self.read_room(conn);
        let entry = slot_mut(&mut self.sockets, conn)?;
        entry.socket.set_read_room(read_room);
        let charged = entry.socket.charged();
        let wants = entry.socket.recv_buf(chunk).map(|(_, n)| n);
        let after = entry.socket.charged();
        self.budgets.recharge(charged, after);
        if after < charged {
            self.read_released(conn, now);
        }
        Some(wants)
    }

    /// Hands `bytes` to `conn` as the in-memory drivers read (the simulator, the test
    /// and fuzz harnesses): in the pieces [`Node::read_buf`] asks for, each taken by
    /// [`Node::handle_read`], until all are in or the connection stops reading (paused
    /// for the receive budget, or out of service). Returns how many it took.
    pub(crate) fn handle_bytes(&mut self, conn: ConnId, bytes: &[u8], now: Instant) -> usize {
        let mut taken = 0;
        while taken < bytes.len() {
            let left = bytes.len() - taken;
            let Some((buf, want)) = self.read_buf(conn, left, now) else {
                break;
            };
            let piece = &bytes[taken..taken + want.min(left)];
            buf.extend_from_slice(piece);
            self.handle_read(conn, piece.len(), now);
            taken += piece.len();
        }
        taken
    }

    /// `n` bytes were appended to `conn`'s read buffer. Returns how many events they
    /// produced.
    pub(crate) fn handle_read(&mut self, conn: ConnId, n: usize, now: Instant) -> usize {
        let before = self.events.len();
        // `take_frames` re-arms the timer, once for the whole read.
        self.with_socket_untimed(conn, now, |s, _, out| s.received(n, now, out));
        self.take_frames(conn, now);
        // Whether or not it was read into the scratch: a buffer it kept for an
        // unfinished frame goes once the frame is done.
        self.rx_lent = None;
        self.settle_rx(conn);
        if let Some(peer) = self.kept_by_peer(conn) {
            self.replace(peer, conn, before, now);
        }
        self.events.len().saturating_sub(before)
    }

    /// The receive budget all connections hold (tests).
    #[cfg(all(test, feature = "noise"))]
    pub(crate) fn read_charged(&self) -> usize {
        let cap = self.config.max_read_buffer_total;
        cap - self.budgets.read_free(cap)
    }

    /// The capacity of `conn`'s own read buffers (tests).
    #[cfg(test)]
    pub(crate) fn read_capacity(&self, conn: ConnId) -> Option<usize> {
        self.entry(conn).map(|e| e.socket.read_capacity())
    }

    /// Takes the read buffer back from `conn` if it was lent it, and leaves `conn`
    /// only its unfinished frame ([`Socket::settle_rx`]).
    fn settle_rx(&mut self, conn: ConnId) {
        if let Some(entry) = slot_mut(&mut self.sockets, conn) {
            entry.socket.settle_rx(&mut self.rx_scratch);
        }
    }

    /// Takes `conn`'s whole frames, once the node kept the connection; in batches, so
    /// the outputs stay in cache however many frames one read brought. Then starts or
    /// moves the deadline of a frame left unfinished.
    fn take_frames(&mut self, conn: ConnId, now: Instant) {
        if let Some(entry) = slot_mut(&mut self.sockets, conn) {
            entry.socket.lend_plain(&mut self.plain_scratch);
        }
        while self.phase(conn) == Some(Phase::Open) {
            let more = self.with_socket_events(conn, now, |s, _, out, to| {
                let mut sink = FrameSink { to, out };
                s.take_frames(now, &mut sink, FRAME_BATCH)
            });
            if more == Some(true) {
                continue;
            }
            let starved = self.entry(conn).is_some_and(|e| e.socket.starved());
            if !starved || !self.read_starved(conn, now) {
                break;
            }
        }
        if let Some(entry) = slot_mut(&mut self.sockets, conn) {
            entry.socket.settle_plain(&mut self.plain_scratch);
            entry.socket.track_frame(now);
            self.retime(conn);
        }
    }

    /// The peer of `conn`, if `conn` is a second connection it dialled, the one
    /// serving it is one it dialled a handshake timeout or more earlier, and it
    /// answered the PING we probed `conn` with: it kept `conn`, so by the duplicate
    /// rule it no longer holds the serving one. (The age keeps two dials the peer made
    /// together, whose GOODBYE may be slower than its answer, from being taken for a
    /// replacement.)
    fn kept_by_peer(&self, conn: ConnId) -> Option<PeerId> {
        let entry = self.entry(conn)?;
        let peer = entry.socket.remote()?;
        let answered =
            entry.announced && entry.socket.phase() == Phase::Open && entry.socket.probe_answered();
        if !answered {
            return None;
        }
        let serving = *self.peers.get(&peer)?;
        if serving == conn {
            return None;
        }
        let serving = self.entry(serving)?;
        let settled = serving.socket.direction() == Direction::Inbound
            && serving.since + self.config.handshake_timeout <= entry.since;
        settled.then_some(peer)
    }

    /// `conn` replaces the connection serving `peer`, which the peer lost without its
    /// close reaching us: that one is closed, and the application is told the session
    /// ended and a new one began, before the events `conn`'s frames produced (those
    /// from `first_event` on).
    fn replace(&mut self, peer: PeerId, conn: ConnId, first_event: usize, now: Instant) {
        let Some(&old) = self.peers.get(&peer) else {
            return;
        };
        let news = self.events.split_off(first_event);
        self.peers.insert(peer, conn);
        // Its requests fail now; with `peers` moved on, its close adds no other event.
        self.close(
            old,
            CloseReason::Replaced,
            Some(GoodbyeReason::DuplicateConnection),
            now,
        );
        log::info!("{peer:?} connected again; its old connection is closed");
        self.events.push(Event::PeerDisconnected {
            peer,
            reason: CloseReason::Replaced,
        });
        self.announce(conn, peer);
        self.events.extend(news);
    }

    /// The peer closed its side.
    pub(crate) fn handle_eof(&mut self, conn: ConnId, now: Instant) {
        self.with_socket(conn, now, |s, _, out| s.eof(now, out));
    }

    /// The socket failed.
    pub(crate) fn handle_io_error(&mut self, conn: ConnId, kind: std::io::ErrorKind, now: Instant) {
        self.with_socket(conn, now, |s, _, out| s.io_error(kind, out));
    }

    /// The write sequence of one connection, the same for every driver: seals staged
    /// frames (noise), hands the queue to `wire` until it is empty or the wire takes no
    /// more, shuts the write side once a close has flushed, and frees the connection
    /// once it is closed.
    pub(crate) fn flush(&mut self, conn: ConnId, wire: &mut impl Wire, now: Instant) -> Flushed {
        match self.phase(conn) {
            None | Some(Phase::Opening) => return Flushed::Idle,
            Some(Phase::Closed) => {
                self.remove(conn, now);
                return Flushed::Freed;
            }
            Some(_) => {}
        }
        let mut waiting = false;
        loop {
            self.seal(conn, now);
            let Some(queue) = self.transmit(conn) else {
                return Flushed::Idle;
            };
            if queue.is_empty() {
                break;
            }
            match wire.send(queue) {
                Sent::Wrote(0) => {
                    self.handle_io_error(conn, std::io::ErrorKind::WriteZero, now);
                    break;
                }
                Sent::Wrote(n) => self.written(conn, n, now),
                Sent::Blocked => {
                    waiting = true;
                    break;
                }
                Sent::Failed(kind) => {
                    self.handle_io_error(conn, kind, now);
                    break;
                }
            }
        }
        if self.wants_shutdown(conn) {
            wire.shutdown_write();
            self.write_shut(conn, now);
        }
        if self.phase(conn) == Some(Phase::Closed) {
            self.remove(conn, now);
            return Flushed::Freed;
        }
        Flushed::Live { waiting }
    }

    /// The first step of each write attempt in [`Node::flush`]: starts `conn`'s
    /// write-timeout clock if it has bytes queued, and seals its staged frames into
    /// records (noise). Tests call it to look at what would leave.
    pub(crate) fn seal(&mut self, conn: ConnId, now: Instant) {
        // Marks nothing dirty: the shell is writing this socket already.
        if let Some(entry) = self.entry_mut(conn) {
            entry.socket.writing(now);
            self.retime(conn);
        }
        // Only when it can make progress: `with_socket` marks the socket dirty, and a
        // socket re-dirtied by a seal that sealed nothing (a peer not reading) would
        // keep the shell's write pass spinning.
        if self.entry(conn).is_some_and(|e| e.socket.wants_seal()) {
            self.with_socket(conn, now, |s, _, out| s.seal(out));
        }
    }

    /// What `conn` has to write.
    pub(crate) fn transmit(&self, conn: ConnId) -> Option<&OutQueue> {
        self.entry(conn).map(|e| e.socket.transmit())
    }

    /// `n` bytes of `conn`'s queue were written at `now`.
    pub(crate) fn written(&mut self, conn: ConnId, n: usize, now: Instant) {
        if let Some(entry) = self.entry_mut(conn) {
            entry.socket.written(n, now);
            self.budgets.requeue(n, 0);
            self.retime(conn);
        }
    }

    /// Whether the shell should shut `conn`'s write side now.
    pub(crate) fn wants_shutdown(&self, conn: ConnId) -> bool {
        self.entry(conn).is_some_and(|e| e.socket.wants_shutdown())
    }

    /// `conn`'s write side was shut.
    pub(crate) fn write_shut(&mut self, conn: ConnId, now: Instant) {
        self.with_socket(conn, now, |s, _, _| s.write_shut());
    }

    /// Runs every timer that is due: the sockets due run in slab order, whatever
    /// their deadlines (the simulator's runs repeat), each once.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        #[cfg(debug_assertions)]
        self.check_indexes();
        self.gossip.expire(now);
        self.line_timeout(now);
        let mut due = std::mem::take(&mut self.due);
        self.timers.take_due(now, &mut due);
        for &conn in &due {
            if let Some(entry) = slot_mut(&mut self.sockets, conn) {
                entry.armed = None;
            }
            self.with_socket(conn, now, |s, rng, out| s.timeout(now, rng, out));
        }
        due.clear();
        self.due = due;
        self.dropped_validations += self.validations.expire(now) as u64;
        if self.discover_at.is_some_and(|at| at <= now) {
            self.discover(now);
        }
        let mut due = std::mem::take(&mut self.due_addrs);
        self.persistent.take_due(now, &mut due);
        for &addr in &due {
            self.redial(addr, now);
        }
        due.clear();
        self.due_addrs = due;
        #[cfg(debug_assertions)]
        self.check_indexes();
    }

    /// The earliest time [`Node::handle_timeout`] has work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        #[cfg(debug_assertions)]
        self.check_indexes();
        self.timers
            .next()
            .into_iter()
            .chain(self.read_first_until)
            .chain(self.persistent.next())
            .chain(self.discover_at)
            .chain(self.validations.next_deadline())
            .min()
    }

    /// Panics unless the timers and the sets kept as sockets change say what a pass
    /// over every socket says: debug builds check it each turn, so a change that
    /// bypasses them fails the tests. Only up to [`CHECKED_UP_TO`] sockets, so that a
    /// debug build holding many connections still pays per turn for what happened.
    #[cfg(debug_assertions)]
    fn check_indexes(&self) {
        if self.sockets.len() > CHECKED_UP_TO {
            return;
        }
        let (mut timers, mut paused, mut pending, mut closing, mut dialing, mut listed) =
            (0, 0, 0, 0, 0, 0);
        for (key, e) in &self.sockets {
            let conn = ConnId {
                key,
                generation: e.generation,
            };
            let (socket, phase) = (&e.socket, e.socket.phase());
            let deadline = socket.next_deadline();
            assert_eq!(self.timers.get(conn), e.armed, "timer of {conn:?}");
            assert_eq!(e.armed.is_some(), deadline.is_some(), "timer of {conn:?}");
            assert!(e.armed <= deadline, "timer of {conn:?} armed late");
            timers += usize::from(deadline.is_some());
            assert_eq!(self.paused.contains(&conn), socket.is_paused());
            paused += usize::from(socket.is_paused());
            let inbound = socket.direction() == Direction::Inbound;
            assert_eq!(
                self.pending_inbound.contains(&conn),
                inbound && e.held.pending
            );
            pending += usize::from(inbound && e.held.pending);
            let is_closing = phase == Phase::Closing;
            assert_eq!(self.closing.get(&e.created) == Some(&conn), is_closing);
            closing += usize::from(is_closing);
            let dials = !inbound && !matches!(phase, Phase::Closing | Phase::Closed);
            if dials {
                assert_eq!(self.dialing.get(&socket.addr()), Some(&conn));
            }
            dialing += usize::from(dials);
            let serves = e.announced && phase == Phase::Open;
            assert_eq!(e.listed, serves, "listing of {conn:?}");
            if let (true, Some(peer)) = (serves, socket.remote()) {
                assert!(self.serving.get(&peer).is_some_and(|l| l.contains(&conn)));
            }
            listed += usize::from(serves);
        }
        assert_eq!(self.timers.len(), timers);
        assert_eq!(self.paused.len(), paused);
        assert_eq!(self.pending_inbound.len(), pending);
        assert_eq!(self.closing.len(), closing);
        assert_eq!(self.dialing.len(), dialing);
        assert_eq!(self.serving.values().map(Vec::len).sum::<usize>(), listed);
        assert!(self.serving.values().all(|l| l.is_sorted()));
    }

    /// Whether events wait for the application.
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Queues an event for the application (failures of queued commands).
    pub(crate) fn push_event(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Moves the events for the application into `into`, in order; when `into` is
    /// empty the buffers are swapped, so no event is copied.
    pub(crate) fn poll_events(&mut self, into: &mut Vec<Event>) {
        if into.is_empty() {
            std::mem::swap(&mut self.events, into);
        } else {
            into.append(&mut self.events);
        }
    }

    // ---- commands from the application ----

    fn open_conn(&self, peer: &PeerId) -> Result<ConnId, SendError> {
        if self.shutting_down {
            return Err(SendError::ShuttingDown);
        }
        self.peers
            .get(peer)
            .copied()
            .ok_or(SendError::NotConnected(*peer))
    }

    fn check_frame(&self, body: usize) -> Result<(), SendError> {
        if body > self.config.max_frame_size {
            return Err(SendError::TooLarge {
                len: body,
                max: self.config.max_frame_size,
            });
        }
        Ok(())
    }

    /// Whether a frame of `len` wire bytes fits under the global cap on `conn`, whose
    /// queue grows by it and, under noise, by the records it may take, within that
    /// queue's fair share of the room left ([`within_fair_share`]).
    fn check_total(&self, conn: ConnId, len: usize) -> Result<(), SendError> {
        let room = self.total_room();
        let fits = match self.entry(conn) {
            Some(entry) => fair_growth(&entry.socket, len, room).is_some(),
            None => within_fair_share(0, len, room),
        };
        if !fits {
            return Err(self.global_full());
        }
        Ok(())
    }

    /// What application frames may still add under the global cap: every connection
    /// keeps room for its control frames under it too.
    fn total_room(&self) -> usize {
        self.budgets
            .frame_room(self.config.max_write_buffer_total, self.sockets.len())
    }

    fn global_full(&self) -> SendError {
        SendError::GlobalFull {
            queued: self.budgets.queued(),
            cap: self.config.max_write_buffer_total,
        }
    }

    /// Queues a frame for one peer, within both caps. Sending produces no output, so
    /// this skips `with_socket`: it is the hot path of every send.
    fn send_frame(&mut self, peer: &PeerId, frame: Frame) -> Result<(), SendError> {
        let conn = self.open_conn(peer)?;
        self.send_frame_on(conn, peer, frame)
    }

    /// Queues a frame on one connection of `peer`, within both caps.
    fn send_frame_on(
        &mut self,
        conn: ConnId,
        peer: &PeerId,
        frame: Frame,
    ) -> Result<(), SendError> {
        self.check_frame(frame.wire_len() - LEN_FIELD - 1)?;
        self.queue_on(conn, &frame, false)
            .unwrap_or(Err(SendError::NotConnected(*peer)))
    }

    /// Queues `frame` on `conn` if it fits under both caps and within the queue's fair
    /// share of the global room ([`within_fair_share`]; `None`: no such connection),
    /// `shared` if its payload goes to many peers. One slab lookup, the global check
    /// made with the entry in hand: this is the hot path of every send and of every
    /// neighbour of a broadcast.
    fn queue_on(
        &mut self,
        conn: ConnId,
        frame: &Frame,
        shared: bool,
    ) -> Option<Result<(), SendError>> {
        let (room, full) = (self.total_room(), self.global_full());
        let entry = slot_mut(&mut self.sockets, conn)?;
        let Some(growth) = fair_growth(&entry.socket, frame.wire_len(), room) else {
            return Some(Err(full));
        };
        let queued = if shared {
            entry.socket.send_shared(frame)
        } else {
            entry.socket.send(frame)
        };
        if queued.is_ok() {
            self.budgets.requeue(0, growth);
            self.mark_dirty(conn);
        }
        Some(queued)
    }

    /// Queues a MESSAGE.
    pub(crate) fn send(&mut self, peer: &PeerId, payload: Bytes) -> Result<(), SendError> {
        self.send_frame(peer, Frame::Message(payload))
    }

    /// Queues a REQUEST whose id was handed out already.
    pub(crate) fn request_with_id(
        &mut self,
        peer: &PeerId,
        id: RequestId,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), SendError> {
        let conn = self.open_conn(peer)?;
        self.check_frame(8 + payload.len())?;
        self.check_total(conn, LEN_FIELD + 1 + 8 + payload.len())?;
        self.with_socket(conn, now, |s, _, _| s.request(id.0, payload, now))
            .unwrap_or(Err(SendError::NotConnected(*peer)))?;
        self.issued = Some(
            self.issued
                .map_or((id.0, id.0), |(low, high)| (low.min(id.0), high.max(id.0))),
        );
        Ok(())
    }

    /// Queues a RESPONSE to the peer's unanswered request `id`, on the connection it
    /// came on; an id not received from `peer`, or answered already, is refused and
    /// nothing is sent.
    pub(crate) fn respond(
        &mut self,
        peer: &PeerId,
        id: RequestId,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let serving = self.open_conn(peer)?;
        self.check_frame(8 + payload.len())?;
        let conn = self
            .asked_on(*peer, serving, id.0)
            .ok_or(SendError::UnknownRequest { peer: *peer, id })?;
        self.send_frame_on(conn, peer, Frame::Response { id: id.0, payload })?;
        if let Some(entry) = self.entry_mut(conn) {
            entry.socket.answered(id.0);
        }
        Ok(())
    }

    /// The connection of `peer` its unanswered request `id` came on: the serving one,
    /// or, while the peer is served on two, the other one.
    fn asked_on(&self, peer: PeerId, serving: ConnId, id: u64) -> Option<ConnId> {
        let holds = |c: ConnId| self.entry(c).is_some_and(|e| e.socket.holds_request(id));
        if holds(serving) {
            return Some(serving);
        }
        self.serving(peer, serving).find(|&c| holds(c))
    }

    /// Starts a broadcast to every peer; a peer whose buffer is full misses it, counted.
    pub(crate) fn broadcast(
        &mut self,
        payload: Bytes,
        now: Instant,
    ) -> Result<GossipId, SendError> {
        self.check_broadcast(&payload)?;
        let mut id = [0u8; 16];
        self.rng.fill(&mut id);
        self.flood_own(id, payload, now);
        Ok(GossipId(id))
    }

    /// Starts a broadcast under an id its caller chose (a [`Handle`](crate::Handle),
    /// from a secure generator of its own), refused as `broadcast` refuses. An id
    /// already known goes out anyway: neighbours that saw it drop it as a duplicate.
    pub(crate) fn broadcast_with_id(
        &mut self,
        id: GossipId,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), SendError> {
        self.check_broadcast(&payload)?;
        self.flood_own(id.0, payload, now);
        Ok(())
    }

    /// Why a broadcast of ours would be refused, before an id is drawn for it.
    fn check_broadcast(&self, payload: &Bytes) -> Result<(), SendError> {
        if self.shutting_down {
            return Err(SendError::ShuttingDown);
        }
        // The GOSSIP body: a 16-byte id and a hop count before the payload.
        self.check_frame(17 + payload.len())
    }

    /// Sends a broadcast of our own under `id` to every neighbour.
    fn flood_own(&mut self, id: [u8; 16], payload: Bytes, now: Instant) {
        let rate = self.config.max_gossip_rate;
        self.relay
            .get_or_insert_with(|| RelayBudget::new(rate, now))
            .spend(now);
        self.gossip.remember(id, self.local, now);
        let frame = Frame::Gossip {
            id,
            hops: self.config.gossip_hops,
            payload,
        };
        self.flood(&frame, None, now);
    }

    fn gossip_received(
        &mut self,
        conn: ConnId,
        from: PeerId,
        id: [u8; 16],
        hops: u8,
        payload: Bytes,
        now: Instant,
    ) {
        match self.gossip.receive(id, hops, from, now) {
            Verdict::Duplicate => self.duplicate_gossip += 1,
            // The seen-id cache forgets ids (by age, or a source's own ids for its
            // newer ones), but an id still awaiting its verdict is not new: handing a
            // second payload over under it would let the verdict on the first relay
            // the second, never judged.
            Verdict::Deliver { .. } if self.validations.contains(&id) => {
                self.duplicate_gossip += 1;
            }
            Verdict::Deliver { relay } => {
                self.events.push(Event::Broadcast {
                    from,
                    id: GossipId(id),
                    payload: payload.clone(),
                });
                let relay = relay
                    .filter(|_| !self.shutting_down)
                    .filter(|_| self.relay_admits(conn, now));
                if !self.config.validate_gossip {
                    if let Some(hops) = relay {
                        self.flood(&Frame::Gossip { id, hops, payload }, Some(from), now);
                    }
                    return;
                }
                // Held for the verdict, relay decided now: the relay budget counts
                // what arrives, whatever the application then says.
                let pending = Pending {
                    id,
                    from,
                    conn,
                    relay: relay.map(|hops| (hops, payload)),
                    deadline: now + self.config.validation_timeout,
                };
                let c = &self.config;
                let (max, max_bytes) = (c.max_pending_validations, c.max_pending_validation_bytes);
                let dropped = self.validations.insert(pending, max, max_bytes);
                self.dropped_validations += dropped as u64;
            }
        }
    }

    /// The application's verdict on broadcast `id` (`Config::validate_gossip`):
    /// `Accept` relays it as it would have been at once, `Ignore` drops it, `Reject`
    /// drops it and counts a rejected frame against the connection it came on (which
    /// may close it as misbehaving). False if no verdict is awaited for `id`: never
    /// delivered, judged already, or dropped (timed out or pushed out).
    pub(crate) fn validate(&mut self, id: GossipId, verdict: Validation, now: Instant) -> bool {
        let Some(pending) = self.validations.take(&id.0) else {
            return false;
        };
        match verdict {
            Validation::Accept => {
                if let Some((hops, payload)) = pending.relay.filter(|_| !self.shutting_down) {
                    let frame = Frame::Gossip {
                        id: pending.id,
                        hops,
                        payload,
                    };
                    self.flood(&frame, Some(pending.from), now);
                }
            }
            Validation::Ignore => {}
            Validation::Reject => {
                log::info!(
                    "broadcast {id} rejected; counted against {:?}",
                    pending.from
                );
                self.with_socket(pending.conn, now, |s, _, out| {
                    s.reject_broadcast(pending.id, now, out)
                });
            }
        }
        true
    }

    /// Whether a new broadcast that came in on `conn` may be relayed now: it takes a
    /// token of the node's relay budget, fairly shared between peers. One it refuses
    /// is delivered but not relayed, and counted (`Stats::unrelayed_gossip`).
    fn relay_admits(&mut self, conn: ConnId, now: Instant) -> bool {
        let Some(entry) = slot_mut(&mut self.sockets, conn) else {
            return false;
        };
        let rate = self.config.max_gossip_rate;
        let relay = self
            .relay
            .get_or_insert_with(|| RelayBudget::new(rate, now));
        let Some(share) = entry.socket.relay_share(|| relay.share(now)) else {
            return false;
        };
        let admitted = relay.admit(share, now);
        if !admitted {
            self.unrelayed_gossip += 1;
        }
        admitted
    }

    /// Queues `frame` to every peer but `except`, sharing its payload; a peer whose
    /// queue refuses it misses it, counted and logged.
    fn flood(&mut self, frame: &Frame, except: Option<PeerId>, now: Instant) {
        let mut targets = std::mem::take(&mut self.targets);
        targets.extend(
            self.peers
                .iter()
                .filter(|&(p, _)| Some(*p) != except)
                .map(|(_, &c)| c),
        );
        for &conn in &targets {
            if let Some(Err(e)) = self.queue_on(conn, frame, true) {
                log::debug!("gossip not queued: {e}");
                if let Some(entry) = self.entry_mut(conn) {
                    entry.socket.count_dropped(now);
                    self.mark_dirty(conn);
                }
            }
        }
        targets.clear();
        self.targets = targets;
    }

    /// Closes the connection to `peer` gracefully with GOODBYE 0; false if not connected.
    pub(crate) fn disconnect(&mut self, peer: &PeerId, now: Instant) -> bool {
        if !self.peers.contains_key(peer) {
            return false;
        }
        self.close_peer(
            *peer,
            CloseReason::Disconnected,
            Some(GoodbyeReason::Shutdown),
            now,
        );
        true
    }

    /// Bans `peer` for `duration` (one past what the clock holds, such as
    /// `Duration::MAX`: until [`Node::unban`]): its connections
    /// close (`CloseReason::Banned`, GOODBYE 3), a connection that proves its id is
    /// closed at the handshake's end, and a persistent address known to be it is not
    /// dialled. Banning again replaces the ban's end. At most [`MAX_BANS`] bans at
    /// once (expired ones are dropped first); false if the table is full.
    pub(crate) fn ban(&mut self, peer: PeerId, duration: Duration, now: Instant) -> bool {
        if self.bans.len() >= MAX_BANS && !self.bans.contains_key(&peer) {
            self.bans.retain(|_, until| until.is_none_or(|t| t > now));
            if self.bans.len() >= MAX_BANS {
                return false;
            }
        }
        // A duration past what the clock holds is a ban for good.
        let until = now.checked_add(duration);
        self.bans.insert(peer, until);
        // Where we reached it (it is there, whoever gave the address), and where it
        // says it listens at the IP it connects from (unless the application gave
        // that), discovery would dial it again. Not the addresses it only claimed:
        // others', checked by nobody.
        let (mut reached, mut claimed) = (Vec::new(), Vec::new());
        for (_, entry) in self.sockets.iter() {
            if entry.socket.remote() == Some(peer) {
                let seen = entry.socket.addr();
                if entry.socket.direction() == Direction::Outbound {
                    reached.push(seen);
                }
                claimed.extend(own_claims(&entry.listen_addrs, seen));
            }
        }
        for addr in &reached {
            self.book.forget(addr);
        }
        for addr in &claimed {
            self.book.forget_told(addr);
        }
        self.close_peer(
            peer,
            CloseReason::Banned,
            Some(GoodbyeReason::Misbehaving),
            now,
        );
        true
    }

    /// Closes every connection serving `peer`, duplicates first, so the serving one
    /// has none to fail over to.
    fn close_peer(
        &mut self,
        peer: PeerId,
        reason: CloseReason,
        goodbye: Option<GoodbyeReason>,
        now: Instant,
    ) {
        let Some(&conn) = self.peers.get(&peer) else {
            return;
        };
        let others: Vec<ConnId> = self.serving(peer, conn).collect();
        for conn in others.into_iter().chain(std::iter::once(conn)) {
            self.close(conn, reason.clone(), goodbye, now);
        }
    }

    /// Lifts the ban of `peer`; false if it was not banned. A persistent address
    /// known to be it is dialled at once, from the first wait.
    pub(crate) fn unban(&mut self, peer: &PeerId, now: Instant) -> bool {
        if self.bans.remove(peer).is_none() {
            return false;
        }
        if !self.peers.contains_key(peer) {
            self.persistent.restart_known(*peer, now);
        }
        true
    }

    /// Whether `peer` is banned at `now`; an expired ban is forgotten.
    fn is_banned(&mut self, peer: &PeerId, now: Instant) -> bool {
        self.ban_end(peer, now).is_some()
    }

    /// When the ban of `peer` ends, if it is banned at `now` (`Some(None)`: for
    /// good); an expired ban is forgotten.
    fn ban_end(&mut self, peer: &PeerId, now: Instant) -> Option<Option<Instant>> {
        match self.bans.get(peer) {
            None => None,
            Some(&until) if until.is_none_or(|t| t > now) => Some(until),
            Some(_) => {
                self.bans.remove(peer);
                None
            }
        }
    }

    /// Replaces the allowlist (`None`: anyone). Connected peers it no longer allows
    /// are closed (`NotAllowed`), as at a handshake's end; persistent peers not
    /// connected are dialled again at once, from the first wait, so those it now
    /// allows need not wait out a backoff that its refusals lengthened.
    pub(crate) fn set_allowlist(
        &mut self,
        allowlist: Option<std::collections::HashSet<PeerId>>,
        now: Instant,
    ) {
        self.config.allowlist = allowlist;
        if let Some(allowed) = &self.config.allowlist {
            let mut gone: Vec<PeerId> = self
                .peers
                .keys()
                .filter(|peer| !allowed.contains(*peer))
                .copied()
                .collect();
            gone.sort_unstable(); // a fixed order keeps simulated runs reproducible
            for peer in gone {
                self.not_allowed += 1;
                self.close_peer(peer, CloseReason::NotAllowed, None, now);
            }
        }
        let peers = &self.peers;
        self.persistent.restart(
            |entry| entry.dial.is_none() && entry.known.is_none_or(|p| !peers.contains_key(&p)),
            now,
        );
    }

    /// Closes every connection (GOODBYE 0 to open ones) and refuses new ones.
    pub(crate) fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let all: Vec<ConnId> = self
            .sockets
            .iter()
            .map(|(key, e)| ConnId {
                key,
                generation: e.generation,
            })
            .collect();
        for conn in all {
            self.close(
                conn,
                CloseReason::Shutdown,
                Some(GoodbyeReason::Shutdown),
                now,
            );
        }
    }

    /// Whether `shutdown` was called.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether no connection is left.
    pub(crate) fn is_idle(&self) -> bool {
        self.sockets.is_empty()
    }

    // ---- inspection ----

    /// Connected peers, with address and direction.
    pub(crate) fn peers(&self) -> impl Iterator<Item = (PeerId, SocketAddr, Direction)> + '_ {
        self.peers.iter().filter_map(|(peer, &conn)| {
            self.entry(conn)
                .map(|e| (*peer, e.socket.addr(), e.socket.direction()))
        })
    }

    /// The address book's addresses, sorted.
    pub(crate) fn known_addrs(&self) -> Vec<SocketAddr> {
        self.book.addrs()
    }

    /// Writes the address book to `out` (src/addrbook.rs gives the format).
    pub(crate) fn save_book(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.book.save(out)
    }

    /// Adds a saved address book's addresses; how many were new.
    pub(crate) fn load_book(
        &mut self,
        input: impl std::io::BufRead,
        now: Instant,
    ) -> std::io::Result<usize> {
        let added = self.book.load(input)?;
        self.wake_discovery(now);
        Ok(added)
    }

    /// Adds `addr` to the address book as the application's (a seed): the
    /// discovery dialler may dial it. False if it was known already or the book is
    /// full of addresses that work.
    pub(crate) fn add_addr(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let added = self.book.add(addr, Source::Application);
        self.wake_discovery(now);
        added
    }

    /// The addresses `peer` said it listens on (ADDRS); empty if none or not connected.
    pub(crate) fn peer_listen_addrs(&self, peer: &PeerId) -> &[SocketAddr] {
        self.peers
            .get(peer)
            .and_then(|&conn| self.entry(conn))
            .map_or(&[], |e| e.listen_addrs.as_slice())
    }

    /// Whether `peer` is connected.
    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Bytes queued for `peer`.
    pub(crate) fn queued(&self, peer: &PeerId) -> Option<usize> {
        let conn = self.peers.get(peer)?;
        self.entry(*conn).map(|e| e.socket.queued())
    }

    /// The counters of the connection to `peer`.
    pub(crate) fn peer_stats(&self, peer: &PeerId) -> Option<PeerStats> {
        let conn = self.peers.get(peer)?;
        self.entry(*conn).map(|e| *e.socket.stats())
    }

    /// Whole-node counters.
    pub(crate) fn stats(&self) -> Stats {
        let mut totals = self.closed_totals;
        for (_, e) in &self.sockets {
            totals.add(e.socket.stats());
        }
        Stats {
            peers: self.peers.len(),
            connections: self.sockets.len(),
            handshaking: self.handshaking(),
            queued_bytes: self.budgets.queued(),
            totals,
            refused_inbound: self.refused_inbound,
            rate_limited_accepts: self.rate_limited_accepts,
            evicted_handshakes: self.evicted_handshakes,
            unflushed_bytes: self.unflushed_bytes,
            read_paused: self.paused.len(),
            failed_handshakes: self.failed_handshakes,
            duplicate_gossip: self.duplicate_gossip,
            unrelayed_gossip: self.unrelayed_gossip,
            not_allowed: self.not_allowed,
            gossip_ids: self.gossip.len(),
            pending_validations: self.validations.len(),
            dropped_validations: self.dropped_validations,
            known_addrs: self.book.len(),
            discovery_dials: self.discovery_dials,
            buffered_bytes: self.sockets.iter().map(|(_, e)| e.socket.buffered()).sum(),
            pending_requests: self
                .sockets
                .iter()
                .map(|(_, e)| e.socket.pending_requests())
                .sum(),
            unanswered_requests: self
                .sockets
                .iter()
                .map(|(_, e)| e.socket.unanswered_requests())
                .sum(),
        }
    }
}
