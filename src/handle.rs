//! `Handle`: a `Clone + Send` way to command the network from other threads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use mio::Waker;

use crate::error::HandleError;
use crate::id::{GossipId, RequestId, SendId};
use crate::payload::Payload;
use crate::peer::PeerId;
use crate::rng::Rng;

/// A command queued by a [`Handle`] for the loop. Each carries what its failure event
/// reports, chosen by the handle when it queued it.
#[derive(Debug)]
pub(crate) enum Command {
    Dial(SocketAddr),
    AddPeer(SocketAddr, Option<PeerId>),
    RemovePeer(SocketAddr),
    Ban(PeerId, std::time::Duration),
    Unban(PeerId),
    Validate(GossipId, crate::validation::Validation),
    SetAllowlist(Option<std::collections::HashSet<PeerId>>),
    Send(PeerId, SendId, Bytes),
    Request(PeerId, RequestId, Bytes),
    Respond(PeerId, RequestId, Bytes),
    Broadcast(GossipId, Bytes),
    Disconnect(PeerId),
    Shutdown,
}

/// Queues commands for a [`Network`](crate::Network) from any thread and wakes its loop.
///
/// It mirrors `Network` method for method, with the same names and arguments:
///
/// | `Network` | `Handle` | if it fails on the loop |
/// |---|---|---|
/// | `dial(addr) -> Result<(), DialError>` | `dial(addr) -> Result<(), HandleError>` | [`Event::DialFailed`](crate::Event::DialFailed) `{ addr, .. }` |
/// | `add_peer(addr, expected) -> Result<(), DialError>` | `add_peer(addr, expected) -> Result<(), HandleError>` | [`Event::DialFailed`](crate::Event::DialFailed) `{ addr, .. }` |
/// | `remove_peer(addr) -> bool` | `remove_peer(addr) -> Result<(), HandleError>` | nothing (not one: nothing to do) |
/// | `ban(&peer, duration) -> bool` | `ban(&peer, duration) -> Result<(), HandleError>` | a warning in the log (the ban table is full) |
/// | `unban(&peer) -> bool` | `unban(&peer) -> Result<(), HandleError>` | nothing (not banned: nothing to do) |
/// | `validate(id, verdict) -> bool` | `validate(id, verdict) -> Result<(), HandleError>` | nothing (no verdict awaited: nothing to do) |
/// | `set_allowlist(list)` | `set_allowlist(list) -> Result<(), HandleError>` | cannot fail |
/// | `send(&peer, payload) -> Result<(), SendError>` | `send(&peer, payload) -> Result<SendId, HandleError>` | [`Event::SendFailed`](crate::Event::SendFailed) `{ peer, id, .. }` |
/// | `request(&peer, payload) -> Result<RequestId, SendError>` | `request(&peer, payload) -> Result<RequestId, HandleError>` | [`Event::RequestFailed`](crate::Event::RequestFailed) `{ peer, id, .. }` |
/// | `respond(&peer, id, payload) -> Result<(), SendError>` | `respond(&peer, id, payload) -> Result<(), HandleError>` | [`Event::RespondFailed`](crate::Event::RespondFailed) `{ peer, id, .. }` |
/// | `broadcast(payload) -> Result<GossipId, SendError>` | `broadcast(payload) -> Result<GossipId, HandleError>` | [`Event::BroadcastFailed`](crate::Event::BroadcastFailed) `{ id, .. }` |
/// | `disconnect(&peer) -> bool` | `disconnect(&peer) -> Result<(), HandleError>` | nothing (not connected: nothing to do) |
/// | `shutdown()` | `shutdown() -> Result<(), HandleError>` | cannot fail |
///
/// A call returns as soon as the command is queued: its error, [`HandleError`], says
/// only that it could not be queued. The command runs on the loop's next turn
/// (`Network::poll`), and if it fails there, the failure comes back as the event in
/// the table, never silently, carrying what the call returned or was given, so it can
/// be matched to its call: the [`SendId`] of a send, the [`RequestId`] of a request or
/// of the request a respond answered, the [`GossipId`] of a broadcast, the address of
/// a dial. A command that succeeds on the loop produces what the `Network` call would
/// have (a `Response` or `RequestFailed` for a request, say). Ids are chosen here, as
/// the `Network`'s are: request ids from the same counter, broadcast ids from a
/// cryptographic generator of the handle's own, so peers cannot predict them either.
///
/// `listen`, `flush` and the read-only methods (`peers`, `stats`, ..) stay on
/// `Network`: the loop writes what commands queued in the turn that runs them.
///
/// ```no_run
/// let net = p2p::Network::new(p2p::Config::default())?;
/// let handle = net.handle();
/// let id = std::thread::spawn(move || handle.broadcast("block 7")).join().unwrap()?;
/// // .. later, on the loop: `Event::BroadcastFailed { id: failed, reason }` with `failed == id`
/// # let _ = id;
/// # Ok::<(), p2p::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Handle {
    tx: SyncSender<Command>,
    waker: Arc<Waker>,
    /// Set while a wake is pending, so a burst of commands costs one wake-up syscall.
    woken: Arc<AtomicBool>,
    request_ids: Arc<AtomicU64>,
    send_ids: Arc<AtomicU64>,
    /// Makes broadcast ids, which peers must not predict: a secure generator of the
    /// handles' own, shared by every clone (a lock held for 16 bytes).
    gossip_ids: Arc<Mutex<Rng>>,
}

