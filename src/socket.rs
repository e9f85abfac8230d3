//! One connection's sans-IO state machine: preamble, handshake, frames, timers, close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::bucket::{DropLog, SlidingWindow};
use crate::budget::{CONTROL_ROOM, GOODBYE_ROOM, within_fair_share};
use crate::config::Config;
use crate::error::{CloseReason, RequestError, SendError};
use crate::event::Direction;
use crate::gossip::{GossipLimit, RelayShare};
use crate::ordered::OrderedIds;
use crate::peer::PeerId;
use crate::queue::OutQueue;
use crate::rng::Rng;
use crate::secure::{Handshake, LocalKey, Transport};
use crate::wire::{
    COPY_LIMIT, Decoded, Decoder, Frame, GOSSIP_HEAD_LEN, GoodbyeReason, MESSAGE_PAYLOAD_AT,
    PREAMBLE_LEN, Preamble, Reject,
};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The TCP dial is under way.
    Opening,
    /// Preamble and handshake.
    Authenticating,
    /// Frames flow.
    Open,
    /// Out of service (the node reported it gone): flushing what is queued, then
    /// waiting for the peer to close, unless it said GOODBYE.
    Closing,
    /// Done; the socket can be freed.
    Closed,
}

/// What happened on a socket, in order, for the node: only the node turns these into
/// public `Event`s (adding the peer) or decisions (gossip, duplicates, closes).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The handshake finished with this peer.
    Established(PeerId),
    /// A GOSSIP frame: the node's seen-id cache decides.
    Gossip {
        id: [u8; 16],
        hops: u8,
        payload: Bytes,
    },
    /// A pending request of ours ended without response.
    RequestFailed { id: u64, reason: RequestError },
    /// A MESSAGE frame.
    Message(Bytes),
    /// A REQUEST frame, now waiting for our answer.
    Request { id: u64, payload: Bytes },
    /// An ADDRS frame: the peer's listening addresses.
    Addrs(Vec<std::net::SocketAddr>),
    /// A GETADDRS frame the peer may be answered (one PEERS).
    GetAddrs,
    /// A PEERS frame answering a GETADDRS of ours: addresses of other nodes.
    Peers(Vec<std::net::SocketAddr>),
    /// The RESPONSE to a pending request of ours.
    Response { id: u64, payload: Bytes },
    /// A frame was rejected; `count` is the connection's total so far.
    Rejected { reason: Reject, count: u32 },
    /// The connection left service (no more frames in or out); given once.
    Closed(CloseReason),
    /// A graceful close ended (its `close_timeout` ran out, or the socket failed)
    /// with this many bytes still queued: they were never sent.
    Unflushed(usize),
}

/// Where [`Socket::take_frames`] puts its outputs, in order. The node's sink turns a
/// frame it has nothing to decide about into its event at once (the hot path of every
/// message received) and keeps the rest, in order, for its decisions; tests collect
/// everything in a `Vec`.
pub(crate) trait Frames {
    /// One output.
    fn push(&mut self, output: Output);
    /// A MESSAGE's payload, copied out of the frame stream: the hot path of every
    /// small message received.
    fn message(&mut self, payload: &[u8]);
    /// Where the outputs the node decides about go, for a step that makes only those
    /// (a close).
    fn decisions(&mut self) -> &mut Vec<Output>;
}

impl Frames for Vec<Output> {
    fn push(&mut self, output: Output) {
        Vec::push(self, output);
    }

    fn message(&mut self, payload: &[u8]) {
        Vec::push(self, Output::Message(Bytes::copy_from_slice(payload)));
    }

    fn decisions(&mut self) -> &mut Vec<Output> {
        self
    }
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Bytes read from the socket.
    pub bytes_in: u64,
    /// Bytes written to the socket.
    pub bytes_out: u64,
    /// Frames received and accepted.
    pub frames_in: u64,
    /// Frames queued to the peer.
    pub frames_out: u64,
    /// Frames received and rejected.
    pub rejected_frames: u64,
    /// Frames not queued because the write buffer was full (relayed gossip, PONGs).
    pub dropped_sends: u64,
    /// GOSSIP frames dropped because the peer sent them over `max_gossip_rate` or
    /// `max_gossip_bytes_rate`: neither delivered nor relayed.
    pub rate_limited: u64,
    /// RESPONSE frames dropped as late: their id is one this node issued, but the
    /// request had timed out, failed with its connection, or been answered already.
    /// Not rejected frames: a slow peer is not misbehaving.
    pub late_responses: u64,
    /// Requests from the peer forgotten unanswered because it had
    /// `max_pending_requests` newer ones unanswered on the connection: responding to
    /// them fails with `SendError::UnknownRequest`.
    pub forgotten_requests: u64,
}

impl PeerStats {
    /// Adds `other` to these counters.
    pub(crate) fn add(&mut self, other: &PeerStats) {
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.frames_in += other.frames_in;
        self.frames_out += other.frames_out;
        self.rejected_frames += other.rejected_frames;
        self.dropped_sends += other.dropped_sends;
        self.rate_limited += other.rate_limited;
        self.late_responses += other.late_responses;
        self.forgotten_requests += other.forgotten_requests;
    }
}

/// Bytes of the frame stream a connection holds without drawing on the receive budget
/// (`Config::max_read_buffer_total`): one read chunk. A frame larger than this is
/// read into a buffer of its own, whose growth the budget pays for; smaller frames'
/// payloads are copied out of the chunk ([`COPY_LIMIT`]), so none pins it.
pub(crate) const READ_ALLOWANCE: usize = COPY_LIMIT;

/// What an unfinished frame must gain within `Config::frame_timeout`.
const FRAME_PROGRESS: u64 = 64 * 1024;

/// The most ciphertext held before it is opened: one whole record (noise; 0 without).
const RECORD_LIMIT: usize = crate::secure::MAX_SEALED_RECORD;

/// What one record may add to the frame stream past the frame it completes: room a
/// noise frame buffer keeps so that it is never reallocated. A record is opened in
/// place, so that is its ciphertext, a tag more than its plaintext (0 without noise,
/// where nothing is opened).
pub(crate) const RECORD_SLACK: usize =
    crate::secure::MAX_OPENED_RECORD + crate::secure::RECORD_OVERHEAD;

/// Gives `buf` room for `want` more bytes at its end: its own allocation again when
/// nothing else holds it (what it holds moves to the front), else a fresh one of
/// `cap` bytes (or what it must hold). Never `BytesMut::reserve`, which may double the
/// allocation and would make the memory a buffer holds depend on its history.
fn make_room(buf: &mut BytesMut, want: usize, cap: usize) {
    // A reclaimed allocation larger than `cap` was a large frame's, whose payload has
    // been dropped: kept, it would hold the next large frame uncharged.
    let reclaimed = |buf: &mut BytesMut| buf.try_reclaim(want) && buf.capacity() <= cap;
    if buf.capacity() - buf.len() < want && !reclaimed(buf) {
        let mut fresh = BytesMut::with_capacity(cap.max(buf.len() + want));
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
}

/// The most bytes of an unfinished frame or record a connection keeps as a copy of
/// their own between reads; with more it keeps the buffer they were read into. The
/// copy, and the copy back before the next read, would cost more than the buffer:
/// records of 64 KiB read in 64 KiB chunks leave half a record each time, and
/// copying it out and in took 13% more instructions on a noise stream.
const COPY_OUT_LIMIT: usize = 4096;

/// Makes `scratch` the buffer `own` was, holding what `own` held: the bytes of an
/// unfinished frame or record move to the front of the scratch, which the read or
/// open that follows appends to. `scratch` is left empty, with no allocation. False,
/// with nothing done, if `own` is a buffer kept with its unfinished bytes (see
/// [`COPY_OUT_LIMIT`]).
fn lend(own: &mut BytesMut, scratch: &mut BytesMut, cap: usize) -> bool {
    if own.len() > COPY_OUT_LIMIT {
        return false;
    }
    let mut lent = std::mem::take(scratch);
    lent.clear();
    // Back to the front of its allocation, so a read fills it whatever its last use
    // left (a no-op when it is already there, or shared).
    let _ = lent.try_reclaim(lent.capacity() + 1);
    if lent.capacity() > cap {
        // A large frame's buffer whose payload is gone: read into, it would hold the
        // next large frame uncharged (as in `make_room`).
        lent = BytesMut::new();
    }
    if !own.is_empty() {
        make_room(&mut lent, own.len(), cap);
        lent.extend_from_slice(own);
    }
    *own = lent;
    true
}

/// Gives a lent buffer back: `own` keeps a copy of what it holds (the unfinished
/// frame or record, often nothing), and `scratch`, if empty, gets the allocation.
/// A buffer with more than [`COPY_OUT_LIMIT`] unfinished bytes stays `own`.
fn settle(own: &mut BytesMut, scratch: &mut BytesMut) {
    if own.len() > COPY_OUT_LIMIT {
        return;
    }
    let used = if own.is_empty() {
        std::mem::take(own)
    } else {
        std::mem::replace(own, BytesMut::from(&own[..]))
    };
    if scratch.capacity() == 0 {
        *scratch = used;
    }
}

/// A PING sent to learn whether the peer reads a connection ([`Socket::probe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// None sent (or it could not be queued).
    None,
    /// Sent with this nonce, not answered yet.
    Sent(u64),
    /// Its PONG came.
    Answered,
}

/// The limits and timers a socket needs from [`Config`] for its whole life (the
/// handshake's own timeouts wait in [`Opening`]).
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_write_buffer: usize,
    max_rejected: usize,
    max_pending_requests: usize,
    ping_interval: Duration,
    idle_timeout: Duration,
    request_timeout: Duration,
    close_timeout: Duration,
    write_timeout: Duration,
    frame_timeout: Duration,
}

/// What a write queue must get written per `write_timeout` (or all it holds, if
/// less): a peer that reads a segment now and then, just to keep the clock from
/// running out, must read at least this much, so holding its share of the write
/// budget costs it bandwidth.
const WRITE_PROGRESS: usize = 1 << 20;

/// Where a connection is in its life, each state holding the data only it uses: a
/// transition moves on what the next state needs and drops the rest.
///
/// ```text
/// Opening --connected--> Authenticating --handshake done--> Open --close--> Closing
///     Closing --our side flushed and shut, and the peer's EOF or GOODBYE--> Closed
///     Closing --close_timeout--> Closed (what is left is reported unflushed)
/// any state --abort (I/O error, timeout, failed check)--> Closed
/// ```
///
/// A close before `Open` is an abort: nothing of ours is worth flushing yet.
#[derive(Debug)]
enum State {
    /// The TCP dial is under way.
    Opening(Opening),
    /// Preamble and handshake.
    Authenticating(Authenticating),
    /// Frames flow.
    Open(Open),
    /// Out of service: flushing what is queued, then waiting for the peer's end.
    Closing(Closing),
    /// Done, for this reason; the socket can be freed.
    Closed(CloseReason),
}

/// How the peer's frames will be checked once the connection is open: their size,
/// their GOSSIP rate, and those rejected. Made with the socket (from its config, the
/// GOSSIP buckets full from then on) and handed on until the handshake ends.
#[derive(Debug)]
struct FrameChecks {
    decoder: Decoder,
    /// GOSSIP frames and bytes the peer may still send now.
    gossip_limit: GossipLimit,
    /// Rejected frames so far, for the event.
    rejected: u32,
    /// Rejected frames of the last `rejected_frames_window`: `max_rejected_frames`
    /// of them close the connection.
    rejected_recently: SlidingWindow,
}

/// What the preamble and the handshake hold, from the dial until the handshake ends.
#[derive(Debug)]
struct Handshaking {
    /// The preamble we send, and expect the peer's to agree with.
    preamble: Preamble,
    handshake: Handshake,
    /// Whole handshake messages taken from the peer so far.
    messages: u8,
    /// Handed to the open connection.
    checks: FrameChecks,
}

