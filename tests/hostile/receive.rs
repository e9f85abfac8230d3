//! Finding 4: frames still arriving have no global bound.
//!
//! Attackers each announce a large frame, send much of it, then trickle the rest a
//! byte at a time. Before the fix each unfinished frame's buffer was reserved whole
//! from its header and one byte now and then kept it alive: memory grew with the
//! number of attackers. Now the bytes held for unfinished frames stay within
//! `max_read_buffer_total` plus one read chunk per connection, connections beyond it
//! are paused rather than read, honest small messages and an honest large frame still
//! get through, and a frame that stops progressing closes its connection.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2p::wire::{Frame, kind};
use p2p::{CloseReason, Config, Event, Network, PeerId};

use crate::common::*;
use crate::support::{deadline, host, rss, tcp_from};

/// The read chunk a connection holds without drawing on the receive budget.
const CHUNK: usize = 64 * 1024;

/// A raw peer that announces a MESSAGE of `body` bytes, sends `bulk` of them as fast
/// as the node reads, then one byte each time [`Trickler::trickle`] is called, never
/// the last one.
struct Trickler {
    id: PeerId,
    stream: TcpStream,
    /// Header and body bytes still to write in bulk.
    bulk: usize,
    /// Body bytes not written yet.
    unsent_body: usize,
    header: Vec<u8>,
}

impl Trickler {
    /// Connects from `source`, finishes the plaintext handshake as `id`.
    fn connect(net: &mut Network, addr: SocketAddr, source: u8, id: PeerId) -> Self {
        let mut stream = tcp_from(host(source), addr).expect("connect");
        stream
            .write_all(&hello(net.config().network_id, id))
            .expect("hello");
        stream.set_nonblocking(true).expect("non-blocking");
        run_until(&mut [net], 400, |_, log| connected_to(log, 0, id));
        Trickler {
            id,
            stream,
            bulk: 0,
            unsent_body: 0,
            header: Vec::new(),
        }
    }

    /// Starts the frame: a body of `body` bytes, `bulk` of which go at once.
    fn start(&mut self, body: usize, bulk: usize) {
        self.header = (body as u32 + 1).to_be_bytes().to_vec();
        self.header.push(kind::MESSAGE);
        self.unsent_body = body;
        self.bulk = bulk.min(body - 1);
    }

