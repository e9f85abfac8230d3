//! `Network`, the public type: the node core driven by the mio reactor, and the commands of its handles.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{CloseReason, DialError, Error, RequestError, SendError};
use crate::event::{Direction, Event};
use crate::handle::{Command, Handle};
use crate::id::{GossipId, RequestId};
use crate::node::{Node, Stats};
use crate::payload::Payload;
use crate::peer::PeerId;
use crate::reactor::Reactor;
use crate::rng::Rng;
use crate::secure::LocalKey;
use crate::socket::PeerStats;
use crate::validation::Validation;
use crate::wire::Security;

/// A connected peer, as [`Network::peers`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its id.
    pub id: PeerId,
    /// Its address.
    pub addr: SocketAddr,
    /// Who dialled.
    pub direction: Direction,
}

/// This node's identity: the noise keypair (given or generated) in noise-xx mode; in
/// plaintext mode the configured id, else the keypair's, else a random one.
fn local_key(config: &Config) -> Result<LocalKey, Error> {
    #[cfg(feature = "noise")]
    {
        let keypair = match (&config.keypair, config.security) {
            (Some(keypair), _) => Some(keypair.clone()),
            (None, Security::NoiseXx) => Some(crate::Keypair::generate()?),
            (None, Security::Plaintext) => None,
        };
        if let Some(keypair) = keypair {
            return Ok(LocalKey {
                id: config.peer_id.unwrap_or(keypair.peer_id()),
                secret: keypair.secret_key().clone(),
            });
        }
    }
    let id = match config.peer_id {
        Some(id) => id,
        None => PeerId::random().map_err(Error::Random)?,
    };
    Ok(LocalKey {
        id,
        secret: [0; 32].into(),
    })
}

/// A peer-to-peer node: listens, dials, authenticates, sends, requests and broadcasts,
/// and hands what arrives to the caller of [`Network::poll`].
///
/// ```no_run
/// use p2p::{Config, Event, Network};
/// use std::time::Duration;
///
/// let mut net = Network::new(Config::default())?;
/// net.listen("127.0.0.1:0".parse()?)?;
/// net.dial("127.0.0.1:9000".parse()?)?;
/// let mut events = Vec::new();
/// loop {
///     net.poll(&mut events, Some(Duration::from_millis(100)))?;
///     for event in events.drain(..) {
///         if let Event::PeerConnected { peer, .. } = event {
///             net.send(&peer, "hello")?;
///         }
///     }
/// }
/// # Ok::<(), p2p::Error>(())
/// ```
pub struct Network {
    node: Node,
    reactor: Reactor,
    woken: Arc<AtomicBool>,
    commands: Receiver<Command>,
    handle: Handle,
    request_ids: Arc<AtomicU64>,
    now: Instant,
}

/// Where this node's request ids start: at random in 1..=2^63, so that a peer's late
/// answer to a request of an earlier run of this node (the same key, a new process)
/// does not carry an id this run has issued: it would be taken for the answer to
/// another request. The ids then count up from there, 2^63 of them before any wrap.
fn first_request_id(rng: &mut Rng) -> u64 {
    (rng.next_u64() >> 1) + 1
}

impl Network {
    /// A node with `config`; it neither listens nor dials yet.
    pub fn new(config: Config) -> Result<Network, Error> {
        config.validate()?;
        let key = local_key(&config)?;
        let mut rng = Rng::secure().map_err(Error::Random)?;
        let reactor = Reactor::new()?;
        let woken = Arc::new(AtomicBool::new(false));
        let request_ids = Arc::new(AtomicU64::new(first_request_id(&mut rng)));
        let (tx, commands) = sync_channel(config.command_queue);
        let handle = Handle::new(
            tx,
            reactor.waker(),
            woken.clone(),
            request_ids.clone(),
            Arc::new(AtomicU64::new(0)),
            Rng::secure().map_err(Error::Random)?,
        );
        if config.security == Security::Plaintext {
            log::info!("plaintext mode: peer ids are claimed, not proven (unauthenticated)");
        }
        Ok(Network {
            node: Node::new(config, key, rng),
            reactor,
            woken,
            commands,
            handle,
            request_ids,
            now: Instant::now(),
        })
    }

