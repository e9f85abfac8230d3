//! NOT API: hooks for the coverage-guided fuzz targets in `fuzz/` (cargo feature
//! `fuzzing`, off by default). Nothing here follows semver; it exists so a fuzzer can
//! reach the sans-IO internals (the record layer, the node core) with arbitrary input.
//!
//! Each driver asserts the crate's invariants as it goes, so a broken bound is a panic
//! the fuzzer reports like any other crash: buffers within their caps, a real peer
//! always able to read what the node sends, records opening to what was sealed.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::Config;
use crate::event::Event;
use crate::id::RequestId;
use crate::node::{ConnId, Flushed, Node, Sent, Wire};
use crate::peer::PeerId;
use crate::queue::OutQueue;
use crate::rng::Rng;
use crate::secure::{Handshake, LocalKey, Transport};
use crate::socket::{Phase, READ_ALLOWANCE};
use crate::wire::{Decoded, Decoder, Frame, GoodbyeReason, PREAMBLE_LEN, Preamble, Security};

/// Reads fuzz input as a stream of small numbers; past its end every read is 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, 0 past the end.
    pub fn byte(&mut self) -> u8 {
        let (&b, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        b
    }

    /// The next big-endian u16, 0 past the end.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` next bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// The identity numbered `n`: under noise, the X25519 key pair of the secret `[n; 32]`;
/// in plaintext, the id `[n; 32]`. Its peer's ephemeral keys are seeded with `n`
/// ([`Peer::new`]), so runs repeat.
fn identity(security: Security, n: u8) -> LocalKey {
    let secret = [n; 32];
    let id = match (security, crate::secure::public_id(&secret)) {
        (Security::NoiseXx, Some(id)) => id,
        _ => PeerId::from_bytes(secret),
    };
    LocalKey {
        id,
        secret: secret.into(),
    }
}

/// Copies out the first `n` bytes of `queue` (at most what it holds), leaving them.
fn front(queue: &OutQueue, n: usize) -> Vec<u8> {
    let mut slices = [IoSlice::new(&[]); 16];
    let count = queue.slices(&mut slices);
    let mut out = Vec::with_capacity(n.min(queue.len()));
    for s in &slices[..count] {
        let take = s.len().min(n - out.len());
        out.extend_from_slice(&s[..take]);
    }
    out
}

/// The node's side of a link as its write sequence sees it: one write of at most
/// `left` bytes, which the fuzzed peer (if any) reads.
struct PeerWire<'a> {
    peer: Option<&'a mut Peer>,
    tampered: bool,
    left: usize,
}

impl Wire for PeerWire<'_> {
    fn send(&mut self, queue: &OutQueue) -> Sent {
        let bytes = front(queue, self.left);
        if bytes.is_empty() {
            return Sent::Blocked;
        }
        self.left = 0;
        if let Some(peer) = self.peer.as_mut() {
            peer.read(&bytes, self.tampered);
        }
        Sent::Wrote(bytes.len())
    }

    fn shutdown_write(&mut self) {}
}

/// Two record layers keyed by a real noise handshake: `seal` on one side, `open` on
/// the other, with the fuzzer choosing what is sealed, how the ciphertext is cut, and
/// what garbage or tampering lands in between.
pub struct RecordPair {
    sender: Transport,
    receiver: Transport,
    staged: OutQueue,
    sealed: OutQueue,
    /// Ciphertext not yet handed to the receiver.
    wire: VecDeque<u8>,
    rx: BytesMut,
    plain: BytesMut,
    /// Everything sealed, kept up to `KEEP` bytes to compare with what opens.
    sent: Vec<u8>,
    /// Whether bytes the sender did not seal reached the receiver.
    tampered: bool,
    /// A record failed to open: the connection would be closed, so nothing more opens.
    failed: bool,
}

impl RecordPair {
    const KEEP: usize = 1 << 20;

    /// Both ends of one direction of a noise transport, under a fixed key (the
    /// handshake that would agree on it is the handshake targets' business).
    pub fn new() -> Self {
        let key = [0x42; 32];
        let transport = || Transport::noise_from_keys(&key, &key).expect("a valid key");
        RecordPair {
            sender: transport(),
            receiver: transport(),
            staged: OutQueue::default(),
            sealed: OutQueue::default(),
            wire: VecDeque::new(),
            rx: BytesMut::new(),
            plain: BytesMut::new(),
            sent: Vec::new(),
            tampered: false,
            failed: false,
        }
    }

