//! Shared helpers of the loopback integration tests.
//!
//! Every test drives its `Network`s from one thread, one `poll` per node per turn, and
//! waits for conditions with [`run_until`], which is bounded by a number of turns. No
//! test sleeps and none asserts how fast something happened.
//!
//! [`Raw`] is a hand-driven peer: a non-blocking `std::net::TcpStream` that speaks the
//! protocol with `p2p::wire`, so tests can send malformed input and read exactly what a
//! node sends back. It never blocks: tests call [`Raw::pump`] from their `run_until`
//! condition, between polls of the nodes.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use p2p::wire::{Decoded, Decoder, Frame, PREAMBLE_LEN, Preamble, Security};
use p2p::{Config, Event, Network, PeerId};

/// Longest a node's `poll` waits in one turn.
pub const TURN: Duration = Duration::from_millis(5);

/// Size of a plaintext hello: preamble then 32-byte peer id.
pub const HELLO_LEN: usize = PREAMBLE_LEN + 32;

/// Events collected while stepping, tagged with the index of the node that gave them.
pub type Log = Vec<(usize, Event)>;

/// The default config in plaintext mode: the raw peers of these tests speak the
/// plaintext handshake (noise has its own tests).
pub fn plain() -> Config {
    Config {
        security: p2p::Security::Plaintext,
        ..Config::default()
    }
}

/// A node listening on an ephemeral loopback port.
pub fn listening(config: Config) -> (Network, SocketAddr) {
    let mut net = Network::new(config).expect("Network::new");
    let addr = net
        .listen("127.0.0.1:0".parse().unwrap())
        .expect("listen on loopback");
    (net, addr)
}

/// A node with the default config, listening on loopback.
pub fn node() -> (Network, SocketAddr) {
    listening(plain())
}

/// A node listening with `config`, and a raw peer `r` that finished its handshake
/// with it (hellos consumed).
pub fn with_raw_peer(config: Config, r: PeerId) -> (Network, Raw) {
    let (mut net, addr) = listening(config);
    let (raw, _) = Raw::handshake(&mut net, addr, r);
    (net, raw)
}

/// A peer id made of one repeated byte.
pub fn id(byte: u8) -> PeerId {
    PeerId::from_bytes([byte; 32])
}

/// Polls every node once (at most [`TURN`] each), appending their events to `log`.
pub fn turn(nets: &mut [&mut Network], log: &mut Log) {
    let mut events = Vec::new();
    for (i, net) in nets.iter_mut().enumerate() {
        net.poll(&mut events, Some(TURN)).expect("poll failed");
        log.extend(events.drain(..).map(|e| (i, e)));
    }
}

/// Steps every node until `cond` holds (checked before each turn and after the last),
/// at most `max_turns` turns. Returns the events of the nodes during this call.
/// Panics, naming the caller's line and listing the events, if the bound is hit.
#[track_caller]
pub fn run_until(
    nets: &mut [&mut Network],
    max_turns: usize,
    mut cond: impl FnMut(&mut [&mut Network], &Log) -> bool,
) -> Log {
    let mut log = Log::new();
    for _ in 0..max_turns {
        if cond(nets, &log) {
            return log;
        }
        turn(nets, &mut log);
    }
    if cond(nets, &log) {
        return log;
    }
    panic!("condition not reached after {max_turns} turns; events meanwhile: {log:#?}");
}

/// Steps every node exactly `turns` turns and returns their events.
pub fn run_turns(nets: &mut [&mut Network], turns: usize) -> Log {
    let mut log = Log::new();
    for _ in 0..turns {
        turn(nets, &mut log);
    }
    log
}

/// The events of node `i` in `log`.
pub fn of(log: &Log, i: usize) -> Vec<Event> {
    log.iter()
        .filter(|(n, _)| *n == i)
        .map(|(_, e)| e.clone())
        .collect()
}