    /// Writes what the kernel takes of the header and the bulk; bytes written.
    fn push(&mut self) -> usize {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut written = 0;
        loop {
            let (bytes, from_header) = if !self.header.is_empty() {
                (&self.header[..], true)
            } else if self.bulk > 0 {
                (&ZEROS[..self.bulk.min(ZEROS.len())], false)
            } else {
                return written;
            };
            match self.stream.write(bytes) {
                Ok(0) => return written,
                Ok(n) if from_header => {
                    self.header.drain(..n);
                    written += n;
                }
                Ok(n) => {
                    self.bulk -= n;
                    self.unsent_body -= n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return written,
            }
        }
    }

    /// One more byte of the body, if more than one is left: the frame never finishes.
    fn trickle(&mut self) {
        if self.header.is_empty()
            && self.bulk == 0
            && self.unsent_body > 1
            && let Ok(1) = self.stream.write(&[0])
        {
            self.unsent_body -= 1;
        }
    }
}

/// A small config: frames of 256 KiB, a budget of two of them, a short frame timeout.
fn small() -> Config {
    let mut config = Config {
        max_frame_size: 256 * 1024,
        max_read_buffer_total: 512 * 1024,
        frame_timeout: Duration::from_millis(500),
        ..plain()
    };
    config.max_write_buffer = config.min_write_buffer();
    config
}

fn message_from(event: &Event, from: PeerId) -> Option<usize> {
    match event {
        Event::Message { peer, payload } if *peer == from => Some(payload.len()),
        _ => None,
    }
}

#[test]
fn trickled_large_frames_stay_within_the_receive_budget() {
    const ATTACKERS: usize = 10;
    const LARGE: usize = 200 * 1024;
    let config = small();
    let budget = config.max_read_buffer_total;
    let (mut net, addr) = listening(config);
    let mut attackers: Vec<Trickler> = (0..ATTACKERS)
        .map(|i| Trickler::connect(&mut net, addr, 10 + i as u8, id(10 + i as u8)))
        .collect();
    let (chatty, bulky) = (id(1), id(2));
    let mut chatty_raw = crate::support::raw_from(host(2), addr);
    chatty_raw.send(&hello(net.config().network_id, chatty));
    let mut bulky_raw = crate::support::raw_from(host(3), addr);
    bulky_raw.send(&hello(net.config().network_id, bulky));
    run_until(&mut [&mut net], 400, |_, log| {
        connected_to(log, 0, chatty) && connected_to(log, 0, bulky)
    });
    for attacker in &mut attackers {
        attacker.start(256 * 1024, LARGE);
    }
    let connections = ATTACKERS + 2;
    let bound = budget + connections * CHUNK;

    let mut events = Vec::new();
    let (mut sent_small, mut got_small, mut small_while_paused) = (0, 0, 0);
    let (mut large_sent, mut large_got) = (false, false);
    let (mut most_paused, mut most_buffered) = (0, 0);
    let mut timed_out: Vec<PeerId> = Vec::new();
    let end = deadline(60);
    for turn in 0..20_000 {
        for attacker in &mut attackers {
            attacker.push();
            if turn % 10 == 0 {
                attacker.trickle();
            }
        }
        if turn % 5 == 0 {
            chatty_raw.send_frame(&Frame::Message(Bytes::from_static(b"still here")));
            sent_small += 1;
        }
        if turn == 20 {
            // Once the attackers hold the budget.
            bulky_raw.send_frame(&Frame::Message(Bytes::from(vec![7u8; LARGE])));
            large_sent = true;
        }
        chatty_raw.pump();
        bulky_raw.pump();
        net.poll(&mut events, Some(TURN)).expect("poll");
        let stats = net.stats();
        assert!(
            stats.buffered_bytes <= bound,
            "{} bytes buffered, over {bound}",
            stats.buffered_bytes
        );
        most_paused = most_paused.max(stats.read_paused);
        most_buffered = most_buffered.max(stats.buffered_bytes);
        for event in events.drain(..) {
            if message_from(&event, chatty).is_some() {
                got_small += 1;
                if stats.read_paused > 0 {
                    small_while_paused += 1;
                }
            }
            if message_from(&event, bulky) == Some(LARGE) {
                large_got = true;
            }
            if let Event::PeerDisconnected {
                peer,
                reason: CloseReason::FrameTimeout,
            } = event
            {
                timed_out.push(peer);
            }
        }
        if large_sent && large_got && got_small == sent_small && !timed_out.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "attack test did not finish");
    }
    println!(
        "figure: receive short attackers={ATTACKERS} budget={budget} max_buffered={most_buffered} max_read_paused={most_paused} frame_timeouts={}",
        timed_out.len()
    );
    assert!(
        most_paused > 0,
        "connections were paused while the budget was spent"
    );
    assert!(
        small_while_paused > 0,
        "honest messages got through while others were paused"
    );
    assert_eq!(got_small, sent_small, "every honest message delivered");
    assert!(large_got, "the honest large frame got through");
    assert!(
        timed_out
            .iter()
            .all(|p| attackers.iter().any(|a| a.id == *p)),
        "only attackers timed out: {timed_out:?}"
    );
    assert!(
        !timed_out.is_empty(),
        "a stalled frame closed its connection"
    );
}