    /// Seals `bytes` (as frames would be staged) onto the wire.
    pub fn seal(&mut self, bytes: &[u8]) {
        self.staged.push_slice(bytes);
        if self.sent.len() < Self::KEEP {
            self.sent.extend_from_slice(bytes);
        }
        while !self.staged.is_empty() {
            let before = self.sealed.len();
            self.sender
                .seal(&mut self.staged, &mut self.sealed)
                .expect("nonces last");
            assert!(self.sealed.len() > before, "seal made no progress");
            let all = front(&self.sealed, self.sealed.len());
            self.sealed.advance(all.len());
            self.wire.extend(all);
        }
    }

    /// Hands up to `n` wire bytes to the receiver, the first of them xored with `flip`.
    pub fn deliver(&mut self, n: usize, flip: u8) {
        let n = n.min(self.wire.len());
        let start = self.rx.len();
        self.rx.extend(self.wire.drain(..n));
        if flip != 0 && n > 0 {
            self.rx[start] ^= flip;
            self.tampered = true;
        }
    }

    /// Bytes nobody sealed, straight into the receiver.
    pub fn inject(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        self.tampered |= !bytes.is_empty();
    }

    /// Opens what arrived whole, checking `next_record` against `open_record` and the
    /// plaintext against what was sealed.
    pub fn open(&mut self) {
        while !self.failed {
            let announced = self.receiver.next_record(&self.rx);
            let before = self.plain.len();
            self.plain.reserve(announced.unwrap_or(0));
            match self.receiver.open_record(&mut self.rx, &mut self.plain) {
                Ok(true) => {
                    assert_eq!(Some(self.plain.len() - before), announced);
                }
                Ok(false) => {
                    assert_eq!(announced, None, "a whole record was left unopened");
                    break;
                }
                Err(_) => {
                    assert!(self.tampered, "an honest record failed to open");
                    assert_eq!(self.plain.len(), before, "a failed open left plaintext");
                    self.failed = true;
                }
            }
        }
        // Forging a tag is out of reach (and ring's tag check is not instrumented, so
        // the fuzzer gets no hint): whatever opened was sealed, in order.
        let kept = self.plain.len().min(self.sent.len());
        assert_eq!(self.plain[..kept], self.sent[..kept], "opened bytes differ");
        assert!(self.sent.len() == Self::KEEP || self.plain.len() <= self.sent.len());
        // Less than one whole record waits: the most a connection holds sealed.
        assert!(self.failed || self.rx.len() < 2 + u16::MAX as usize);
    }
}

impl Default for RecordPair {
    fn default() -> Self {
        Self::new()
    }
}

/// A real peer on one connection of a [`Harness`]: it speaks the preamble, the
/// handshake and the record layer correctly, so the fuzzer can reach the frame stream
/// under noise, and it checks that everything the node sends is valid.
struct Peer {
    preamble: Preamble,
    ours: [u8; PREAMBLE_LEN],
    handshake: Handshake,
    transport: Option<Transport>,
    /// Bytes from the node not yet read.
    rx: BytesMut,
    /// Opened frame bytes not yet decoded.
    plain: BytesMut,
    decoder: Decoder,
    /// Bytes for the node.
    tx: BytesMut,
    /// The node's preamble arrived and passed.
    preamble_read: bool,
    /// The node's handshake failed after the fuzzer tampered with its input: this
    /// peer stops reading.
    gave_up: bool,
}

impl Peer {
    fn new(
        security: Security,
        key: &LocalKey,
        ephemeral: Rng,
        initiator: bool,
        max_frame: usize,
    ) -> Self {
        let preamble = Preamble::new(security, 1);
        let ours = preamble.encode();
        let mut handshake = Handshake::new(security, key, initiator, ephemeral);
        let mut tx = BytesMut::from(&ours[..]);
        handshake.start(&mut tx);
        Peer {
            preamble,
            ours,
            handshake,
            transport: None,
            rx: BytesMut::new(),
            plain: BytesMut::new(),
            decoder: Decoder::new(max_frame),
            tx,
            preamble_read: false,
            gave_up: false,
        }
    }