/// A dial under way: the handshake waits for TCP.
#[derive(Debug)]
struct Opening {
    /// When the dial must have connected.
    deadline: Instant,
    /// The handshake's deadlines, which start once TCP is up.
    handshake_timeout: Duration,
    preamble_timeout: Duration,
    handshaking: Handshaking,
}

/// Preamble and handshake under way.
#[derive(Debug)]
struct Authenticating {
    /// When the handshake must have finished.
    deadline: Instant,
    /// When the peer's preamble must have arrived; `None` once it passed its check.
    preamble_deadline: Option<Instant>,
    handshaking: Handshaking,
}

/// When the connection's silence is noticed: a PING after `ping_interval`, a close
/// after `idle_timeout`.
#[derive(Debug)]
struct Keepalive {
    last_recv: Instant,
    pinged: bool,
    /// Where the PING of [`Socket::probe`] is.
    probe: Probe,
}

/// The requests of an open connection, both ways. Made with the first request: a
/// connection that never carries one holds none of this.
#[derive(Debug)]
struct Requests {
    /// Our requests waiting for a response, each with its deadline, in send order:
    /// the timeout is fixed, so the first is the earliest. An id used again once
    /// answered (the simulator lets the application choose ids) gets its new
    /// deadline, not its first use's.
    pending: OrderedIds<Instant>,
    /// Ids of the peer's requests delivered and not yet answered, at most
    /// `max_pending_requests`, in arrival order (stamped with their arrival number),
    /// to forget the oldest: what `respond` may answer on this connection. The
    /// protocol frees an id once answered, and a request reusing it arrives anew,
    /// behind the others.
    unanswered: OrderedIds<u64>,
    /// Requests the peer sent on this connection: the next arrival number.
    arrivals: u64,
}

impl Requests {
    fn new(cap: usize) -> Box<Requests> {
        Box::new(Requests {
            pending: OrderedIds::new(cap),
            unanswered: OrderedIds::new(cap),
            arrivals: 0,
        })
    }
}

/// The deadline of an unfinished frame: it must gain [`FRAME_PROGRESS`] bytes (counted
/// from `mark`, `stats.bytes_in` when the clock last started) or finish before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameClock {
    /// No frame is unfinished.
    Stopped,
    Running {
        until: Instant,
        mark: u64,
    },
    /// The connection is paused: paused time does not count, so what was `left`
    /// waits for the resume.
    Paused {
        left: Duration,
        mark: u64,
    },
}

impl FrameClock {
    fn deadline(self) -> Option<Instant> {
        match self {
            FrameClock::Running { until, .. } => Some(until),
            _ => None,
        }
    }
}

/// An open connection: frames flow through the transport.
#[derive(Debug)]
struct Open {
    transport: Transport,
    checks: FrameChecks,
    /// A record failed to open; the connection closes once the frames before it are out.
    decrypt_failed: bool,
    keepalive: Keepalive,
    requests: Option<Box<Requests>>,
    frame: FrameClock,
    /// GOSSIP frames dropped for the rate limit, for the log.
    gossip_drop_log: DropLog,
    /// What the peer took of the node's relay budget recently.
    relay_share: Option<RelayShare>,
    /// The peer told its listening addresses (one ADDRS a connection).
    addrs_received: bool,
    /// Peer exchange on this connection (GETADDRS and PEERS).
    pex: Pex,
}

/// Peer exchange on one connection, both ways (PROTOCOL.md §5.2).
#[derive(Debug, Default)]
struct Pex {
    /// When we last answered a GETADDRS of the peer's.
    answered_at: Option<Instant>,
    /// When we last sent a GETADDRS.
    asked_at: Option<Instant>,
    /// A GETADDRS of ours waits for its PEERS (one at most is counted).
    asked: bool,
}

/// A graceful close under way: what is queued goes out (sealed by the transport),
/// then the write side is shut, and the peer's end is awaited until `deadline`.
#[derive(Debug)]
struct Closing {
    transport: Transport,
    reason: CloseReason,
    /// When the close ends whatever is left: `close_timeout` after it began.
    deadline: Instant,
    awaiting: Awaiting,
}

/// What a graceful close still waits for; once nothing, the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    /// Our side to be flushed and shut, and the peer's end.
    Both,
    /// Our side to be flushed and shut: the peer closed its side or said GOODBYE.
    Shutdown,
    /// The peer's EOF: our side is shut.
    PeerEnd,
}

/// One connection, from dial or accept to close: its [`State`] beside what it holds
/// for its whole life (address, queues, read buffers, counters, the node's budgets).
#[derive(Debug)]
pub(crate) struct Socket {
    state: State,
    /// Whether the state's transport seals frames: [`Socket::seals`].
    sealing: bool,
    direction: Direction,
    addr: SocketAddr,
    /// The peer's id, from the end of the handshake on.
    remote: Option<PeerId>,
    /// Bytes as read from the socket.
    rx: BytesMut,
    /// The frame stream opened from records (noise); plaintext decodes `rx` itself.
    plain: BytesMut,
    /// What the record that completed a large frame held past that frame's end
    /// (noise): the frame stream once the frame is taken. Kept apart so that the large
    /// frame's buffer, which becomes its payload, is the frame's size and no more.
    overrun: BytesMut,
    /// Bytes ready for the socket.
    tx: OutQueue,
    /// Frames waiting to be sealed into records (noise): payloads stay shared until then.
    staged: OutQueue,
    /// How much control frames may add to the node's queues under the global cap, as
    /// the node last said ([`Socket::set_control_budget`]).
    control_budget: usize,
    /// Since when bytes have been queued with none written: the write-timeout clock.
    /// `None` while the queue is empty or before the shell first tried to write it.
    write_stalled_since: Option<Instant>,
    /// Bytes the queue must get written before that clock starts again, and those
    /// written since it started ([`WRITE_PROGRESS`]).
    write_owed: usize,
    write_done: usize,
    /// Frames dropped for a full queue, for the log.
    drop_log: DropLog,
    /// The lowest and highest request ids the node issued so far, to any peer, as the
    /// node last said ([`Socket::set_issued`]): a RESPONSE outside them answers
    /// nothing we ever asked.
    issued: Option<(u64, u64)>,
    stats: PeerStats,
    limits: Limits,
    /// Bytes of the receive budget the frame stream's buffer holds: its capacity beyond
    /// what a connection holds for free ([`READ_ALLOWANCE`]).
    charged: usize,
    /// The frame stream's buffer is the large frame's own: [`Socket::grow_frame_buffer`]
    /// sized it, so its allocation begins where the frame does. Before, the frame may
    /// have begun behind others in a buffer whose capacity, counted from the frame,
    /// hides the bytes before it.
    frame_buffer_own: bool,
    /// How much more of the receive budget the buffer may take now, as the node last
    /// said ([`Socket::set_read_room`]).
    read_room: usize,
    /// The last read or open needed more of the budget than `read_room`.
    starved: bool,
    /// The feature bits of the peer's preamble (0 until it arrived).
    peer_features: u8,
    /// The node stopped reading this connection until budget returns.
    paused: bool,
}

impl Socket {
    /// A socket for a dial to `addr`; call [`Socket::connected`] once TCP is up.
    pub(crate) fn outbound(
        config: &Config,
        key: &LocalKey,
        ephemeral: Rng,
        addr: SocketAddr,
        now: Instant,
    ) -> Self {
        Self::new(config, key, ephemeral, addr, Direction::Outbound, now)
    }

    /// A socket for an accepted connection, already sending its preamble.
    pub(crate) fn inbound(
        config: &Config,
        key: &LocalKey,
        ephemeral: Rng,
        addr: SocketAddr,
        now: Instant,
    ) -> Self {
        let mut socket = Self::new(config, key, ephemeral, addr, Direction::Inbound, now);
        socket.connected(now);
        socket
    }

    fn new(
        config: &Config,
        key: &LocalKey,
        ephemeral: Rng,
        addr: SocketAddr,
        direction: Direction,
        now: Instant,
    ) -> Self {
        let handshaking = Handshaking {
            preamble: Preamble::new(config.security, config.network_id),
            handshake: Handshake::new(
                config.security,
                key,
                direction == Direction::Outbound,
                ephemeral,
            ),
            messages: 0,
            checks: FrameChecks {
                decoder: Decoder::new(config.max_frame_size),
                gossip_limit: GossipLimit::new(config, now),
                rejected: 0,
                rejected_recently: SlidingWindow::new(config.rejected_frames_window),
            },
        };
        Socket {
            sealing: false,
            state: State::Opening(Opening {
                deadline: now + config.connect_timeout,
                handshake_timeout: config.handshake_timeout,
                preamble_timeout: config.preamble_timeout,
                handshaking,
            }),
            direction,
            addr,
            remote: None,
            rx: BytesMut::new(),
            plain: BytesMut::new(),
            overrun: BytesMut::new(),
            tx: OutQueue::default(),
            staged: OutQueue::default(),
            control_budget: usize::MAX,
            write_stalled_since: None,
            write_owed: 0,
            write_done: 0,
            drop_log: DropLog::default(),
            issued: None,
            stats: PeerStats::default(),
            limits: Limits {
                max_write_buffer: config.max_write_buffer,
                max_rejected: config.max_rejected_frames as usize,
                max_pending_requests: config.max_pending_requests,
                ping_interval: config.ping_interval,
                idle_timeout: config.idle_timeout,
                request_timeout: config.request_timeout,
                close_timeout: config.close_timeout,
                write_timeout: config.write_timeout,
                frame_timeout: config.frame_timeout,
            },
            charged: 0,
            frame_buffer_own: false,
            read_room: 0,
            starved: false,
            peer_features: 0,
            paused: false,
        }
    }

    /// The phase now: the summary of the state.
    pub(crate) fn phase(&self) -> Phase {
        match self.state {
            State::Opening(_) => Phase::Opening,
            State::Authenticating(_) => Phase::Authenticating,
            State::Open(_) => Phase::Open,
            State::Closing(_) => Phase::Closing,
            State::Closed(_) => Phase::Closed,
        }
    }

    /// Moves the state out, to build the next one from its data; the caller puts the
    /// next one in before anything looks (`Closed` only stands in meanwhile).
    fn replace_state(&mut self, next: impl FnOnce(State) -> State) {
        let state = std::mem::replace(&mut self.state, State::Closed(CloseReason::Shutdown));
        self.state = next(state);
        self.sealing = self.state_seals();
    }

    fn open_state(&self) -> Option<&Open> {
        match &self.state {
            State::Open(open) => Some(open),
            _ => None,
        }
    }

    fn open_mut(&mut self) -> Option<&mut Open> {
        match &mut self.state {
            State::Open(open) => Some(open),
            _ => None,
        }
    }

    fn requests(&self) -> Option<&Requests> {
        self.open_state().and_then(|open| open.requests.as_deref())
    }

    /// Whether frames are sealed into records (noise) on their way out: from the end
    /// of the handshake, while a transport carries them. Kept in `sealing` as the
    /// state changes: every send asks.
    fn seals(&self) -> bool {
        debug_assert_eq!(
            self.sealing,
            self.state_seals(),
            "sealing follows the state"
        );
        self.sealing
    }

    fn state_seals(&self) -> bool {
        match &self.state {
            State::Open(Open { transport, .. }) | State::Closing(Closing { transport, .. }) => {
                transport.encrypts()
            }
            _ => false,
        }
    }

    /// Whether records are opened (noise) on the way in: open connections only.
    fn opens_records(&self) -> bool {
        self.open_state()
            .is_some_and(|open| open.transport.encrypts())
    }

    /// Who dialled.
    pub(crate) fn direction(&self) -> Direction {
        self.direction
    }

    /// The remote address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The remote id, once the handshake finished.
    pub(crate) fn remote(&self) -> Option<PeerId> {
        self.remote
    }

