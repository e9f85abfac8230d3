//! PROTOCOL.md §2.2 (noise-xx handshake) and §3 (records) over loopback TCP.
//!
//! The raw peers here run the handshake and the record layer with `snow` directly, not
//! through the crate, and check every byte the node puts on the wire against the spec:
//! the preamble, each handshake message's u16 length and size, each record's length,
//! and that what the records carry is the frame stream of §4.
#![cfg(feature = "noise")]

mod common;

use std::collections::HashSet;
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use common::*;
use p2p::wire::{Decoded, Decoder, Frame, PREAMBLE_LEN, Preamble, PreambleError, Security};
use p2p::{CloseReason, Config, Direction, Event, Keypair, Network, PeerId};

/// The network id of these tests' nodes.
const NET: u32 = 0x0A0B_0C0D;
/// PROTOCOL.md §2.2.
const PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
const DH_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// XX message 1 (`-> e`) with an empty payload: the ephemeral key in clear.
const MSG1_LEN: usize = DH_LEN;
/// XX message 2 (`<- e, ee, s, es`): ephemeral key, sealed static key, sealed empty payload.
const MSG2_LEN: usize = DH_LEN + (DH_LEN + TAG_LEN) + TAG_LEN;
/// XX message 3 (`-> s, se`): sealed static key, sealed empty payload.
const MSG3_LEN: usize = (DH_LEN + TAG_LEN) + TAG_LEN;
/// PROTOCOL.md §3: the largest record, and the plaintext it carries.
const MAX_RECORD: usize = u16::MAX as usize;
const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;
/// Turns allowed for any one step of a test; loopback needs a handful.
const TURNS: usize = 400;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A noise-xx node config on network `NET`.
fn noise() -> Config {
    Config {
        network_id: NET,
        security: Security::NoiseXx,
        ..Config::default()
    }
}

/// A noise-xx config with this keypair and, if given, this allowlist.
fn keyed(keypair: &Keypair, allow: Option<&[PeerId]>) -> Config {
    Config {
        keypair: Some(keypair.clone()),
        allowlist: allow.map(|ids| ids.iter().copied().collect::<HashSet<_>>()),
        ..noise()
    }
}

/// The 12 bytes a noise node on `network_id` must send, written out by hand from §1.
fn noise_preamble_bytes(network_id: u32) -> [u8; PREAMBLE_LEN] {
    let n = network_id.to_be_bytes();
    // Byte 6: feature bits, ADDRS and PEX understood (PROTOCOL.md §1, revisions 6, 7).
    [0x50, 0x32, 0x50, 0x56, 1, 1, 3, 0, n[0], n[1], n[2], n[3]]
}

/// A fresh static X25519 keypair, from snow.
fn static_key() -> snow::Keypair {
    snow::Builder::new(PARAMS.parse().unwrap())
        .generate_keypair()
        .unwrap()
}

/// The peer id a static public key stands for.
fn id_of(public: &[u8]) -> PeerId {
    PeerId::from_bytes(public.try_into().expect("32-byte public key"))
}

/// A snow handshake with `private` as static key and prologue = initiator's preamble
/// followed by responder's.
fn handshake(
    private: &[u8],
    initiator_preamble: &[u8],
    responder_preamble: &[u8],
    initiator: bool,
) -> snow::HandshakeState {
    let mut prologue = initiator_preamble.to_vec();
    prologue.extend_from_slice(responder_preamble);
    let builder = snow::Builder::new(PARAMS.parse().unwrap())
        .local_private_key(private)
        .unwrap()
        .prologue(&prologue)
        .unwrap();
    if initiator {
        builder.build_initiator().unwrap()
    } else {
        builder.build_responder().unwrap()
    }
}