    /// Reads bytes the node wrote. `tampered`: the node read bytes this peer did not
    /// send, so its handshake may rightly fail here.
    fn read(&mut self, bytes: &[u8], tampered: bool) {
        if self.gave_up {
            return;
        }
        self.rx.extend_from_slice(bytes);
        if self.transport.is_none() {
            self.read_handshake(tampered);
        }
        let Some(transport) = self.transport.as_mut() else {
            return;
        };
        if transport.encrypts() {
            while transport.next_record(&self.rx).is_some() {
                let opened = transport.open_record(&mut self.rx, &mut self.plain);
                if opened.is_err() && tampered {
                    // The node may have finished a handshake the fuzzer replayed.
                    self.gave_up = true;
                    return;
                }
                assert!(matches!(opened, Ok(true)), "a node record failed to open");
            }
        } else {
            self.plain.extend_from_slice(&self.rx.split());
        }
        while let Some(decoded) = self.decoder.decode(&mut self.plain) {
            assert!(
                matches!(decoded, Decoded::Frame(_)),
                "the node sent a frame its peer rejects: {decoded:?}"
            );
        }
    }

    fn read_handshake(&mut self, tampered: bool) {
        if self.rx.len() < PREAMBLE_LEN {
            return;
        }
        if !self.preamble_read {
            let theirs: [u8; PREAMBLE_LEN] = self.rx[..PREAMBLE_LEN]
                .try_into()
                .unwrap_or([0; PREAMBLE_LEN]);
            if let Err(e) = Preamble::check(&theirs, &self.preamble) {
                panic!("a peer on the node's network refuses its preamble: {e}");
            }
            let _ = self.rx.split_to(PREAMBLE_LEN);
            self.preamble_read = true;
            let ours = self.ours;
            if let Err(e) = self
                .handshake
                .preamble_checked(&ours, &theirs, &mut self.tx)
            {
                panic!("the node's preamble starts no handshake: {e}");
            }
        }
        match self.handshake.read(&mut self.rx, &mut self.tx) {
            Ok(Some(established)) => self.transport = Some(established.transport),
            Ok(None) => {}
            Err(_) if tampered => self.gave_up = true,
            Err(e) => panic!("the node's handshake bytes are invalid: {e}"),
        }
    }

    /// Sends `bytes` as frame-stream bytes (sealed under noise), once the handshake is
    /// done; before, they are dropped, as a real peer could not send them yet.
    fn send_stream(&mut self, bytes: &[u8]) {
        let Some(transport) = self.transport.as_mut() else {
            return;
        };
        if !transport.encrypts() {
            self.tx.extend_from_slice(bytes);
            return;
        }
        let mut staged = OutQueue::default();
        staged.push_slice(bytes);
        let mut sealed = OutQueue::default();
        while !staged.is_empty() {
            if transport.seal(&mut staged, &mut sealed).is_err() {
                return;
            }
            let all = front(&sealed, sealed.len());
            sealed.advance(all.len());
            self.tx.extend_from_slice(&all);
        }
    }
}

/// One connection of the node under test and the far end of it.
struct Link {
    conn: ConnId,
    /// The far end's address.
    addr: SocketAddr,
    /// Bytes on their way to the node, read when the fuzzer says.
    to_node: VecDeque<u8>,
    /// A real peer at the far end, or `None` when the fuzzer alone writes the bytes.
    peer: Option<Peer>,
    /// The remote's id once the node announced it.
    remote: Option<PeerId>,
    /// The node freed the socket.
    gone: bool,
    /// The fuzzer's own bytes went to the node beside the real peer's.
    tampered: bool,
    /// What the real peer sent, as it was cut (for seed corpora).
    log: Vec<Vec<u8>>,
}

/// What a [`Harness`] may do: the handshake targets keep to one connection and the
/// byte stream; the node target opens more and uses the application calls too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One accepted connection: the node is the handshake's responder.
    Responder,
    /// One dialled connection: the node is the handshake's initiator.
    Initiator,
    /// Up to [`Harness::MAX_LINKS`] connections both ways and every application call.
    Node,
}

/// A node core with small limits under a virtual clock, its connections' far ends
/// played by the fuzz input. [`Harness::run`] reads the whole input as operations.
pub struct Harness {
    node: Node,
    config: Config,
    security: Security,
    scope: Scope,
    /// With a real peer at the far end of each new link, or raw bytes only.
    honest: bool,
    now: Instant,
    /// When the harness started: bounds what a connection may have had rejected.
    start: Instant,
    links: Vec<Link>,
    events: Vec<Event>,
    scratch: Vec<ConnId>,
    next_request: u64,
    last_request: Option<(PeerId, RequestId)>,
}

impl Harness {
    /// The most connections the node target opens.
    pub const MAX_LINKS: usize = 4;