    /// Why the connection ended, once it left service.
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        match &self.state {
            State::Closing(closing) => Some(&closing.reason),
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// Bytes waiting to be written, counting the record overhead that frames staged
    /// for sealing will take: what the write caps bound. Frames are staged only
    /// where they are sealed, so the overhead is that of what is staged, whatever the
    /// state.
    pub(crate) fn queued(&self) -> usize {
        match self.staged.len() {
            // Plaintext always, and noise between bursts: no division on every send.
            0 => self.tx.len(),
            staged => self.tx.len() + staged + crate::secure::record_overhead(staged),
        }
    }

    /// What [`Socket::queued`] would be with `extra` more bytes of frames queued.
    fn queued_with(&self, extra: usize) -> usize {
        if self.seals() {
            let staged = self.staged.len() + extra;
            self.tx.len() + staged + crate::secure::record_overhead(staged)
        } else {
            self.queued() + extra
        }
    }

    /// [`Socket::queued`], and how much it grows when a frame of `len` wire bytes is
    /// queued (under noise, with the records it may take): every send asks for both,
    /// the record arithmetic done once.
    pub(crate) fn queued_and_growth(&self, len: usize) -> (usize, usize) {
        let queued = self.queued();
        if !self.seals() {
            // Plaintext: a frame adds its wire bytes and nothing else.
            return (queued, len);
        }
        (queued, self.queued_with(len) - queued)
    }

    /// Requests waiting for a response.
    pub(crate) fn pending_requests(&self) -> usize {
        self.requests().map_or(0, |r| r.pending.len())
    }

    /// The peer's requests delivered and not yet answered.
    pub(crate) fn unanswered_requests(&self) -> usize {
        self.requests().map_or(0, |r| r.unanswered.len())
    }

    /// Whether the peer's request `id` came on this connection and is unanswered.
    pub(crate) fn holds_request(&self, id: u64) -> bool {
        self.requests().is_some_and(|r| r.unanswered.contains(id))
    }

    /// The peer's request `id` was answered: it may not be answered again.
    pub(crate) fn answered(&mut self, id: u64) {
        if let Some(requests) = self.open_mut().and_then(|open| open.requests.as_mut()) {
            requests.unanswered.remove(id);
        }
    }

    /// Remembers the peer's request `id` as unanswered; at the cap the oldest is
    /// forgotten first, counted.
    fn remember_request(&mut self, id: u64) {
        let cap = self.limits.max_pending_requests;
        let Some(open) = self.open_mut() else {
            return;
        };
        let requests = open.requests.get_or_insert_with(|| Requests::new(cap));
        let mut forgotten = None;
        if requests.unanswered.len() >= cap
            && let Some((_, oldest)) = requests.unanswered.pop_first()
        {
            forgotten = Some((oldest, requests.unanswered.len()));
        }
        requests.unanswered.insert(id, requests.arrivals);
        requests.arrivals += 1;
        if let Some((oldest, newer)) = forgotten {
            self.stats.forgotten_requests += 1;
            log::debug!(
                "forgot request {oldest} of {:?}: {newer} newer ones unanswered",
                self.remote,
            );
        }
    }

    /// The lowest and highest request ids the node issued so far, to any peer.
    pub(crate) fn set_issued(&mut self, issued: Option<(u64, u64)>) {
        self.issued = issued;
    }

    /// Whether `id` lies within the request ids the node issued: a RESPONSE with it
    /// that matches no pending request is late (timed out, failed with a closed
    /// connection, answered already), not made up. Two numbers instead of a record
    /// of every id: every id issued lies within, whatever became of it, and the
    /// others within went to other peers (ids are one node-wide sequence), so a
    /// peer answering one of those is let off with a count, gaining nothing a
    /// MESSAGE would not give it.
    fn was_issued(&self, id: u64) -> bool {
        self.issued
            .is_some_and(|(low, high)| (low..=high).contains(&id))
    }

    /// Bytes buffered from the peer and not yet taken as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.rx.len() + self.plain.len() + self.overrun.len()
    }

    /// Bytes of the receive budget this connection holds.
    pub(crate) fn charged(&self) -> usize {
        self.charged
    }

    /// How much more of the receive budget the connection may take, from now until
    /// the node says again.
    pub(crate) fn set_read_room(&mut self, room: usize) {
        self.read_room = room;
    }

    /// Whether the last read or open stopped for want of receive budget.
    pub(crate) fn starved(&self) -> bool {
        self.starved
    }

    /// Whether the node stopped reading this connection for want of receive budget.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// The node stops reading: the frame deadline and the keepalive stop running.
    pub(crate) fn pause(&mut self, now: Instant) {
        self.paused = true;
        if let Some(open) = self.open_mut()
            && let FrameClock::Running { until, mark } = open.frame
        {
            open.frame = FrameClock::Paused {
                left: until.saturating_duration_since(now),
                mark,
            };
        }
    }

    /// The node reads again: the frame deadline runs on from where it stopped, and
    /// the keepalive counts silence from now, since bytes may have waited unread.
    pub(crate) fn resume(&mut self, now: Instant) {
        self.paused = false;
        if let Some(open) = self.open_mut() {
            open.keepalive.last_recv = open.keepalive.last_recv.max(now);
            open.keepalive.pinged = false;
            if let FrameClock::Paused { left, mark } = open.frame {
                open.frame = FrameClock::Running {
                    until: now + left,
                    mark,
                };
            }
        }
    }

    /// Whether a whole record waits to be opened (noise): a connection paused while
    /// opening must open it before reading more.
    pub(crate) fn has_record_waiting(&self) -> bool {
        self.open_state()
            .is_some_and(|open| open.transport.next_record(&self.rx).is_some())
    }

    /// Starts, moves or ends the deadline of the unfinished frame after bytes were
    /// taken as frames: it starts when a frame is left unfinished, moves each time
    /// the connection gained [`FRAME_PROGRESS`] bytes, and ends when nothing
    /// unfinished is left.
    pub(crate) fn track_frame(&mut self, now: Instant) {
        let (buffered, paused, bytes_in) = (self.buffered(), self.paused, self.stats.bytes_in);
        let frame_timeout = self.limits.frame_timeout;
        let Some(open) = self.open_mut() else {
            return;
        };
        if buffered == 0 {
            open.frame = FrameClock::Stopped;
            return;
        }
        if paused {
            return;
        }
        let restart = match open.frame {
            FrameClock::Running { mark, .. } => bytes_in - mark >= FRAME_PROGRESS,
            // Not paused, so never `Paused`: that ends with the pause.
            FrameClock::Stopped | FrameClock::Paused { .. } => true,
        };
        if restart {
            open.frame = FrameClock::Running {
                until: now + frame_timeout,
                mark: bytes_in,
            };
        }
    }

    /// The frame stream's buffer: `rx` in plaintext, the opened records under noise.
    fn frames_in(&mut self) -> &mut BytesMut {
        if self.opens_records() {
            &mut self.plain
        } else {
            &mut self.rx
        }
    }

    /// What the frame stream's buffer holds without charge: under noise, a record's
    /// plaintext more than in plaintext.
    fn frame_buffer_free(&self) -> usize {
        if self.opens_records() {
            READ_ALLOWANCE + RECORD_SLACK
        } else {
            READ_ALLOWANCE
        }
    }

    /// Makes room for `step` more bytes in the frame stream's buffer, when a frame of
    /// `need` bytes (more than [`READ_ALLOWANCE`]) is under way: a buffer of its own
    /// that doubles as its bytes arrive, up to the frame's size and never past it (it
    /// becomes the payload, which holds it as long as it lives), charged to the
    /// receive budget with the `overrun` bytes the record completing the frame holds
    /// past its end. False, and `starved` set, if the budget's room is too small.
    fn grow_frame_buffer(&mut self, need: usize, step: usize, overrun: usize) -> bool {
        let free = self.frame_buffer_free();
        let (read_room, charged) = (self.read_room, self.charged);
        let affordable = (free + charged + read_room).saturating_sub(overrun);
        let own = std::mem::replace(&mut self.frame_buffer_own, true);
        let buf = self.frames_in();
        if !own {
            // To the front of its allocation, so that its capacity is all of it (a
            // move of the frame's first bytes, once per frame; none if it is there).
            *buf = BytesMut::from(Bytes::from(Vec::from(std::mem::take(buf))));
        }
        let len = buf.len();
        let fits = buf.capacity() - len >= step;
        if fits && buf.capacity() <= need && overrun == 0 {
            return true;
        }
        let cap = if fits && buf.capacity() <= need {
            buf.capacity()
        } else {
            let least = len + step;
            // As much of the doubling as the budget allows, but at least the step; a
            // buffer larger than the frame (the one its start was opened into) shrinks.
            let wanted = (2 * len).max(least).max(free).min(need);
            let cap = if fits { wanted } else { wanted.min(affordable) };
            if cap < least {
                self.starved = true;
                return false;
            }
            // Resized in place where the allocator can (realloc): no copy of what
            // arrived.
            let mut vec = Vec::from(std::mem::take(buf));
            if vec.capacity() > cap {
                vec.shrink_to(cap);
            } else {
                vec.reserve_exact(cap - vec.len());
            }
            let cap = vec.capacity();
            *buf = BytesMut::from(Bytes::from(vec));
            cap
        };
        if overrun > 0 && cap > affordable {
            self.starved = true;
            return false;
        }
        let charge = (cap + overrun).saturating_sub(free).max(charged);
        self.read_room = self.read_room.saturating_sub(charge - charged);
        self.charged = charge;
        true
    }

    /// Ends the charge once no frame larger than [`READ_ALLOWANCE`] is under way: its
    /// buffer now belongs to the payload taken from it.
    fn release_frame_buffer(&mut self) {
        let Some(open) = self.open_state() else {
            return;
        };
        let frames = if open.transport.encrypts() {
            &self.plain
        } else {
            &self.rx
        };
        let large = open
            .checks
            .decoder
            .frame_need(frames)
            .is_some_and(|need| need > READ_ALLOWANCE);
        if !large {
            if self.charged > 0 || self.frame_buffer_own {
                // The payload was sliced out of this buffer, and what is left of it (the
                // next frame's start, under noise up to a record) would keep the whole
                // allocation alive, uncharged, after the payload is dropped; even left
                // empty, it would share the payload's buffer with the node's read
                // scratch. A buffer the frame's own need not have been charged: one of
                // up to two records' size is within what a connection holds for free.
                let frames = self.frames_in();
                *frames = BytesMut::from(&frames[..]);
            }
            self.charged = 0;
            self.frame_buffer_own = false;
        }
    }

    /// The need of the frame under way in `buf`, if it is larger than
    /// [`READ_ALLOWANCE`] (open connections only).
    fn large_frame_need(&self, buf: &[u8]) -> Option<usize> {
        self.open_state()
            .and_then(|open| open.checks.decoder.frame_need(buf))
            .filter(|&need| need > READ_ALLOWANCE)
    }

    /// Whether `rx` is the buffer of a frame larger than [`READ_ALLOWANCE`] under way
    /// (plaintext): it is read into as it is, and stays the socket's.
    fn rx_holds_large_frame(&self) -> bool {
        !self.opens_records() && self.large_frame_need(&self.rx).is_some()
    }

    /// Whether `plain` is the buffer of a frame larger than [`READ_ALLOWANCE`] under
    /// way (noise).
    fn plain_holds_large_frame(&self) -> bool {
        self.large_frame_need(&self.plain).is_some()
    }

    /// Reads go into `scratch`, the node's one read buffer, instead of a buffer of the
    /// connection's own, unless a large frame's own buffer is under way; between reads
    /// the connection keeps only the bytes of its unfinished frame
    /// ([`Socket::settle_rx`]), unless it is longer than [`COPY_OUT_LIMIT`]. Leaves
    /// `scratch` empty; false if it was not taken.
    pub(crate) fn lend_rx(&mut self, scratch: &mut BytesMut) -> bool {
        if self.rx_holds_large_frame() {
            return false;
        }
        let cap = if self.opens_records() {
            RECORD_LIMIT
        } else {
            READ_ALLOWANCE
        };
        lend(&mut self.rx, scratch, cap)
    }

    /// After the bytes read were taken: gives the read buffer back to `scratch` (or
    /// drops a buffer of its own), keeping a copy of the unfinished frame, unless it
    /// is a large frame's own or holds more than [`COPY_OUT_LIMIT`] bytes of it.
    pub(crate) fn settle_rx(&mut self, scratch: &mut BytesMut) {
        if !self.rx_holds_large_frame() {
            settle(&mut self.rx, scratch);
        }
    }

