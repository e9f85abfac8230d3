//! The mio driver of the node core: one `Poll`, listeners, tokens, the `Waker`; it moves bytes, the core decides.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::DialError;
use crate::event::Event;
use crate::node::{ConnId, Flushed, Node, Sent, Wire};
use crate::queue::OutQueue;
use crate::socket::Phase;

const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`, far above any connection's.
const LISTENER_BASE: usize = usize::MAX - 1;
/// Bytes asked of one `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// How long accepting pauses after an accept error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// Slices handed to one `write_vectored` call.
const MAX_SLICES: usize = 64;

struct Stream {
    generation: u32,
    tcp: TcpStream,
    interest: Interest,
    /// The turn this socket was last read in.
    read_turn: u64,
    /// The last turn that skipped it for want of turn budget.
    skipped_turn: u64,
}

/// The stream of `conn`, if its slot still holds that generation. A free function over
/// the streams, so callers can borrow the node core beside it.
fn stream_mut(streams: &mut [Option<Stream>], conn: ConnId) -> Option<&mut Stream> {
    streams
        .get_mut(conn.key)?
        .as_mut()
        .filter(|s| s.generation == conn.generation)
}

/// A non-blocking listener on `addr`, made as mio's `TcpListener::bind` makes one but
/// with `backlog` (`Config::listen_backlog`): mio's and std's is 128, and the kernel
/// drops a burst of dials beyond it without a word to either side, each dropped
/// connection then waiting a second or more for its TCP to resend.
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    // As mio does: a restarted node can bind its port while the old connections are
    // in TIME_WAIT. Not on Windows, where it would let another socket take the port.
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    // The kernel caps it (Linux at net.core.somaxconn) rather than failing.
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
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