    /// The node, and its first connection unless `scope` is [`Scope::Node`] (which opens
    /// its own). The first input byte picks the security (bit 0) and whether the far
    /// ends are real peers (bit 1).
    pub fn new(scope: Scope, input: &mut Input<'_>) -> Self {
        let mode = input.byte();
        let security = if cfg!(feature = "noise") && mode & 1 == 1 {
            Security::NoiseXx
        } else {
            Security::Plaintext
        };
        let config = Config {
            security,
            network_id: 1,
            max_frame_size: 4096,
            max_rejected_frames: 8,
            max_inbound: 3,
            max_outbound: 3,
            max_pending_handshakes: 2,
            max_pending_dials: 2,
            max_pending_requests: 4,
            max_write_buffer: 24 * 1024,
            max_write_buffer_total: 40 * 1024,
            max_read_buffer_total: 16 * 1024,
            read_budget: 8 * 1024,
            gossip_cache_size: 16,
            max_gossip_rate: 20,
            max_gossip_bytes_rate: 16 * 1024,
            ..Config::default()
        };
        if let Err(e) = config.validate() {
            panic!("the harness config is invalid: {e}");
        }
        let node = Node::new(config.clone(), identity(security, 1), Rng::from_seed(7));
        let now = Instant::now();
        let mut harness = Harness {
            node,
            config,
            security,
            scope,
            honest: mode & 2 == 2,
            now,
            start: now,
            links: Vec::new(),
            events: Vec::new(),
            scratch: Vec::new(),
            next_request: 1,
            last_request: None,
        };
        match scope {
            Scope::Responder => harness.open_link(false, 2, false),
            Scope::Initiator => harness.open_link(true, 2, false),
            Scope::Node => {}
        }
        harness
    }

    /// Reads operations from `input` until it ends, checking the invariants after each.
    pub fn run(&mut self, input: &mut Input<'_>) {
        while !input.is_empty() {
            self.step(input);
            self.settle();
            self.check();
        }
    }

    /// Peers connected now.
    pub fn peers(&self) -> usize {
        self.node.stats().peers
    }

    /// What each link's real peer sent, in the pieces it sent: a transcript that a
    /// raw-bytes run replays exactly, keys and nonces being seeded.
    pub fn transcripts(&self) -> Vec<Vec<Vec<u8>>> {
        self.links.iter().map(|l| l.log.clone()).collect()
    }