    /// [`Socket::lend_rx`] for the frame stream opened from records (noise): frames
    /// are taken from `scratch`, and only an unfinished one stays.
    pub(crate) fn lend_plain(&mut self, scratch: &mut BytesMut) {
        if self.seals() && !self.plain_holds_large_frame() {
            lend(&mut self.plain, scratch, READ_ALLOWANCE + RECORD_SLACK);
        }
    }

    /// [`Socket::settle_rx`] for the opened frame stream.
    pub(crate) fn settle_plain(&mut self, scratch: &mut BytesMut) {
        if self.seals() && !self.plain_holds_large_frame() {
            settle(&mut self.plain, scratch);
        }
    }

    /// The capacity of the socket's own read buffers, raw and opened (tests).
    #[cfg(test)]
    pub(crate) fn read_capacity(&self) -> usize {
        self.rx.capacity() + self.plain.capacity() + self.overrun.capacity()
    }

    /// How far the handshake got: the preamble, then each whole handshake message the
    /// peer sent. Bytes of an unfinished message do not count: they cost a peer
    /// nothing to send, while every whole message costs it a round trip. Only
    /// connections authenticating are ranked by it; others count 0.
    pub(crate) fn handshake_progress(&self) -> u8 {
        match &self.state {
            State::Authenticating(auth) => {
                u8::from(auth.preamble_deadline.is_none()).saturating_add(auth.handshaking.messages)
            }
            _ => 0,
        }
    }

    /// The TCP connection is established: send the preamble and the handshake's start.
    pub(crate) fn connected(&mut self, now: Instant) {
        let State::Opening(opening) = &mut self.state else {
            return;
        };
        let handshaking = &mut opening.handshaking;
        self.tx.push_slice(&handshaking.preamble.encode());
        let mut start = BytesMut::new();
        handshaking.handshake.start(&mut start);
        self.tx.push_slice(&start);
        self.replace_state(|state| match state {
            State::Opening(opening) => State::Authenticating(Authenticating {
                deadline: now + opening.handshake_timeout,
                preamble_deadline: Some(now + opening.preamble_timeout),
                handshaking: opening.handshaking,
            }),
            other => other,
        });
    }

    /// The buffer the shell reads into, and how many bytes to ask for (at most
    /// `chunk`, never 0); call [`Socket::received`] after appending. `None`, with
    /// [`Socket::starved`] set, when reading on needs more receive budget than the
    /// node gave. The frame stream holds at most one read chunk for free; a frame
    /// longer than that is read into a buffer of its own that grows as its bytes
    /// arrive, and is read up to its end, so the next frame starts in a fresh buffer
    /// and the large payload pins nothing else.
    pub(crate) fn recv_buf(&mut self, chunk: usize) -> Option<(&mut BytesMut, usize)> {
        self.starved = false;
        let chunk = chunk.max(1);
        if self.opens_records() {
            // Ciphertext waits here only until its record is whole.
            let want = chunk.min(RECORD_LIMIT.saturating_sub(self.rx.len()));
            if want == 0 {
                return None;
            }
            make_room(&mut self.rx, want, RECORD_LIMIT);
            return Some((&mut self.rx, want));
        }
        if let Some(need) = self.large_frame_need(&self.rx) {
            let rest = need.saturating_sub(self.rx.len()).max(1);
            if self.rx.capacity() == self.rx.len()
                && !self.grow_frame_buffer(need, chunk.min(rest), 0)
            {
                return None;
            }
            let room = self.rx.capacity() - self.rx.len();
            return Some((&mut self.rx, chunk.min(room).min(rest)));
        }
        // Frames within one chunk: they complete in it, so it is never outgrown.
        let want = chunk
            .min(READ_ALLOWANCE.saturating_sub(self.rx.len()))
            .max(1);
        make_room(&mut self.rx, want, READ_ALLOWANCE);
        Some((&mut self.rx, want))
    }

    /// `n` bytes were appended to the read buffer: run the preamble and handshake.
    /// Frames are taken by [`Socket::take_frames`], after the node has seen
    /// [`Output::Established`] and kept the connection.
    pub(crate) fn received(&mut self, n: usize, now: Instant, out: &mut Vec<Output>) {
        self.stats.bytes_in += n as u64;
        match &mut self.state {
            State::Closing(_) | State::Closed(_) => self.rx.clear(),
            State::Open(open) => {
                open.keepalive.last_recv = now;
                open.keepalive.pinged = false;
            }
            State::Authenticating(_) => self.authenticate(now, out),
            State::Opening(_) => {}
        }
    }

    /// Runs the preamble check and the handshake on what was read; opens the
    /// connection once the handshake is done.
    fn authenticate(&mut self, now: Instant, out: &mut Vec<Output>) {
        let State::Authenticating(auth) = &mut self.state else {
            return;
        };
        if auth.preamble_deadline.is_some() {
            if self.rx.len() < PREAMBLE_LEN {
                return;
            }
            let mut theirs = [0u8; PREAMBLE_LEN];
            theirs.copy_from_slice(&self.rx[..PREAMBLE_LEN]);
            self.rx.advance(PREAMBLE_LEN);
            let handshaking = &mut auth.handshaking;
            if let Err(e) = Preamble::check(&theirs, &handshaking.preamble) {
                // Nothing else is sent after a failed check.
                self.abort(CloseReason::Preamble(e), out);
                return;
            }
            auth.preamble_deadline = None;
            self.peer_features = Preamble::features(&theirs);
            let mut reply = BytesMut::new();
            let ours = handshaking.preamble.encode();
            let begun = handshaking
                .handshake
                .preamble_checked(&ours, &theirs, &mut reply);
            self.tx.push_slice(&reply);
            if let Err(e) = begun {
                log::debug!("handshake with {} failed: {e}", self.addr);
                return self.abort(CloseReason::HandshakeFailed, out);
            }
        }
        let handshaking = &mut auth.handshaking;
        let mut reply = BytesMut::new();
        let before = self.rx.len();
        let result = handshaking.handshake.read(&mut self.rx, &mut reply);
        if self.rx.len() < before {
            handshaking.messages = handshaking.messages.saturating_add(1);
        }
        self.tx.push_slice(&reply);
        match result {
            Ok(Some(established)) => {
                self.remote = Some(established.remote);
                let transport = established.transport;
                // The handshake, its keys and its copy of the node's secret go here.
                self.replace_state(|state| match state {
                    State::Authenticating(auth) => State::Open(Open {
                        transport,
                        checks: auth.handshaking.checks,
                        decrypt_failed: false,
                        keepalive: Keepalive {
                            last_recv: now,
                            pinged: false,
                            probe: Probe::None,
                        },
                        requests: None,
                        frame: FrameClock::Stopped,
                        gossip_drop_log: DropLog::default(),
                        relay_share: None,
                        addrs_received: false,
                        pex: Pex::default(),
                    }),
                    other => other,
                });
                out.push(Output::Established(established.remote));
            }
            Ok(None) => {}
            Err(e) => {
                log::debug!("handshake with {} failed: {e}", self.addr);
                self.abort(CloseReason::HandshakeFailed, out);
            }
        }
    }

    /// Decodes up to `max` whole frames from the read buffer into `out`; true if it
    /// stopped early with more perhaps waiting. A GOSSIP frame the node must decide
    /// on ends the batch, so its verdict (a relay, which may close connections) comes
    /// before any later frame is taken.
    pub(crate) fn take_frames(&mut self, now: Instant, out: &mut impl Frames, max: usize) -> bool {
        self.starved = false;
        for _ in 0..max {
            let State::Open(open) = &mut self.state else {
                return false;
            };
            let (encrypts, decrypt_failed) = (open.transport.encrypts(), open.decrypt_failed);
            let frames = if encrypts {
                &mut self.plain
            } else {
                &mut self.rx
            };
            if let Some(n) = open.checks.decoder.small_message(frames) {
                self.stats.frames_in += 1;
                out.message(&frames[MESSAGE_PAYLOAD_AT..MESSAGE_PAYLOAD_AT + n]);
                frames.advance(MESSAGE_PAYLOAD_AT + n);
                continue;
            }
            match open.checks.decoder.decode(frames) {
                // The bulk of the traffic, taken here rather than through `on_frame`.
                Some(Decoded::Frame(Frame::Message(payload))) => self.message(payload, out),
                Some(Decoded::Frame(frame)) => {
                    let outputs = out.decisions().len();
                    let gossip = matches!(frame, Frame::Gossip { .. });
                    self.on_frame(frame, now, out);
                    // A GOSSIP dropped by the rate limit needs no decision: the batch
                    // goes on, so a flood of them costs little.
                    if gossip && out.decisions().len() > outputs {
                        self.release_frame_buffer();
                        return true;
                    }
                }
                Some(Decoded::Rejected(reason)) => self.reject(reason, now, out),
                None => {
                    self.release_frame_buffer();
                    if encrypts && !decrypt_failed && self.open_record() {
                        continue;
                    }
                    let decrypt_failed = self.open_state().is_some_and(|o| o.decrypt_failed);
                    if decrypt_failed && !self.starved {
                        self.close(CloseReason::DecryptFailed, None, now, out.decisions());
                    }
                    return false;
                }
            }
        }
        self.release_frame_buffer();
        true
    }

    /// Opens the next whole record onto the frame stream (noise), once it has room
    /// for the record's plaintext; false if none is whole yet, the budget has no room
    /// for it (`starved`), or it failed to open (`decrypt_failed`). Records are opened
    /// one at a time, as the frames before them are taken, so the frame stream holds
    /// at most the unfinished frame and one record's plaintext. A record that
    /// completes a large frame fills its buffer to the frame's end; the rest waits in
    /// `overrun` and is the frame stream once the frame is taken (this call, then).
    fn open_record(&mut self) -> bool {
        if !self.overrun.is_empty() {
            if self.plain.is_empty() {
                self.plain = std::mem::take(&mut self.overrun);
            } else {
                make_room(
                    &mut self.plain,
                    self.overrun.len(),
                    READ_ALLOWANCE + RECORD_SLACK,
                );
                self.plain.extend_from_slice(&self.overrun);
                self.overrun = BytesMut::new();
            }
            return true;
        }
        let Some(size) = self
            .open_state()
            .and_then(|open| open.transport.next_record(&self.rx))
        else {
            return false;
        };
        let to_frame_end = match self.large_frame_need(&self.plain) {
            Some(need) => {
                // A record is opened in place: the buffer it is opened into needs room
                // for its ciphertext, a tag more than its plaintext.
                let to_end = need - self.plain.len();
                let room = size + crate::secure::RECORD_OVERHEAD;
                let overrun = room.saturating_sub(to_end);
                if !self.grow_frame_buffer(need, room.min(to_end), overrun) {
                    return false;
                }
                Some(to_end).filter(|_| overrun > 0)
            }
            None => {
                // Opened in place, as above: room for its ciphertext.
                make_room(
                    &mut self.plain,
                    size + crate::secure::RECORD_OVERHEAD,
                    READ_ALLOWANCE + RECORD_SLACK,
                );
                None
            }
        };
        let State::Open(open) = &mut self.state else {
            return false;
        };
        let opened = match to_frame_end {
            None => open.transport.open_record(&mut self.rx, &mut self.plain),
            Some(to_end) => {
                let mut record = BytesMut::with_capacity(size + crate::secure::RECORD_OVERHEAD);
                let opened = open.transport.open_record(&mut self.rx, &mut record);
                if opened == Ok(true) {
                    let to_end = to_end.min(record.len());
                    self.plain.extend_from_slice(&record[..to_end]);
                    record.advance(to_end);
                    if !record.is_empty() {
                        self.overrun = record;
                    }
                }
                opened
            }
        };
        match opened {
            Ok(opened) => opened,
            Err(_) => {
                // Fatal, but only after the frames of the records before it: what is
                // delivered must not depend on how TCP split the bytes.
                open.decrypt_failed = true;
                false
            }
        }
    }