/// Our next handshake message, with `payload`.
fn write_message(hs: &mut snow::HandshakeState, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = hs.write_message(payload, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// A handshake message as it crosses the wire: u16 big-endian length, then the bytes.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// Steps `nets` until `raw` holds `n` bytes (or the node closed), then takes them.
#[track_caller]
fn read_exact(nets: &mut [&mut Network], raw: &mut Raw, n: usize, log: &mut Log) -> Vec<u8> {
    log.extend(run_until(nets, TURNS, |_, _| {
        raw.pump();
        raw.inbox.len() >= n || raw.closed
    }));
    assert!(
        raw.inbox.len() >= n,
        "the node closed with {} of {n} bytes; events: {log:?}",
        raw.inbox.len()
    );
    raw.inbox.split_to(n).to_vec()
}

/// Reads one handshake message: its u16 length, then that many bytes.
#[track_caller]
fn read_message(nets: &mut [&mut Network], raw: &mut Raw, log: &mut Log) -> Vec<u8> {
    let len = read_exact(nets, raw, 2, log);
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    read_exact(nets, raw, len, log)
}

/// Steps `nets` until the node closed `raw`'s connection (shut it down: we read EOF),
/// then closes ours, which a graceful close waits for, and steps until the node freed
/// the connection.
#[track_caller]
fn until_closed(nets: &mut [&mut Network], raw: &mut Raw, log: &mut Log) {
    log.extend(run_until(nets, TURNS, |_, _| {
        raw.pump();
        raw.closed
    }));
    let _ = raw.stream.shutdown(Shutdown::Both);
    log.extend(run_until(nets, TURNS, |nets, _| {
        nets[0].stats().connections == 0
    }));
}

/// The `DialFailed` reasons of node `i`.
fn dial_failures(log: &Log, i: usize) -> Vec<(SocketAddr, CloseReason)> {
    of(log, i)
        .into_iter()
        .filter_map(|e| match e {
            Event::DialFailed { addr, reason } => Some((addr, reason)),
            _ => None,
        })
        .collect()
}

/// The `PeerConnected` events of node `i`, as (peer, direction).
fn connections(log: &Log, i: usize) -> Vec<(PeerId, Direction)> {
    of(log, i)
        .into_iter()
        .filter_map(|e| match e {
            Event::PeerConnected {
                peer, direction, ..
            } => Some((peer, direction)),
            _ => None,
        })
        .collect()
}

/// The payloads of node `i`'s `Message` events.
fn messages(log: &Log, i: usize) -> Vec<Bytes> {
    of(log, i)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { payload, .. } => Some(payload),
            _ => None,
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A payload of `len` bytes that is not all one byte.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

/// A raw peer past the handshake: its own snow transport, its own record parser.
struct NoisePeer {
    raw: Raw,
    transport: snow::TransportState,
    /// Plaintext opened from the node's records, not yet decoded as frames.
    plain: BytesMut,
    decoder: Decoder,
    /// The length field of every record received from the node.
    record_lens: Vec<usize>,
}

impl NoisePeer {
    fn new(raw: Raw, hs: snow::HandshakeState) -> NoisePeer {
        assert!(hs.is_handshake_finished());
        NoisePeer {
            raw,
            transport: hs.into_transport_mode().unwrap(),
            plain: BytesMut::new(),
            decoder: Decoder::new(u32::MAX as usize),
            record_lens: Vec::new(),
        }
    }

    /// One record (u16 length + ciphertext) carrying `plaintext`.
    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        assert!(plaintext.len() <= MAX_RECORD_PLAINTEXT);
        let mut out = vec![0u8; 2 + plaintext.len() + TAG_LEN];
        let n = self
            .transport
            .write_message(plaintext, &mut out[2..])
            .unwrap();
        assert_eq!(n, plaintext.len() + TAG_LEN);
        out[..2].copy_from_slice(&(n as u16).to_be_bytes());
        out
    }

    /// Sends `plaintext` in one record.
    fn send_record(&mut self, plaintext: &[u8]) {
        let record = self.seal(plaintext);
        self.raw.send(&record);
    }

    /// Sends `plaintext` in as many full records as it takes; returns how many.
    fn send_split(&mut self, plaintext: &[u8]) -> usize {
        let mut records = 0;
        for chunk in plaintext.chunks(MAX_RECORD_PLAINTEXT) {
            self.send_record(chunk);
            records += 1;
        }
        records
    }

    /// Pumps, opens every whole record the node sent (checking §3: length 16..=65535,
    /// never empty plaintext, and that it decrypts), and decodes the whole frames.
    fn frames(&mut self) -> Vec<Frame> {
        self.raw.pump();
        loop {
            let inbox = &mut self.raw.inbox;
            if inbox.len() < 2 {
                break;
            }
            let len = u16::from_be_bytes([inbox[0], inbox[1]]) as usize;
            assert!(
                (TAG_LEN..=MAX_RECORD).contains(&len),
                "record length {len} outside 16..=65535"
            );
            assert!(len > TAG_LEN, "the node sent a record with empty plaintext");
            if inbox.len() < 2 + len {
                break;
            }
            inbox.advance(2);
            let ciphertext = inbox.split_to(len);
            let mut plaintext = vec![0u8; len];
            let n = self
                .transport
                .read_message(&ciphertext, &mut plaintext)
                .expect("a record from the node must decrypt");
            assert_eq!(n, len - TAG_LEN);
            self.plain.extend_from_slice(&plaintext[..n]);
            self.record_lens.push(len);
        }
        let mut out = Vec::new();
        while let Some(decoded) = self.decoder.decode(&mut self.plain) {
            match decoded {
                Decoded::Frame(frame) => out.push(frame),
                Decoded::Rejected(reason) => panic!("node sent an invalid frame: {reason}"),
            }
        }
        out
    }

    /// Steps `nets` collecting frames until `done` holds for all frames collected.
    #[track_caller]
    fn collect(
        &mut self,
        nets: &mut [&mut Network],
        mut done: impl FnMut(&[Frame]) -> bool,
    ) -> (Vec<Frame>, Log) {
        let mut frames = Vec::new();
        let log = run_until(nets, TURNS, |_, _| {
            frames.extend(self.frames());
            done(&frames)
        });
        (frames, log)
    }
}

/// Connects to `net` as the XX initiator with static key `key`, its preamble's reserved
/// bytes set to `reserved`, sending `payloads` in messages 1 and 3, and checks every
/// byte the node sends during the handshake: its preamble, message 2's length and size,
/// nothing else. Returns the peer in transport mode and the node's events meanwhile.
fn initiate_with(
    net: &mut Network,
    addr: SocketAddr,
    key: &snow::Keypair,
    reserved: [u8; 2],
    payloads: (&[u8], &[u8]),
) -> (NoisePeer, Log) {
    let mut log = Log::new();
    let mut raw = Raw::connect(addr);
    let mut ours = Preamble::new(Security::NoiseXx, net.config().network_id).encode();
    ours[6..8].copy_from_slice(&reserved);
    raw.send(&ours);
    let theirs = read_exact(&mut [&mut *net], &mut raw, PREAMBLE_LEN, &mut log);
    assert_eq!(
        theirs,
        noise_preamble_bytes(net.config().network_id),
        "the node's preamble"
    );
    // The responder cannot say anything before message 1: its prologue holds our preamble
    // and it only answers.
    assert!(
        raw.inbox.is_empty(),
        "bytes before message 1: {:?}",
        raw.inbox
    );

    let mut hs = handshake(&key.private, &ours, &theirs, true);
    let msg1 = write_message(&mut hs, payloads.0);
    assert_eq!(msg1.len(), MSG1_LEN + payloads.0.len());
    raw.send(&framed(&msg1));

    let len = read_exact(&mut [&mut *net], &mut raw, 2, &mut log);
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    assert_eq!(
        len, MSG2_LEN,
        "XX message 2 with an empty payload is 96 bytes"
    );
    let msg2 = read_exact(&mut [&mut *net], &mut raw, len, &mut log);
    let mut payload = vec![0u8; len];
    let n = hs
        .read_message(&msg2, &mut payload)
        .expect("message 2 must verify under the prologue of both preambles");
    assert_eq!(n, 0, "payloads are empty in version 1");
    assert_eq!(
        hs.get_remote_static(),
        Some(&net.local_id().as_bytes()[..]),
        "the node's static key is its peer id"
    );

    let msg3 = write_message(&mut hs, payloads.1);
    assert_eq!(msg3.len(), MSG3_LEN + payloads.1.len());
    raw.send(&framed(&msg3));
    let me = id_of(&key.public);
    log.extend(run_until(&mut [&mut *net], TURNS, |_, log| {
        raw.pump();
        connected_to(log, 0, me) || raw.closed
    }));
    assert!(connected_to(&log, 0, me), "no PeerConnected: {log:?}");
    raw.pump();
    assert!(
        raw.inbox.is_empty(),
        "the node sent {} bytes it had no reason to send",
        raw.inbox.len()
    );
    (NoisePeer::new(raw, hs), log)
}

/// [`initiate_with`] with empty payloads, as version 1 sends.
fn initiate(net: &mut Network, addr: SocketAddr, key: &snow::Keypair) -> (NoisePeer, Log) {
    initiate_with(net, addr, key, [0, 0], (&[], &[]))
}

/// `net` dials a raw listener; returns the accepted raw side, after checking that the
/// node sent exactly its preamble and nothing before ours (its prologue needs ours).
fn dialled(net: &mut Network, listener: &RawListener) -> (Raw, Log) {
    net.dial(listener.addr).unwrap();
    let (mut raw, mut log) = listener.accept(&mut [&mut *net]);
    let theirs = read_exact(&mut [&mut *net], &mut raw, PREAMBLE_LEN, &mut log);
    assert_eq!(theirs, noise_preamble_bytes(net.config().network_id));
    assert!(raw.inbox.is_empty(), "bytes before our preamble");
    (raw, log)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("p2p-noise-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node with the keypair at `path`, loaded or created there.
fn node_with_key_file(path: &Path) -> (Network, SocketAddr) {
    let keypair = Keypair::load_or_generate(path).unwrap();
    listening(keyed(&keypair, None))
}

/// A transparent TCP relay between a dialling node and a listening one that records
/// every byte it forwards, to check what crosses the wire between two nodes.
struct Relay {
    dialler: Raw,
    listener: Raw,
    /// Every byte from the dialler to the listener, and back.
    up: Vec<u8>,
    down: Vec<u8>,
}

impl Relay {
    fn pump(&mut self) {
        self.dialler.pump();
        let bytes = self.dialler.inbox.split();
        self.up.extend_from_slice(&bytes);
        self.listener.send(&bytes);
        self.listener.pump();
        let bytes = self.listener.inbox.split();
        self.down.extend_from_slice(&bytes);
        self.dialler.send(&bytes);
    }
}

/// Parses a whole recorded noise stream: preamble, the handshake messages of one side
/// (with their exact sizes), then records, each 17..=65535 bytes. Returns the count
/// of records.
fn parse_stream(mut stream: &[u8], handshake_lens: &[usize], network_id: u32) -> usize {
    assert_eq!(stream[..PREAMBLE_LEN], noise_preamble_bytes(network_id));
    stream = &stream[PREAMBLE_LEN..];
    for &want in handshake_lens {
        let len = u16::from_be_bytes([stream[0], stream[1]]) as usize;
        assert_eq!(len, want, "handshake message length");
        stream = &stream[2 + len..];
    }
    let mut records = 0;
    while !stream.is_empty() {
        let len = u16::from_be_bytes([stream[0], stream[1]]) as usize;
        assert!((TAG_LEN + 1..=MAX_RECORD).contains(&len), "record of {len}");
        assert!(stream.len() >= 2 + len, "a record cut short");
        stream = &stream[2 + len..];
        records += 1;
    }
    records
}

// ---------------------------------------------------------------------------------------
// 1. The wire, against a peer running snow directly
// ---------------------------------------------------------------------------------------

#[test]
fn snow_initiator_sees_the_spec_bytes_and_exchanges_records() {
    let (mut net, addr) = listening(noise());
    let key = static_key();
    let me = id_of(&key.public);
    // Feature bits this version does not know, and the reserved byte, are ignored on
    // receive, but they enter the prologue as they crossed the wire; they also make the
    // two preambles differ, so their order in it matters. (0xAA leaves bit 0, ADDRS,
    // clear: this peer is told nothing it did not ask for.)
    let (mut peer, log) = initiate_with(&mut net, addr, &key, [0xAA, 0xCD], (&[], &[]));
    // The id the node reports is our static key, proven by message 3.
    assert_eq!(connections(&log, 0), vec![(me, Direction::Inbound)]);
    assert_eq!(net.peers()[0].id, me);

    // One MESSAGE frame in one record.
    peer.send_record(&encode(&Frame::Message(Bytes::from_static(b"one record"))));
    // A record with empty plaintext (L = 16) is accepted, though a sender never sends one.
    peer.send_record(&[]);
    // Two frames in one record.
    let mut two = encode(&Frame::Message(Bytes::from_static(b"first of two")));
    two.extend(encode(&Frame::Message(Bytes::from_static(
        b"second of two",
    ))));
    peer.send_record(&two);
    // One 150 KB frame over three records, the first two full (L = 65535).
    let big = pattern(150_000, 1);
    let big_frame = encode(&Frame::Message(Bytes::from(big.clone())));
    assert_eq!(peer.send_split(&big_frame), 3);
    // A frame split at an awkward place: its length field across two records.
    let tail = encode(&Frame::Message(Bytes::from_static(b"split header")));
    peer.send_record(&tail[..2]);
    peer.send_record(&tail[2..]);

    let want: Vec<Bytes> = vec![
        Bytes::from_static(b"one record"),
        Bytes::from_static(b"first of two"),
        Bytes::from_static(b"second of two"),
        Bytes::from(big),
        Bytes::from_static(b"split header"),
    ];
    let log = run_until(&mut [&mut net], TURNS, |_, log| {
        peer.raw.pump();
        messages(log, 0).len() >= want.len()
    });
    assert_eq!(messages(&log, 0), want);
    assert!(
        log.iter()
            .all(|(_, e)| matches!(e, Event::Message { peer, .. } if *peer == me)),
        "{log:?}"
    );
    assert!(net.is_connected(&me));

    // The node's side: frames come back in records we open with our own keys.
    let big_out = pattern(150_000, 2);
    net.send(&me, Bytes::from_static(b"from the node")).unwrap();
    net.send(&me, Bytes::from(big_out.clone())).unwrap();
    net.send(&me, Bytes::new()).unwrap();
    let (frames, _) = peer.collect(&mut [&mut net], |f| f.len() >= 3);
    assert_eq!(
        frames,
        vec![
            Frame::Message(Bytes::from_static(b"from the node")),
            Frame::Message(Bytes::from(big_out)),
            Frame::Message(Bytes::new()),
        ]
    );
    // 150 KB cannot fit in fewer than three records; each was checked by `frames`.
    assert!(peer.record_lens.len() >= 3, "{:?}", peer.record_lens);
    assert!(peer.plain.is_empty());
}

#[test]
fn snow_responder_sees_the_spec_bytes_and_exchanges_records() {
    let (mut net, _) = listening(noise());
    let listener = RawListener::bind();
    let (mut raw, mut log) = dialled(&mut net, &listener);
    let theirs = noise_preamble_bytes(NET);
    // Unknown feature bits and the reserved byte are ignored on receive but enter the
    // prologue as they crossed the wire (bit 0, ADDRS, clear).
    let mut ours = Preamble::new(Security::NoiseXx, NET).encode();
    ours[6..8].copy_from_slice(&[0xAA, 0xCD]);
    raw.send(&ours);

    let msg1 = read_message(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(msg1.len(), MSG1_LEN, "XX message 1 with an empty payload");
    let key = static_key();
    let mut hs = handshake(&key.private, &theirs, &ours, false);
    let mut payload = vec![0u8; 1024];
    assert_eq!(hs.read_message(&msg1, &mut payload).unwrap(), 0);
    let msg2 = write_message(&mut hs, &[]);
    assert_eq!(msg2.len(), MSG2_LEN);
    raw.send(&framed(&msg2));

    let msg3 = read_message(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(msg3.len(), MSG3_LEN, "XX message 3 with an empty payload");
    let n = hs
        .read_message(&msg3, &mut payload)
        .expect("message 3 must verify");
    assert_eq!(n, 0);
    assert_eq!(hs.get_remote_static(), Some(&net.local_id().as_bytes()[..]));
    let me = id_of(&key.public);
    // The node is done once it read message 2, maybe before we read message 3.
    if !connected_to(&log, 0, me) {
        log.extend(run_until(&mut [&mut net], TURNS, |_, log| {
            connected_to(log, 0, me)
        }));
    }
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerConnected {
            peer: me,
            addr: listener.addr,
            direction: Direction::Outbound
        }]
    );

    let mut peer = NoisePeer::new(raw, hs);
    assert!(peer.raw.inbox.is_empty());
    net.send(&me, Bytes::from_static(b"to the responder"))
        .unwrap();
    let (frames, _) = peer.collect(&mut [&mut net], |f| !f.is_empty());
    assert_eq!(
        frames,
        vec![Frame::Message(Bytes::from_static(b"to the responder"))]
    );
    peer.send_record(&encode(&Frame::Request {
        id: 7,
        payload: Bytes::from_static(b"question"),
    }));
    let log = run_until(&mut [&mut net], TURNS, |_, log| {
        peer.raw.pump();
        has(log, 0, |e| matches!(e, Event::Request { .. }))
    });
    let Some(Event::Request {
        peer: from,
        id,
        payload,
    }) = of(&log, 0).into_iter().next()
    else {
        panic!("{log:?}");
    };
    assert_eq!((from, id.0, &payload[..]), (me, 7, &b"question"[..]));
    net.respond(&me, id, Bytes::from_static(b"answer")).unwrap();
    let (frames, _) = peer.collect(&mut [&mut net], |f| !f.is_empty());
    assert_eq!(
        frames,
        vec![Frame::Response {
            id: 7,
            payload: Bytes::from_static(b"answer")
        }]
    );
}

#[test]
fn a_record_in_the_same_write_as_message_3_is_delivered() {
    let (mut net, addr) = listening(noise());
    let key = static_key();
    let me = id_of(&key.public);
    let mut raw = Raw::connect(addr);
    let ours = Preamble::new(Security::NoiseXx, NET).encode();
    let mut log = Log::new();
    let theirs = read_exact(&mut [&mut net], &mut raw, PREAMBLE_LEN, &mut log);
    let mut hs = handshake(&key.private, &ours, &theirs, true);
    // Our preamble and message 1 in one write, as §1 allows.
    let mut first = ours.to_vec();
    first.extend(framed(&write_message(&mut hs, &[])));
    raw.send(&first);
    let msg2 = read_message(&mut [&mut net], &mut raw, &mut log);
    hs.read_message(&msg2, &mut [0u8; 1024]).unwrap();
    let mut bytes = framed(&write_message(&mut hs, &[]));
    let mut peer = NoisePeer::new(raw, hs);
    bytes.extend(peer.seal(&encode(&Frame::Message(Bytes::from_static(b"with msg3")))));
    peer.raw.send(&bytes);
    log.extend(run_until(&mut [&mut net], TURNS, |_, log| {
        peer.raw.pump();
        !messages(log, 0).is_empty()
    }));
    assert_eq!(connections(&log, 0), vec![(me, Direction::Inbound)]);
    assert_eq!(messages(&log, 0), vec![Bytes::from_static(b"with msg3")]);
}

#[test]
fn handshake_payload_bytes_are_ignored() {
    let (mut net, addr) = listening(noise());
    let key = static_key();
    let (mut peer, log) = initiate_with(
        &mut net,
        addr,
        &key,
        [0, 0],
        (b"hello in msg1", b"and msg3"),
    );
    assert_eq!(
        connections(&log, 0),
        vec![(id_of(&key.public), Direction::Inbound)]
    );
    peer.send_record(&encode(&Frame::Message(Bytes::from_static(b"after"))));
    let log = run_until(&mut [&mut net], TURNS, |_, log| {
        peer.raw.pump();
        !messages(log, 0).is_empty()
    });
    assert_eq!(messages(&log, 0), vec![Bytes::from_static(b"after")]);
}

// ---------------------------------------------------------------------------------------
// 2. Records that fail to open
// ---------------------------------------------------------------------------------------

/// Connects a snow peer, has it send `bad` (made from its transport), and checks the
/// node closes with `DecryptFailed` and delivers no message.
fn decrypt_fails(bad: impl FnOnce(&mut NoisePeer, &mut Network)) {
    let (mut net, addr) = listening(noise());
    let key = static_key();
    let me = id_of(&key.public);
    let (mut peer, _) = initiate(&mut net, addr, &key);
    bad(&mut peer, &mut net);
    let mut log = Log::new();
    until_closed(&mut [&mut net], &mut peer.raw, &mut log);
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: me,
            reason: CloseReason::DecryptFailed
        }]
    );
    assert!(!net.is_connected(&me));
    assert!(net.peers().is_empty());
}

#[test]
fn a_tampered_record_closes_with_decrypt_failed() {
    // A flipped ciphertext byte.
    decrypt_fails(|peer, _| {
        let mut record = peer.seal(&encode(&Frame::Message(Bytes::from_static(b"x"))));
        record[2 + 3] ^= 0x01;
        peer.raw.send(&record);
    });
    // A flipped tag byte.
    decrypt_fails(|peer, _| {
        let mut record = peer.seal(&encode(&Frame::Message(Bytes::from_static(b"x"))));
        let last = record.len() - 1;
        record[last] ^= 0x80;
        peer.raw.send(&record);
    });
    // A record shorter than the tag.
    decrypt_fails(|peer, _| {
        let mut record = vec![0, 15];
        record.extend_from_slice(&[0x55; 15]);
        peer.raw.send(&record);
    });
    // A record replayed after it was accepted: the nonce moved on.
    decrypt_fails(|peer, net| {
        let record = peer.seal(&encode(&Frame::Message(Bytes::from_static(b"once"))));
        peer.raw.send(&record);
        let log = run_until(&mut [&mut *net], TURNS, |_, log| {
            peer.raw.pump();
            !messages(log, 0).is_empty()
        });
        assert_eq!(messages(&log, 0), vec![Bytes::from_static(b"once")]);
        peer.raw.send(&record);
    });
}

// ---------------------------------------------------------------------------------------
// 3. Preambles refused before any noise message
// ---------------------------------------------------------------------------------------

/// A raw peer dials the node and sends `first`, at once (`eager`) or after reading the
/// node's preamble: the node sends its 12-byte preamble, nothing more (no noise
/// message), and closes, with no event.
fn inbound_refused(first: &[u8], eager: bool) {
    let (mut net, addr) = listening(noise());
    let mut raw = Raw::connect(addr);
    let mut log = Log::new();
    if eager {
        raw.send(first);
    }
    let theirs = read_exact(&mut [&mut net], &mut raw, PREAMBLE_LEN, &mut log);
    assert_eq!(theirs, noise_preamble_bytes(NET));
    if !eager {
        raw.send(first);
    }
    until_closed(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(
        raw.received, PREAMBLE_LEN,
        "nothing but the preamble after a failed check"
    );
    assert!(log.is_empty(), "an inbound refusal has no event: {log:?}");
    assert_eq!(net.stats().failed_handshakes, 1);
}

/// The node dials a raw listener that answers `reply`: `DialFailed` with the reason
/// returned, and the raw side got the node's 12-byte preamble and nothing else.
fn outbound_refused(reply: &[u8]) -> CloseReason {
    let (mut net, _) = listening(noise());
    let listener = RawListener::bind();
    let (mut raw, mut log) = dialled(&mut net, &listener);
    raw.send(reply);
    until_closed(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(
        raw.received, PREAMBLE_LEN,
        "nothing but the preamble after a failed check"
    );
    assert!(connections(&log, 0).is_empty(), "{log:?}");
    let mut failures = dial_failures(&log, 0);
    assert_eq!(failures.len(), 1, "one DialFailed: {log:?}");
    let (addr, reason) = failures.pop().unwrap();
    assert_eq!(addr, listener.addr);
    reason
}

/// A noise message 1 (under some prologue), to follow a bad preamble: a node that
/// went on would answer it.
fn some_msg1() -> Vec<u8> {
    let p = Preamble::new(Security::NoiseXx, NET).encode();
    let mut hs = handshake(&static_key().private, &p, &p, true);
    framed(&write_message(&mut hs, &[]))
}

#[test]
fn a_wrong_network_id_is_refused_before_any_noise_message() {
    let mut first = Preamble::new(Security::NoiseXx, NET + 1).encode().to_vec();
    first.extend(some_msg1());
    inbound_refused(&first, false);
    inbound_refused(&first, true);

    let reason = outbound_refused(&Preamble::new(Security::NoiseXx, NET + 1).encode());
    assert_eq!(
        reason,
        CloseReason::Preamble(PreambleError::NetworkMismatch {
            ours: NET,
            theirs: NET + 1
        })
    );
}

#[test]
fn a_plaintext_peer_is_refused_before_any_noise_message() {
    // What a plaintext node sends: its preamble, security 0, then its claimed id.
    inbound_refused(&hello(NET, id(0x42)), false);
    inbound_refused(&hello(NET, id(0x42)), true);
    let reason = outbound_refused(&hello(NET, id(0x42)));
    assert_eq!(
        reason,
        CloseReason::Preamble(PreambleError::SecurityMismatch {
            ours: Security::NoiseXx,
            theirs: 0
        })
    );
}

// ---------------------------------------------------------------------------------------
// 4. Handshake messages that fail
// ---------------------------------------------------------------------------------------

#[test]
fn an_empty_message_1_fails_the_inbound_handshake() {
    let (mut net, addr) = listening(noise());
    let mut raw = Raw::connect(addr);
    let mut first = Preamble::new(Security::NoiseXx, NET).encode().to_vec();
    first.extend_from_slice(&[0, 0]);
    raw.send(&first);
    let mut log = Log::new();
    until_closed(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(
        raw.received, PREAMBLE_LEN,
        "no message 2 to an empty message 1"
    );
    assert!(log.is_empty(), "{log:?}");
    assert_eq!(net.stats().failed_handshakes, 1);
}

#[test]
fn a_tampered_message_3_fails_the_inbound_handshake() {
    let (mut net, addr) = listening(noise());
    let key = static_key();
    let mut raw = Raw::connect(addr);
    let ours = Preamble::new(Security::NoiseXx, NET).encode();
    raw.send(&ours);
    let mut log = Log::new();
    let theirs = read_exact(&mut [&mut net], &mut raw, PREAMBLE_LEN, &mut log);
    let mut hs = handshake(&key.private, &ours, &theirs, true);
    raw.send(&framed(&write_message(&mut hs, &[])));
    let msg2 = read_message(&mut [&mut net], &mut raw, &mut log);
    hs.read_message(&msg2, &mut [0u8; 1024]).unwrap();
    let mut msg3 = write_message(&mut hs, &[]);
    msg3[10] ^= 0x04; // inside the sealed static key
    raw.send(&framed(&msg3));
    until_closed(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(raw.received, PREAMBLE_LEN + 2 + MSG2_LEN);
    assert!(log.is_empty(), "no PeerConnected, no event: {log:?}");
    assert!(net.peers().is_empty());
    assert_eq!(net.stats().failed_handshakes, 1);
}

#[test]
fn a_wrong_prologue_fails_the_inbound_handshake() {
    // The initiator binds the node's preamble as if its reserved bytes were set: the
    // node's message 2 does not verify for it (the node binds what it sent), and the
    // node refuses the message 3 such a peer can only make up.
    let (mut net, addr) = listening(noise());
    let key = static_key();
    let mut raw = Raw::connect(addr);
    let ours = Preamble::new(Security::NoiseXx, NET).encode();
    raw.send(&ours);
    let mut log = Log::new();
    let mut theirs = read_exact(&mut [&mut net], &mut raw, PREAMBLE_LEN, &mut log);
    theirs[7] = 1;
    let mut hs = handshake(&key.private, &ours, &theirs, true);
    raw.send(&framed(&write_message(&mut hs, &[])));
    let msg2 = read_message(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(msg2.len(), MSG2_LEN);
    assert!(hs.read_message(&msg2, &mut [0u8; 1024]).is_err());
    // We cannot finish; a message 3 of the right size but not sealed under the
    // transcript is refused.
    raw.send(&framed(&[0x11; MSG3_LEN]));
    until_closed(&mut [&mut net], &mut raw, &mut log);
    assert!(log.is_empty(), "{log:?}");
    assert_eq!(net.stats().failed_handshakes, 1);
}

/// The node dials a snow responder that reads message 1 and answers `msg2(hs)`
/// (framed as given): the dial fails with the reason returned, no message 3 sent.
fn outbound_handshake_fails(
    reserved: [u8; 2],
    prologue_reserved: [u8; 2],
    msg2: impl FnOnce(&mut snow::HandshakeState) -> Vec<u8>,
) -> CloseReason {
    let (mut net, _) = listening(noise());
    let listener = RawListener::bind();
    let (mut raw, mut log) = dialled(&mut net, &listener);
    let mut ours = Preamble::new(Security::NoiseXx, NET).encode();
    ours[6..8].copy_from_slice(&reserved);
    raw.send(&ours);
    let msg1 = read_message(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(msg1.len(), MSG1_LEN);
    let mut bound = ours;
    bound[6..8].copy_from_slice(&prologue_reserved);
    let mut hs = handshake(
        &static_key().private,
        &noise_preamble_bytes(NET),
        &bound,
        false,
    );
    hs.read_message(&msg1, &mut [0u8; 1024]).unwrap();
    let reply = msg2(&mut hs);
    raw.send(&reply);
    until_closed(&mut [&mut net], &mut raw, &mut log);
    assert_eq!(
        raw.received,
        PREAMBLE_LEN + 2 + MSG1_LEN,
        "no message 3 after a failed message 2"
    );
    assert!(connections(&log, 0).is_empty(), "{log:?}");
    let mut failures = dial_failures(&log, 0);
    assert_eq!(failures.len(), 1, "one DialFailed: {log:?}");
    let (addr, reason) = failures.pop().unwrap();
    assert_eq!(addr, listener.addr);
    assert_eq!(net.stats().failed_handshakes, 1);
    reason
}

#[test]
fn a_bad_message_2_fails_the_dial_with_handshake_failed() {
    // A flipped byte in the sealed static key.
    let reason = outbound_handshake_fails([0, 0], [0, 0], |hs| {
        let mut msg2 = write_message(hs, &[]);
        msg2[DH_LEN + 5] ^= 0x20;
        framed(&msg2)
    });
    assert_eq!(reason, CloseReason::HandshakeFailed);
    // A message 2 of length 0.
    let reason = outbound_handshake_fails([0, 0], [0, 0], |_| vec![0, 0]);
    assert_eq!(reason, CloseReason::HandshakeFailed);
    // A message 2 too short to hold even the ephemeral key.
    let reason = outbound_handshake_fails([0, 0], [0, 0], |_| framed(&[7; 20]));
    assert_eq!(reason, CloseReason::HandshakeFailed);
    // A responder that binds its reserved bytes as zero although it sent them set:
    // the prologue must be the preambles as they crossed the wire.
    let reason =
        outbound_handshake_fails([0x12, 0x34], [0, 0], |hs| framed(&write_message(hs, &[])));
    assert_eq!(reason, CloseReason::HandshakeFailed);
}

// ---------------------------------------------------------------------------------------
// 5. Peer ids proven by the handshake, from key files
// ---------------------------------------------------------------------------------------

#[test]
fn proven_peer_ids_match_the_key_files_across_a_restart() {
    let dir = TempDir::new();
    let (path_a, path_b) = (dir.path("a.key"), dir.path("b.key"));
    let (mut a, _) = node_with_key_file(&path_a);
    let (mut b, b_addr) = node_with_key_file(&path_b);
    let id_a = Keypair::load(&path_a).unwrap().peer_id();
    let id_b = Keypair::load(&path_b).unwrap().peer_id();
    assert_ne!(id_a, id_b);
    assert_eq!((a.local_id(), b.local_id()), (id_a, id_b));

    let log = connect(&mut a, &mut b, b_addr);
    assert_eq!(connections(&log, 0), vec![(id_b, Direction::Outbound)]);
    assert_eq!(connections(&log, 1), vec![(id_a, Direction::Inbound)]);

    // A shuts down and starts again from the same file: the same id is proven.
    a.shutdown();
    run_until(&mut [&mut a, &mut b], TURNS, |nets, log| {
        nets[0].is_shut_down()
            && has(
                log,
                1,
                |e| matches!(e, Event::PeerDisconnected { peer, .. } if *peer == id_a),
            )
    });
    drop(a);
    let (mut a, a_addr) = node_with_key_file(&path_a);
    assert_eq!(a.local_id(), id_a);
    // This time B dials.
    let log = connect(&mut b, &mut a, a_addr);
    assert_eq!(connections(&log, 0), vec![(id_a, Direction::Outbound)]);
    assert_eq!(connections(&log, 1), vec![(id_b, Direction::Inbound)]);
    assert_eq!(Keypair::load(&path_a).unwrap().peer_id(), id_a);
}

// ---------------------------------------------------------------------------------------
// 6. The allowlist, both ways
// ---------------------------------------------------------------------------------------

#[test]
fn the_allowlist_accepts_listed_peers_both_ways() {
    let (ka, kb) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (mut a, a_addr) = listening(keyed(&ka, Some(&[kb.peer_id()])));
    let (mut b, b_addr) = listening(keyed(&kb, Some(&[ka.peer_id()])));
    // A dials B.
    connect(&mut a, &mut b, b_addr);
    assert!(a.disconnect(&kb.peer_id()));
    run_until(&mut [&mut a, &mut b], TURNS, |nets, _| {
        nets[0].stats().connections == 0 && nets[1].stats().connections == 0
    });
    // B dials A.
    let log = connect(&mut b, &mut a, a_addr);
    assert_eq!(
        connections(&log, 1),
        vec![(kb.peer_id(), Direction::Inbound)]
    );
}

#[test]
fn the_allowlist_refuses_unlisted_peers_both_ways() {
    let stranger = Keypair::generate().unwrap().peer_id();
    let (ka, kb) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (mut a, a_addr) = listening(keyed(&ka, Some(&[stranger])));
    let (mut b, b_addr) = listening(keyed(&kb, None));

    // A dials B, which it does not allow: the dial ends NotAllowed once B is proven.
    a.dial(b_addr).unwrap();
    let log = run_until(&mut [&mut a, &mut b], TURNS, |nets, log| {
        !dial_failures(log, 0).is_empty()
            && nets[0].stats().connections == 0
            && nets[1].stats().connections == 0
    });
    assert_eq!(
        dial_failures(&log, 0),
        vec![(b_addr, CloseReason::NotAllowed)]
    );
    assert!(connections(&log, 0).is_empty(), "{log:?}");
    assert!(!a.is_connected(&kb.peer_id()));
    assert!(!b.is_connected(&ka.peer_id()));

    // B dials A: A closes it, never announcing B.
    b.dial(a_addr).unwrap();
    let log = run_until(&mut [&mut a, &mut b], TURNS, |nets, log| {
        (has(log, 1, |e| matches!(e, Event::PeerDisconnected { .. }))
            || !dial_failures(log, 1).is_empty())
            && nets[0].stats().connections == 0
            && nets[1].stats().connections == 0
    });
    assert!(of(&log, 0).is_empty(), "A reports nothing: {log:?}");
    assert!(a.peers().is_empty());
    assert!(!b.is_connected(&ka.peer_id()));
}

// ---------------------------------------------------------------------------------------
// 7. Application traffic between noise nodes, encrypted
// ---------------------------------------------------------------------------------------

#[test]
fn requests_responses_and_broadcasts_flow_encrypted() {
    const REQUEST: &[u8] = b"request payload that must not cross in clear";
    const RESPONSE: &[u8] = b"response payload that must not cross in clear";
    const MESSAGE: &[u8] = b"message payload that must not cross in clear";
    const BROADCAST: &[u8] = b"broadcast payload that must not cross in clear";

    let (mut a, _) = listening(noise());
    let (mut b, b_addr) = listening(noise());
    let (mut c, c_addr) = listening(noise());
    let (id_a, id_b) = (a.local_id(), b.local_id());

    // A reaches B through a relay that records the wire; B dials C directly.
    let through = RawListener::bind();
    a.dial(through.addr).unwrap();
    let (dialler, _) = through.accept(&mut [&mut a, &mut b]);
    let mut relay = Relay {
        dialler,
        listener: Raw::connect(b_addr),
        up: Vec::new(),
        down: Vec::new(),
    };
    run_until(&mut [&mut a, &mut b], TURNS, |_, log| {
        relay.pump();
        connected_to(log, 0, id_b) && connected_to(log, 1, id_a)
    });
    connect(&mut b, &mut c, c_addr);

    // Request and response.
    let rid = a.request(&id_b, REQUEST).unwrap();
    let log = run_until(&mut [&mut a, &mut b, &mut c], TURNS, |_, log| {
        relay.pump();
        has(log, 1, |e| matches!(e, Event::Request { .. }))
    });
    let Some(Event::Request { peer, id, payload }) = of(&log, 1)
        .into_iter()
        .find(|e| matches!(e, Event::Request { .. }))
    else {
        unreachable!()
    };
    assert_eq!((peer, &payload[..]), (id_a, REQUEST));
    b.respond(&id_a, id, RESPONSE).unwrap();
    b.send(&id_a, MESSAGE).unwrap();
    let log = run_until(&mut [&mut a, &mut b, &mut c], TURNS, |_, log| {
        relay.pump();
        has(log, 0, |e| matches!(e, Event::Response { .. })) && !messages(log, 0).is_empty()
    });
    assert!(has(&log, 0, |e| *e
        == Event::Response {
            peer: id_b,
            id: rid,
            payload: Bytes::from_static(RESPONSE)
        }));
    assert_eq!(messages(&log, 0), vec![Bytes::from_static(MESSAGE)]);

    // A broadcast from A over the chain A - B - C.
    let gid = a.broadcast(BROADCAST).unwrap();
    let delivered = |log: &Log, i: usize| {
        count(
            log,
            i,
            |e| matches!(e, Event::Broadcast { id, payload, .. } if *id == gid && payload[..] == *BROADCAST),
        )
    };
    let mut log = run_until(&mut [&mut a, &mut b, &mut c], TURNS, |_, log| {
        relay.pump();
        delivered(log, 1) == 1 && delivered(log, 2) == 1
    });
    log.extend(run_turns(&mut [&mut a, &mut b, &mut c], 5));
    relay.pump();
    assert_eq!(
        (delivered(&log, 0), delivered(&log, 1), delivered(&log, 2)),
        (0, 1, 1)
    );
    assert!(has(
        &log,
        2,
        |e| matches!(e, Event::Broadcast { from, .. } if *from == id_b)
    ));
    assert!(has(
        &log,
        1,
        |e| matches!(e, Event::Broadcast { from, .. } if *from == id_a)
    ));

    // On the wire between A and B: preambles, handshake messages, then records only;
    // no payload in clear.
    let up_records = parse_stream(&relay.up, &[MSG1_LEN, MSG3_LEN], NET);
    let down_records = parse_stream(&relay.down, &[MSG2_LEN], NET);
    assert!(up_records >= 2, "request and broadcast: {up_records}");
    assert!(down_records >= 1, "response and message: {down_records}");
    for payload in [REQUEST, RESPONSE, MESSAGE, BROADCAST] {
        assert!(!contains(&relay.up, payload), "payload in clear from A");
        assert!(!contains(&relay.down, payload), "payload in clear from B");
    }
}