    /// Opens a connection whose far end has identity `n` (1 is the node's own: a
    /// self-connection). A dial stays connecting when `pending` (op 15 ends it).
    fn open_link(&mut self, outbound: bool, n: u8, pending: bool) {
        if self.links.len() >= Self::MAX_LINKS {
            return;
        }
        let i = self.links.len() as u8;
        let key = identity(self.security, n);
        let addr = if outbound {
            SocketAddr::from(([10, 0, 0, 10 + i], 7000))
        } else {
            SocketAddr::from(([10, 0, 0, 20 + i], 40000))
        };
        let conn = if outbound {
            let Ok(conn) = self.node.dial(addr, self.now) else {
                return;
            };
            if !pending {
                self.node.handle_connected(conn, self.now);
            }
            conn
        } else {
            let Some(conn) = self.node.handle_accept(addr, self.now) else {
                return;
            };
            conn
        };
        let max_frame = self.config.max_frame_size;
        let peer = self.honest.then(|| {
            let ephemeral = Rng::from_seed(u64::from(n));
            Peer::new(self.security, &key, ephemeral, !outbound, max_frame)
        });
        self.links.push(Link {
            conn,
            addr,
            to_node: VecDeque::new(),
            peer,
            remote: None,
            gone: false,
            tampered: false,
            log: Vec::new(),
        });
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        let pick = input.byte() as usize;
        let app = self.scope == Scope::Node;
        let link = match self.links.len() {
            0 => None,
            n => Some(pick % n),
        };
        match (op % 16, link) {
            (0, Some(l)) => {
                let n = input.byte() as usize;
                let bytes = input.bytes(n);
                let link = &mut self.links[l];
                link.to_node.extend(bytes);
                link.tampered |= !bytes.is_empty() && link.peer.is_some();
            }
            (1, Some(l)) => {
                let n = input.u16() as usize % 8192;
                let bytes = input.bytes(n);
                if let Some(peer) = self.links[l].peer.as_mut() {
                    peer.send_stream(bytes);
                }
            }
            (2, Some(l)) => {
                let frame = frame_from(input);
                if let Some(peer) = self.links[l].peer.as_mut() {
                    let mut bytes = BytesMut::new();
                    frame.encode(&mut bytes);
                    peer.send_stream(&bytes);
                }
            }
            (3, Some(l)) => {
                let n = chunk_size(input);
                self.deliver(l, n);
            }
            (4, Some(l)) => {
                let n = chunk_size(input);
                self.write(l, n);
            }
            (5, _) => {
                let ms = u64::from(input.byte()) << (input.byte() % 12);
                self.now += Duration::from_millis(ms);
                self.node.handle_timeout(self.now);
            }
            (6, Some(l)) => {
                let l = &mut self.links[l];
                if !l.gone {
                    self.node.handle_eof(l.conn, self.now);
                }
            }
            (7, Some(l)) => {
                for _ in 0..8 {
                    self.deliver(l, usize::MAX);
                    self.write(l, usize::MAX);
                }
            }
            (8, Some(l)) if app => {
                if let Some(peer) = self.links[l].remote {
                    let len = input.u16() as usize % 6000;
                    let _ = self.node.send(&peer, Bytes::from(vec![0x5a; len]));
                }
            }
            (9, Some(l)) if app => {
                if let Some(peer) = self.links[l].remote {
                    let id = RequestId(self.next_request);
                    self.next_request += 1;
                    let len = input.byte() as usize;
                    let _ = self.node.request_with_id(
                        &peer,
                        id,
                        Bytes::from(vec![0x33; len]),
                        self.now,
                    );
                }
            }
            (10, _) if app => {
                if let Some((peer, id)) = self.last_request.take() {
                    let len = input.u16() as usize % 6000;
                    let _ = self.node.respond(&peer, id, Bytes::from(vec![0x44; len]));
                }
            }
            (11, _) if app => {
                let len = input.u16() as usize % 6000;
                let _ = self.node.broadcast(Bytes::from(vec![0x66; len]), self.now);
            }
            (12, Some(l)) if app => {
                if let Some(peer) = self.links[l].remote {
                    self.node.disconnect(&peer, self.now);
                }
            }
            (13, Some(l)) if app => {
                let l = &self.links[l];
                if !l.gone {
                    let kind = match pick % 3 {
                        0 => std::io::ErrorKind::ConnectionReset,
                        1 => std::io::ErrorKind::BrokenPipe,
                        _ => std::io::ErrorKind::TimedOut,
                    };
                    self.node.handle_io_error(l.conn, kind, self.now);
                }
            }
            (14, _) if app => {
                let n = 1 + input.byte() % 3;
                self.open_link(pick & 1 == 0, n, pick & 2 == 2);
            }
            (15, _) if app && pick == 0xff => self.node.shutdown(self.now),
            (15, Some(l)) if app => {
                let conn = self.links[l].conn;
                if !self.links[l].gone && self.node.phase(conn) == Some(Phase::Opening) {
                    if pick & 0x80 == 0 {
                        self.node.handle_connected(conn, self.now);
                    } else {
                        let refused = std::io::ErrorKind::ConnectionRefused;
                        self.node.handle_connect_failed(conn, refused, self.now);
                    }
                }
            }
            _ => {}
        }
    }

    /// Hands the node up to `n` bytes of what waits for it, as a read would.
    fn deliver(&mut self, l: usize, n: usize) {
        let link = &mut self.links[l];
        if let Some(peer) = link.peer.as_mut()
            && !peer.tx.is_empty()
        {
            let bytes = peer.tx.split();
            link.to_node.extend(bytes.iter());
            link.log.push(bytes.to_vec());
        }
        if link.gone {
            return;
        }
        let n = n.min(link.to_node.len());
        let bytes: Vec<u8> = link.to_node.iter().take(n).copied().collect();
        let taken = self.node.handle_bytes(link.conn, &bytes, self.now);
        link.to_node.drain(..taken);
    }

    /// Lets the node write up to `n` bytes, which its peer reads.
    fn write(&mut self, l: usize, n: usize) {
        let link = &mut self.links[l];
        if link.gone {
            return;
        }
        let mut wire = PeerWire {
            peer: link.peer.as_mut(),
            tampered: link.tampered,
            left: n,
        };
        if self.node.flush(link.conn, &mut wire, self.now) == Flushed::Freed {
            link.gone = true;
        }
    }