    /// Whether the peer's preamble said it understands ADDRS frames.
    pub(crate) fn peer_takes_addrs(&self) -> bool {
        self.peer_features & crate::wire::FEATURE_ADDRS != 0
    }

    /// Whether the peer's preamble said it understands GETADDRS and PEERS.
    pub(crate) fn peer_takes_pex(&self) -> bool {
        self.peer_features & crate::wire::FEATURE_PEX != 0
    }

    /// Whether we may send the peer a GETADDRS now: it understands them, the
    /// connection is open, and our last one on it is [`GETADDRS_SEND_INTERVAL`] old.
    ///
    /// [`GETADDRS_SEND_INTERVAL`]: crate::wire::GETADDRS_SEND_INTERVAL
    pub(crate) fn may_ask_addrs(&self, now: Instant) -> bool {
        self.peer_features & crate::wire::FEATURE_PEX != 0
            && self.open_state().is_some_and(|open| {
                open.pex.asked_at.is_none_or(|at| {
                    now.saturating_duration_since(at) >= crate::wire::GETADDRS_SEND_INTERVAL
                })
            })
    }

    /// A GETADDRS of ours was queued: one PEERS may answer it.
    pub(crate) fn asked_addrs(&mut self, now: Instant) {
        if let Some(open) = self.open_mut() {
            open.pex.asked_at = Some(now);
            // One at most: a peer that held back its answers cannot push them all
            // at once later.
            open.pex.asked = true;
        }
    }

    /// The remote id (zeros before the handshake finished).
    pub(crate) fn peer(&self) -> PeerId {
        self.remote.unwrap_or(PeerId::from_bytes([0; 32]))
    }

    /// A MESSAGE: nothing to check, so `take_frames` takes it without `on_frame`.
    #[inline(always)]
    fn message(&mut self, payload: Bytes, out: &mut impl Frames) {
        self.stats.frames_in += 1;
        out.push(Output::Message(payload));
    }

    /// One frame of an open connection.
    fn on_frame(&mut self, frame: Frame, now: Instant, out: &mut impl Frames) {
        let Some(open) = self.open_mut() else {
            return;
        };
        match frame {
            Frame::Ping(nonce) => {
                self.stats.frames_in += 1;
                // A PONG is tiny, but a peer that pings and never reads must not grow our buffer.
                let pong = Frame::Pong(nonce);
                if self.control_fits(pong.wire_len()) {
                    self.queue(&pong);
                } else {
                    self.count_dropped(now);
                }
            }
            Frame::Pong(nonce) => {
                if open.keepalive.probe == Probe::Sent(nonce) {
                    open.keepalive.probe = Probe::Answered;
                }
                self.stats.frames_in += 1;
            }
            Frame::Response { id, payload } => {
                let pending = open.requests.as_mut().and_then(|r| r.pending.remove(id));
                if pending.is_some() {
                    self.stats.frames_in += 1;
                    out.push(Output::Response { id, payload });
                } else if self.was_issued(id) {
                    self.stats.late_responses += 1;
                    log::debug!("late response {id} from {:?} dropped", self.remote);
                } else {
                    self.reject(Reject::UnmatchedResponse(id), now, out);
                }
            }
            Frame::Goodbye(reason) => {
                self.stats.frames_in += 1;
                self.close(CloseReason::Goodbye(reason), None, now, out.decisions());
                // Nothing more comes: once our side is flushed and shut there is no
                // EOF to wait for.
                self.peer_ended();
            }
            Frame::Message(payload) => self.message(payload, out),
            Frame::Request { id, payload } => {
                if open
                    .requests
                    .as_ref()
                    .is_some_and(|r| r.unanswered.contains(id))
                {
                    return self.reject(Reject::DuplicateRequest(id), now, out);
                }
                self.stats.frames_in += 1;
                self.remember_request(id);
                out.push(Output::Request { id, payload });
            }
            Frame::Addrs(addrs) => {
                if open.addrs_received {
                    return self.reject(Reject::RepeatedAddrs, now, out);
                }
                open.addrs_received = true;
                self.stats.frames_in += 1;
                out.push(Output::Addrs(addrs));
            }
            Frame::GetAddrs => {
                let interval = crate::wire::GETADDRS_INTERVAL;
                if open
                    .pex
                    .answered_at
                    .is_some_and(|at| now.saturating_duration_since(at) < interval)
                {
                    return self.reject(Reject::GetAddrsTooSoon, now, out);
                }
                open.pex.answered_at = Some(now);
                self.stats.frames_in += 1;
                out.push(Output::GetAddrs);
            }
            Frame::Peers(addrs) => {
                if !open.pex.asked {
                    return self.reject(Reject::UnsolicitedPeers, now, out);
                }
                open.pex.asked = false;
                self.stats.frames_in += 1;
                out.push(Output::Peers(addrs));
            }
            Frame::Gossip { id, hops, payload } => {
                if !open
                    .checks
                    .gossip_limit
                    .admit(GOSSIP_HEAD_LEN + payload.len(), now)
                {
                    return self.gossip_dropped(now);
                }
                self.stats.frames_in += 1;
                out.push(Output::Gossip { id, hops, payload });
            }
        }
    }

    /// The peer's share of the node's relay budget, made by `make` the first time;
    /// `None` unless the connection is open (GOSSIP comes on no other).
    pub(crate) fn relay_share(
        &mut self,
        make: impl FnOnce() -> RelayShare,
    ) -> Option<&mut RelayShare> {
        self.open_mut()
            .map(|open| open.relay_share.get_or_insert_with(make))
    }

    /// Counts a GOSSIP frame dropped for the rate limit, logging at most once a second.
    fn gossip_dropped(&mut self, now: Instant) {
        self.stats.rate_limited += 1;
        let Some(open) = self.open_mut() else {
            return;
        };
        if let Some(n) = open.gossip_drop_log.dropped(now) {
            log::warn!(
                "dropped {n} GOSSIP frame(s) from {:?} at {} over max_gossip_rate or max_gossip_bytes_rate",
                self.remote,
                self.addr
            );
        }
    }

    fn reject(&mut self, reason: Reject, now: Instant, out: &mut impl Frames) {
        let Some(open) = self.open_mut() else {
            return;
        };
        let checks = &mut open.checks;
        checks.rejected = checks.rejected.saturating_add(1);
        let (count, recent) = (checks.rejected, checks.rejected_recently.record(now));
        self.stats.rejected_frames += 1;
        log::debug!("rejected frame from {:?}: {reason} ({count})", self.remote);
        out.push(Output::Rejected { reason, count });
        if recent >= self.limits.max_rejected {
            self.close(
                CloseReason::Misbehaving,
                Some(GoodbyeReason::Misbehaving),
                now,
                out.decisions(),
            );
        }
    }

    /// Counts the broadcast `id` the application rejected as a rejected frame of this
    /// connection (it may close it as misbehaving).
    pub(crate) fn reject_broadcast(&mut self, id: [u8; 16], now: Instant, out: &mut Vec<Output>) {
        self.reject(Reject::RejectedBroadcast(id), now, out);
    }

    /// Where frames go: straight to the wire buffer, or staged for sealing.
    fn frames_out(&mut self) -> &mut OutQueue {
        if self.seals() {
            &mut self.staged
        } else {
            &mut self.tx
        }
    }

    fn queue(&mut self, frame: &Frame) {
        self.frames_out().push_frame(frame);
        self.stats.frames_out += 1;
    }

    /// Whether `extra` more bytes of application frames fit under the per-peer cap,
    /// leaving room for the control frames ([`CONTROL_ROOM`]).
    fn check_room(&self, extra: usize) -> Result<(), SendError> {
        if self.open_state().is_none() {
            return Err(SendError::NotConnected(self.peer()));
        }
        if self.queued_with(extra) + CONTROL_ROOM > self.limits.max_write_buffer {
            return Err(SendError::Full {
                peer: self.peer(),
                queued: self.queued(),
                cap: self.limits.max_write_buffer,
            });
        }
        Ok(())
    }

    /// Whether a PING or PONG of `len` wire bytes fits under the per-peer cap, leaving
    /// room for a GOODBYE, and within this queue's fair share of the global budget
    /// ([`within_fair_share`]): a peer that pings and never reads must not fill the
    /// node's queues with PONGs. If so, takes it from the global budget.
    fn control_fits(&mut self, len: usize) -> bool {
        let (queued, growth) = self.queued_and_growth(len);
        let fits = queued + growth + GOODBYE_ROOM <= self.limits.max_write_buffer
            && within_fair_share(queued, growth, self.control_budget);
        if fits {
            self.control_budget -= growth;
        }
        fits
    }

    /// How much control frames may add to the node's queues before the global cap,
    /// from now until the node says again.
    pub(crate) fn set_control_budget(&mut self, budget: usize) {
        self.control_budget = budget;
    }

    /// Queues a frame if it fits under the per-peer cap.
    pub(crate) fn send(&mut self, frame: &Frame) -> Result<(), SendError> {
        self.check_room(frame.wire_len())?;
        self.queue(frame);
        Ok(())
    }

    /// Queues a frame whose payload is being sent to many peers, sharing the payload.
    pub(crate) fn send_shared(&mut self, frame: &Frame) -> Result<(), SendError> {
        self.check_room(frame.wire_len())?;
        self.frames_out().push_frame_shared(frame);
        self.stats.frames_out += 1;
        Ok(())
    }

    /// Queues a REQUEST and starts its timer.
    pub(crate) fn request(
        &mut self,
        id: u64,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), SendError> {
        if self.pending_requests() >= self.limits.max_pending_requests {
            return Err(SendError::TooManyRequests(self.peer()));
        }
        self.send(&Frame::Request { id, payload })?;
        let (cap, deadline) = (
            self.limits.max_pending_requests,
            now + self.limits.request_timeout,
        );
        if let Some(open) = self.open_mut() {
            let requests = open.requests.get_or_insert_with(|| Requests::new(cap));
            requests.pending.insert(id, deadline);
        }
        Ok(())
    }

    /// Counts a frame that was not queued because a buffer was full, and says so in
    /// the log at most once a second for this peer.
    pub(crate) fn count_dropped(&mut self, now: Instant) {
        self.stats.dropped_sends += 1;
        if let Some(n) = self.drop_log.dropped(now) {
            log::warn!(
                "{n} frames to {:?} at {} dropped (relays, PONGs): its write queue is full \
                 ({} bytes queued, {} dropped in all)",
                self.peer(),
                self.addr,
                self.queued(),
                self.stats.dropped_sends
            );
        }
    }

    /// Closes gracefully: fails pending requests, queues `goodbye` if open, flushes, then
    /// shuts the stream. Does nothing if already closing.
    pub(crate) fn close(
        &mut self,
        reason: CloseReason,
        goodbye: Option<GoodbyeReason>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        match self.state {
            State::Closing(_) | State::Closed(_) => return,
            State::Opening(_) | State::Authenticating(_) => return self.abort(reason, out),
            State::Open(_) => {}
        }
        if let Some(goodbye) = goodbye {
            self.queue(&Frame::Goodbye(goodbye));
        }
        self.leave_service(&reason, out);
        let deadline = now + self.limits.close_timeout;
        // The transport goes on sealing what is queued; the rest of the open state
        // (keepalive, frame checks, requests, already failed) is dropped.
        self.replace_state(|state| match state {
            State::Open(open) => State::Closing(Closing {
                transport: open.transport,
                reason,
                deadline,
                awaiting: Awaiting::Both,
            }),
            other => other,
        });
    }

    /// The peer closed its side or said GOODBYE: a close under way no longer waits
    /// for it, and ends if our side is shut already.
    fn peer_ended(&mut self) {
        if let State::Closing(closing) = &mut self.state {
            match closing.awaiting {
                Awaiting::Both => closing.awaiting = Awaiting::Shutdown,
                Awaiting::PeerEnd => self.end_close(),
                Awaiting::Shutdown => {}
            }
        }
    }

    /// A close under way ends: the connection is closed, for the close's reason.
    fn end_close(&mut self) {
        self.replace_state(|state| match state {
            State::Closing(closing) => State::Closed(closing.reason),
            other => other,
        });
    }

