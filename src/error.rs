//! Error types, one per layer; every variant says what happened.

use std::io;
use std::net::AddrParseError;

use crate::config::ConfigError;
use crate::peer::{ParsePeerIdError, PeerId};
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
    /// The application banned the peer ([`Network::ban`](crate::Network::ban)); we
    /// sent GOODBYE 3.
    #[error("banned")]
    Banned,
    /// A persistent peer's address proved a different id than the one the
    /// application expected there ([`Network::add_peer`](crate::Network::add_peer)).
    #[error("the peer at the address is not the one expected")]
    UnexpectedPeer,
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
    /// Discovery closed this outbound connection after it opened another, to keep
    /// the overlay mixing (`Config::outbound_rotation`).
    #[error("rotated out for a fresher outbound connection")]
    Rotated,
    /// A dial queued through a [`Handle`](crate::Handle) was refused at once.
    #[error("dial refused: {0}")]
    DialRefused(DialError),
}

impl CloseReason {
    /// Whether this node ended the connection for reasons of its own, or its own
    /// duplicate rule did (the peer was reachable): no sign that the address
    /// failed, for the address book. A peer's GOODBYE saying "duplicate" is its
    /// word, not ours: the node checks that the peer is still served.
    pub(crate) fn is_ours(&self) -> bool {
        matches!(
            self,
            CloseReason::Rotated
                | CloseReason::Shutdown
                | CloseReason::Disconnected
                | CloseReason::Replaced
                | CloseReason::DuplicateConnection
        )
    }
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
        id: crate::id::RequestId,
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

/// Every error of this crate, so that one `fn run() -> Result<(), p2p::Error>` can
/// `?` every call: [`Network::new`](crate::Network::new), `listen` and
/// [`poll`](crate::Network::poll) return it (or `io::Error`) already, and each specific
/// error below converts into it with `?`.
///
/// The specific enums stay the return types of the calls that produce them, to match
/// on; here they are wrapped whole, so `match` on the variant to get one back. A
/// wrapped error is shown as itself (its message has no prefix added), and
/// [`source`](std::error::Error::source) is the wrapped error's own source.
///
/// ```
/// fn parse_and_check(id: &str) -> Result<p2p::PeerId, p2p::Error> {
///     p2p::Config::default().validate()?;
///     Ok(id.parse()?)
/// }
/// let err = parse_and_check("beef").unwrap_err();
/// assert!(matches!(err, p2p::Error::ParsePeerId(p2p::ParsePeerIdError::Length(4))));
/// assert_eq!(err.to_string(), "a peer id is 64 hex digits, got 4 bytes");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work ([`Network::new`](crate::Network::new),
    /// [`Config::validate`](crate::Config::validate), the simulator's nodes).
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// The operating system's random source failed ([`Network::new`](crate::Network::new),
    /// [`PeerId::random`](crate::PeerId::random)).
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
    /// A keypair could not be generated, loaded or saved ([`Keypair`](crate::Keypair)).
    #[cfg(feature = "noise")]
    #[error("keypair: {0}")]
    Key(#[from] crate::KeyError),
    /// Setting up the poll, waker or listener failed, or a turn of
    /// [`Network::poll`](crate::Network::poll) did.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// A dial was refused at once ([`Network::dial`](crate::Network::dial)).
    #[error(transparent)]
    Dial(#[from] DialError),
    /// A send, request, response or broadcast was refused
    /// ([`Network::send`](crate::Network::send) and the like).
    #[error(transparent)]
    Send(#[from] SendError),
    /// A request ended without a response (from
    /// [`Event::RequestFailed`](crate::Event::RequestFailed)).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A [`Handle`](crate::Handle) could not queue a command.
    #[error(transparent)]
    Handle(#[from] HandleError),
    /// A string is not a [`PeerId`](crate::PeerId).
    #[error(transparent)]
    ParsePeerId(#[from] ParsePeerIdError),
    /// A string is not a socket address (`"127.0.0.1:30333".parse()?`), so the address
    /// to listen on or dial can be parsed in the same function.
    #[error("invalid socket address: {0}")]
    Addr(#[from] AddrParseError),
    /// A connection ended, or never became a peer (from
    /// [`Event::PeerDisconnected`](crate::Event::PeerDisconnected) and
    /// [`Event::DialFailed`](crate::Event::DialFailed)).
    #[error(transparent)]
    Closed(#[from] CloseReason),
    /// A preamble failed a check ([`wire::Preamble::check`](crate::wire::Preamble::check)).
    #[error(transparent)]
    Preamble(#[from] PreambleError),
    /// A simulated dial was refused ([`Sim::dial`](crate::sim::Sim::dial)).
    #[error(transparent)]
    SimDial(#[from] SimDialError),
}

// By hand, not `#[from]`: that makes it the source, and `getrandom::Error` is a
// `std::error::Error` only when getrandom's `std` feature is on (it is not without
// `noise`).
impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Random(e)
    }
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

/// Why [`Sim::dial`](crate::sim::Sim::dial) did nothing.
#[derive(Debug, thiserror::Error)]
pub enum SimDialError {
    /// No such node (a [`NodeIndex`](crate::sim::NodeIndex)), or it is crashed.
    #[error("node {0} does not exist or is down")]
    NoNode(usize),
    /// The node core refused the dial.
    #[error(transparent)]
    Dial(#[from] DialError),
}
