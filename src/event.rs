//! What the network hands up to the embedding node.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::error::{CloseReason, RequestError, SendError};
use crate::id::{GossipId, RequestId, SendId};
use crate::peer::PeerId;
use crate::wire::Reject;

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        })
    }
}

/// Something that happened, returned by [`Network::poll`](crate::Network::poll).
/// New kinds of events may be added: match with a `_` arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer finished the handshake and can be sent to.
    PeerConnected {
        /// Its id.
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Who dialled.
        direction: Direction,
    },
    /// A connected peer is gone; every request to it has failed already.
    PeerDisconnected {
        /// Its id.
        peer: PeerId,
        /// Why.
        reason: CloseReason,
    },
    /// A dial ended before the peer connected.
    DialFailed {
        /// The address dialled.
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
    /// A persistent peer ([`Network::add_peer`](crate::Network::add_peer)) will be
    /// dialled again after `after`: its session ended, or a dial to it failed (a
    /// `PeerDisconnected` or `DialFailed` came first), or could not start. While the
    /// peer it is known to be is banned, the wait is the ban's (none is announced for
    /// a ban for good: `unban` dials it at once).
    Redialing {
        /// Its address.
        addr: SocketAddr,
        /// Its id, if the application gave one or a dial to it proved one.
        peer: Option<PeerId>,
        /// The number of this coming dial since the last lasting session (1 after a
        /// session of at least `Config::redial_max` ended); its wait doubles with
        /// each. A shorter session counts as a failed dial.
        attempt: u32,
        /// The wait, jitter included.
        after: std::time::Duration,
    },
    /// A connected peer told the addresses it listens on (PROTOCOL.md §5.1), once
    /// per connection, a wildcard IP already replaced by the one it is seen at; also
    /// in [`Network::peer_listen_addrs`](crate::Network::peer_listen_addrs). A second
    /// connection of a connected peer, kept by the duplicate rule, tells them again.
    /// Peers of revision 5 and before tell nothing.
    PeerAddrs {
        /// Its id.
        peer: PeerId,
        /// Its listening addresses, at most 8.
        addrs: Vec<SocketAddr>,
    },
    /// A MESSAGE from a peer.
    Message {
        /// The sender.
        peer: PeerId,
        /// The application payload.
        payload: Bytes,
    },
    /// A broadcast seen for the first time.
    Broadcast {
        /// The neighbour it came from (not necessarily its origin).
        from: PeerId,
        /// The broadcast's id.
        id: GossipId,
        /// The application payload.
        payload: Bytes,
    },
    /// A REQUEST; answer it once with `respond(peer, id, ..)`. Left unanswered, it
    /// is remembered until the peer has `max_pending_requests` newer ones unanswered
    /// on the connection, or the connection closes.
    Request {
        /// The requester.
        peer: PeerId,
        /// The id to respond with.
        id: RequestId,
        /// The application payload.
        payload: Bytes,
    },
    /// The RESPONSE to a request of ours.
    Response {
        /// The responder.
        peer: PeerId,
        /// The id of our request.
        id: RequestId,
        /// The application payload.
        payload: Bytes,
    },
    /// A request of ours that will get no response.
    RequestFailed {
        /// The peer it went to.
        peer: PeerId,
        /// The id of our request.
        id: RequestId,
        /// Why.
        reason: RequestError,
    },
    /// A frame from a peer was dropped ([PROTOCOL.md](crate::protocol) §4); the connection stays open
    /// unless `max_rejected_frames` of them came within `rejected_frames_window`
    /// (see [`Config::max_rejected_frames`](crate::Config::max_rejected_frames)).
    FrameRejected {
        /// The sender.
        peer: PeerId,
        /// What was wrong with it.
        reason: Reject,
        /// Frames rejected on this connection so far, over its whole life.
        count: u32,
    },
    /// A graceful close to `peer` (our `disconnect` or `shutdown`, a GOODBYE either
    /// side sent, the peer closing its side) ended with `bytes` still queued: its
    /// `close_timeout` ran out first, or the connection failed. They were never sent.
    /// It comes after the close was reported (`PeerDisconnected`, unless the peer
    /// stays connected through another connection), and is also counted in
    /// `Stats::unflushed_bytes`.
    Unflushed {
        /// The peer.
        peer: PeerId,
        /// Bytes queued for it that were dropped.
        bytes: usize,
    },
    /// A broadcast queued through a [`Handle`](crate::Handle) was refused;
    /// [`Handle::broadcast`](crate::Handle::broadcast) returned `id`.
    BroadcastFailed {
        /// The id the handle's call returned.
        id: GossipId,
        /// Why.
        reason: SendError,
    },
    /// A send queued through a [`Handle`](crate::Handle) was refused;
    /// [`Handle::send`](crate::Handle::send) returned `id`.
    SendFailed {
        /// The peer it was for.
        peer: PeerId,
        /// The id the handle's call returned.
        id: SendId,
        /// Why.
        reason: SendError,
    },
    /// A respond queued through a [`Handle`](crate::Handle) was refused: nothing was
    /// sent. `peer` and `id` are the arguments of the call
    /// ([`Handle::respond`](crate::Handle::respond)), the request it answered. With
    /// [`SendError::UnknownRequest`] the id was not received from that peer or was
    /// answered already; with another reason the request stays unanswered, to answer
    /// again.
    RespondFailed {
        /// The requester.
        peer: PeerId,
        /// The id of the request it answered.
        id: RequestId,
        /// Why.
        reason: SendError,
    },
}