/// The mio shell: one `Poll`, the listeners, a stream per connection, the `Waker`. It
/// moves bytes between the sockets and a [`Node`] and decides nothing.
pub(crate) struct Reactor {
    poll: Poll,
    mio_events: Events,
    listeners: Vec<TcpListener>,
    streams: Vec<Option<Stream>>,
    waker: Arc<Waker>,
    dirty: Vec<ConnId>,
    /// Readiness of this turn (connection, readable, writable), kept to reuse its allocation.
    readiness: Vec<(ConnId, bool, bool)>,
    /// Connections whose read budget ran out before `WouldBlock`, or that the receive
    /// budget paused and resumed: edge-triggered readiness will not repeat, so they
    /// are read again next turn.
    ready: Vec<ConnId>,
    /// Connections a turn left unread because its budget (`read_budget_total`) was
    /// spent: read first next turn, ahead of `ready`, so connections that always have
    /// more to send than a turn takes cannot keep them waiting.
    skipped: Vec<ConnId>,
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
    /// What this turn may still read over all sockets (`read_budget_total`).
    turn_left: usize,
    /// The clock of the turn or command running now.
    now: Instant,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Reactor {
            poll,
            mio_events: Events::with_capacity(1024),
            listeners: Vec::new(),
            streams: Vec::new(),
            waker,
            dirty: Vec::new(),
            readiness: Vec::new(),
            ready: Vec::new(),
            skipped: Vec::new(),
            accept_paused_until: None,
            accept_again: false,
            next_listener: 0,
            turn: 0,
            turn_left: 0,
            now: Instant::now(),
        })
    }

    /// The waker that ends a wait in [`Reactor::turn`] from another thread.
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Ends a wait in [`Reactor::turn`].
    pub(crate) fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }

    /// Listens on `addr` with a backlog of `backlog`; returns the bound address.
    pub(crate) fn listen(&mut self, addr: SocketAddr, backlog: u32) -> io::Result<SocketAddr> {
        let mut listener = bind(addr, backlog)?;
        let token = Token(LISTENER_BASE - self.listeners.len());
        self.poll
            .registry()
            .register(&mut listener, token, Interest::READABLE)?;
        let bound = listener.local_addr()?;
        self.listeners.push(listener);
        Ok(bound)
    }

    /// The addresses listened on.
    pub(crate) fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Closes every listener.
    pub(crate) fn stop_listening(&mut self) {
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
    }

    /// Dials `addr` for a connection the core reserves; nothing is left of it if the
    /// connect call fails at once.
    pub(crate) fn dial(
        &mut self,
        node: &mut Node,
        addr: SocketAddr,
        now: Instant,
    ) -> Result<(), DialError> {
        let conn = node.dial(addr, now)?;
        self.connect(conn, addr).map_err(|kind| {
            node.cancel(conn);
            DialError::Io(kind)
        })
    }

    /// Connects the dials the node started itself (its persistent peers').
    pub(crate) fn connect_own_dials(&mut self, node: &mut Node, now: Instant) {
        while let Some((conn, addr)) = node.poll_dial() {
            if let Err(kind) = self.connect(conn, addr) {
                node.handle_connect_error(conn, kind, now);
            }
        }
    }

    /// Starts the TCP connect of dial `conn` and registers its socket.
    fn connect(&mut self, conn: ConnId, addr: SocketAddr) -> Result<(), io::ErrorKind> {
        let tcp = TcpStream::connect(addr).map_err(|e| e.kind())?;
        self.register(conn, tcp, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| e.kind())
    }

    /// Writes, shuts, frees and re-registers whatever the core changed, and takes the
    /// connections the receive budget lets read again for the next turn.
    pub(crate) fn flush(&mut self, node: &mut Node, now: Instant) {
        self.now = now;
        self.write_dirty(node);
        node.poll_read(&mut self.ready);
    }

    /// Waits for readiness at most `timeout` (less if the core has a timer due or
    /// work is left over), then reads, accepts and writes what is ready. `now` is the
    /// clock after the wait. Returns whether the waker fired.
    pub(crate) fn turn(
        &mut self,
        node: &mut Node,
        timeout: Option<Duration>,
        now: &mut Instant,
    ) -> io::Result<bool> {
        self.now = *now;
        let wait = self.wait_time(node, timeout);
        match self.poll.poll(&mut self.mio_events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.mio_events.clear(),
            Err(e) => return Err(e),
        }
        self.now = Instant::now();
        *now = self.now;
        self.turn += 1;
        self.turn_left = node.config().read_budget_total;
        // Those the last turn skipped go first, then those it read to their budget.
        let (skipped, ready) = (
            std::mem::take(&mut self.skipped),
            std::mem::take(&mut self.ready),
        );
        for conn in skipped.into_iter().chain(ready) {
            self.read(node, conn);
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
            self.accept(node);
        }
        for &(conn, readable, writable) in &readiness {
            if writable {
                self.writable(node, conn);
            }
            if readable {
                self.read(node, conn);
            }
        }
        readiness.clear();
        self.readiness = readiness;
        Ok(woken)
    }

    fn wait_time(&self, node: &Node, timeout: Option<Duration>) -> Option<Duration> {
        if !self.ready.is_empty()
            || !self.skipped.is_empty()
            || node.has_events()
            || self.accept_again
        {
            return Some(Duration::ZERO);
        }
        let deadline = match (node.poll_timeout(), self.accept_paused_until) {
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
            skipped_turn: 0,
        });
        Ok(())
    }

    fn stream(&mut self, conn: ConnId) -> Option<&mut Stream> {
        stream_mut(&mut self.streams, conn)
    }

    /// Accepts from every listener until its backlog is empty, at most
    /// `max_accepts_per_turn` connections in all (refused ones count: each costs an
    /// accept), so a flood of connections takes a bounded share of each turn.
    fn accept(&mut self, node: &mut Node) {
        self.accept_again = false;
        let mut budget = node.config().max_accepts_per_turn;
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
                let Some(conn) = node.handle_accept(addr, self.now) else {
                    continue;
                };
                if let Err(e) = self.register(conn, tcp, Interest::READABLE) {
                    log::warn!("register failed: {e}");
                    node.handle_io_error(conn, e.kind(), self.now);
                }
            }
        }
    }

    /// A dial is connected once writable with no pending error and a peer address.
    fn writable(&mut self, node: &mut Node, conn: ConnId) {
        if node.phase(conn) == Some(Phase::Opening) {
            let now = self.now;
            let Some(stream) = self.stream(conn) else {
                return;
            };
            match stream.tcp.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return node.handle_connect_failed(conn, e.kind(), now),
            }
            match stream.tcp.peer_addr() {
                Ok(_) => node.handle_connected(conn, now),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return node.handle_connect_failed(conn, e.kind(), now),
            }
        }
        self.write(node, conn);
    }

    /// Reads `conn` until `WouldBlock`, or until its budget for this turn is spent; then
    /// it waits in the retry list, since edge-triggered readiness will not repeat.
    fn read(&mut self, node: &mut Node, conn: ConnId) {
        let now = self.now;
        let turn = self.turn;
        let turn_left = self.turn_left;
        let Some(stream) = stream_mut(&mut self.streams, conn) else {
            return;
        };
        if turn_left == 0 {
            // The turn's budget is spent: first in line next turn, once.
            if stream.skipped_turn != turn {
                stream.skipped_turn = turn;
                self.skipped.push(conn);
            }
            return;
        }
        if stream.read_turn == turn {
            // Read already this turn, from the retry list, after this turn's readiness
            // was polled: to `WouldBlock`, or until its budget ran out and it queued
            // itself for the next turn.
            return;
        }
        stream.read_turn = turn;
        let mut budget = node.config().read_budget;
        loop {
            let Some(Stream { tcp, .. }) = stream_mut(&mut self.streams, conn) else {
                return;
            };
            let ask = READ_CHUNK.min(budget).min(self.turn_left);
            let Some((buf, want)) = node.read_buf(conn, ask, now) else {
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
                Ok(0) => return node.handle_eof(conn, now),
                Ok(n) => {
                    // SAFETY: `read` wrote its first `n` bytes (`n <= want`, within the
                    // capacity `recv_buf` made room for).
                    unsafe { buf.set_len(buf.len() + n) };
                    let events = node.handle_read(conn, n, now);
                    // Events cost memory until the application takes them: tiny frames
                    // must not turn one turn's read budget into many times its size.
                    let cost = n + events * std::mem::size_of::<Event>();
                    budget = budget.saturating_sub(cost);
                    self.turn_left = self.turn_left.saturating_sub(cost);
                    if budget == 0 || self.turn_left == 0 {
                        // Edge-triggered readiness will not repeat: read again next turn.
                        self.ready.push(conn);
                        return;
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => {}
                    kind => return node.handle_io_error(conn, kind, now),
                },
            }
        }
    }

    /// Runs the core's write sequence for `conn` on its TCP stream, then frees the
    /// stream or sets its interest from what is left to write.
    fn write(&mut self, node: &mut Node, conn: ConnId) {
        let mut wire = TcpWire(stream_mut(&mut self.streams, conn).map(|s| &mut s.tcp));
        match node.flush(conn, &mut wire, self.now) {
            Flushed::Freed => self.release(conn),
            Flushed::Live { waiting } => self.update_interest(conn, waiting),
            Flushed::Idle => {}
        }
    }

    /// Writes, shuts, frees and re-registers whatever the core changed.
    fn write_dirty(&mut self, node: &mut Node) {
        let mut dirty = std::mem::take(&mut self.dirty);
        loop {
            node.poll_flush(&mut dirty);
            if dirty.is_empty() {
                break;
            }
            for conn in dirty.drain(..) {
                self.write(node, conn);
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
}
