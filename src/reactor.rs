//! The mio shell: one `Poll`, listeners, tokens, the `Waker`; it moves bytes, the core decides.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::config::Config;
use crate::error::{CloseReason, DialError, Error, RequestError, SendError};
use crate::event::{Direction, Event};
use crate::handle::{Command, Handle};
use crate::id::{GossipId, RequestId};
use crate::network::{ConnId, Flushed, Node, Sent, Stats, Wire};
use crate::payload::Payload;
use crate::peer::PeerId;
use crate::queue::OutQueue;
use crate::rng::Rng;
use crate::secure::LocalKey;
use crate::socket::{PeerStats, Phase};
use crate::wire::Security;

const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`, far above any connection's.
const LISTENER_BASE: usize = usize::MAX - 1;
/// Bytes asked of one `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// How long accepting pauses after an accept error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// Slices handed to one `write_vectored` call.
const MAX_SLICES: usize = 64;

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

struct Stream {
    generation: u32,
    tcp: TcpStream,
    interest: Interest,
    /// The turn this socket was last read in.
    read_turn: u64,
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

/// The stream of `conn`, if its slot still holds that generation. A free function over
/// the streams, so callers can borrow the node core beside it.
fn stream_mut(streams: &mut [Option<Stream>], conn: ConnId) -> Option<&mut Stream> {
    streams
        .get_mut(conn.key)?
        .as_mut()
        .filter(|s| s.generation == conn.generation)
}

/// A connection's TCP stream (if it has one yet) as the core's write sequence sees it.
struct TcpWire<'a>(Option<&'a mut TcpStream>);

impl Wire for TcpWire<'_> {
    fn send(&mut self, queue: &OutQueue) -> Sent {
        let Some(tcp) = self.0.as_mut() else {
            return Sent::Blocked;
        };
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = queue.slices(&mut slices);
        loop {
            return match tcp.write_vectored(&slices[..n]) {
                Ok(n) => Sent::Wrote(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Sent::Failed(e.kind()),
            };
        }
    }

    fn shutdown_write(&mut self) {
        if let Some(tcp) = self.0.as_mut() {
            let _ = tcp.shutdown(Shutdown::Write);
        }
    }
}

fn token(conn: ConnId) -> Token {
    Token(conn.key | (conn.generation as usize) << 32)
}

