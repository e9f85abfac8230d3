//! What idle connections cost the turns of a busy one: the round trip of a 64-byte
//! REQUEST and its RESPONSE between two [`Network`]s over loopback, plaintext, while the
//! responder holds no other connection, and again while it holds 10,000 idle ones.
//!
//! The group `idle` has two benchmarks, run in this order against the same responder
//! and the same requester connection:
//!
//! * `round_trip/0`: the responder holds only the requester's connection.
//! * `round_trip/10000`: 10,000 more peers have connected to the responder and stay
//!   idle. Each is a `Network` of its own (the duplicate rule keeps one connection per
//!   peer id), held by child processes of the bench (this same binary, started with
//!   `P2P_IDLE_PEERS` set) that poll each of them every few seconds, so they answer the
//!   responder's keepalive PINGs; the responder runs the default keepalive
//!   (`ping_interval` 15 s, `idle_timeout` 45 s) on all of them. They never ping on
//!   their own.
//!
//! The responder polls on its own thread and answers every REQUEST with its payload;
//! the requester, on the bench thread, sends one REQUEST per iteration and polls until
//! its RESPONSE arrives. Read the result as the ratio of the two times
//! (`round_trip/10000` ÷ `round_trip/0`, mean or median): what a turn costs beside the
//! work it does (aim: at most 1.1). It is a measurement, not a pass/fail check.
//!
//! Both ends wake each other once per round trip, so where the scheduler puts the two
//! threads weighs more than the turn: unpinned on a 2-core machine, the second
//! benchmark ran up to 1.4x faster than the first even with 10 idle peers instead of
//! 10,000. `taskset -c 0 cargo bench -p p2p-benches --bench idle` keeps everything on one CPU, and
//! the two agree within a few percent when the idle peers cost nothing.
//!
//! Each idle peer takes three descriptors (its socket, epoll and waker) and the
//! responder one more: the idle peers live in child processes of at most
//! [`PER_PROCESS`] each, so that no process needs more than 20,000. The bench raises its
//! soft `RLIMIT_NOFILE` to the hard one where it must, and stops with a message if that
//! is not enough.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use p2p::{Bytes, Config, Event, Network, PeerId, Security};

/// Idle connections held by the responder in the second benchmark.
const IDLE: usize = 10_000;
/// Payload of each REQUEST and RESPONSE.
const PAYLOAD: [u8; 64] = [0x5a; 64];
/// Idle peers connected at once while setting up.
const BATCH: usize = 250;
/// How often the idle peers' thread polls each of them (to answer PINGs, well within
/// the responder's `idle_timeout - ping_interval` of 30 s).
const SWEEP: Duration = Duration::from_secs(5);
/// How long any one step of setting up may take before the bench gives up.
const SETUP: Duration = Duration::from_secs(60);
/// Round trips before the first benchmark, as long as this.
const WARM_UP: Duration = Duration::from_secs(3);
/// Descriptors besides the idle connections' (the two busy ends, listeners, epoll,
/// criterion's files).
const SPARE_FDS: u64 = 256;
/// Idle peers held by one child process: three descriptors each.
const PER_PROCESS: usize = 5_000;
/// Set in a child process: the responder's address and how many idle peers to hold.
const CHILD_ENV: &str = "P2P_IDLE_PEERS";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("a loopback address")
}

/// The responder: room for every idle peer, all from 127.0.0.1, handshakes as fast as
/// they come; the keepalive at its defaults.
fn responder_config() -> Config {
    Config {
        security: Security::Plaintext,
        max_inbound: IDLE + 64,
        max_inbound_per_ip: IDLE + 64,
        max_pending_handshakes: 1024,
        max_pending_handshakes_per_ip: 1024,
        handshake_rate_per_ip: 1_000_000,
        ..Config::default()
    }
}

/// An idle peer: small tables (there are thousands of them), and no keepalive of its
/// own, so the only traffic on its connection is the responder's PING and its PONG.
fn idle_config() -> Config {
    Config {
        security: Security::Plaintext,
        gossip_cache_size: 16,
        command_queue: 16,
        ping_interval: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(7200),
        ..Config::default()
    }
}