/// Whether node `i` reported an event matching `pred`.
pub fn has(log: &Log, i: usize, pred: impl Fn(&Event) -> bool) -> bool {
    log.iter().any(|(n, e)| *n == i && pred(e))
}

/// How many events of node `i` match `pred`.
pub fn count(log: &Log, i: usize, pred: impl Fn(&Event) -> bool) -> usize {
    log.iter().filter(|(n, e)| *n == i && pred(e)).count()
}

/// Whether node `i` reported `PeerConnected` for `peer`.
pub fn connected_to(log: &Log, i: usize, peer: PeerId) -> bool {
    has(
        log,
        i,
        |e| matches!(e, Event::PeerConnected { peer: p, .. } if *p == peer),
    )
}

/// Connects `a` (dialling) to `b`; steps both until each reports the other.
pub fn connect(a: &mut Network, b: &mut Network, b_addr: SocketAddr) -> Log {
    let (a_id, b_id) = (a.local_id(), b.local_id());
    a.dial(b_addr).expect("dial");
    run_until(&mut [a, b], 400, |_, log| {
        connected_to(log, 0, b_id) && connected_to(log, 1, a_id)
    })
}

/// The bytes a plaintext node sends first: its preamble then its id.
pub fn hello(network_id: u32, peer: PeerId) -> Vec<u8> {
    let mut out = Preamble::new(Security::Plaintext, network_id)
        .encode()
        .to_vec();
    // As a peer of revision 5 and before sends it: no feature bits, so the node
    // sends it no frame kind it would not know (ADDRS).
    out[6] = 0;
    out.extend_from_slice(peer.as_bytes());
    out
}

/// The exact hello `net` must send: with the feature bits of this version.
pub fn hello_of(net: &Network) -> Vec<u8> {
    let mut out = Preamble::new(Security::Plaintext, net.config().network_id)
        .encode()
        .to_vec();
    out.extend_from_slice(net.local_id().as_bytes());
    out
}

/// One frame's wire bytes.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.to_vec()
}

/// A frame with any kind and body, bypassing `Frame`'s own rules.
pub fn raw_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// A hand-driven peer over a non-blocking TCP stream.
pub struct Raw {
    pub stream: TcpStream,
    /// Bytes received and not consumed yet.
    pub inbox: BytesMut,
    /// Every byte ever received.
    pub received: usize,
    outbox: Vec<u8>,
    out_pos: usize,
    /// The node closed the stream (EOF) or reset it.
    pub closed: bool,
    /// The close was an error (reset) rather than an EOF.
    pub reset: bool,
    decoder: Decoder,
}

impl Raw {
    /// Connects to `addr` (the kernel completes it from the listen backlog).
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("raw connect");
        Raw::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Raw {
        // A read timeout is only a safety net: the stream is non-blocking anyway.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_nonblocking(true).unwrap();
        Raw {
            stream,
            inbox: BytesMut::new(),
            received: 0,
            outbox: Vec::new(),
            out_pos: 0,
            closed: false,
            reset: false,
            decoder: Decoder::new(u32::MAX as usize),
        }
    }

    /// Connects to a node and completes the plaintext handshake claiming `me`; checks the
    /// node's hello byte for byte and consumes it. Returns the events of the call.
    pub fn handshake(net: &mut Network, addr: SocketAddr, me: PeerId) -> (Raw, Log) {
        let mut raw = Raw::connect(addr);
        raw.send(&hello(net.config().network_id, me));
        let expected = hello_of(net);
        let log = run_until(&mut [net], 400, |_, log| {
            raw.pump();
            raw.inbox.len() >= HELLO_LEN && connected_to(log, 0, me)
        });
        assert_eq!(&raw.inbox[..HELLO_LEN], &expected[..], "node's hello");
        raw.inbox.advance(HELLO_LEN);
        (raw, log)
    }