fn conn_of(token: Token) -> ConnId {
    ConnId {
        key: token.0 & 0xffff_ffff,
        generation: (token.0 >> 32) as u32,
    }
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
    poll: Poll,
    mio_events: Events,
    listeners: Vec<TcpListener>,
    streams: Vec<Option<Stream>>,
    waker: Arc<Waker>,
    woken: Arc<AtomicBool>,
    commands: Receiver<Command>,
    handle: Handle,
    request_ids: Arc<AtomicU64>,
    dirty: Vec<ConnId>,
    /// Readiness of this turn (connection, readable, writable), kept to reuse its allocation.
    readiness: Vec<(ConnId, bool, bool)>,
    /// Connections whose read budget ran out before `WouldBlock`, or that the receive
    /// budget paused and resumed: edge-triggered readiness will not repeat, so they
    /// are read again next turn.
    ready: Vec<ConnId>,
    /// After an accept error (EMFILE, say), accepting pauses until then, so a
    /// connection stuck in the backlog does not spin the loop.
    accept_paused_until: Option<Instant>,
    /// The last turn's accepts stopped at `max_accepts_per_turn` with connections
    /// perhaps left in a backlog: edge-triggered readiness will not repeat, so the
    /// listeners are accepted from again next turn.
    accept_again: bool,
    /// The listener the next turn's accepts start from, so a busy one cannot keep
    /// the others' backlogs waiting.
    next_listener: usize,
    /// Turns of the loop so far; a socket is read at most once per turn.
    turn: u64,
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
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let woken = Arc::new(AtomicBool::new(false));
        let request_ids = Arc::new(AtomicU64::new(first_request_id(&mut rng)));
        let (tx, commands) = sync_channel(config.command_queue);
        let handle = Handle::new(
            tx,
            waker.clone(),
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
            poll,
            mio_events: Events::with_capacity(1024),
            listeners: Vec::new(),
            streams: Vec::new(),
            waker,
            woken,
            commands,
            handle,
            request_ids,
            dirty: Vec::new(),
            readiness: Vec::new(),
            ready: Vec::new(),
            accept_paused_until: None,
            accept_again: false,
            next_listener: 0,
            turn: 0,
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
        let mut listener = TcpListener::bind(addr)?;
        let token = Token(LISTENER_BASE - self.listeners.len());
        self.poll
            .registry()
            .register(&mut listener, token, Interest::READABLE)?;
        let bound = listener.local_addr()?;
        self.listeners.push(listener);
        log::info!("listening on {bound}");
        Ok(bound)
    }

    /// The addresses listened on.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Starts a dial. It ends in [`Event::PeerConnected`] or [`Event::DialFailed`];
    /// an error here means nothing was started. A dial to a peer already connected
    /// ends in `DialFailed` with `DuplicateConnection` if the duplicate rule closes the
    /// new connection, and in no event if the new one takes over (the peer stays
    /// connected throughout).
    pub fn dial(&mut self, addr: SocketAddr) -> Result<(), DialError> {
        self.tick();
        let conn = self.node.dial(addr, self.now)?;
        let tcp = match TcpStream::connect(addr) {
            Ok(tcp) => tcp,
            Err(e) => {
                self.node.cancel(conn);
                return Err(DialError::Io(e.kind()));
            }
        };
        if let Err(e) = self.register(conn, tcp, Interest::READABLE | Interest::WRITABLE) {
            self.node.cancel(conn);
            return Err(DialError::Io(e.kind()));
        }
        Ok(())
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
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.node.shutdown(self.now);
    }

    /// Writes what `send`, `request`, `respond` and `broadcast` queued, as far as the
    /// sockets take it now, without waiting for readiness; the rest leaves during
    /// later turns of [`Network::poll`]. For a sender that must not wait for its next
    /// turn (a vote, say); otherwise `poll` does it, coalescing more frames per write.
    pub fn flush(&mut self) {
        self.tick();
        self.write_dirty();
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
        self.write_dirty();
        self.node.take_resumed(&mut self.ready);
        let wait = self.wait_time(timeout);
        match self.poll.poll(&mut self.mio_events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.mio_events.clear(),
            Err(e) => return Err(e),
        }
        self.now = Instant::now();
        self.turn += 1;
        for conn in std::mem::take(&mut self.ready) {
            self.read(conn);
        }
        let mut woken = false;
        // A pause that ended retries the accept; one still running holds it back.
        let paused = self.accept_paused_until.is_some_and(|t| t > self.now);
        let mut accept = self.accept_paused_until.is_some() || self.accept_again;
        let mut readiness = std::mem::take(&mut self.readiness);
        for event in self.mio_events.iter() {
            match event.token() {
                WAKER => woken = true,
                Token(t) if t > LISTENER_BASE - self.listeners.len() && t <= LISTENER_BASE => {
                    accept = true
                }
                t => readiness.push((
                    conn_of(t),
                    event.is_readable() || event.is_read_closed() || event.is_error(),
                    event.is_writable() || event.is_error(),
                )),
            }
        }
        if accept && !paused {
            self.accept_paused_until = None;
            self.accept();
        }
        for &(conn, readable, writable) in &readiness {
            if writable {
                self.writable(conn);
            }
            if readable {
                self.read(conn);
            }
        }
        readiness.clear();
        self.readiness = readiness;
        if woken {
            self.run_commands();
        }
        if self.node.next_deadline().is_some_and(|d| d <= self.now) {
            self.node.timeout(self.now);
        }
        self.write_dirty();
        // Connections the receive budget paused and now lets read again.
        self.node.take_resumed(&mut self.ready);
        self.node.drain_events(events);
        Ok(())
    }

    fn wait_time(&self, timeout: Option<Duration>) -> Option<Duration> {
        if !self.ready.is_empty() || self.node.has_events() || self.accept_again {
            return Some(Duration::ZERO);
        }
        let deadline = match (self.node.next_deadline(), self.accept_paused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match deadline {
            Some(deadline) => {
                let until = deadline.saturating_duration_since(self.now);
                Some(timeout.map_or(until, |t| t.min(until)))
            }
            None => timeout,
        }
    }

    fn register(&mut self, conn: ConnId, mut tcp: TcpStream, interest: Interest) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut tcp, token(conn), interest)?;
        // Writes are coalesced here already; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        if self.streams.len() <= conn.key {
            self.streams.resize_with(conn.key + 1, || None);
        }
        self.streams[conn.key] = Some(Stream {
            generation: conn.generation,
            tcp,
            interest,
            read_turn: 0,
        });
        Ok(())
    }

    /// Reads the clock for a command from the application: the deadlines it starts
    /// count from now, not from the last turn of the loop.
    fn tick(&mut self) {
        self.now = Instant::now();
    }

    fn stream(&mut self, conn: ConnId) -> Option<&mut Stream> {
        stream_mut(&mut self.streams, conn)
    }

    /// Accepts from every listener until its backlog is empty, at most
    /// `max_accepts_per_turn` connections in all (refused ones count: each costs an
    /// accept), so a flood of connections takes a bounded share of each turn.
    fn accept(&mut self) {
        self.accept_again = false;
        let mut budget = self.node.config().max_accepts_per_turn;
        let count = self.listeners.len();
        for n in 0..count {
            let i = (self.next_listener + n) % count;
            loop {
                if budget == 0 {
                    self.accept_again = true;
                    self.next_listener = i;
                    return;
                }
                let (tcp, addr) = match self.listeners[i].accept() {
                    Ok(accepted) => accepted,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: the connection waits in the backlog. Survive,
                        // and try again after a pause rather than spin on it.
                        log::warn!("accept failed: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                        self.accept_paused_until = Some(self.now + ACCEPT_PAUSE);
                        return;
                    }
                };
                budget -= 1;
                // Refused: dropped here, before a byte is sent.
                let Some(conn) = self.node.accept(addr, self.now) else {
                    continue;
                };
                if let Err(e) = self.register(conn, tcp, Interest::READABLE) {
                    log::warn!("register failed: {e}");
                    self.node.io_error(conn, e.kind(), self.now);
                }
            }
        }
    }

    /// A dial is connected once writable with no pending error and a peer address.
    fn writable(&mut self, conn: ConnId) {
        if self.node.phase(conn) == Some(Phase::Opening) {
            let now = self.now;
            let Some(stream) = self.stream(conn) else {
                return;
            };
            match stream.tcp.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.node.connect_failed(conn, e.kind(), now),
            }
            match stream.tcp.peer_addr() {
                Ok(_) => self.node.connected(conn, now),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.node.connect_failed(conn, e.kind(), now),
            }
        }
        self.write(conn);
    }

    /// Reads `conn` until `WouldBlock`, or until its budget for this turn is spent; then
    /// it waits in the retry list, since edge-triggered readiness will not repeat.
    fn read(&mut self, conn: ConnId) {
        let now = self.now;
        let turn = self.turn;
        let Some(stream) = self.stream(conn) else {
            return;
        };
        if stream.read_turn == turn {
            // Read already this turn, from the retry list, after this turn's readiness
            // was polled: to `WouldBlock`, or until its budget ran out and it queued
            // itself for the next turn.
            return;
        }
        stream.read_turn = turn;
        let mut budget = self.node.config().read_budget;
        loop {
            let Some(Stream { tcp, .. }) = stream_mut(&mut self.streams, conn) else {
                return;
            };
            let Some((buf, want)) = self.node.recv_buf(conn, READ_CHUNK.min(budget), now) else {
                return;
            };
            // Read into the spare capacity as it is: zero-filling up to a whole chunk
            // before every read (what `resize` does) cost more than the read's own
            // copy, since a read rarely fills the chunk (examples/stream: 6-13% of the
            // wall time at 1 and 64 KiB, half the instructions at 1 KiB).
            let spare = &mut buf.spare_capacity_mut()[..want];
            // SAFETY: `[MaybeUninit<u8>]` and `[u8]` have the same layout. `Read::read`
            // in general may look at its buffer, which is why it asks for an
            // initialized one; this is mio's `TcpStream::read`, which is `std`'s, a
            // bare `recv(2)` into the pointer and length: it writes and never reads
            // them, and the bytes become readable through `buf` only once `set_len`
            // below covers those the kernel wrote. (tokio reads mio sockets this way.)
            let spare = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
            match tcp.read(spare) {
                Ok(0) => return self.node.eof(conn, now),
                Ok(n) => {
                    // SAFETY: `read` wrote its first `n` bytes (`n <= want`, within the
                    // capacity `recv_buf` made room for).
                    unsafe { buf.set_len(buf.len() + n) };
                    let events = self.node.received(conn, n, now);
                    // Events cost memory until the application takes them: tiny frames
                    // must not turn one turn's read budget into many times its size.
                    budget = budget.saturating_sub(n + events * std::mem::size_of::<Event>());
                    if budget == 0 {
                        // Edge-triggered readiness will not repeat: read again next turn.
                        self.ready.push(conn);
                        return;
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => {}
                    kind => return self.node.io_error(conn, kind, now),
                },
            }
        }
    }

    /// Runs the core's write sequence for `conn` on its TCP stream, then frees the
    /// stream or sets its interest from what is left to write.
    fn write(&mut self, conn: ConnId) {
        let mut wire = TcpWire(stream_mut(&mut self.streams, conn).map(|s| &mut s.tcp));
        match self.node.flush(conn, &mut wire, self.now) {
            Flushed::Freed => self.release(conn),
            Flushed::Live { waiting } => self.update_interest(conn, waiting),
            Flushed::Idle => {}
        }
    }

    /// Writes, shuts, frees and re-registers whatever the core changed.
    fn write_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        loop {
            self.node.take_dirty(&mut dirty);
            if dirty.is_empty() {
                break;
            }
            for conn in dirty.drain(..) {
                self.write(conn);
            }
        }
        self.dirty = dirty;
    }

    fn update_interest(&mut self, conn: ConnId, wants_write: bool) {
        let registry: &Registry = self.poll.registry();
        let Some(stream) = stream_mut(&mut self.streams, conn) else {
            return;
        };
        let interest = if wants_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if interest != stream.interest {
            if let Err(e) = registry.reregister(&mut stream.tcp, token(conn), interest) {
                log::warn!("reregister failed: {e}");
            }
            stream.interest = interest;
        }
    }

    /// Deregisters and drops the stream of a connection the core freed.
    fn release(&mut self, conn: ConnId) {
        if let Some(slot) = self.streams.get_mut(conn.key)
            && slot
                .as_ref()
                .is_some_and(|s| s.generation == conn.generation)
            && let Some(mut stream) = slot.take()
        {
            let _ = self.poll.registry().deregister(&mut stream.tcp);
        }
    }

    fn run_commands(&mut self) {
        self.woken.store(false, Ordering::Release);
        loop {
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
        self.waker.wake()
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
