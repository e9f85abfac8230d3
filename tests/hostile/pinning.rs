//! Finding 2: memory pinned by small payloads.
//!
//! An attacker sends small GOSSIP frames, each written together with a large MESSAGE,
//! so that nearly every read chunk of the node carries one gossip; the node relays the
//! gossips to a peer that never reads, whose queue keeps them. Before the fix each
//! payload was a slice of its 64 KiB read chunk and kept all of it alive in that queue:
//! memory held was hundreds of times what the write cap counted. The heap is measured
//! with this binary's counting allocator, each test in a process of its own.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::Bytes;
use p2p::wire::Frame;
use p2p::{Config, Event, Network, PeerId};
use socket2::{Domain, Socket, Type};

use crate::common::*;
use crate::support::{deadline, heap, host, in_own_process, raw_from};

/// Payload of each relayed gossip: the 27 bytes.
const GOSSIP_PAYLOAD: usize = 27;
/// The MESSAGE written beside each gossip, so that each read chunk holds about one.
const FILLER: usize = 60_000;
/// The broadcast queued for the victim first, which keeps the relays behind it queued.
const FILL: usize = 4 << 20;
/// Wire bytes of one relayed gossip: len, kind, id, hops, payload.
const GOSSIP_WIRE: usize = 4 + 1 + 16 + 1 + GOSSIP_PAYLOAD;
/// Memory held per byte the write cap counts, at most: a queued frame also costs its
/// queue entries (two `Bytes` handles, with the deque's growth), the handle of its
/// shared payload and its id in the gossip cache; none of that grows with a read chunk.
const HELD_PER_COUNTED: usize = 8;
/// Held beyond that: allocations that do not grow with the frames (hash table and
/// deque doubling, the read buffers of the connections).
const HELD_SLACK: usize = 1 << 20;

/// Polls `net` once, dropping its events: the application takes them at once.
fn step(net: &mut Network, events: &mut Vec<Event>) {
    net.poll(events, Some(TURN)).expect("poll");
    events.clear();
}

/// A peer whose receive buffer is small and that never reads once connected: the
/// node's queue to it grows as soon as the kernel's buffers are full.
fn non_reader(net: &mut Network, addr: SocketAddr, me: PeerId) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    socket
        .bind(&SocketAddr::new(host(3), 0).into())
        .expect("bind");
    socket.connect(&addr.into()).expect("connect");
    let mut raw = Raw::from_stream(socket.into());
    raw.send(&hello(net.config().network_id, me));
    run_until(&mut [net], 400, |_, log| connected_to(log, 0, me));
    raw.stream
}

/// The bytes the write cap counts for the `gossips` relays queued last for the
/// victim, after checking that none of them left: the filling broadcast queued before
/// them has not all been written yet. (Under noise the records they take add a little.)
fn all_relays_queued(net: &Network, victim: &PeerId, gossips: usize, fill: usize) -> usize {
    let written = net.peer_stats(victim).expect("victim connected").bytes_out;
    assert!(
        written < fill as u64,
        "the victim's queue drained: {written} bytes written"
    );
    gossips * GOSSIP_WIRE
}

/// Frames queued so far for `peer`.
fn relayed(net: &Network, peer: &PeerId) -> u64 {
    net.peer_stats(peer).expect("peer connected").frames_out
}

/// Runs `step` (which returns the bytes queued for the victim) until that figure is
/// above zero and has not moved for many turns: the kernel's buffers towards the
/// victim are full, and what is queued from now on stays queued.
fn settle_queue(victim: &PeerId, mut step: impl FnMut() -> usize) {
    let end = deadline(30);
    let (mut last, mut still) = (0, 0);
    for _ in 0..5_000 {
        let queued = step();
        still = if queued == last && queued > 0 {
            still + 1
        } else {
            0
        };
        last = queued;
        if still == 50 {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "queue to {victim:?} never settled"
        );
    }
    panic!("queue to {victim:?} never settled");
}