    /// Queues bytes and writes what the kernel takes now.
    pub fn send(&mut self, bytes: &[u8]) {
        self.outbox.extend_from_slice(bytes);
        self.flush();
    }

    /// Queues one frame.
    pub fn send_frame(&mut self, frame: &Frame) {
        self.send(&encode(frame));
    }

    /// Bytes queued and not written yet.
    pub fn unsent(&self) -> usize {
        self.outbox.len() - self.out_pos
    }

    fn flush(&mut self) {
        while self.out_pos < self.outbox.len() {
            match self.stream.write(&self.outbox[self.out_pos..]) {
                Ok(0) => break,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The node is gone; what was not written never will be.
                    self.out_pos = self.outbox.len();
                }
            }
        }
        if self.out_pos == self.outbox.len() {
            self.outbox.clear();
            self.out_pos = 0;
        }
    }

    /// Writes what it can, then reads everything available now. Never blocks.
    pub fn pump(&mut self) {
        self.flush();
        let mut buf = [0u8; 64 * 1024];
        while !self.closed {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.inbox.extend_from_slice(&buf[..n]);
                    self.received += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    self.reset = true;
                }
            }
        }
    }

    /// Pumps, then decodes the whole frames received. Panics on a frame the codec refuses:
    /// a node must only send valid frames.
    pub fn frames(&mut self) -> Vec<Frame> {
        self.pump();
        let mut out = Vec::new();
        while let Some(decoded) = self.decoder.decode(&mut self.inbox) {
            match decoded {
                Decoded::Frame(frame) => out.push(frame),
                Decoded::Rejected(reason) => panic!("node sent an invalid frame: {reason}"),
            }
        }
        out
    }
}

/// Steps `nets` while `raw` collects frames, until `done` holds for all frames received
/// during the call; returns those frames and the events.
#[track_caller]
pub fn collect_frames(
    nets: &mut [&mut Network],
    raw: &mut Raw,
    max_turns: usize,
    mut done: impl FnMut(&[Frame], &Raw) -> bool,
) -> (Vec<Frame>, Log) {
    let mut frames = Vec::new();
    let log = run_until(nets, max_turns, |_, _| {
        frames.extend(raw.frames());
        done(&frames, raw)
    });
    (frames, log)
}

/// A plain TCP listener a node can dial, standing in for a peer.
pub struct RawListener {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl RawListener {
    pub fn bind() -> RawListener {
        RawListener::bind_at([127, 0, 0, 1])
    }

    /// A listener on an ephemeral port of another loopback IP (all of 127.0.0.0/8
    /// is this host), to stand in for a peer in another network group (/16).
    pub fn bind_at(ip: [u8; 4]) -> RawListener {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0))).expect("bind raw listener");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        RawListener { listener, addr }
    }

    /// Accepts one connection if one is waiting. Never blocks.
    pub fn try_accept(&self) -> Option<Raw> {
        match self.listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                Some(Raw::from_stream(stream))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("raw accept: {e}"),
        }
    }

    /// Accepts one connection, stepping `nets` meanwhile.
    #[track_caller]
    pub fn accept(&self, nets: &mut [&mut Network]) -> (Raw, Log) {
        let mut accepted = None;
        let log = run_until(nets, 400, |_, _| {
            if accepted.is_none() {
                accepted = self.try_accept();
            }
            accepted.is_some()
        });
        (accepted.unwrap(), log)
    }
}

/// How many events of node `i` of a simulation match `pred`.
pub fn sim_count(sim: &p2p::sim::Sim, i: usize, pred: impl Fn(&Event) -> bool) -> usize {
    sim.node(i).events().iter().filter(|e| pred(e)).count()
}

/// How many `PeerConnected` node `i` of a simulation has seen.
pub fn sim_connects(sim: &p2p::sim::Sim, i: usize) -> usize {
    sim_count(sim, i, |e| matches!(e, Event::PeerConnected { .. }))
}