    /// Takes the node's events and frees its closed sockets, as the shell does.
    fn settle(&mut self) {
        self.node.poll_flush(&mut self.scratch);
        self.scratch.clear();
        self.node.poll_read(&mut self.scratch);
        self.scratch.clear();
        self.node.poll_events(&mut self.events);
        for event in self.events.drain(..) {
            match event {
                Event::PeerConnected { peer, addr, .. } => {
                    for link in self.links.iter_mut().filter(|l| !l.gone && l.addr == addr) {
                        link.remote = Some(peer);
                    }
                }
                Event::Request { peer, id, .. } => self.last_request = Some((peer, id)),
                _ => {}
            }
        }
        for link in &mut self.links {
            if !link.gone && self.node.phase(link.conn) == Some(Phase::Closed) {
                assert!(
                    self.node.remove(link.conn, self.now),
                    "a closed socket stuck"
                );
                link.gone = true;
            }
        }
    }

    /// The bounds every node keeps whatever its peers do.
    fn check(&self) {
        let stats = self.node.stats();
        let c = &self.config;
        assert!(stats.connections <= self.links.len());
        assert!(
            stats.queued_bytes <= c.max_write_buffer_total,
            "queued {} over the total cap {}",
            stats.queued_bytes,
            c.max_write_buffer_total
        );
        let own = if self.security == Security::Plaintext {
            READ_ALLOWANCE
        } else {
            READ_ALLOWANCE + 2 * (2 + u16::MAX as usize)
        };
        let read_cap = c.max_read_buffer_total + stats.connections * own;
        assert!(
            stats.buffered_bytes <= read_cap,
            "buffered {} over {read_cap}",
            stats.buffered_bytes
        );
        assert!(stats.pending_requests <= stats.connections * c.max_pending_requests);
        assert!(stats.gossip_ids <= c.gossip_cache_size);
        assert!(stats.handshaking <= c.max_pending_handshakes + c.max_pending_dials);
        assert!(stats.peers <= c.max_inbound + c.max_outbound);
        for link in self.links.iter().filter(|l| !l.gone) {
            let Some(peer) = link.remote else { continue };
            if let Some(queued) = self.node.queued(&peer) {
                assert!(
                    queued <= c.max_write_buffer,
                    "peer queue {queued} over its cap"
                );
            }
            if let Some(s) = self.node.peer_stats(&peer) {
                // `max_rejected_frames` within any `rejected_frames_window` close the
                // connection, so an open one has had fewer than that in each window
                // since the harness started.
                let windows = self.now.saturating_duration_since(self.start).as_nanos()
                    / c.rejected_frames_window.as_nanos().max(1)
                    + 1;
                let most = u128::from(c.max_rejected_frames) * windows;
                assert!(
                    u128::from(s.rejected_frames) <= most,
                    "{} rejected frames, at most {most} in {windows} windows",
                    s.rejected_frames
                );
            }
        }
    }
}

/// A read or write size: mostly small, sometimes a whole 64 KiB chunk or more.
fn chunk_size(input: &mut Input<'_>) -> usize {
    let b = input.byte() as usize;
    match b >> 6 {
        0 => 1 + (b & 0x3f),
        1 => 64 << (b & 0x7),
        _ => 1 + (b << 9),
    }
}

/// A well-formed frame chosen by the input, with small ids so responses can match
/// requests.
fn frame_from(input: &mut Input<'_>) -> Frame {
    let kind = input.byte();
    let id = u64::from(input.byte());
    let len = input.u16() as usize % 5000;
    let payload = Bytes::from(vec![kind; len]);
    match kind % 10 {
        0 => Frame::Ping(id),
        1 => Frame::Pong(id),
        2 => Frame::Message(payload),
        3 => Frame::Gossip {
            id: [input.byte(); 16],
            hops: input.byte(),
            payload,
        },
        4 => Frame::Request { id, payload },
        5 => Frame::Response { id, payload },
        7 => Frame::Addrs(
            (0..len % (crate::wire::MAX_ADDRS + 1))
                .map(|i| std::net::SocketAddr::from(([10, 0, 0, id as u8], 30000 + i as u16)))
                .collect(),
        ),
        8 => Frame::GetAddrs,
        9 => Frame::Peers(
            (0..len % (crate::wire::MAX_PEERS + 1))
                .map(|i| std::net::SocketAddr::from(([10, 0, 1, id as u8], 30000 + i as u16)))
                .collect(),
        ),
        _ => Frame::Goodbye(GoodbyeReason::from_byte(input.byte() % 6)),
    }
}