    /// This node's id.
    pub fn local_id(&self) -> PeerId {
        self.node.local_id()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.node.config()
    }

    /// Listens on `addr` (port 0 picks a free one); returns the bound address.
    pub fn listen(&mut self, addr: SocketAddr) -> Result<SocketAddr, Error> {
        let bound = self
            .reactor
            .listen(addr, self.node.config().listen_backlog)?;
        log::info!("listening on {bound}");
        self.node.add_listen_addr(bound);
        Ok(bound)
    }

    /// The addresses listened on.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.reactor.listen_addrs()
    }

    /// Starts a dial. It ends in [`Event::PeerConnected`] or [`Event::DialFailed`];
    /// an error here means nothing was started. A dial to a peer already connected
    /// ends in `DialFailed` with `DuplicateConnection` if the duplicate rule closes the
    /// new connection, and in no event if the new one takes over (the peer stays
    /// connected throughout).
    pub fn dial(&mut self, addr: SocketAddr) -> Result<(), DialError> {
        self.tick();
        self.reactor.dial(&mut self.node, addr, self.now)
    }

    /// Makes `addr` a persistent peer: dialled at once (on this turn of
    /// [`Network::poll`]), and dialled again whenever its session ends or a dial to
    /// it fails, after a wait that doubles with each failure in a row
    /// ([`Config::redial_base`] up to [`Config::redial_max`], less a random
    /// [`Config::redial_jitter`]) and starts over after a session that lasted
    /// `redial_max` (a shorter one counts as a failure). Each such wait
    /// is announced by [`Event::Redialing`]; each dial ends in `PeerConnected` or
    /// `DialFailed` as [`Network::dial`]'s do. While the peer it proved is connected,
    /// whoever dialled, it is not dialled.
    ///
    /// With `expected`, the peer at `addr` must prove that id: another one is closed
    /// (`DialFailed` with [`CloseReason::UnexpectedPeer`]) and the address dialled
    /// again after the backoff. Adding an address again only changes `expected`. At
    /// most `max_outbound` addresses (`DialError::OutboundLimit`).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), p2p::Error> {
    /// let mut net = p2p::Network::new(p2p::Config::default())?;
    /// net.add_peer("192.0.2.7:9000".parse()?, None)?;
    /// # Ok(()) }
    /// ```
    pub fn add_peer(
        &mut self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<(), DialError> {
        self.tick();
        self.node.add_peer(addr, expected, self.now)
    }

    /// Stops dialling `addr` again. A connection to it, or a dial under way, goes on
    /// as any other (close it with [`Network::disconnect`]). False if `addr` was not
    /// a persistent peer.
    pub fn remove_peer(&mut self, addr: SocketAddr) -> bool {
        self.node.remove_peer(&addr)
    }

    /// Bans `peer` for `duration` (`Duration::MAX`: until [`Network::unban`]): its
    /// connections close at once (`PeerDisconnected` with [`CloseReason::Banned`];
    /// the peer is sent GOODBYE 3), a connection that proves its id later is closed at
    /// the handshake's end, and a persistent peer ([`Network::add_peer`]) known to be
    /// it is not dialled while the ban lasts. Banning again replaces the ban's end.
    /// False, with nothing done, if 65,536 peers are banned already (expired bans
    /// are dropped first).
    pub fn ban(&mut self, peer: &PeerId, duration: Duration) -> bool {
        self.tick();
        self.node.ban(*peer, duration, self.now)
    }

    /// Lifts the ban of `peer`; false if it was not banned. A persistent peer known
    /// to be it is dialled again at once.
    pub fn unban(&mut self, peer: &PeerId) -> bool {
        self.tick();
        self.node.unban(peer, self.now)
    }

    /// Replaces the allowlist ([`Config::allowlist`]; `None`: anyone), for example
    /// when the validator set changes. Connected peers it no longer allows are closed
    /// (`PeerDisconnected` with [`CloseReason::NotAllowed`]); persistent peers not
    /// connected are dialled again at once, so those it now allows connect without
    /// waiting out their backoff. [`Network::config`] shows the new list.
    pub fn set_allowlist(&mut self, allowlist: Option<std::collections::HashSet<PeerId>>) {
        self.tick();
        self.node.set_allowlist(allowlist, self.now);
    }

    /// Sends a MESSAGE to `peer`. Refused, with nothing queued, when the peer's or the
    /// node's write buffer would go over its cap.
    ///
    /// `payload` is anything [`Payload`]: owned bytes are queued as they are, borrowed
    /// ones (`msg.as_bytes()`, `&str`) are copied once here.
    pub fn send(&mut self, peer: &PeerId, payload: impl Payload) -> Result<(), SendError> {
        self.node.send(peer, payload.into_payload())
    }

    /// Sends a REQUEST; its [`Event::Response`] or [`Event::RequestFailed`] carries the id.
    pub fn request(
        &mut self,
        peer: &PeerId,
        payload: impl Payload,
    ) -> Result<RequestId, SendError> {
        self.tick();
        let id = RequestId(self.request_ids.fetch_add(1, Ordering::Relaxed));
        self.node
            .request_with_id(peer, id, payload.into_payload(), self.now)?;
        Ok(id)
    }

    /// Answers the REQUEST `id` of `peer`, once, on the connection it came on. Refused
    /// with [`SendError::UnknownRequest`], nothing sent, for an id no open connection
    /// of `peer` delivered as an unanswered REQUEST (another peer's, answered already,
    /// or forgotten: see [`Config::max_pending_requests`]); a refusal for a full
    /// buffer leaves the request unanswered, to answer again.
    pub fn respond(
        &mut self,
        peer: &PeerId,
        id: RequestId,
        payload: impl Payload,
    ) -> Result<(), SendError> {
        self.node.respond(peer, id, payload.into_payload())
    }

    /// Broadcasts to the whole network ([PROTOCOL.md](crate::protocol) §5). A neighbour whose write buffer
    /// is full misses it and its `dropped_sends` counter says so.
    pub fn broadcast(&mut self, payload: impl Payload) -> Result<GossipId, SendError> {
        self.tick();
        self.node.broadcast(payload.into_payload(), self.now)
    }

    /// Gives the verdict on the broadcast `id` delivered as [`Event::Broadcast`], when
    /// [`Config::validate_gossip`] holds it back from relay: `Accept` relays it,
    /// `Ignore` drops it, `Reject` drops it and counts a rejected frame
    /// ([`Reject::RejectedBroadcast`](crate::Reject::RejectedBroadcast)) against the
    /// neighbour that sent it, which `max_rejected_frames` of them close as
    /// misbehaving. False if no verdict is awaited for `id`: never delivered, judged
    /// already, or given up on (`validation_timeout`, or pushed out by newer ones;
    /// `Stats::dropped_validations`).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), p2p::Error> {
    /// use p2p::{Config, Event, Network, Validation};
    /// let mut net = Network::new(Config { validate_gossip: true, ..Config::default() })?;
    /// let mut events = Vec::new();
    /// net.poll(&mut events, None)?;
    /// for event in events.drain(..) {
    ///     if let Event::Broadcast { id, payload, .. } = event {
    ///         let valid = !payload.is_empty(); // the consensus engine's check
    ///         net.validate(id, if valid { Validation::Accept } else { Validation::Reject });
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn validate(&mut self, id: GossipId, verdict: Validation) -> bool {
        self.tick();
        self.node.validate(id, verdict, self.now)
    }

    /// Closes the connection to `peer` gracefully (GOODBYE 0); false if not connected.
    pub fn disconnect(&mut self, peer: &PeerId) -> bool {
        self.tick();
        self.node.disconnect(peer, self.now)
    }

    /// Stops listening and closes every connection gracefully: queued bytes are
    /// flushed, then GOODBYE 0. Keep calling [`Network::poll`] until
    /// [`Network::is_shut_down`].
    pub fn shutdown(&mut self) {
        self.tick();
        self.reactor.stop_listening();
        self.node.shutdown(self.now);
    }

    /// Writes what `send`, `request`, `respond` and `broadcast` queued, as far as the
    /// sockets take it now, without waiting for readiness; the rest leaves during
    /// later turns of [`Network::poll`]. For a sender that must not wait for its next
    /// turn (a vote, say); otherwise `poll` does it, coalescing more frames per write.
    pub fn flush(&mut self) {
        self.tick();
        self.reactor.flush(&mut self.node, self.now);
    }

    /// Bytes queued for `peer` and not yet written; `None` if not connected.
    pub fn queued_bytes(&self, peer: &PeerId) -> Option<usize> {
        self.node.queued(peer)
    }

    /// Whether `shutdown` was called and every connection is gone.
    pub fn is_shut_down(&self) -> bool {
        self.node.is_shutting_down() && self.node.is_idle()
    }

    /// A handle for other threads: it mirrors this type's commands (see [`Handle`]).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The connected peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.node
            .peers()
            .map(|(id, addr, direction)| PeerInfo {
                id,
                addr,
                direction,
            })
            .collect()
    }

    /// The addresses `peer` said it listens on ([`Event::PeerAddrs`]), to dial it
    /// back or tell others of it; empty if it is not connected or did not say (a peer
    /// of protocol revision 5 or before never does).
    pub fn peer_listen_addrs(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.node.peer_listen_addrs(peer).to_vec()
    }

    /// The address book: addresses peers said they listen on (ADDRS) and those
    /// loaded with [`Network::load_address_book`], sorted. Bounded by
    /// [`Config::address_book_size`], with shares per network the tellers connect from
    /// and per network the addresses are in, so that no one peer or network fills it; an address whose dials keep failing is
    /// forgotten.
    pub fn known_addrs(&self) -> Vec<SocketAddr> {
        self.node.known_addrs()
    }

    /// Saves the address book to `path` (through a temporary file beside it, named
    /// `path.<pid>.<n>.tmp` and removed on an error, and a rename, so a crash never
    /// leaves half a book), for [`Network::load_address_book`] after a
    /// restart: the node then need not depend on its seeds alone. The format is text:
    /// a header line `p2p-address-book-v1`, then one `address failures source flags`
    /// per line, the source being `app`, `local` or the teller's network (`p` and
    /// ten hex digits), the flags `r` (a dial reached it) and `v` (told on to peers
    /// that ask), or `-`: loaded again, what peers told stays under its shares. A
    /// line of only `address failures` (written by hand) is the application's.
    pub fn save_address_book(&self, path: &std::path::Path) -> io::Result<()> {
        // A name no other save (another thread, network or process) uses, created
        // new: two saves never write into one file, nor through a planted link.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let tmp = std::path::PathBuf::from(tmp);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let written = (|| {
            let mut file = std::io::BufWriter::new(file);
            self.node.save_book(&mut file)?;
            std::io::Write::flush(&mut file)?;
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Adds the addresses of a book saved by [`Network::save_address_book`], each
    /// under the source it was saved with, so what peers told stays within its
    /// shares (a line without a source is the application's); returns how many were
    /// new. A file that is not such a book is an `InvalidData` error naming the
    /// line, and nothing is added. No more than [`Config::address_book_size`]
    /// addresses are read; the rest of the file is not.
    pub fn load_address_book(&mut self, path: &std::path::Path) -> io::Result<usize> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        self.tick();
        self.node.load_book(file, self.now)
    }

    /// Adds `addr` to the address book, as a seed the node may dial to keep
    /// [`Config::target_outbound`] outbound connections (and from which it learns
    /// more). Unlike [`Network::add_peer`], it is not dialled for its own sake, nor
    /// kept connected: an address among others, forgotten after 8 failed dials in a
    /// row. False if the book knew it already or is full of addresses that work.
    ///
    /// ```no_run
    /// # use p2p::{Config, Network};
    /// let config = Config { target_outbound: 8, ..Config::default() };
    /// let mut net = Network::new(config)?;
    /// net.add_addr("192.0.2.7:30333".parse()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_addr(&mut self, addr: SocketAddr) -> bool {
        self.tick();
        self.node.add_addr(addr, self.now)
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.node.is_connected(peer)
    }

    /// Whole-node counters.
    pub fn stats(&self) -> Stats {
        self.node.stats()
    }

    /// The counters of the connection to `peer`.
    pub fn peer_stats(&self, peer: &PeerId) -> Option<PeerStats> {
        self.node.peer_stats(peer)
    }

    /// Runs one turn of the loop: waits for readiness at most `timeout` (`None`: until
    /// something happens), moves bytes, runs timers, and replaces the contents of
    /// `events` with what happened.
    pub fn poll(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        self.now = Instant::now();
        self.run_commands();
        self.reactor.flush(&mut self.node, self.now);
        let woken = self.reactor.turn(&mut self.node, timeout, &mut self.now)?;
        if woken {
            self.run_commands();
        }
        if self.node.poll_timeout().is_some_and(|d| d <= self.now) {
            self.node.handle_timeout(self.now);
            self.reactor.connect_own_dials(&mut self.node, self.now);
        }
        self.reactor.flush(&mut self.node, self.now);
        self.node.poll_events(events);
        Ok(())
    }

    /// Reads the clock for a command from the application: the deadlines it starts
    /// count from now, not from the last turn of the loop.
    fn tick(&mut self) {
        self.now = Instant::now();
    }

    /// Runs the commands queued by handles, at most a full queue's worth: a thread
    /// that refills the queue as fast as the loop drains it would otherwise hold the
    /// loop here, its failures piling up as events. Every command queued before the
    /// flag was cleared is among those taken (the queue holds no more); one left over
    /// was queued after it, so its handle (or an earlier one) woke the loop for the
    /// next turn.
    fn run_commands(&mut self) {
        self.woken.store(false, Ordering::Release);
        for _ in 0..self.node.config().command_queue {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            self.run(command);
        }
    }

    fn run(&mut self, command: Command) {
        let now = self.now;
        match command {
            Command::Dial(addr) => {
                if let Err(e) = self.dial(addr) {
                    self.node.push_event(Event::DialFailed {
                        addr,
                        reason: CloseReason::DialRefused(e),
                    });
                }
            }
            Command::AddPeer(addr, expected) => {
                if let Err(e) = self.add_peer(addr, expected) {
                    self.node.push_event(Event::DialFailed {
                        addr,
                        reason: CloseReason::DialRefused(e),
                    });
                }
            }
            Command::RemovePeer(addr) => {
                self.remove_peer(addr);
            }
            Command::Ban(peer, duration) => {
                if !self.ban(&peer, duration) {
                    log::warn!("ban of {peer:?} refused: the ban table is full");
                }
            }
            Command::Unban(peer) => {
                self.unban(&peer);
            }
            Command::Validate(id, verdict) => {
                self.validate(id, verdict);
            }
            Command::SetAllowlist(allowlist) => self.set_allowlist(allowlist),
            Command::Send(peer, id, payload) => {
                if let Err(reason) = self.node.send(&peer, payload) {
                    self.node.push_event(Event::SendFailed { peer, id, reason });
                }
            }
            Command::Request(peer, id, payload) => {
                if let Err(e) = self.node.request_with_id(&peer, id, payload, now) {
                    self.node.push_event(Event::RequestFailed {
                        peer,
                        id,
                        reason: RequestError::NotSent(e),
                    });
                }
            }
            Command::Respond(peer, id, payload) => {
                if let Err(reason) = self.node.respond(&peer, id, payload) {
                    self.node
                        .push_event(Event::RespondFailed { peer, id, reason });
                }
            }
            Command::Broadcast(id, payload) => {
                if let Err(reason) = self.node.broadcast_with_id(id, payload, now) {
                    self.node.push_event(Event::BroadcastFailed { id, reason });
                }
            }
            Command::Disconnect(peer) => {
                self.node.disconnect(&peer, now);
            }
            Command::Shutdown => self.shutdown(),
        }
    }

    /// Wakes a blocked [`Network::poll`] from this thread (a [`Handle`] does it from others).
    pub fn wake(&self) -> io::Result<()> {
        self.reactor.wake()
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("local_id", &self.local_id())
            .field("listening", &self.listen_addrs())
            .field("stats", &self.stats())
            .finish()
    }
}