#[test]
#[cfg_attr(debug_assertions, ignore = "heavy: run with --release")]
fn heavy_hundred_nearly_finished_frames() {
    if crate::support::in_own_process("receive::heavy_hundred_nearly_finished_frames") {
        return;
    }
    const ATTACKERS: usize = 100;
    let config = plain();
    let (budget, frame) = (config.max_read_buffer_total, config.max_frame_size);
    let (mut net, addr) = listening(config);
    let rss_before = rss();
    let mut attackers: Vec<Trickler> = (0..ATTACKERS)
        .map(|i| Trickler::connect(&mut net, addr, 10 + i as u8, id(10 + i as u8)))
        .collect();
    let honest = id(1);
    let mut honest_raw = crate::support::raw_from(host(2), addr);
    honest_raw.send(&hello(net.config().network_id, honest));
    run_until(&mut [&mut net], 400, |_, log| connected_to(log, 0, honest));
    for attacker in &mut attackers {
        // One byte short of the largest frame.
        attacker.start(frame, frame);
    }
    let bound = budget + (ATTACKERS + 1) * CHUNK;
    let mut events = Vec::new();
    let (mut sent, mut got, mut quiet) = (0, 0, 0);
    let (mut most_paused, mut most_buffered, mut most_rss) = (0, 0, 0);
    let end = deadline(120);
    for turn in 0..200_000 {
        let written: usize = attackers.iter_mut().map(Trickler::push).sum();
        quiet = if written == 0 { quiet + 1 } else { 0 };
        if turn % 5 == 0 {
            honest_raw.send_frame(&Frame::Message(Bytes::from_static(b"still here")));
            sent += 1;
        }
        honest_raw.pump();
        net.poll(&mut events, Some(TURN)).expect("poll");
        let stats = net.stats();
        assert!(
            stats.buffered_bytes <= bound,
            "{} bytes buffered",
            stats.buffered_bytes
        );
        most_paused = most_paused.max(stats.read_paused);
        most_buffered = most_buffered.max(stats.buffered_bytes);
        most_rss = most_rss.max(rss().unwrap_or(0) as usize);
        got += events
            .drain(..)
            .filter(|e| message_from(e, honest).is_some())
            .count();
        if quiet >= 200 && got == sent {
            break;
        }
        assert!(Instant::now() < end, "heavy attack did not settle");
    }
    let gain = most_rss.saturating_sub(rss_before.unwrap_or(0) as usize);
    println!(
        "figure: receive heavy attackers={ATTACKERS} frame={frame} budget={budget} max_buffered={most_buffered} max_read_paused={most_paused} rss_gain={gain} honest_delivered={got}/{sent}"
    );
    assert!(most_paused > 0, "connections were paused");
    assert_eq!(got, sent, "every honest message delivered");
    if rss_before.is_some() {
        // The caps plus the documented constant (64 MiB) for everything else.
        assert!(gain <= bound + (64 << 20), "RSS grew by {gain}");
    }
}

/// The same budget in the simulator, where every step repeats: six peers each send
/// three frames of 200 KiB to a node whose budget holds one largest frame. Those
/// that do not fit are paused, not failed, and every frame arrives: the connection
/// first in line can always finish, so pausing never deadlocks.
#[test]
fn simulated_large_frames_all_arrive_through_a_budget_of_one_frame() {
    use p2p::sim::{Sim, SimConfig};
    const SENDERS: usize = 6;
    const FRAMES: usize = 3;
    const SIZE: usize = 200 * 1024;
    let mut node = Config {
        security: p2p::Security::Plaintext,
        max_frame_size: 256 * 1024,
        ..Config::default()
    };
    node.max_read_buffer_total = node.min_read_buffer_total();
    node.max_write_buffer = 4 * node.min_write_buffer();
    let budget = node.max_read_buffer_total;
    let mut sim = Sim::new(SimConfig {
        seed: 7,
        node,
        ..SimConfig::default()
    })
    .expect("sim config");
    let receiver = sim.add_node();
    let senders: Vec<usize> = (0..SENDERS).map(|_| sim.add_node()).collect();
    for &s in &senders {
        sim.dial(s, receiver).expect("dial");
    }
    assert!(
        sim.run_until(|sim| sim.node(receiver).peers() == SENDERS, 1_000_000),
        "all connected"
    );
    let to = sim.node(receiver).id();
    for &s in &senders {
        for i in 0..FRAMES {
            sim.send(s, &to, Bytes::from(vec![i as u8; SIZE]))
                .expect("send");
        }
    }
    let bound = budget + SENDERS * CHUNK;
    let (mut most_paused, mut over) = (0, 0);
    let arrived = |sim: &Sim| {
        sim.node(receiver)
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Message { payload, .. } if payload.len() == SIZE))
            .count()
    };
    let done = sim.run_until(
        |sim| {
            let stats = sim.node(receiver).stats();
            most_paused = most_paused.max(stats.read_paused);
            over = over.max(stats.buffered_bytes.saturating_sub(bound));
            arrived(sim) == SENDERS * FRAMES
        },
        10_000_000,
    );
    println!("figure: receive sim senders={SENDERS} budget={budget} max_read_paused={most_paused}");
    assert!(
        done,
        "{} of {} frames arrived",
        arrived(&sim),
        SENDERS * FRAMES
    );
    assert_eq!(over, 0, "buffered bytes over the bound");
    assert!(most_paused > 0, "connections were paused");
}