    /// Closes at once, dropping whatever is queued.
    pub(crate) fn abort(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        match self.state {
            State::Closed(_) => return,
            State::Closing(_) => {
                self.report_unflushed(out);
                self.end_close();
            }
            State::Opening(_) | State::Authenticating(_) | State::Open(_) => {
                self.leave_service(&reason, out);
                self.state = State::Closed(reason);
                self.sealing = false;
            }
        }
        self.tx.clear();
        self.staged.clear();
        self.write_stalled_since = None;
    }

    /// A graceful close ends: what is still queued will never be sent, and whoever
    /// asked for the close must hear it.
    fn report_unflushed(&self, out: &mut Vec<Output>) {
        let left = self.queued();
        if left > 0 {
            log::warn!(
                "{left} bytes queued for {:?} at {} were not sent before the close ended",
                self.remote,
                self.addr
            );
            out.push(Output::Unflushed(left));
        }
    }

    /// The connection leaves service (the caller moves it to `Closing` or `Closed`,
    /// which drops the rest of the state it leaves): its read buffers go, and its
    /// pending requests fail.
    fn leave_service(&mut self, reason: &CloseReason, out: &mut Vec<Output>) {
        // Dropped, not cleared: nothing is read into them any more.
        self.rx = BytesMut::new();
        self.plain = BytesMut::new();
        self.overrun = BytesMut::new();
        self.charged = 0;
        self.frame_buffer_own = false;
        // Out of service nothing can be answered on it.
        if let Some(mut requests) = self.open_mut().and_then(|open| open.requests.take()) {
            let mut ids = requests.pending.take_all();
            ids.sort_unstable(); // a fixed order keeps runs reproducible
            for id in ids {
                out.push(Output::RequestFailed {
                    id,
                    reason: RequestError::ConnectionClosed(reason.clone()),
                });
            }
        }
        out.push(Output::Closed(reason.clone()));
    }

    /// The peer closed its side of the stream.
    pub(crate) fn eof(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self.state {
            State::Closing(_) => self.peer_ended(),
            State::Closed(_) => {}
            State::Opening(_) | State::Authenticating(_) | State::Open(_) => {
                self.close(CloseReason::PeerClosed, None, now, out);
                self.peer_ended();
            }
        }
    }

    /// The socket failed; nothing more can move.
    pub(crate) fn io_error(&mut self, kind: std::io::ErrorKind, out: &mut Vec<Output>) {
        self.abort(CloseReason::Io(kind), out);
    }

    /// Whether [`Socket::seal`] would seal anything: frames are staged and the wire
    /// buffer is below its seal-ahead mark.
    #[cfg_attr(not(feature = "noise"), allow(dead_code))]
    pub(crate) fn wants_seal(&self) -> bool {
        !self.staged.is_empty() && self.tx.len() < crate::secure::SEAL_AHEAD && self.seals()
    }

    /// Seals staged frames into records, ahead of a write (noise; nothing to do in
    /// plaintext).
    pub(crate) fn seal(&mut self, out: &mut Vec<Output>) {
        if self.staged.is_empty() {
            return;
        }
        let sealed = match &mut self.state {
            State::Open(Open { transport, .. }) | State::Closing(Closing { transport, .. }) => {
                transport.seal(&mut self.staged, &mut self.tx)
            }
            _ => return,
        };
        if sealed.is_err() {
            self.abort(CloseReason::EncryptFailed, out);
        }
    }

    /// The bytes ready for the socket, for a vectored write; [`Socket::seal`] first.
    pub(crate) fn transmit(&self) -> &OutQueue {
        &self.tx
    }

    /// The shell is about to write: a queue with bytes starts its write-timeout clock
    /// now, unless it runs already.
    pub(crate) fn writing(&mut self, now: Instant) {
        if self.write_stalled_since.is_none() && self.queued() > 0 {
            self.start_write_clock(now);
        }
    }

    /// Starts the write-timeout clock: before `write_timeout` the queue must get
    /// [`WRITE_PROGRESS`] written, or all it holds if less.
    fn start_write_clock(&mut self, now: Instant) {
        self.write_stalled_since = Some(now);
        self.write_owed = self.queued().min(WRITE_PROGRESS);
        self.write_done = 0;
    }

    /// `n` bytes were written at `now`: once the queue moved by what it owed, its
    /// write-timeout clock starts again (it stops when the queue is empty).
    pub(crate) fn written(&mut self, n: usize, now: Instant) {
        self.tx.advance(n);
        self.stats.bytes_out += n as u64;
        self.write_done = self.write_done.saturating_add(n);
        if self.queued() == 0 {
            self.write_stalled_since = None;
        } else if self.write_stalled_since.is_none() || self.write_done >= self.write_owed {
            self.start_write_clock(now);
        }
    }

    /// When the write timeout closes the connection if no byte is written before.
    fn write_deadline(&self) -> Option<Instant> {
        self.write_stalled_since
            .map(|since| since + self.limits.write_timeout)
    }

    /// Whether the shell should shut the write side now: closing and flushed.
    pub(crate) fn wants_shutdown(&self) -> bool {
        match &self.state {
            State::Closing(closing) => closing.awaiting != Awaiting::PeerEnd && self.queued() == 0,
            _ => false,
        }
    }

    /// The write side was shut.
    pub(crate) fn write_shut(&mut self) {
        if let State::Closing(closing) = &mut self.state {
            match closing.awaiting {
                Awaiting::Both => closing.awaiting = Awaiting::PeerEnd,
                Awaiting::Shutdown => self.end_close(),
                Awaiting::PeerEnd => {}
            }
        }
    }

    /// Runs the timers that are due.
    pub(crate) fn timeout(&mut self, now: Instant, rng: &mut Rng, out: &mut Vec<Output>) {
        match &self.state {
            State::Opening(opening) if now >= opening.deadline => {
                self.abort(CloseReason::ConnectTimeout, out)
            }
            State::Authenticating(auth) if now >= auth.deadline => {
                self.abort(CloseReason::HandshakeTimeout, out)
            }
            State::Authenticating(auth) if auth.preamble_deadline.is_some_and(|d| now >= d) => {
                self.abort(CloseReason::PreambleTimeout, out)
            }
            State::Open(_) if self.write_deadline().is_some_and(|d| now >= d) => {
                // Nothing can be flushed to a peer that does not read: no GOODBYE.
                log::info!(
                    "closing {:?} at {}: {} bytes queued and none written for {:?}",
                    self.remote,
                    self.addr,
                    self.queued(),
                    self.limits.write_timeout
                );
                self.abort(CloseReason::WriteTimeout, out);
            }
            State::Open(_) => self.open_timeout(now, rng, out),
            State::Closing(closing) if now >= closing.deadline => {
                self.report_unflushed(out);
                self.end_close();
            }
            _ => {}
        }
    }

    /// The timers of an open connection: its requests', the unfinished frame's and
    /// the keepalive's.
    fn open_timeout(&mut self, now: Instant, rng: &mut Rng, out: &mut Vec<Output>) {
        let (paused, limits) = (self.paused, self.limits);
        let Some(open) = self.open_mut() else {
            return;
        };
        if let Some(requests) = open.requests.as_mut() {
            while let Some((at, id)) = requests.pending.first() {
                if at > now {
                    break;
                }
                requests.pending.remove(id);
                out.push(Output::RequestFailed {
                    id,
                    reason: RequestError::Timeout,
                });
            }
        }
        if paused {
            // Not read, so its silence tells nothing: the keepalive waits too.
            return;
        }
        let keepalive = &mut open.keepalive;
        if open.frame.deadline().is_some_and(|d| now >= d) {
            // GOODBYE 4: the peer is too slow to finish what it started.
            self.close(
                CloseReason::FrameTimeout,
                Some(GoodbyeReason::Timeout),
                now,
                out,
            );
        } else if now >= keepalive.last_recv + limits.idle_timeout {
            self.close(
                CloseReason::IdleTimeout,
                Some(GoodbyeReason::Timeout),
                now,
                out,
            );
        } else if !keepalive.pinged && now >= keepalive.last_recv + limits.ping_interval {
            keepalive.pinged = true;
            self.ping(rng);
        }
    }

    /// Queues a PING and returns its nonce. Behind a full queue it could not leave
    /// anyway, so then it is not queued; the idle timeout still runs.
    fn ping(&mut self, rng: &mut Rng) -> Option<u64> {
        let nonce = rng.next_u64();
        let ping = Frame::Ping(nonce);
        self.control_fits(ping.wire_len())
            .then(|| self.queue(&ping))?;
        Some(nonce)
    }

    /// Pings the peer now and remembers the nonce, so that
    /// [`Socket::probe_answered`] tells when the peer answered on this connection.
    /// Only an open connection can be pinged.
    pub(crate) fn probe(&mut self, rng: &mut Rng) {
        if self.open_state().is_none() {
            return;
        }
        let probe = self.ping(rng).map_or(Probe::None, Probe::Sent);
        if let Some(open) = self.open_mut() {
            open.keepalive.probe = probe;
        }
    }

    /// Whether the PING of [`Socket::probe`] was answered.
    pub(crate) fn probe_answered(&self) -> bool {
        self.open_state()
            .is_some_and(|open| open.keepalive.probe == Probe::Answered)
    }