/// Raises the soft (and if need be the hard) limit on open descriptors to at least
/// `want`; returns the soft limit now in force.
#[cfg(unix)]
fn raise_fd_limit(want: u64) -> u64 {
    // SAFETY: getrlimit and setrlimit only read and write the `rlimit` passed, which
    // lives on this stack frame for the call.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur >= want {
            return limit.rlim_cur;
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: limit.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return want;
        }
        // Not allowed past the hard limit: take what it allows.
        let soft = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            limit.rlim_max
        } else {
            limit.rlim_cur
        }
    }
}

/// Elsewhere the bench runs and finds out.
#[cfg(not(unix))]
fn raise_fd_limit(_: u64) -> u64 {
    u64::MAX
}

/// The responding node on its own thread.
struct Responder {
    addr: SocketAddr,
    id: PeerId,
    /// Peers connected now, from its events.
    peers: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start() -> Responder {
        let mut net = Network::new(responder_config()).expect("responder network");
        let addr = net.listen(loopback()).expect("responder listens");
        let id = net.local_id();
        let peers = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peers, stop) = (peers.clone(), stop.clone());
            thread::spawn(move || {
                let mut events = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    net.poll(&mut events, Some(Duration::from_millis(20)))
                        .expect("responder polls");
                    for event in events.drain(..) {
                        match event {
                            Event::Request { peer, id, payload } => {
                                net.respond(&peer, id, payload).expect("respond");
                            }
                            Event::PeerConnected { .. } => {
                                peers.fetch_add(1, Ordering::Relaxed);
                            }
                            Event::PeerDisconnected { .. } => {
                                peers.fetch_sub(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
                }
            })
        };
        Responder {
            addr,
            id,
            peers,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `n` peers are connected.
    fn wait_for_peers(&self, n: usize) {
        let deadline = Instant::now() + SETUP;
        while self.peers.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "the responder has {} peers of {n}",
                self.peers.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The idle peers, held by child processes.
struct IdlePeers {
    children: Vec<Child>,
}

impl IdlePeers {
    /// Starts child processes that connect `n` idle peers to `responder` and hold them.
    fn connect(responder: &Responder, n: usize) -> IdlePeers {
        let exe = std::env::current_exe().expect("the bench's own path");
        let mut children = Vec::new();
        let mut left = n;
        // At least one, holding none for `n = 0`, so that both benchmarks run beside
        // the same processes and differ only in the connections.
        while left > 0 || children.is_empty() {
            let count = left.min(PER_PROCESS);
            left -= count;
            let mut child = Command::new(&exe)
                .env(CHILD_ENV, format!("{} {count}", responder.addr))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a child holding idle peers");
            // One at a time: each says when its peers are connected.
            let stdout = child.stdout.take().expect("the child's stdout");
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("read the child's report");
            assert_eq!(
                line.trim(),
                "connected",
                "a child failed to connect its peers"
            );
            children.push(child);
        }
        IdlePeers { children }
    }
}

impl Drop for IdlePeers {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Its stdin closing tells it to stop.
            drop(child.stdin.take());
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// A child process: connects `count` idle peers to `addr`, `BATCH` at a time, says
/// `connected` on stdout, then polls each of them every [`SWEEP`] until its stdin
/// closes.
fn hold_idle_peers(addr: SocketAddr, count: usize) {
    let want = 3 * count as u64 + SPARE_FDS;
    let got = raise_fd_limit(want);
    assert!(
        got >= want,
        "a child needs {want} descriptors and may have {got}"
    );
    let mut nets: Vec<Network> = Vec::with_capacity(count);
    let mut events = Vec::new();
    while nets.len() < count {
        let batch = BATCH.min(count - nets.len());
        let mut pending: Vec<Network> = (0..batch)
            .map(|_| {
                let mut net = Network::new(idle_config()).expect("idle network");
                net.dial(addr).expect("idle peer dials");
                net
            })
            .collect();
        let deadline = Instant::now() + SETUP;
        while !pending.is_empty() {
            assert!(Instant::now() < deadline, "idle peers did not connect");
            let mut i = 0;
            while i < pending.len() {
                pending[i]
                    .poll(&mut events, Some(Duration::ZERO))
                    .expect("idle peer polls");
                for event in &events {
                    if let Event::DialFailed { reason, .. } = event {
                        panic!("an idle peer's dial failed: {reason}");
                    }
                }
                if events
                    .iter()
                    .any(|e| matches!(e, Event::PeerConnected { .. }))
                {
                    nets.push(pending.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        thread::spawn(move || {
            // Read until EOF: the parent closed our stdin, or is gone.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut out = std::io::stdout();
    writeln!(out, "connected").expect("report to the parent");
    out.flush().expect("report to the parent");
    let mut next = Instant::now() + SWEEP;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            for net in &mut nets {
                // Their events matter to no one; the PONGs left inside the poll.
                let _ = net.poll(&mut events, Some(Duration::ZERO));
            }
            next = Instant::now() + SWEEP;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The requesting node, on the bench thread, connected to the responder.
struct Requester {
    net: Network,
    responder: PeerId,
    events: Vec<Event>,
}

impl Requester {
    fn connect(responder: &Responder) -> Requester {
        let mut net = Network::new(Config {
            security: Security::Plaintext,
            ..Config::default()
        })
        .expect("requester network");
        net.dial(responder.addr).expect("requester dials");
        let mut events = Vec::new();
        let deadline = Instant::now() + SETUP;
        while !net.is_connected(&responder.id) {
            assert!(Instant::now() < deadline, "the requester did not connect");
            net.poll(&mut events, Some(Duration::from_millis(10)))
                .expect("requester polls");
        }
        Requester {
            net,
            responder: responder.id,
            events,
        }
    }

    /// One REQUEST and its RESPONSE.
    fn round_trip(&mut self) {
        let id = self
            .net
            .request(&self.responder, Bytes::from_static(&PAYLOAD))
            .expect("request");
        loop {
            self.net
                .poll(&mut self.events, Some(Duration::from_secs(1)))
                .expect("requester polls");
            for event in self.events.drain(..) {
                match event {
                    Event::Response {
                        id: got, payload, ..
                    } if got == id => {
                        assert_eq!(payload.len(), PAYLOAD.len());
                        return;
                    }
                    Event::RequestFailed { reason, .. } => panic!("request failed: {reason}"),
                    Event::PeerDisconnected { reason, .. } => {
                        panic!("the responder disconnected: {reason}")
                    }
                    _ => {}
                }
            }
        }
    }
}

fn idle(c: &mut Criterion) {
    let want = IDLE as u64 + SPARE_FDS;
    let got = raise_fd_limit(want);
    assert!(
        got >= want,
        "this bench needs {want} open descriptors and may have {got}: raise the limit \
         (`ulimit -n {want}`) and run it again"
    );
    let responder = Responder::start();
    let mut requester = Requester::connect(&responder);
    responder.wait_for_peers(1);
    // The first benchmark would otherwise also pay for warming both ends up (their
    // buffers, caches and the scheduler's view of the two threads).
    let warm = Instant::now() + WARM_UP;
    while Instant::now() < warm {
        requester.round_trip();
    }
    let mut group = c.benchmark_group("idle");
    let mut held = None;
    for n in [0, IDLE] {
        drop(held.take());
        held = Some(IdlePeers::connect(&responder, n));
        responder.wait_for_peers(1 + n);
        group.bench_with_input(BenchmarkId::new("round_trip", n), &n, |b, _| {
            b.iter(|| requester.round_trip())
        });
    }
    group.finish();
    drop(held);
    drop(requester);
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (addr, count) = spec.split_once(' ').expect("address and count");
        let addr = addr.parse().expect("the responder's address");
        let count = count.parse().expect("a count of idle peers");
        return hold_idle_peers(addr, count);
    }
    let mut criterion = Criterion::default().configure_from_args();
    idle(&mut criterion);
    criterion.final_summary();
}