/// A large frame's buffer, once its payload is dropped (a duplicate GOSSIP), must not
/// stay with the connection uncharged: the next large frame would be read into it
/// without drawing on the receive budget. (Found by review: each connection sent one
/// large GOSSIP twice, then a large MESSAGE one byte short.)
#[test]
fn a_reclaimed_large_buffer_does_not_escape_the_receive_budget() {
    const ATTACKERS: usize = 10;
    const BODY: usize = 250 * 1024;
    let mut config = Config {
        max_frame_size: 256 * 1024,
        max_read_buffer_total: 512 * 1024,
        frame_timeout: Duration::from_secs(30),
        ..plain()
    };
    config.max_write_buffer = config.min_write_buffer();
    let budget = config.max_read_buffer_total;
    let (mut net, addr) = listening(config);
    let network_id = net.config().network_id;
    let mut attackers: Vec<Raw> = Vec::new();
    for i in 0..ATTACKERS as u8 {
        let mut raw = crate::support::raw_from(crate::support::host(10 + i), addr);
        raw.send(&hello(network_id, id(10 + i)));
        attackers.push(raw);
    }
    run_until(&mut [&mut net], 400, |_, log| {
        (10..10 + ATTACKERS as u8).all(|i| connected_to(log, 0, id(i)))
    });
    let mut events = Vec::new();
    let end = crate::support::deadline(60);
    // One whole large GOSSIP twice each, one connection at a time (within budget).
    for (i, raw) in attackers.iter_mut().enumerate() {
        let gossip = Frame::Gossip {
            id: [i as u8 + 1; 16],
            hops: 1,
            payload: Bytes::from(vec![1u8; BODY - 17]),
        };
        raw.send_frame(&gossip);
        raw.send_frame(&gossip);
        let want = net.stats().duplicate_gossip + 1;
        let mut seen = false;
        for _ in 0..2000 {
            raw.pump();
            net.poll(&mut events, Some(TURN)).expect("poll");
            events.clear();
            seen = net.stats().duplicate_gossip >= want;
            if seen || std::time::Instant::now() > end {
                break;
            }
        }
        assert!(seen, "attacker {i}'s second GOSSIP was not taken");
    }
    // Then each starts another large frame and stops one byte short.
    for raw in attackers.iter_mut() {
        let mut frame = ((BODY + 1) as u32).to_be_bytes().to_vec();
        frame.push(p2p::wire::kind::MESSAGE);
        frame.extend(std::iter::repeat_n(0u8, BODY - 1));
        raw.send(&frame);
    }
    let mut most = 0;
    for _ in 0..600 {
        for raw in attackers.iter_mut() {
            raw.pump();
        }
        net.poll(&mut events, Some(TURN)).expect("poll");
        events.clear();
        most = most.max(net.stats().buffered_bytes);
        if std::time::Instant::now() > end {
            break;
        }
    }
    let bound = budget + ATTACKERS * 64 * 1024;
    assert!(
        most <= bound,
        "receive budget bypassed: {most} bytes buffered, bound {bound}"
    );
}

