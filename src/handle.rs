//! `Handle`: a `Clone + Send` way to command the network from other threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use bytes::Bytes;
use mio::Waker;

use crate::error::HandleError;
use crate::event::RequestId;
use crate::peer::PeerId;

/// A command queued by a [`Handle`] for the loop.
#[derive(Debug)]
pub(crate) enum Command {
    Dial(SocketAddr),
    Send(PeerId, Bytes),
    Request(PeerId, RequestId, Bytes),
    Respond(PeerId, RequestId, Bytes),
    Broadcast(Bytes),
    Disconnect(PeerId),
    Shutdown,
}

/// Queues commands for a [`Network`](crate::Network) from any thread and wakes its loop.
///
/// A command runs on the loop's next turn; if it fails there, the failure comes back
/// as an event ([`Event::SendFailed`](crate::Event::SendFailed),
/// [`Event::RequestFailed`](crate::Event::RequestFailed),
/// [`Event::DialFailed`](crate::Event::DialFailed),
/// [`Event::BroadcastFailed`](crate::Event::BroadcastFailed)), never silently.
///
/// ```no_run
/// let net = p2p::Network::new(p2p::Config::default())?;
/// let handle = net.handle();
/// std::thread::spawn(move || handle.broadcast("block 7"));
/// # Ok::<(), p2p::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Handle {
    tx: SyncSender<Command>,
    waker: Arc<Waker>,
    /// Set while a wake is pending, so a burst of commands costs one wake-up syscall.
    woken: Arc<AtomicBool>,
    request_ids: Arc<AtomicU64>,
}

impl Handle {
    pub(crate) fn new(
        tx: SyncSender<Command>,
        waker: Arc<Waker>,
        woken: Arc<AtomicBool>,
        request_ids: Arc<AtomicU64>,
    ) -> Self {
        Handle {
            tx,
            waker,
            woken,
            request_ids,
        }
    }

    fn queue(&self, command: Command) -> Result<(), HandleError> {
        self.tx.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => HandleError::Full,
            TrySendError::Disconnected(_) => HandleError::Closed,
        })?;
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.waker.wake().map_err(|_| HandleError::Closed)?;
        }
        Ok(())
    }

    /// Dials `addr`.
    pub fn dial(&self, addr: SocketAddr) -> Result<(), HandleError> {
        self.queue(Command::Dial(addr))
    }

    /// Sends a MESSAGE to `peer`.
    pub fn send(&self, peer: PeerId, payload: impl Into<Bytes>) -> Result<(), HandleError> {
        self.queue(Command::Send(peer, payload.into()))
    }

    /// Sends a REQUEST to `peer`; the id is known at once.
    pub fn request(
        &self,
        peer: PeerId,
        payload: impl Into<Bytes>,
    ) -> Result<RequestId, HandleError> {
        let id = RequestId(self.request_ids.fetch_add(1, Ordering::Relaxed));
        self.queue(Command::Request(peer, id, payload.into()))?;
        Ok(id)
    }

    /// Answers the REQUEST `id` of `peer`. Checked on the loop's next turn: an id
    /// not received from `peer` or answered already sends nothing and comes back as
    /// [`Event::SendFailed`](crate::Event::SendFailed) with
    /// [`SendError::UnknownRequest`](crate::SendError::UnknownRequest).
    pub fn respond(
        &self,
        peer: PeerId,
        id: RequestId,
        payload: impl Into<Bytes>,
    ) -> Result<(), HandleError> {
        self.queue(Command::Respond(peer, id, payload.into()))
    }

    /// Broadcasts to the whole network.
    pub fn broadcast(&self, payload: impl Into<Bytes>) -> Result<(), HandleError> {
        self.queue(Command::Broadcast(payload.into()))
    }

    /// Closes the connection to `peer`.
    pub fn disconnect(&self, peer: PeerId) -> Result<(), HandleError> {
        self.queue(Command::Disconnect(peer))
    }

    /// Starts a graceful shutdown.
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.queue(Command::Shutdown)
    }
}
