//! Error types, one per layer; every variant says what happened.

use std::io;

use crate::config::ConfigError;
use crate::peer::PeerId;
use crate::wire::{GoodbyeReason, PreambleError};

/// Why a connection ended, or why it never became a peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer's preamble failed a check of [PROTOCOL.md](crate::protocol) §1.
    #[error(transparent)]
    Preamble(#[from] PreambleError),
    /// The remote peer id is this node's own.
    #[error("connected to ourselves")]
    SelfConnection,
    /// Another connection to the same peer was kept ([PROTOCOL.md](crate::protocol) §2.3).
    #[error("duplicate connection")]
    DuplicateConnection,
    /// The noise handshake failed: a bad length or a message that does not decrypt
    /// ([PROTOCOL.md](crate::protocol) §2.2).
    #[error("handshake failed")]
    HandshakeFailed,
    /// A noise record did not decrypt ([PROTOCOL.md](crate::protocol) §3).
    #[error("record failed to decrypt")]
    DecryptFailed,
    /// A record could not be encrypted (the cipher's nonces ran out).
    #[error("record failed to encrypt")]
    EncryptFailed,
    /// The peer's proven id is not on the configured allowlist.
    #[error("peer not on the allowlist")]
    NotAllowed,
    /// The TCP dial did not connect in time.
    #[error("connect timeout")]
    ConnectTimeout,
    /// The TCP dial failed.
    #[error("connect failed: {0}")]
    ConnectFailed(io::ErrorKind),
    /// The preamble and handshake did not finish in time.
    #[error("handshake timeout")]
    HandshakeTimeout,
    /// The peer's preamble did not arrive within `preamble_timeout`.
    #[error("preamble timeout")]
    PreambleTimeout,
    /// The inbound pending-handshake table was full and a connection from an address
    /// with fewer pending ones took this one's place: it had made the least progress.
    #[error("evicted for a newer handshake")]
    Evicted,
    /// A frame still arriving made no progress (64 KiB, or its end) within
    /// `frame_timeout`.
    #[error("frame timeout: an unfinished frame stopped arriving")]
    FrameTimeout,
    /// Our write queue to the peer was not empty and did not move for
    /// `write_timeout`: the peer stopped reading. What was queued is gone.
    #[error("write timeout: the peer stopped reading")]
    WriteTimeout,
    /// Nothing was received for the idle timeout; we sent GOODBYE 4.
    #[error("idle timeout")]
    IdleTimeout,
    /// The peer's rejected frames reached `max_rejected_frames` within
    /// `rejected_frames_window`; we sent GOODBYE 3.
    #[error("too many rejected frames")]
    Misbehaving,
    /// The peer connected again and kept its new connection, so it had lost this one
    /// without its close reaching us (its host lost power, or its address changed):
    /// under noise, it answered our PING on the new one, and this one had been open
    /// for a handshake timeout or more. (In plaintext such a connection ends by
    /// `IdleTimeout` instead.) The new connection serves the peer from now on,
    /// announced by a `PeerConnected` right after this; we closed this one with
    /// GOODBYE 1. What was queued on it and not yet written is gone.
    #[error("replaced by the peer's new connection")]
    Replaced,
    /// The peer said GOODBYE with this reason.
    #[error("goodbye from peer: {0}")]
    Goodbye(GoodbyeReason),
    /// The peer closed the stream without a GOODBYE.
    #[error("closed by peer")]
    PeerClosed,
    /// The socket failed.
    #[error("io error: {0}")]
    Io(io::ErrorKind),
    /// This node called `disconnect`.
    #[error("disconnected locally")]
    Disconnected,
    /// This node is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// A dial queued through a [`Handle`](crate::Handle) was refused at once.
    #[error("dial refused: {0}")]
    DialRefused(DialError),
}

/// Why a send, request, response or broadcast was refused. Nothing is queued when
/// one of these is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No open connection to that peer.
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    /// The peer's write buffer would go over `max_write_buffer`.
    #[error("write buffer of {peer} is full ({queued} bytes queued, cap {cap})")]
    Full {
        /// The peer.
        peer: PeerId,
        /// Bytes already queued for it.
        queued: usize,
        /// The per-peer cap.
        cap: usize,
    },
    /// All peers' write buffers together would go over `max_write_buffer_total`, or
    /// this peer's queue would pass its fair share of the room left under it: a queue
    /// that is not empty may grow only while its length after the frame is no more than
    /// the room left after the frame, so peers that do not read cannot take the room
    /// the others need. The node is short of room and this peer holds its share:
    /// sends to peers with shorter queues may still succeed.
    #[error("global write buffer is full ({queued} bytes queued, cap {cap})")]
    GlobalFull {
        /// Bytes queued for all peers.
        queued: usize,
        /// The global cap.
        cap: usize,
    },
    /// The payload does not fit in one frame of `max_frame_size`.
    #[error("payload of {len} bytes is over the maximum frame body of {max}")]
    TooLarge {
        /// The frame body this payload needs.
        len: usize,
        /// `max_frame_size`.
        max: usize,
    },
    /// The peer has `max_pending_requests` requests outstanding.
    #[error("{0} has too many pending requests")]
    TooManyRequests(PeerId),
    /// `respond` with an id that no open connection of this peer delivered as a
    /// REQUEST still unanswered: the id came from another peer or was made up, it
    /// was answered already, its connection closed, or it was forgotten because the
    /// peer had `max_pending_requests` newer ones unanswered. Nothing is sent: the
    /// peer would have had to drop the RESPONSE.
    #[error("no unanswered request {id} from {peer}")]
    UnknownRequest {
        /// The peer the response was for.
        peer: PeerId,
        /// The request id given.
        id: crate::event::RequestId,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Why a request ended without a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No RESPONSE arrived within `request_timeout`.
    #[error("request timed out")]
    Timeout,
    /// The connection closed before the RESPONSE arrived.
    #[error("connection closed: {0}")]
    ConnectionClosed(CloseReason),
    /// The request could not be sent (it came through a [`Handle`](crate::Handle)).
    #[error("not sent: {0}")]
    NotSent(SendError),
}

/// Why a dial was refused at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// `max_outbound` connections are already open or opening.
    #[error("outbound connection limit reached ({0})")]
    OutboundLimit(usize),
    /// `max_pending_dials` of our dials are still connecting or handshaking.
    #[error("pending dial limit reached ({0})")]
    HandshakeLimit(usize),
    /// A connection to that address is already open or opening.
    #[error("already connected or dialling {0}")]
    AlreadyDialing(std::net::SocketAddr),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The connect call itself failed.
    #[error("connect failed: {0}")]
    Io(io::ErrorKind),
}

/// Errors of [`Network`](crate::Network) itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// The operating system's random source failed.
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
    /// The noise keypair could not be generated.
    #[cfg(feature = "noise")]
    #[error("keypair: {0}")]
    Key(#[from] crate::KeyError),
    /// Setting up the poll, waker or listener failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

/// Why a [`Handle`](crate::Handle) could not queue a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The command queue holds `command_queue` commands already.
    #[error("command queue is full")]
    Full,
    /// The `Network` was dropped.
    #[error("the network is gone")]
    Closed,
}