/// Connections that fill the receive budget with large frames and then send them
/// slowly (just over 64 KiB per `frame_timeout` while they may read) must not keep an
/// honest large frame waiting: the first in line has `frame_timeout` to finish while
/// others wait, and those holding the least go first. (Found by review: the honest
/// 200 KiB frame was never delivered.)
#[test]
fn slow_large_frames_do_not_keep_an_honest_large_frame_waiting() {
    const ATTACKERS: usize = 4;
    const BODY: usize = 4 * 1024 * 1024 - 16;
    const BULK: usize = 1536 * 1024;
    const STEP: usize = 66 * 1024;
    let mut config = Config {
        max_frame_size: 4 * 1024 * 1024,
        max_read_buffer_total: 8 * 1024 * 1024 + 64,
        frame_timeout: Duration::from_millis(500),
        ..plain()
    };
    config.max_write_buffer = config.min_write_buffer();
    let (mut net, addr) = listening(config);
    let network_id = net.config().network_id;
    let mut attackers: Vec<(Raw, usize)> = Vec::new();
    for i in 0..ATTACKERS as u8 {
        let mut raw = crate::support::raw_from(host(10 + i), addr);
        raw.send(&hello(network_id, id(10 + i)));
        attackers.push((raw, 0));
    }
    let bulky = id(2);
    let mut bulky_raw = crate::support::raw_from(host(3), addr);
    bulky_raw.send(&hello(network_id, bulky));
    run_until(&mut [&mut net], 400, |_, log| {
        connected_to(log, 0, bulky)
            && (10..10 + ATTACKERS as u8).all(|i| connected_to(log, 0, id(i)))
    });
    let mut events = Vec::new();
    let start = Instant::now();
    let mut last_step = start - Duration::from_secs(1);
    let mut sent_at = None;
    let mut delivered = None;
    let mut attackers_first = 0;
    while delivered.is_none() && start.elapsed() < Duration::from_secs(20) {
        if last_step.elapsed() >= Duration::from_millis(350) {
            last_step = Instant::now();
            for (raw, left) in attackers.iter_mut() {
                if *left == 0 {
                    let mut head = ((BODY + 1) as u32).to_be_bytes().to_vec();
                    head.push(kind::MESSAGE);
                    head.extend(std::iter::repeat_n(0u8, BULK));
                    raw.send(&head);
                    *left = BODY - BULK;
                } else {
                    let n = STEP.min(*left);
                    raw.send(&vec![0u8; n]);
                    *left -= n;
                }
                raw.pump();
            }
        }
        if sent_at.is_none() && start.elapsed() > Duration::from_millis(3000) {
            bulky_raw.send_frame(&Frame::Message(Bytes::from(vec![7u8; 200 * 1024])));
            sent_at = Some(Instant::now());
        }
        bulky_raw.pump();
        net.poll(&mut events, Some(TURN)).expect("poll");
        for event in events.drain(..) {
            match event {
                Event::Message { peer, payload }
                    if peer == bulky && payload.len() == 200 * 1024 =>
                {
                    delivered = sent_at.map(|at| at.elapsed());
                }
                // An attacker's slow frame finished first: the honest one waited for it.
                Event::Message { peer, .. } if peer != bulky => attackers_first += 1,
                _ => {}
            }
        }
    }
    assert!(
        delivered.is_some(),
        "the honest 200 KiB frame was not delivered"
    );
    assert_eq!(
        attackers_first, 0,
        "the honest frame waited for {attackers_first} slow attacker frame(s) to finish"
    );
}