/// Writes all of `bytes` to a non-blocking stream, polling `net` while the kernel is full.
fn write_all(net: &mut Network, stream: &mut TcpStream, bytes: &[u8], events: &mut Vec<Event>) {
    let mut pos = 0;
    let end = deadline(60);
    for _ in 0..1_000_000 {
        match stream.write(&bytes[pos..]) {
            Ok(n) => pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => step(net, events),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("attacker write: {e}"),
        }
        if pos == bytes.len() {
            return;
        }
        assert!(std::time::Instant::now() < end, "write did not finish");
    }
    panic!("write did not finish in its turns");
}

/// The attack in plaintext: `gossips` relayed to a non-reader; returns the heap the
/// node gained and the bytes its write cap counted for them.
fn relay_to_non_reader(gossips: usize) -> (usize, usize) {
    let (mut net, addr) = listening(lifted(plain()));
    let mut events = Vec::new();
    let (attacker_id, victim_id) = (id(1), id(2));
    let mut attacker = raw_from(host(2), addr);
    attacker.send(&hello(net.config().network_id, attacker_id));
    run_until(&mut [&mut net], 400, |_, log| {
        connected_to(log, 0, attacker_id)
    });
    let _victim = non_reader(&mut net, addr, victim_id);

    // Fill the kernel's buffers towards the victim, so what follows stays queued.
    net.broadcast(vec![0u8; FILL]).expect("broadcast");
    settle_queue(&victim_id, || {
        step(&mut net, &mut events);
        attacker.pump();
        attacker.inbox.clear();
        net.queued_bytes(&victim_id).unwrap_or(0)
    });
    let relayed_before = relayed(&net, &victim_id);
    let heap_before = heap();

    let mut write = Vec::with_capacity(2 * FILLER);
    for i in 0..gossips {
        write.clear();
        let mut gossip_id = [0u8; 16];
        gossip_id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        write.extend_from_slice(&encode(&Frame::Gossip {
            id: gossip_id,
            hops: 8,
            payload: Bytes::from(vec![i as u8; GOSSIP_PAYLOAD]),
        }));
        write.extend_from_slice(&encode(&Frame::Message(Bytes::from(vec![0u8; FILLER]))));
        write_all(&mut net, &mut attacker.stream, &write, &mut events);
    }
    let end = deadline(60);
    for _ in 0..20_000 {
        if relayed(&net, &victim_id) - relayed_before >= gossips as u64 {
            break;
        }
        step(&mut net, &mut events);
        assert!(
            std::time::Instant::now() < end,
            "the relays never all queued"
        );
    }
    let counted = all_relays_queued(&net, &victim_id, gossips, FILL);
    drop(write);
    let held = heap().saturating_sub(heap_before);
    println!(
        "figure: pinning plaintext gossips={gossips} heap_held={held} queue_counted={counted}"
    );
    (held, counted)
}

#[test]
fn relayed_small_gossips_pin_no_read_chunk() {
    if in_own_process("pinning::relayed_small_gossips_pin_no_read_chunk") {
        return;
    }
    let (held, counted) = relay_to_non_reader(500);
    assert!(
        held <= HELD_PER_COUNTED * counted + HELD_SLACK,
        "{held} bytes held for {counted} bytes queued"
    );
}

#[test]
#[cfg_attr(debug_assertions, ignore = "heavy: run with --release")]
fn heavy_relayed_small_gossips_pin_no_read_chunk() {
    if in_own_process("pinning::heavy_relayed_small_gossips_pin_no_read_chunk") {
        return;
    }
    let rss_before = crate::support::rss();
    let (held, counted) = relay_to_non_reader(5_000);
    if let (Some(before), Some(after)) = (rss_before, crate::support::rss()) {
        println!(
            "figure: pinning plaintext gossips=5000 rss_gain={}",
            after.saturating_sub(before)
        );
    }
    assert!(
        held <= HELD_PER_COUNTED * counted + HELD_SLACK,
        "{held} bytes held for {counted} bytes queued"
    );
}

