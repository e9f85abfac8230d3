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
    COPY_LIMIT, Decoded, Decoder, Frame, GOSSIP_HEAD_LEN, GoodbyeReason, PREAMBLE_LEN, Preamble,
    Reject,
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

/// The most ciphertext held before it is opened: one whole record (noise).
#[cfg(feature = "noise")]
const RECORD_LIMIT: usize = 2 + u16::MAX as usize;
/// Without noise no record is held.
#[cfg(not(feature = "noise"))]
const RECORD_LIMIT: usize = 0;

/// What one record's plaintext may add to the frame stream past the frame it
/// completes: room a noise frame buffer keeps so that it is never reallocated.
#[cfg(feature = "noise")]
const RECORD_SLACK: usize = crate::secure::MAX_RECORD_PLAINTEXT;
/// Without noise nothing is opened.
#[cfg(not(feature = "noise"))]
const RECORD_SLACK: usize = 0;

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

/// The limits and timers a socket needs from [`Config`].
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_write_buffer: usize,
    max_rejected: usize,
    max_pending_requests: usize,
    handshake_timeout: Duration,
    preamble_timeout: Duration,
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

/// One connection, from dial or accept to close.
#[derive(Debug)]
pub(crate) struct Socket {
    phase: Phase,
    direction: Direction,
    addr: SocketAddr,
    preamble: [u8; PREAMBLE_LEN],
    preamble_expected: Preamble,
    preamble_checked: bool,
    /// Whole handshake messages taken from the peer so far.
    handshake_messages: u8,
    handshake: Handshake,
    remote: Option<PeerId>,
    /// Bytes as read from the socket.
    rx: BytesMut,
    /// The frame stream opened from records (noise); plaintext decodes `rx` itself.
    plain: BytesMut,
    /// Bytes ready for the socket.
    tx: OutQueue,
    /// Frames waiting to be sealed into records (noise): payloads stay shared until then.
    staged: OutQueue,
    transport: Transport,
    /// A record failed to open; the connection closes once the frames before it are out.
    decrypt_failed: bool,
    decoder: Decoder,
    /// The error that ended the connection, kept from the moment it left service.
    reason: Option<CloseReason>,
    /// Connect, handshake or close deadline, depending on the phase.
    deadline: Instant,
    /// When the peer's preamble must have arrived (authenticating, until it has).
    preamble_deadline: Instant,
    last_recv: Instant,
    pinged: bool,
    /// Where the PING of [`Socket::probe`] is.
    probe: Probe,
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
    /// GOSSIP frames dropped for the rate limit, for the log.
    gossip_drop_log: DropLog,
    read_closed: bool,
    write_shut: bool,
    /// The peer said GOODBYE: nothing more comes, so once our side is flushed and
    /// shut there is no EOF to wait for.
    goodbye_received: bool,
    /// Our requests waiting for a response, each with its deadline, in send order:
    /// the timeout is fixed, so the first is the earliest. An id used again once
    /// answered (the simulator lets the application choose ids) gets its new
    /// deadline, not its first use's.
    pending: OrderedIds<Instant>,
    /// The lowest and highest request ids the node issued so far, to any peer, as the
    /// node last said ([`Socket::set_issued`]): a RESPONSE outside them answers
    /// nothing we ever asked.
    issued: Option<(u64, u64)>,
    /// Ids of the peer's requests delivered and not yet answered, at most
    /// `max_pending_requests`, in arrival order (stamped with their arrival number),
    /// to forget the oldest: what `respond` may answer on this connection. The
    /// protocol frees an id once answered, and a request reusing it arrives anew,
    /// behind the others.
    unanswered: OrderedIds<u64>,
    /// Requests the peer sent on this connection: the next arrival number.
    arrivals: u64,
    /// Rejected frames so far, for the event.
    rejected: u32,
    /// Rejected frames of the last `rejected_frames_window`: `max_rejected_frames`
    /// of them close the connection.
    rejected_recently: SlidingWindow,
    /// GOSSIP frames and bytes the peer may still send now.
    gossip_limit: GossipLimit,
    /// What the peer took of the node's relay budget recently.
    relay_share: Option<RelayShare>,
    stats: PeerStats,
    limits: Limits,
    /// Bytes of the receive budget the frame stream's buffer holds: its capacity beyond
    /// what a connection holds for free ([`READ_ALLOWANCE`]).
    charged: usize,
    /// How much more of the receive budget the buffer may take now, as the node last
    /// said ([`Socket::set_read_room`]).
    read_room: usize,
    /// The last read or open needed more of the budget than `read_room`.
    starved: bool,
    /// The node stopped reading this connection until budget returns.
    paused: bool,
    /// When the unfinished frame must have gained [`FRAME_PROGRESS`] bytes or finished.
    frame_deadline: Option<Instant>,
    /// `stats.bytes_in` when that deadline was set.
    frame_mark: u64,
    /// What was left of the deadline when the connection was paused: paused time does
    /// not count against it.
    paused_left: Option<Duration>,
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
        let expected = Preamble::new(config.security, config.network_id);
        Socket {
            phase: Phase::Opening,
            direction,
            addr,
            preamble: expected.encode(),
            preamble_expected: expected,
            preamble_checked: false,
            handshake_messages: 0,
            handshake: Handshake::new(
                config.security,
                key,
                direction == Direction::Outbound,
                ephemeral,
            ),
            remote: None,
            rx: BytesMut::new(),
            plain: BytesMut::new(),
            tx: OutQueue::default(),
            staged: OutQueue::default(),
            transport: Transport::Plaintext,
            decrypt_failed: false,
            decoder: Decoder::new(config.max_frame_size),
            reason: None,
            deadline: now + config.connect_timeout,
            preamble_deadline: now + config.connect_timeout,
            last_recv: now,
            pinged: false,
            probe: Probe::None,
            control_budget: usize::MAX,
            write_stalled_since: None,
            write_owed: 0,
            write_done: 0,
            drop_log: DropLog::default(),
            gossip_drop_log: DropLog::default(),
            read_closed: false,
            write_shut: false,
            goodbye_received: false,
            pending: OrderedIds::new(config.max_pending_requests),
            issued: None,
            unanswered: OrderedIds::new(config.max_pending_requests),
            arrivals: 0,
            rejected: 0,
            rejected_recently: SlidingWindow::new(config.rejected_frames_window),
            gossip_limit: GossipLimit::new(config, now),
            relay_share: None,
            stats: PeerStats::default(),
            limits: Limits {
                max_write_buffer: config.max_write_buffer,
                max_rejected: config.max_rejected_frames as usize,
                max_pending_requests: config.max_pending_requests,
                handshake_timeout: config.handshake_timeout,
                preamble_timeout: config.preamble_timeout,
                ping_interval: config.ping_interval,
                idle_timeout: config.idle_timeout,
                request_timeout: config.request_timeout,
                close_timeout: config.close_timeout,
                write_timeout: config.write_timeout,
                frame_timeout: config.frame_timeout,
            },
            charged: 0,
            read_room: 0,
            starved: false,
            paused: false,
            frame_deadline: None,
            frame_mark: 0,
            paused_left: None,
        }
    }

    /// The phase now.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
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
        self.reason.as_ref()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// Bytes waiting to be written, counting the record overhead that frames staged
    /// for sealing will take: what the write caps bound.
    pub(crate) fn queued(&self) -> usize {
        self.queued_with(0)
    }

    /// What [`Socket::queued`] would be with `extra` more bytes of frames queued.
    fn queued_with(&self, extra: usize) -> usize {
        if self.transport.encrypts() {
            let staged = self.staged.len() + extra;
            self.tx.len() + staged + crate::secure::record_overhead(staged)
        } else {
            self.tx.len() + extra
        }
    }

    /// How much [`Socket::queued`] grows when a frame of `len` wire bytes is queued.
    pub(crate) fn growth(&self, len: usize) -> usize {
        self.queued_with(len) - self.queued()
    }

    /// Requests waiting for a response.
    pub(crate) fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// The peer's requests delivered and not yet answered.
    pub(crate) fn unanswered_requests(&self) -> usize {
        self.unanswered.len()
    }

    /// Whether the peer's request `id` came on this connection and is unanswered.
    pub(crate) fn holds_request(&self, id: u64) -> bool {
        self.unanswered.contains(id)
    }

    /// The peer's request `id` was answered: it may not be answered again.
    pub(crate) fn answered(&mut self, id: u64) {
        self.unanswered.remove(id);
    }

    /// Remembers the peer's request `id` as unanswered; at the cap the oldest is
    /// forgotten first, counted.
    fn remember_request(&mut self, id: u64) {
        if self.unanswered.len() >= self.limits.max_pending_requests
            && let Some((_, oldest)) = self.unanswered.pop_first()
        {
            self.stats.forgotten_requests += 1;
            log::debug!(
                "forgot request {oldest} of {:?}: {} newer ones unanswered",
                self.remote,
                self.unanswered.len()
            );
        }
        self.unanswered.insert(id, self.arrivals);
        self.arrivals += 1;
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
        self.rx.len() + self.plain.len()
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
        if let Some(deadline) = self.frame_deadline.take() {
            self.paused_left = Some(deadline.saturating_duration_since(now));
        }
    }

    /// The node reads again: the frame deadline runs on from where it stopped, and
    /// the keepalive counts silence from now, since bytes may have waited unread.
    pub(crate) fn resume(&mut self, now: Instant) {
        self.paused = false;
        self.last_recv = self.last_recv.max(now);
        self.pinged = false;
        if let Some(left) = self.paused_left.take() {
            self.frame_deadline = Some(now + left);
        }
    }

    /// Whether a whole record waits to be opened (noise): a connection paused while
    /// opening must open it before reading more.
    pub(crate) fn has_record_waiting(&self) -> bool {
        self.phase == Phase::Open && self.transport.next_record(&self.rx).is_some()
    }

    /// Starts, moves or ends the deadline of the unfinished frame after bytes were
    /// taken as frames: it starts when a frame is left unfinished, moves each time
    /// the connection gained [`FRAME_PROGRESS`] bytes, and ends when nothing
    /// unfinished is left.
    pub(crate) fn track_frame(&mut self, now: Instant) {
        if self.phase != Phase::Open || self.buffered() == 0 {
            self.frame_deadline = None;
            self.paused_left = None;
            return;
        }
        if self.paused {
            return;
        }
        let gained = self.stats.bytes_in - self.frame_mark;
        if self.frame_deadline.is_none() || gained >= FRAME_PROGRESS {
            self.frame_mark = self.stats.bytes_in;
            self.frame_deadline = Some(now + self.limits.frame_timeout);
        }
    }

    /// The frame stream's buffer: `rx` in plaintext, the opened records under noise.
    fn frames_in(&mut self) -> &mut BytesMut {
        if self.transport.encrypts() {
            &mut self.plain
        } else {
            &mut self.rx
        }
    }

    /// What the frame stream's buffer holds without charge, and the most a buffer of a
    /// frame of `need` bytes holds: under noise a record's plaintext may run past the
    /// frame's end, so both are a record larger.
    fn frame_buffer_bounds(&self, need: usize) -> (usize, usize) {
        if self.transport.encrypts() {
            (READ_ALLOWANCE + RECORD_SLACK, need + RECORD_SLACK)
        } else {
            (READ_ALLOWANCE, need)
        }
    }

    /// Makes room for `step` more bytes in the frame stream's buffer, when a frame of
    /// `need` bytes (more than [`READ_ALLOWANCE`]) is under way: a buffer of its own
    /// that doubles as its bytes arrive, up to the frame's size, and is charged to the
    /// receive budget. False, and `starved` set, if the budget's room is too small.
    fn grow_frame_buffer(&mut self, need: usize, step: usize) -> bool {
        let (free, limit) = self.frame_buffer_bounds(need);
        let charge_for = |cap: usize| cap.saturating_sub(free);
        let read_room = self.read_room;
        let charged = self.charged;
        let buf = self.frames_in();
        let len = buf.len();
        if buf.capacity() - len >= step {
            return true;
        }
        let least = (len + step).min(limit);
        let wanted = limit.min((2 * len).max(len + step)).max(free);
        // As much of the doubling as the budget allows, but at least the step.
        let affordable = free + charged + read_room;
        let cap = wanted.min(affordable);
        if cap < least {
            self.starved = true;
            return false;
        }
        // Grown in place where the allocator can (realloc): no copy of what arrived.
        let mut vec = Vec::from(std::mem::take(buf));
        vec.reserve_exact(cap - vec.len());
        let cap = vec.capacity();
        *buf = BytesMut::from(Bytes::from(vec));
        let charge = charge_for(cap).max(charged);
        self.read_room = self.read_room.saturating_sub(charge - charged);
        self.charged = charge;
        true
    }

    /// Ends the charge once no frame larger than [`READ_ALLOWANCE`] is under way: its
    /// buffer now belongs to the payload taken from it.
    fn release_frame_buffer(&mut self) {
        let frames = if self.transport.encrypts() {
            &self.plain
        } else {
            &self.rx
        };
        let large = self
            .decoder
            .frame_need(frames)
            .is_some_and(|need| need > READ_ALLOWANCE);
        if !large {
            self.charged = 0;
        }
    }

    /// Whether `rx` is the buffer of a frame larger than [`READ_ALLOWANCE`] under way
    /// (plaintext): it is read into as it is, and stays the socket's.
    fn rx_holds_large_frame(&self) -> bool {
        self.phase == Phase::Open
            && !self.transport.encrypts()
            && self
                .decoder
                .frame_need(&self.rx)
                .is_some_and(|need| need > READ_ALLOWANCE)
    }

    /// Whether `plain` is the buffer of a frame larger than [`READ_ALLOWANCE`] under
    /// way (noise).
    fn plain_holds_large_frame(&self) -> bool {
        self.decoder
            .frame_need(&self.plain)
            .is_some_and(|need| need > READ_ALLOWANCE)
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
        let cap = if self.phase == Phase::Open && self.transport.encrypts() {
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
        if self.transport.encrypts() && !self.plain_holds_large_frame() {
            lend(&mut self.plain, scratch, READ_ALLOWANCE + RECORD_SLACK);
        }
    }

    /// [`Socket::settle_rx`] for the opened frame stream.
    pub(crate) fn settle_plain(&mut self, scratch: &mut BytesMut) {
        if self.transport.encrypts() && !self.plain_holds_large_frame() {
            settle(&mut self.plain, scratch);
        }
    }

    /// The capacity of the socket's own read buffers, raw and opened (tests).
    #[cfg(test)]
    pub(crate) fn read_capacity(&self) -> usize {
        self.rx.capacity() + self.plain.capacity()
    }

    /// How far the handshake got: the preamble, then each whole handshake message the
    /// peer sent. Bytes of an unfinished message do not count: they cost a peer
    /// nothing to send, while every whole message costs it a round trip.
    pub(crate) fn handshake_progress(&self) -> u8 {
        u8::from(self.preamble_checked).saturating_add(self.handshake_messages)
    }

    /// The TCP connection is established: send the preamble and the handshake's start.
    pub(crate) fn connected(&mut self, now: Instant) {
        if self.phase != Phase::Opening {
            return;
        }
        self.phase = Phase::Authenticating;
        self.deadline = now + self.limits.handshake_timeout;
        self.preamble_deadline = now + self.limits.preamble_timeout;
        self.last_recv = now;
        self.tx.push_slice(&self.preamble);
        let mut start = BytesMut::new();
        self.handshake.start(&mut start);
        self.tx.push_slice(&start);
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
        if self.phase == Phase::Open && self.transport.encrypts() {
            // Ciphertext waits here only until its record is whole.
            let want = chunk.min(RECORD_LIMIT.saturating_sub(self.rx.len()));
            if want == 0 {
                return None;
            }
            make_room(&mut self.rx, want, RECORD_LIMIT);
            return Some((&mut self.rx, want));
        }
        let large = (self.phase == Phase::Open)
            .then(|| self.decoder.frame_need(&self.rx))
            .flatten()
            .filter(|&need| need > READ_ALLOWANCE);
        if let Some(need) = large {
            let rest = need.saturating_sub(self.rx.len()).max(1);
            if self.rx.capacity() == self.rx.len() && !self.grow_frame_buffer(need, chunk.min(rest))
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
        if matches!(self.phase, Phase::Closing | Phase::Closed) {
            self.rx.clear();
            return;
        }
        self.last_recv = now;
        self.pinged = false;
        if self.phase != Phase::Authenticating {
            return;
        }
        if !self.preamble_checked {
            if self.rx.len() < PREAMBLE_LEN {
                return;
            }
            let mut theirs = [0u8; PREAMBLE_LEN];
            theirs.copy_from_slice(&self.rx[..PREAMBLE_LEN]);
            self.rx.advance(PREAMBLE_LEN);
            if let Err(e) = Preamble::check(&theirs, &self.preamble_expected) {
                // Nothing else is sent after a failed check.
                self.abort(CloseReason::Preamble(e), out);
                return;
            }
            self.preamble_checked = true;
            let mut reply = BytesMut::new();
            let begun = self
                .handshake
                .preamble_checked(&self.preamble, &theirs, &mut reply);
            self.tx.push_slice(&reply);
            if let Err(e) = begun {
                log::debug!("handshake with {} failed: {e}", self.addr);
                return self.abort(CloseReason::HandshakeFailed, out);
            }
        }
        let mut reply = BytesMut::new();
        let before = self.rx.len();
        let result = self.handshake.read(&mut self.rx, &mut reply);
        if self.rx.len() < before {
            self.handshake_messages = self.handshake_messages.saturating_add(1);
        }
        self.tx.push_slice(&reply);
        match result {
            Ok(Some(established)) => {
                self.phase = Phase::Open;
                self.remote = Some(established.remote);
                self.transport = established.transport;
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
    pub(crate) fn take_frames(&mut self, now: Instant, out: &mut Vec<Output>, max: usize) -> bool {
        self.starved = false;
        for _ in 0..max {
            if self.phase != Phase::Open {
                return false;
            }
            let frames = if self.transport.encrypts() {
                &mut self.plain
            } else {
                &mut self.rx
            };
            match self.decoder.decode(frames) {
                Some(Decoded::Frame(frame)) => {
                    let outputs = out.len();
                    let gossip = matches!(frame, Frame::Gossip { .. });
                    self.on_frame(frame, now, out);
                    // A GOSSIP dropped by the rate limit needs no decision: the batch
                    // goes on, so a flood of them costs little.
                    if gossip && out.len() > outputs {
                        self.release_frame_buffer();
                        return true;
                    }
                }
                Some(Decoded::Rejected(reason)) => self.reject(reason, now, out),
                None => {
                    self.release_frame_buffer();
                    if self.transport.encrypts() && !self.decrypt_failed && self.open_record() {
                        continue;
                    }
                    if self.decrypt_failed && !self.starved {
                        self.close(CloseReason::DecryptFailed, None, now, out);
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
    /// at most the unfinished frame and one record's plaintext.
    fn open_record(&mut self) -> bool {
        let Some(size) = self.transport.next_record(&self.rx) else {
            return false;
        };
        let need = self
            .decoder
            .frame_need(&self.plain)
            .filter(|&need| need > READ_ALLOWANCE);
        let room = match need {
            Some(need) => self.grow_frame_buffer(need, size),
            None => {
                make_room(&mut self.plain, size, READ_ALLOWANCE + RECORD_SLACK);
                true
            }
        };
        if !room {
            return false;
        }
        match self.transport.open_record(&mut self.rx, &mut self.plain) {
            Ok(opened) => opened,
            Err(_) => {
                // Fatal, but only after the frames of the records before it: what is
                // delivered must not depend on how TCP split the bytes.
                self.decrypt_failed = true;
                false
            }
        }
    }

    /// The remote id (zeros before the handshake finished).
    pub(crate) fn peer(&self) -> PeerId {
        self.remote.unwrap_or(PeerId::from_bytes([0; 32]))
    }

    fn on_frame(&mut self, frame: Frame, now: Instant, out: &mut Vec<Output>) {
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
                self.stats.frames_in += 1;
                if self.probe == Probe::Sent(nonce) {
                    self.probe = Probe::Answered;
                }
            }
            Frame::Response { id, payload } => {
                if self.pending.remove(id).is_some() {
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
                self.goodbye_received = true;
                self.close(CloseReason::Goodbye(reason), None, now, out);
            }
            Frame::Message(payload) => {
                self.stats.frames_in += 1;
                out.push(Output::Message(payload));
            }
            Frame::Request { id, payload } => {
                if self.unanswered.contains(id) {
                    return self.reject(Reject::DuplicateRequest(id), now, out);
                }
                self.stats.frames_in += 1;
                self.remember_request(id);
                out.push(Output::Request { id, payload });
            }
            Frame::Gossip { id, hops, payload } => {
                if !self
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

    /// The peer's share of the node's relay budget, made by `make` the first time.
    pub(crate) fn relay_share(&mut self, make: impl FnOnce() -> RelayShare) -> &mut RelayShare {
        self.relay_share.get_or_insert_with(make)
    }

    /// Counts a GOSSIP frame dropped for the rate limit, logging at most once a second.
    fn gossip_dropped(&mut self, now: Instant) {
        self.stats.rate_limited += 1;
        if let Some(n) = self.gossip_drop_log.dropped(now) {
            log::warn!(
                "dropped {n} GOSSIP frame(s) from {:?} at {} over max_gossip_rate or max_gossip_bytes_rate",
                self.remote,
                self.addr
            );
        }
    }

    fn reject(&mut self, reason: Reject, now: Instant, out: &mut Vec<Output>) {
        self.rejected = self.rejected.saturating_add(1);
        self.stats.rejected_frames += 1;
        let recent = self.rejected_recently.record(now);
        log::debug!(
            "rejected frame from {:?}: {reason} ({})",
            self.remote,
            self.rejected
        );
        out.push(Output::Rejected {
            reason,
            count: self.rejected,
        });
        if recent >= self.limits.max_rejected {
            self.close(
                CloseReason::Misbehaving,
                Some(GoodbyeReason::Misbehaving),
                now,
                out,
            );
        }
    }

    /// Where frames go: straight to the wire buffer, or staged for sealing.
    fn frames_out(&mut self) -> &mut OutQueue {
        if self.transport.encrypts() {
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
        if self.phase != Phase::Open {
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
        let growth = self.growth(len);
        let fits = self.queued_with(len) + GOODBYE_ROOM <= self.limits.max_write_buffer
            && within_fair_share(self.queued(), growth, self.control_budget);
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
        if self.pending.len() >= self.limits.max_pending_requests {
            return Err(SendError::TooManyRequests(self.peer()));
        }
        self.send(&Frame::Request { id, payload })?;
        self.pending.insert(id, now + self.limits.request_timeout);
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
        match self.phase {
            Phase::Closing | Phase::Closed => return,
            Phase::Opening | Phase::Authenticating => return self.abort(reason, out),
            Phase::Open => {}
        }
        if let Some(goodbye) = goodbye {
            self.queue(&Frame::Goodbye(goodbye));
        }
        self.phase = Phase::Closing;
        self.deadline = now + self.limits.close_timeout;
        self.leave_service(reason, out);
    }

    /// Whether a closing connection has nothing left to wait for: our side is flushed
    /// and shut, and the peer closed its side or said GOODBYE.
    fn finished(&self) -> bool {
        self.write_shut && (self.read_closed || self.goodbye_received)
    }

    /// Closes at once, dropping whatever is queued.
    pub(crate) fn abort(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        if self.phase == Phase::Closed {
            return;
        }
        let was_closing = self.phase == Phase::Closing;
        if was_closing {
            self.report_unflushed(out);
        }
        self.phase = Phase::Closed;
        self.tx.clear();
        self.staged.clear();
        self.write_stalled_since = None;
        if !was_closing {
            self.leave_service(reason, out);
        }
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

    fn leave_service(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        // Dropped, not cleared: nothing is read into them any more.
        self.rx = BytesMut::new();
        self.plain = BytesMut::new();
        self.charged = 0;
        self.frame_deadline = None;
        self.paused_left = None;
        // Out of service nothing can be answered on it.
        self.unanswered.take_all();
        let mut ids = self.pending.take_all();
        ids.sort_unstable(); // a fixed order keeps runs reproducible
        for id in ids {
            out.push(Output::RequestFailed {
                id,
                reason: RequestError::ConnectionClosed(reason.clone()),
            });
        }
        self.reason = Some(reason.clone());
        out.push(Output::Closed(reason));
    }

    /// The peer closed its side of the stream.
    pub(crate) fn eof(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.read_closed = true;
        match self.phase {
            Phase::Closing if self.finished() => self.phase = Phase::Closed,
            Phase::Closing | Phase::Closed => {}
            _ => self.close(CloseReason::PeerClosed, None, now, out),
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
        !self.staged.is_empty() && self.tx.len() < crate::secure::SEAL_AHEAD
    }

    /// Seals staged frames into records, ahead of a write (noise; nothing to do in
    /// plaintext).
    pub(crate) fn seal(&mut self, out: &mut Vec<Output>) {
        if !self.staged.is_empty() && self.transport.seal(&mut self.staged, &mut self.tx).is_err() {
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
        self.phase == Phase::Closing && self.queued() == 0 && !self.write_shut
    }

    /// The write side was shut.
    pub(crate) fn write_shut(&mut self) {
        self.write_shut = true;
        if self.phase == Phase::Closing && self.finished() {
            self.phase = Phase::Closed;
        }
    }

    /// Runs the timers that are due.
    pub(crate) fn timeout(&mut self, now: Instant, rng: &mut Rng, out: &mut Vec<Output>) {
        match self.phase {
            Phase::Opening if now >= self.deadline => self.abort(CloseReason::ConnectTimeout, out),
            Phase::Authenticating if now >= self.deadline => {
                self.abort(CloseReason::HandshakeTimeout, out)
            }
            Phase::Authenticating if !self.preamble_checked && now >= self.preamble_deadline => {
                self.abort(CloseReason::PreambleTimeout, out)
            }
            Phase::Open if self.write_deadline().is_some_and(|d| now >= d) => {
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
            Phase::Open => {
                while let Some((at, id)) = self.pending.first() {
                    if at > now {
                        break;
                    }
                    self.pending.remove(id);
                    out.push(Output::RequestFailed {
                        id,
                        reason: RequestError::Timeout,
                    });
                }
                if self.paused {
                    // Not read, so its silence tells nothing: the keepalive waits too.
                    return;
                }
                if self.frame_deadline.is_some_and(|d| now >= d) {
                    // GOODBYE 4: the peer is too slow to finish what it started.
                    self.close(
                        CloseReason::FrameTimeout,
                        Some(GoodbyeReason::Timeout),
                        now,
                        out,
                    );
                } else if now >= self.last_recv + self.limits.idle_timeout {
                    self.close(
                        CloseReason::IdleTimeout,
                        Some(GoodbyeReason::Timeout),
                        now,
                        out,
                    );
                } else if !self.pinged && now >= self.last_recv + self.limits.ping_interval {
                    self.pinged = true;
                    self.ping(rng);
                }
            }
            Phase::Closing if now >= self.deadline => {
                self.report_unflushed(out);
                self.phase = Phase::Closed;
            }
            _ => {}
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
    pub(crate) fn probe(&mut self, rng: &mut Rng) {
        self.probe = self.ping(rng).map_or(Probe::None, Probe::Sent);
    }

    /// Whether the PING of [`Socket::probe`] was answered.
    pub(crate) fn probe_answered(&self) -> bool {
        self.probe == Probe::Answered
    }

    /// When [`Socket::timeout`] next has work.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Authenticating if !self.preamble_checked => {
                Some(self.deadline.min(self.preamble_deadline))
            }
            Phase::Opening | Phase::Authenticating | Phase::Closing => Some(self.deadline),
            Phase::Open => {
                let keepalive = if self.paused {
                    None
                } else if self.pinged {
                    Some(self.last_recv + self.limits.idle_timeout)
                } else {
                    Some(self.last_recv + self.limits.ping_interval)
                };
                let request = self.pending.first().map(|(at, _)| at);
                [
                    keepalive,
                    request,
                    self.frame_deadline,
                    self.write_deadline(),
                ]
                .into_iter()
                .flatten()
                .min()
            }
            Phase::Closed => None,
        }
    }
}