/// Many peers sending at once: one turn reads at most `read_budget_total` bytes over
/// all connections, so the events a turn hands the application stay bounded by one
/// setting however many peers send; the rest is read in later turns, and every peer's
/// bytes arrive.
#[test]
fn one_turn_reads_at_most_the_turn_budget_over_all_connections() {
    const PEERS: usize = 8;
    const FRAME: usize = 4 * 1024;
    const FRAMES: usize = 16;
    let config = Config {
        read_budget: 32 * 1024,
        read_budget_total: 64 * 1024,
        ..plain()
    };
    let (cap, per_peer) = (config.read_budget_total, config.read_budget);
    let (mut net, addr) = listening(config);
    let mut raws: Vec<Raw> = (0..PEERS)
        .map(|i| Raw::handshake(&mut net, addr, id(10 + i as u8)).0)
        .collect();
    let frame = encode(&Frame::Message(Bytes::from(vec![7u8; FRAME])));
    for raw in &mut raws {
        for _ in 0..FRAMES {
            raw.send(&frame);
        }
    }
    // Everything is in the node's kernel buffers before its next turn.
    let until = deadline(10);
    while raws.iter().any(|r| r.unsent() > 0) && Instant::now() < until {
        for raw in &mut raws {
            raw.pump();
        }
    }
    assert!(
        raws.iter().all(|r| r.unsent() == 0),
        "the kernel took every byte"
    );
    let mut events = Vec::new();
    let mut received = 0;
    let mut turns = 0;
    // A turn may also finish the frame each connection left unfinished last turn.
    let bound = cap + PEERS * (FRAME + 5);
    while received < PEERS * FRAMES * FRAME && turns < 1000 {
        net.poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        turns += 1;
        let turn: usize = events
            .iter()
            .map(|e| match e {
                Event::Message { payload, .. } => payload.len(),
                _ => 0,
            })
            .sum();
        assert!(
            turn <= bound,
            "one turn handed up {turn} bytes of messages, over the turn budget {cap} \
             (each of {PEERS} peers may send {per_peer} a turn)"
        );
        received += turn;
    }
    assert_eq!(
        received,
        PEERS * FRAMES * FRAME,
        "every peer's bytes arrive"
    );
}

/// Peers that always have more to send than a turn's budget cannot keep a quiet peer
/// unread: a connection the spent turn budget skipped goes first next turn, ahead of
/// those that were read until their own budget ran out.
#[test]
fn flooding_peers_cannot_keep_another_connection_unread() {
    let config = Config {
        read_budget: 32 * 1024,
        read_budget_total: 64 * 1024,
        ..plain()
    };
    let (mut net, addr) = listening(config);
    let mut floods: Vec<Raw> = (0..2)
        .map(|i| Raw::handshake(&mut net, addr, id(20 + i)).0)
        .collect();
    let quiet_id = id(30);
    let (mut quiet, _) = Raw::handshake(&mut net, addr, quiet_id);
    let frame = encode(&Frame::Message(Bytes::from(vec![7u8; 4096])));
    let mut events = Vec::new();
    let until = deadline(10);
    let mut turns = 0;
    let mut flooded = 0usize;
    let got = loop {
        // The floods keep their sockets full before every turn.
        for raw in &mut floods {
            while raw.unsent() < 256 * 1024 {
                raw.send(&frame);
            }
            raw.pump();
        }
        // The quiet peer speaks once the floods have the turn budget.
        if turns == 5 {
            quiet.send(&encode(&Frame::Message(Bytes::from_static(b"hello"))));
        }
        net.poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        turns += 1;
        flooded += events
            .iter()
            .filter_map(|e| message_from(e, id(20)).or(message_from(e, id(21))))
            .sum::<usize>();
        if events.iter().any(|e| message_from(e, quiet_id).is_some()) {
            break true;
        }
        if turns >= 200 || Instant::now() > until {
            break false;
        }
    };
    assert!(
        got,
        "the quiet peer's message was never read in {turns} turns while the floods \
         delivered {flooded} bytes"
    );
}