    /// When [`Socket::timeout`] next has work.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Opening(opening) => Some(opening.deadline),
            State::Authenticating(auth) => Some(match auth.preamble_deadline {
                Some(preamble) => auth.deadline.min(preamble),
                None => auth.deadline,
            }),
            State::Open(open) => {
                let keepalive = if self.paused {
                    None
                } else if open.keepalive.pinged {
                    Some(open.keepalive.last_recv + self.limits.idle_timeout)
                } else {
                    Some(open.keepalive.last_recv + self.limits.ping_interval)
                };
                let request = open
                    .requests
                    .as_ref()
                    .and_then(|r| r.pending.first())
                    .map(|(at, _)| at);
                [
                    keepalive,
                    request,
                    open.frame.deadline(),
                    self.write_deadline(),
                ]
                .into_iter()
                .flatten()
                .min()
            }
            State::Closing(closing) => Some(closing.deadline),
            State::Closed(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::*;
    use crate::wire::Security;

    const CHUNK: usize = 64 * 1024;

    fn config(security: Security) -> Config {
        Config {
            security,
            ping_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(2),
            close_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(5),
            ..Config::default()
        }
    }

    /// An identity for `security`: under noise the id is the secret's public key.
    fn key(n: u8, security: Security) -> LocalKey {
        let secret = [n; 32];
        let id = match security {
            Security::Plaintext => PeerId::from_bytes([n; 32]),
            _ => crate::secure::public_id(&secret).unwrap_or(PeerId::from_bytes([n; 32])),
        };
        LocalKey {
            id,
            secret: secret.into(),
        }
    }

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4000))
    }

    fn queued_bytes(queue: &OutQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = queue.slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    /// Moves at most `limit` of what `from` has to write into `to`, as a shell would:
    /// seal, write, read, take frames. The bytes moved.
    fn carry(
        from: &mut Socket,
        to: &mut Socket,
        limit: usize,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> usize {
        from.seal(&mut Vec::new());
        let mut bytes = queued_bytes(from.transmit());
        bytes.truncate(limit);
        if bytes.is_empty() {
            return 0;
        }
        from.writing(now);
        from.written(bytes.len(), now);
        let mut at = 0;
        while at < bytes.len() {
            let Some((buf, want)) = to.recv_buf(CHUNK) else {
                break;
            };
            let n = want.min(bytes.len() - at);
            buf.extend_from_slice(&bytes[at..at + n]);
            at += n;
            to.received(n, now, out);
            to.take_frames(now, out, 64);
        }
        bytes.len()
    }

    /// `a` dialling `b` (not connected yet), with their config and keys.
    fn dialling(security: Security, now: Instant) -> (Config, [LocalKey; 2], Socket, Socket) {
        let config = config(security);
        let keys = [key(1, security), key(2, security)];
        let a = Socket::outbound(&config, &keys[0], Rng::from_seed(1), addr(), now);
        let b = Socket::inbound(&config, &keys[1], Rng::from_seed(2), addr(), now);
        (config, keys, a, b)
    }

    /// Two sockets, `a` dialled `b`, moved to the open state; what each reported.
    fn open_pair(security: Security, now: Instant) -> (Socket, Socket, Vec<Output>, Vec<Output>) {
        let (_, [key_a, key_b], mut a, mut b) = dialling(security, now);
        a.connected(now);
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let moved = carry(&mut a, &mut b, usize::MAX, now, &mut out_b)
                + carry(&mut b, &mut a, usize::MAX, now, &mut out_a);
            if moved == 0 {
                break;
            }
        }
        assert_eq!((a.phase(), b.phase()), (Phase::Open, Phase::Open));
        assert_eq!(out_a, vec![Output::Established(key_b.id)]);
        assert_eq!(out_b, vec![Output::Established(key_a.id)]);
        (a, b, Vec::new(), Vec::new())
    }

    #[test]
    fn the_deadline_of_each_state_is_its_own() {
        let t0 = Instant::now();
        let config = Config {
            connect_timeout: Duration::from_secs(1),
            preamble_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            ..config(Security::Plaintext)
        };
        let key = key(1, Security::Plaintext);
        let mut a = Socket::outbound(&config, &key, Rng::from_seed(1), addr(), t0);
        assert_eq!(a.next_deadline(), Some(t0 + config.connect_timeout));
        let t1 = t0 + Duration::from_millis(10);
        a.connected(t1);
        assert_eq!(a.phase(), Phase::Authenticating);
        assert_eq!(a.next_deadline(), Some(t1 + config.preamble_timeout));
        // The connect deadline went with the dial: past it, nothing times out.
        let mut out = Vec::new();
        let mut rng = Rng::from_seed(0);
        a.timeout(t0 + config.connect_timeout, &mut rng, &mut out);
        assert_eq!(a.phase(), Phase::Authenticating);
        assert!(out.is_empty());
        a.timeout(t1 + config.preamble_timeout, &mut rng, &mut out);
        assert_eq!(out, vec![Output::Closed(CloseReason::PreambleTimeout)]);
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn a_close_while_authenticating_fails_no_request_and_sends_nothing() {
        let now = Instant::now();
        let config = config(Security::Plaintext);
        let mut a = Socket::outbound(
            &config,
            &key(1, Security::Plaintext),
            Rng::from_seed(1),
            addr(),
            now,
        );
        a.connected(now);
        assert!(a.queued() > 0, "preamble and id queued");
        assert_eq!(
            a.request(7, Bytes::from_static(b"q"), now),
            Err(SendError::NotConnected(a.peer()))
        );
        let mut out = Vec::new();
        a.close(
            CloseReason::Shutdown,
            Some(GoodbyeReason::Shutdown),
            now,
            &mut out,
        );
        assert_eq!(out, vec![Output::Closed(CloseReason::Shutdown)]);
        assert_eq!(
            a.phase(),
            Phase::Closed,
            "no graceful close before the handshake"
        );
        assert_eq!(
            a.queued(),
            0,
            "no GOODBYE, and the handshake bytes are dropped"
        );
        assert_eq!(a.close_reason(), Some(&CloseReason::Shutdown));
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn a_close_from_open_fails_the_requests_and_keeps_only_the_close_deadline() {
        let t0 = Instant::now();
        let (mut a, _b, _, _) = open_pair(Security::Plaintext, t0);
        let config = config(Security::Plaintext);
        a.request(7, Bytes::from_static(b"q"), t0).unwrap();
        a.request(3, Bytes::from_static(b"q"), t0).unwrap();
        assert_eq!(a.pending_requests(), 2);
        assert_eq!(a.next_deadline(), Some(t0 + config.ping_interval));
        let t1 = t0 + Duration::from_millis(500);
        let mut out = Vec::new();
        a.close(
            CloseReason::Disconnected,
            Some(GoodbyeReason::Shutdown),
            t1,
            &mut out,
        );
        let failed = |id| Output::RequestFailed {
            id,
            reason: RequestError::ConnectionClosed(CloseReason::Disconnected),
        };
        assert_eq!(
            out,
            vec![
                failed(3),
                failed(7),
                Output::Closed(CloseReason::Disconnected)
            ]
        );
        assert_eq!(a.phase(), Phase::Closing);
        assert_eq!(a.pending_requests(), 0);
        // Neither the keepalive nor the requests' timers run on: only the close's.
        assert_eq!(a.next_deadline(), Some(t1 + config.close_timeout));
        out.clear();
        let mut rng = Rng::from_seed(0);
        a.timeout(t1 + config.idle_timeout, &mut rng, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(a.phase(), Phase::Closing);
        // Nothing was written: the requests and the GOODBYE never left.
        let unsent = a.queued();
        assert!(unsent > 0);
        a.timeout(t1 + config.close_timeout, &mut rng, &mut out);
        assert_eq!(out, vec![Output::Unflushed(unsent)]);
        assert_eq!(a.phase(), Phase::Closed);
        assert_eq!(a.close_reason(), Some(&CloseReason::Disconnected));
    }

    #[test]
    fn a_graceful_close_ends_once_our_side_is_shut_and_the_peer_ended_in_either_order() {
        let now = Instant::now();
        // We close: our side shuts first, then the peer's EOF ends it.
        let (mut a, mut b, _, _) = open_pair(Security::Plaintext, now);
        let mut out = Vec::new();
        a.close(
            CloseReason::Disconnected,
            Some(GoodbyeReason::Shutdown),
            now,
            &mut out,
        );
        assert!(!a.wants_shutdown(), "the GOODBYE goes first");
        let mut out_b = Vec::new();
        carry(&mut a, &mut b, usize::MAX, now, &mut out_b);
        assert!(a.wants_shutdown());
        a.write_shut();
        assert_eq!(a.phase(), Phase::Closing, "the peer has not ended yet");
        assert!(!a.wants_shutdown(), "shut once");
        a.eof(now, &mut out);
        assert_eq!(a.phase(), Phase::Closed);
        // The peer heard GOODBYE: no EOF to wait for once its own side is shut.
        assert_eq!(
            out_b,
            vec![Output::Closed(CloseReason::Goodbye(
                GoodbyeReason::Shutdown
            ))]
        );
        assert_eq!(b.phase(), Phase::Closing);
        assert!(b.wants_shutdown());
        b.write_shut();
        assert_eq!(b.phase(), Phase::Closed);

        // The peer ends first (EOF while open): only our shutdown is left.
        let (mut a, _b, _, _) = open_pair(Security::Plaintext, now);
        let mut out = Vec::new();
        a.eof(now, &mut out);
        assert_eq!(out, vec![Output::Closed(CloseReason::PeerClosed)]);
        assert_eq!(a.phase(), Phase::Closing);
        assert!(a.wants_shutdown());
        a.write_shut();
        assert_eq!(a.phase(), Phase::Closed);
        assert_eq!(a.close_reason(), Some(&CloseReason::PeerClosed));
    }

    #[test]
    fn an_abort_of_a_graceful_close_keeps_its_reason_and_reports_what_was_left() {
        let now = Instant::now();
        let (mut a, _b, _, _) = open_pair(Security::Plaintext, now);
        let mut out = Vec::new();
        a.close(
            CloseReason::Disconnected,
            Some(GoodbyeReason::Shutdown),
            now,
            &mut out,
        );
        let left = a.queued();
        out.clear();
        a.abort(CloseReason::Shutdown, &mut out);
        assert_eq!(out, vec![Output::Unflushed(left)], "no second Closed");
        assert_eq!(a.phase(), Phase::Closed);
        assert_eq!(a.close_reason(), Some(&CloseReason::Disconnected));
        assert_eq!(a.queued(), 0);
    }

    #[test]
    fn a_pause_stops_the_frame_clock_and_a_resume_runs_on_what_was_left() {
        let t0 = Instant::now();
        let (mut a, mut b, _, _) = open_pair(Security::Plaintext, t0);
        let config = config(Security::Plaintext);
        a.send(&Frame::Message(Bytes::from(vec![7; 100]))).unwrap();
        let mut out = Vec::new();
        carry(&mut a, &mut b, 50, t0, &mut out);
        assert!(out.is_empty());
        b.track_frame(t0);
        let frame_deadline = t0 + config.frame_timeout;
        // The keepalive (ping_interval) comes first; the frame's is there once it is gone.
        b.pause(t0 + Duration::from_secs(1));
        assert_eq!(
            b.next_deadline(),
            None,
            "paused: no keepalive, no frame clock"
        );
        let t2 = t0 + Duration::from_secs(100);
        b.resume(t2);
        let left = frame_deadline - (t0 + Duration::from_secs(1));
        assert_eq!(b.next_deadline(), Some(t2 + config.ping_interval.min(left)));
        // Past the keepalive's PING but before what was left of the frame's deadline:
        // still open.
        let mut rng = Rng::from_seed(0);
        b.timeout(t2 + config.ping_interval, &mut rng, &mut out);
        assert_eq!(b.phase(), Phase::Open);
        b.timeout(t2 + left, &mut rng, &mut out);
        assert_eq!(out, vec![Output::Closed(CloseReason::FrameTimeout)]);
        assert_eq!(b.phase(), Phase::Closing);
    }

    #[test]
    fn handshake_progress_counts_the_preamble_then_whole_messages_while_authenticating() {
        let now = Instant::now();
        let (config, [key_a, _], mut a, mut b) = dialling(Security::Plaintext, now);
        assert_eq!(a.handshake_progress(), 0);
        a.connected(now);
        let mut out = Vec::new();
        // The preamble and half the id.
        carry(&mut a, &mut b, PREAMBLE_LEN + 16, now, &mut out);
        assert_eq!(b.handshake_progress(), 1);
        assert_eq!(b.next_deadline(), Some(now + config.handshake_timeout));
        carry(&mut a, &mut b, usize::MAX, now, &mut out);
        assert_eq!(out, vec![Output::Established(key_a.id)]);
        assert_eq!(b.handshake_progress(), 0, "open: no longer ranked");
    }

    /// Under noise the handshake holds a share of the node's secret (and its keys):
    /// an open connection holds neither.
    #[cfg(feature = "noise")]
    #[test]
    fn an_open_connection_no_longer_holds_the_handshake() {
        let now = Instant::now();
        let (_, [key_a, key_b], mut a, mut b) = dialling(Security::NoiseXx, now);
        assert_eq!(key_a.secret.holders(), 2, "ours and the handshake's");
        a.connected(now);
        let mut out = Vec::new();
        for _ in 0..10 {
            carry(&mut a, &mut b, usize::MAX, now, &mut out);
            carry(&mut b, &mut a, usize::MAX, now, &mut out);
        }
        assert_eq!((a.phase(), b.phase()), (Phase::Open, Phase::Open));
        assert_eq!(key_a.secret.holders(), 1);
        assert_eq!(key_b.secret.holders(), 1);
    }

    /// The transport goes from Open to Closing: a GOODBYE queued by the close is sealed
    /// there, and the peer opens it.
    #[cfg(feature = "noise")]
    #[test]
    fn a_closing_connection_seals_its_goodbye_with_the_transport_it_kept() {
        let now = Instant::now();
        let (mut a, mut b, _, _) = open_pair(Security::NoiseXx, now);
        let mut out = Vec::new();
        a.send(&Frame::Message(Bytes::from_static(b"last")))
            .unwrap();
        a.close(
            CloseReason::Disconnected,
            Some(GoodbyeReason::Shutdown),
            now,
            &mut out,
        );
        assert_eq!(a.phase(), Phase::Closing);
        assert!(a.wants_seal());
        let mut out_b = Vec::new();
        carry(&mut a, &mut b, usize::MAX, now, &mut out_b);
        assert_eq!(
            out_b,
            vec![
                Output::Message(Bytes::from_static(b"last")),
                Output::Closed(CloseReason::Goodbye(GoodbyeReason::Shutdown)),
            ]
        );
        assert_eq!(a.queued(), 0);
        assert!(a.wants_shutdown());
    }
}

/// The noise receive path against a peer that cuts its frame stream into records
/// wherever it likes, read in chunks of any size, taken in batches of any size.
#[cfg(all(test, feature = "noise"))]
mod record_cuts {
    use std::io::IoSlice;
    use std::time::Instant;

    use bytes::{Bytes, BytesMut};
    use proptest::prelude::*;

    use super::*;
    use crate::rng::Rng;
    use crate::wire::Security;

    fn pair() -> (Socket, Socket) {
        let now = Instant::now();
        let config = Config {
            security: Security::NoiseXx,
            max_gossip_rate: u32::MAX,
            max_gossip_bytes_rate: usize::MAX,
            ..Config::default()
        };
        let key = |n: u8| {
            let secret = [n; 32];
            LocalKey {
                id: crate::secure::public_id(&secret).unwrap(),
                secret: secret.into(),
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], 4000));
        let mut a = Socket::outbound(&config, &key(1), Rng::from_seed(1), addr, now);
        let mut b = Socket::inbound(&config, &key(2), Rng::from_seed(2), addr, now);
        a.connected(now);
        let mut out = Vec::new();
        let hand = |from: &mut Socket, to: &mut Socket, out: &mut Vec<Output>| {
            let bytes = drain(&mut from.tx);
            if let Some((buf, _)) = to.recv_buf(bytes.len()) {
                buf.extend_from_slice(&bytes);
                to.received(bytes.len(), now, out);
            }
        };
        for _ in 0..10 {
            hand(&mut a, &mut b, &mut out);
            hand(&mut b, &mut a, &mut out);
        }
        assert_eq!((a.phase(), b.phase()), (Phase::Open, Phase::Open));
        (a, b)
    }

    fn drain(queue: &mut OutQueue) -> Vec<u8> {
        let mut all = Vec::new();
        while !queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = queue.slices(&mut slices);
            let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
            queue.advance(bytes.len());
            all.extend(bytes);
        }
        all
    }

    /// The frame stream, sealed by `a` into one record per piece between `cuts`.
    fn sealed(a: &mut Socket, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
        let State::Open(open) = &mut a.state else {
            panic!("not open");
        };
        let mut wire = Vec::new();
        let mut at = 0;
        for end in cuts.iter().copied().chain([stream.len()]) {
            let end = end.clamp(at, stream.len());
            let mut staged = OutQueue::default();
            staged.push_slice(&stream[at..end]);
            let mut tx = OutQueue::default();
            while !staged.is_empty() {
                open.transport.seal(&mut staged, &mut tx).unwrap();
                wire.extend(drain(&mut tx));
            }
            at = end;
        }
        wire
    }

    fn message(len: usize, tag: u8) -> Vec<u8> {
        frame(len, tag, false)
    }

    /// Frame `tag` with a payload of `len` bytes: a MESSAGE, or if `mixed` one of
    /// MESSAGE, REQUEST and GOSSIP by turns.
    fn frame(len: usize, tag: u8, mixed: bool) -> Vec<u8> {
        let payload = Bytes::from(vec![tag; len]);
        let frame = match (mixed, tag % 3) {
            (false, _) | (true, 0) => Frame::Message(payload),
            (true, 1) => Frame::Request {
                id: tag.into(),
                payload,
            },
            _ => Frame::Gossip {
                id: [tag; 16],
                hops: 3,
                payload,
            },
        };
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        out.to_vec()
    }

    /// Feeds `wire` to `b` in reads of `chunk`, taking at most `max` frames a call,
    /// and then takes what is left; the messages it gave, in order.
    /// Each call may add `room` to its charge; one starved gets all it wants next, as
    /// the first in line does.
    fn receive(b: &mut Socket, wire: &[u8], chunk: usize, max: usize, room: usize) -> Vec<Bytes> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut at = 0;
        let take = |b: &mut Socket, out: &mut Vec<Output>| {
            let before = b.charged;
            b.set_read_room(room);
            let mut more = b.take_frames(now, out, max);
            assert!(
                b.charged <= before + room,
                "charged {} past {before} + {room}",
                b.charged
            );
            if !more && b.starved() {
                b.set_read_room(1 << 30);
                more = b.take_frames(now, out, max);
            }
            let held = b.plain.capacity() + b.overrun.capacity();
            assert!(
                held <= b.frame_buffer_free() + b.charged,
                "holds {held} ({} + {}), charged {}",
                b.plain.capacity(),
                b.overrun.capacity(),
                b.charged
            );
            more
        };
        while at < wire.len() {
            if b.has_record_waiting() {
                // As the node does: a whole record waiting is opened before more is read.
                while take(b, &mut out) {}
            }
            b.set_read_room(1 << 30);
            let Some((buf, want)) = b.recv_buf(chunk) else {
                panic!("starved with all the room");
            };
            let n = want.min(wire.len() - at);
            buf.extend_from_slice(&wire[at..at + n]);
            at += n;
            b.received(n, now, &mut out);
            take(b, &mut out);
        }
        while take(b, &mut out) {}
        out.into_iter()
            .map(|o| match o {
                Output::Message(p)
                | Output::Request { payload: p, .. }
                | Output::Gossip { payload: p, .. } => p,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn check(lens: &[usize], cuts: &[usize], chunk: usize, max: usize) {
        check_with_room(lens, cuts, chunk, max, 1 << 30, false);
    }

    fn check_with_room(
        lens: &[usize],
        cuts: &[usize],
        chunk: usize,
        max: usize,
        room: usize,
        mixed: bool,
    ) {
        let (mut a, mut b) = pair();
        let stream: Vec<u8> = lens
            .iter()
            .enumerate()
            .flat_map(|(i, &len)| frame(len, i as u8, mixed))
            .collect();
        let wire = sealed(&mut a, &stream, cuts);
        let got = receive(&mut b, &wire, chunk, max, room);
        let lens_got: Vec<usize> = got.iter().map(|p| p.len()).collect();
        assert_eq!(lens_got, lens, "cuts {cuts:?} chunk {chunk} max {max}");
        for (i, p) in got.iter().enumerate() {
            assert!(p.iter().all(|&x| x == i as u8), "payload {i}");
        }
        assert_eq!(b.phase(), Phase::Open);
        assert_eq!(b.stats().frames_in, lens.len() as u64);
        assert_eq!(b.buffered(), 0, "buffered");
        assert_eq!(b.charged(), 0, "charged");
        drop(b);
        // A large payload's buffer is its frame's, and no larger.
        for (i, p) in got.into_iter().enumerate() {
            let frame = frame(p.len(), i as u8, mixed).len();
            if frame > READ_ALLOWANCE {
                let held = Vec::<u8>::from(BytesMut::from(p)).capacity();
                assert_eq!(held, frame, "cuts {cuts:?} chunk {chunk} max {max}");
            }
        }
    }

    /// A large frame that ends `k` bytes before the end of the record completing it,
    /// for every `k` around the tag's length and the record's, then two small frames.
    #[test]
    fn a_large_frame_ending_anywhere_in_its_last_record() {
        let record = crate::secure::MAX_RECORD_PLAINTEXT;
        for large in [70_000, 2 * record, 131_050, 200_000] {
            let frame = large + MESSAGE_PAYLOAD_AT;
            let last = frame / record * record;
            for k in (0..40).chain([record - 40, record - 1]) {
                let end = (last + k).max(frame);
                let cuts: Vec<usize> = (1..=end / record)
                    .map(|i| i * record)
                    .chain([end])
                    .filter(|&c| c <= end)
                    .collect();
                for max in [1, 2, 64] {
                    check(&[large, k.min(30), 3], &cuts, usize::MAX, max);
                }
            }
        }
    }

    /// A large frame begun behind small ones in the buffer its first record was
    /// opened into, and as long as the room left there: it must not keep the room
    /// the small ones took.
    #[test]
    fn a_large_frame_as_long_as_the_room_behind_small_ones() {
        for small in [1, 7, 13] {
            let behind = small * (1000 + MESSAGE_PAYLOAD_AT);
            let large = READ_ALLOWANCE + RECORD_SLACK - behind - MESSAGE_PAYLOAD_AT;
            let mut lens = vec![1000; small];
            lens.push(large);
            check(&lens, &[], usize::MAX, 64);
        }
    }

    /// A record that fails to open closes the connection after the frames before it,
    /// whether it completes a large frame or follows the one that did, and the
    /// connection holds nothing and no charge after.
    #[test]
    fn a_record_that_fails_to_open_around_a_large_frames_end() {
        let record = crate::secure::MAX_RECORD_PLAINTEXT;
        let large = 3 * record + 100;
        let lens = [large, 10, 20, 30_000];
        for (bad, delivered) in [(3, 0), (4, 2)] {
            for max in [1, 64] {
                let (mut a, mut b) = pair();
                let stream: Vec<u8> = lens
                    .iter()
                    .enumerate()
                    .flat_map(|(i, &len)| message(len, i as u8))
                    .collect();
                // Record 3 ends the large frame and holds the next; record 4 the rest.
                let cuts = [record, 2 * record, 3 * record, large + 5 + 15];
                let mut wire = sealed(&mut a, &stream, &cuts);
                // The end of record `bad` (0-based): its last tag byte.
                let mut end = 0;
                for _ in 0..=bad {
                    end += 2 + u16::from_be_bytes([wire[end], wire[end + 1]]) as usize;
                }
                wire[end - 1] ^= 1;
                let now = Instant::now();
                let mut out = Vec::new();
                let mut at = 0;
                while at < wire.len() && b.phase() == Phase::Open {
                    while b.has_record_waiting() && b.phase() == Phase::Open {
                        b.set_read_room(1 << 30);
                        if !b.take_frames(now, &mut out, max) {
                            break;
                        }
                    }
                    let Some((buf, want)) = b.recv_buf(usize::MAX) else {
                        break;
                    };
                    let n = want.min(wire.len() - at);
                    buf.extend_from_slice(&wire[at..at + n]);
                    at += n;
                    b.received(n, now, &mut out);
                    b.set_read_room(1 << 30);
                    while b.take_frames(now, &mut out, max) {
                        b.set_read_room(1 << 30);
                    }
                }
                let messages = out
                    .iter()
                    .filter(|o| matches!(o, Output::Message(_)))
                    .count();
                assert_eq!(messages, delivered, "bad {bad} max {max}: {out:?}");
                assert_eq!(
                    out.last(),
                    Some(&Output::Closed(CloseReason::DecryptFailed)),
                    "bad {bad} max {max}"
                );
                assert_eq!((b.buffered(), b.charged()), (0, 0));
            }
        }
    }

    /// A record opened onto the end of a small frame's first 65,529 bytes: the
    /// buffer needs room for the record's ciphertext, a tag more than its plaintext.
    #[test]
    fn a_full_record_opened_behind_most_of_a_small_frame() {
        let record = crate::secure::MAX_RECORD_PLAINTEXT;
        check(
            &[COPY_LIMIT - MESSAGE_PAYLOAD_AT, 70_000],
            &[10, 10 + record],
            usize::MAX,
            64,
        );
    }

    fn len() -> impl Strategy<Value = usize> {
        prop_oneof![
            0..100usize,
            (COPY_LIMIT - 30)..(COPY_LIMIT + 30),
            60_000..140_000usize,
            140_000..300_000usize,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_frame_arrives_once_in_order_and_nothing_stays_held(
            lens in proptest::collection::vec(len(), 1..6),
            pieces in proptest::collection::vec(1..70_000usize, 0..20),
            chunk in prop_oneof![1..100usize, 4096..70_000usize],
            max in 1..70usize,
            room in prop_oneof![Just(1usize << 30), 0..200_000usize],
            mixed in proptest::bool::ANY,
        ) {
            let cuts: Vec<usize> = pieces
                .iter()
                .scan(0, |at, p| {
                    *at += p;
                    Some(*at)
                })
                .collect();
            check_with_room(&lens, &cuts, chunk.max(1000), max, room, mixed);
        }
    }
}