/// The broadcast queued first under noise: the victim, a node with the kernel's
/// buffers (up to `tcp_rmem` and `tcp_wmem`, 36 MiB by default), takes tens of MiB
/// before its window closes.
#[cfg(feature = "noise")]
const NOISE_FILL: usize = 48 << 20;

/// A noise-xx config whose frames and buffers take [`NOISE_FILL`].
#[cfg(feature = "noise")]
fn noise() -> Config {
    let mut config = Config {
        security: p2p::Security::NoiseXx,
        max_frame_size: 2 * NOISE_FILL,
        max_read_buffer_total: 4 * NOISE_FILL,
        ..Config::default()
    };
    config.max_write_buffer = 2 * config.min_write_buffer();
    config.max_write_buffer_total = 4 * config.max_write_buffer;
    lifted(config)
}

/// `config` with the gossip rates lifted: these tests measure what relayed payloads
/// hold, not the rate limits in front of them.
fn lifted(config: Config) -> Config {
    Config {
        max_gossip_rate: 1 << 20,
        ..config
    }
}

/// The same attack under noise: an attacking node sends each gossip beside a large
/// MESSAGE (the records carry both), and a node that never polls again is the victim.
#[cfg(feature = "noise")]
#[test]
fn noise_relayed_small_gossips_pin_no_read_chunk() {
    if in_own_process("pinning::noise_relayed_small_gossips_pin_no_read_chunk") {
        return;
    }
    const GOSSIPS: usize = 500;
    let (mut net, addr) = listening(noise());
    let (mut attacker, _) = listening(noise());
    let (mut victim, _) = listening(noise());
    connect(&mut attacker, &mut net, addr);
    connect(&mut victim, &mut net, addr);
    let (node_id, victim_id) = (net.local_id(), victim.local_id());
    // From here the victim never polls: it reads nothing.
    let mut events = Vec::new();
    net.broadcast(vec![0u8; NOISE_FILL]).expect("broadcast");
    settle_queue(&victim_id, || {
        step(&mut net, &mut events);
        step(&mut attacker, &mut events);
        net.queued_bytes(&victim_id).unwrap_or(0)
    });
    let relayed_before = relayed(&net, &victim_id);
    let heap_before = heap();
    let filler = Bytes::from(vec![0u8; FILLER]);
    for i in 0..GOSSIPS {
        let end = deadline(30);
        while attacker.send(&node_id, filler.clone()).is_err() {
            step(&mut attacker, &mut events);
            step(&mut net, &mut events);
            assert!(
                std::time::Instant::now() < end,
                "attacker queue never drained"
            );
        }
        attacker
            .broadcast(vec![i as u8; GOSSIP_PAYLOAD])
            .expect("attacker broadcast");
        attacker.flush();
        step(&mut net, &mut events);
    }
    let end = deadline(60);
    for _ in 0..20_000 {
        let all = relayed(&net, &victim_id) - relayed_before >= GOSSIPS as u64;
        if all && attacker.queued_bytes(&node_id) == Some(0) {
            break;
        }
        step(&mut attacker, &mut events);
        step(&mut net, &mut events);
        assert!(
            std::time::Instant::now() < end,
            "the relays never all queued"
        );
    }
    drop(filler);
    // Under noise the queue counts the records the staged frames will take too.
    let counted = all_relays_queued(&net, &victim_id, GOSSIPS, NOISE_FILL);
    let held = heap().saturating_sub(heap_before);
    println!("figure: pinning noise gossips={GOSSIPS} heap_held={held} queue_counted={counted}");
    assert!(
        held <= HELD_PER_COUNTED * counted + HELD_SLACK,
        "{held} bytes held for {counted} bytes queued"
    );
    drop(victim);
}