impl Handle {
    pub(crate) fn new(
        tx: SyncSender<Command>,
        waker: Arc<Waker>,
        woken: Arc<AtomicBool>,
        request_ids: Arc<AtomicU64>,
        send_ids: Arc<AtomicU64>,
        gossip_ids: Rng,
    ) -> Self {
        Handle {
            tx,
            waker,
            woken,
            request_ids,
            send_ids,
            gossip_ids: Arc::new(Mutex::new(gossip_ids)),
        }
    }

    fn queue(&self, command: Command) -> Result<(), HandleError> {
        self.tx.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => HandleError::Full,
            TrySendError::Disconnected(_) => HandleError::Closed,
        })?;
        if !self.woken.swap(true, Ordering::AcqRel)
            && let Err(e) = self.waker.wake()
        {
            // The command is queued all the same and runs at the loop's next turn,
            // which comes without this wake only if something else ends its wait (a
            // timer, a socket, another command's wake): an error here would lose the
            // id its call returns. The next command tries the wake again.
            self.woken.store(false, Ordering::Release);
            log::warn!("could not wake the network's loop: {e}");
        }
        Ok(())
    }

    /// Dials `addr`, as [`Network::dial`](crate::Network::dial); a refusal comes back
    /// as [`Event::DialFailed`](crate::Event::DialFailed) with `addr` and [`CloseReason::DialRefused`](crate::CloseReason::DialRefused).
    pub fn dial(&self, addr: SocketAddr) -> Result<(), HandleError> {
        self.queue(Command::Dial(addr))
    }

    /// Makes `addr` a persistent peer, as [`Network::add_peer`](crate::Network::add_peer);
    /// a refusal comes back as [`Event::DialFailed`](crate::Event::DialFailed) with
    /// `addr` and [`CloseReason::DialRefused`](crate::CloseReason::DialRefused).
    pub fn add_peer(&self, addr: SocketAddr, expected: Option<PeerId>) -> Result<(), HandleError> {
        self.queue(Command::AddPeer(addr, expected))
    }

    /// Stops dialling `addr` again, as
    /// [`Network::remove_peer`](crate::Network::remove_peer).
    pub fn remove_peer(&self, addr: SocketAddr) -> Result<(), HandleError> {
        self.queue(Command::RemovePeer(addr))
    }

    /// Bans `peer`, as [`Network::ban`](crate::Network::ban).
    pub fn ban(&self, peer: &PeerId, duration: std::time::Duration) -> Result<(), HandleError> {
        self.queue(Command::Ban(*peer, duration))
    }

    /// Gives the verdict on broadcast `id`, as
    /// [`Network::validate`](crate::Network::validate).
    pub fn validate(
        &self,
        id: GossipId,
        verdict: crate::validation::Validation,
    ) -> Result<(), HandleError> {
        self.queue(Command::Validate(id, verdict))
    }

    /// Lifts the ban of `peer`, as [`Network::unban`](crate::Network::unban).
    pub fn unban(&self, peer: &PeerId) -> Result<(), HandleError> {
        self.queue(Command::Unban(*peer))
    }

    /// Replaces the allowlist, as
    /// [`Network::set_allowlist`](crate::Network::set_allowlist).
    pub fn set_allowlist(
        &self,
        allowlist: Option<std::collections::HashSet<PeerId>>,
    ) -> Result<(), HandleError> {
        self.queue(Command::SetAllowlist(allowlist))
    }

    /// Sends a MESSAGE to `peer`, as [`Network::send`](crate::Network::send); a
    /// refusal comes back as [`Event::SendFailed`](crate::Event::SendFailed) with the id returned here.
    pub fn send(&self, peer: &PeerId, payload: impl Payload) -> Result<SendId, HandleError> {
        let id = SendId(self.send_ids.fetch_add(1, Ordering::Relaxed));
        self.queue(Command::Send(*peer, id, payload.into_payload()))?;
        Ok(id)
    }

    /// Sends a REQUEST to `peer`, as [`Network::request`](crate::Network::request); the
    /// id is known at once, and its [`Event::Response`](crate::Event::Response) or [`Event::RequestFailed`](crate::Event::RequestFailed)
    /// (a refusal too, with [`RequestError::NotSent`](crate::RequestError::NotSent))
    /// carries it.
    pub fn request(&self, peer: &PeerId, payload: impl Payload) -> Result<RequestId, HandleError> {
        let id = RequestId(self.request_ids.fetch_add(1, Ordering::Relaxed));
        self.queue(Command::Request(*peer, id, payload.into_payload()))?;
        Ok(id)
    }

    /// Answers the REQUEST `id` of `peer`, as [`Network::respond`](crate::Network::respond).
    /// Checked on the loop's next turn: a refusal (an id not received from `peer` or
    /// answered already: [`SendError::UnknownRequest`](crate::SendError::UnknownRequest);
    /// a full buffer) sends nothing and comes back as [`Event::RespondFailed`](crate::Event::RespondFailed) with
    /// `peer` and `id`.
    pub fn respond(
        &self,
        peer: &PeerId,
        id: RequestId,
        payload: impl Payload,
    ) -> Result<(), HandleError> {
        self.queue(Command::Respond(*peer, id, payload.into_payload()))
    }

    /// Broadcasts to the whole network, as [`Network::broadcast`](crate::Network::broadcast):
    /// returns the broadcast's id, which every node it reaches reports in
    /// [`Event::Broadcast`](crate::Event::Broadcast); a refusal comes back as [`Event::BroadcastFailed`](crate::Event::BroadcastFailed) with it.
    pub fn broadcast(&self, payload: impl Payload) -> Result<GossipId, HandleError> {
        let mut id = [0u8; 16];
        // Filling cannot panic, so a poisoned lock still holds a sound generator.
        self.gossip_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill(&mut id);
        let id = GossipId(id);
        self.queue(Command::Broadcast(id, payload.into_payload()))?;
        Ok(id)
    }

    /// Closes the connection to `peer` gracefully, as
    /// [`Network::disconnect`](crate::Network::disconnect); nothing happens if it is
    /// not connected when the command runs.
    pub fn disconnect(&self, peer: &PeerId) -> Result<(), HandleError> {
        self.queue(Command::Disconnect(*peer))
    }

    /// Starts a graceful shutdown, as [`Network::shutdown`](crate::Network::shutdown).
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.queue(Command::Shutdown)
    }
}
