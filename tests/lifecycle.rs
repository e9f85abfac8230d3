//! PROTOCOL.md §5 GOODBYE and the life of a node: disconnect, graceful shutdown, the
//! `Handle` from another thread, and send errors (caps, sizes, unknown peers).

mod common;

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use p2p::wire::{Frame, GoodbyeReason};
use p2p::{CloseReason, Config, DialError, Event, Network, PeerId, RequestError, SendError};

const R: u8 = 0x42;

fn until_disconnected(net: &mut Network, raw: &mut Raw) -> Log {
    run_until(&mut [net], 400, |_, log| {
        raw.pump();
        raw.closed && has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
    })
}

// ---- GOODBYE ----

#[test]
fn goodbye_from_the_peer_is_reported_and_the_node_closes() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    raw.send_frame(&Frame::Goodbye(GoodbyeReason::TooManyPeers));
    // Anything after a GOODBYE is not taken.
    raw.send_frame(&Frame::Message(Bytes::from_static(b"after goodbye")));
    let log = until_disconnected(&mut net, &mut raw);
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: id(R),
            reason: CloseReason::Goodbye(GoodbyeReason::TooManyPeers)
        }]
    );
    assert!(!net.is_connected(&id(R)));
    drop(raw);
    run_until(&mut [&mut net], 400, |n, _| n[0].stats().connections == 0);
}

#[test]
fn goodbye_with_an_undefined_reason_is_reported_as_sent() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    raw.send(&raw_frame(0x7F, &[200]));
    let log = until_disconnected(&mut net, &mut raw);
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: id(R),
            reason: CloseReason::Goodbye(GoodbyeReason::Other(200))
        }]
    );
}

#[test]
fn disconnect_sends_goodbye_0_then_closes() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    assert!(net.disconnect(&id(R)));
    let (frames, mut log) = collect_frames(&mut [&mut net], &mut raw, 400, |_, r| r.closed);
    assert_eq!(frames, vec![Frame::Goodbye(GoodbyeReason::Shutdown)]);
    assert!(!raw.reset, "an orderly end of stream, not a reset");
    // What the peer still sends while the node closes is not delivered.
    raw.send_frame(&Frame::Message(Bytes::from_static(b"too late")));
    log.extend(run_turns(&mut [&mut net], 5));
    drop(raw);
    log.extend(run_until(&mut [&mut net], 400, |n, _| {
        n[0].stats().connections == 0
    }));
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: id(R),
            reason: CloseReason::Disconnected
        }]
    );
    assert!(!net.disconnect(&id(R)), "no longer connected");
}

#[test]
fn disconnect_between_networks_reports_both_sides() {
    let (mut a, _) = node();
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    assert!(a.disconnect(&b_id));
    let log = run_until(&mut [&mut a, &mut b], 400, |nets, _| {
        nets[0].stats().connections == 0 && nets[1].stats().connections == 0
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: b_id,
            reason: CloseReason::Disconnected
        }]
    );
    assert_eq!(
        of(&log, 1),
        vec![Event::PeerDisconnected {
            peer: a_id,
            reason: CloseReason::Goodbye(GoodbyeReason::Shutdown)
        }]
    );
}

#[test]
fn disconnecting_an_unknown_peer_is_false() {
    let (mut net, _) = node();
    assert!(!net.disconnect(&id(1)));
}

#[test]
fn peer_closing_without_goodbye_is_peer_closed() {
    let (mut net, raw) = with_raw_peer(plain(), id(R));
    drop(raw);
    let log = run_until(&mut [&mut net], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: id(R),
            reason: CloseReason::PeerClosed
        }]
    );
}

// ---- graceful shutdown ----

const CHUNK: usize = 64 * 1024;

fn numbered(i: usize) -> Bytes {
    let mut payload = vec![(i % 251) as u8; CHUNK];
    payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Bytes::from(payload)
}

#[test]
fn shutdown_flushes_every_queued_byte_then_says_goodbye() {
    let (mut a, _) = node();
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    let n = 64; // 4 MiB
    for i in 0..n {
        a.send(&b_id, numbered(i)).unwrap();
    }
    a.shutdown();
    assert_eq!(a.send(&b_id, "late"), Err(SendError::ShuttingDown));
    assert_eq!(a.broadcast("late"), Err(SendError::ShuttingDown));
    assert!(matches!(a.dial(b_addr), Err(DialError::ShuttingDown)));
    let log = run_until(&mut [&mut a, &mut b], 4000, |nets, _| {
        nets[0].is_shut_down() && nets[1].stats().connections == 0
    });
    let events = of(&log, 1);
    assert_eq!(events.len(), n + 1, "n messages then the disconnect");
    for (i, event) in events[..n].iter().enumerate() {
        assert_eq!(
            *event,
            Event::Message {
                peer: a_id,
                payload: numbered(i)
            },
            "message {i}"
        );
    }
    assert_eq!(
        events[n],
        Event::PeerDisconnected {
            peer: a_id,
            reason: CloseReason::Goodbye(GoodbyeReason::Shutdown)
        }
    );
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: b_id,
            reason: CloseReason::Shutdown
        }]
    );
    assert_eq!(a.stats().connections, 0);
}

#[test]
fn shutdown_on_the_wire_is_messages_then_goodbye_0_then_eof() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    let n = 16;
    for i in 0..n {
        net.send(&id(R), numbered(i)).unwrap();
    }
    net.shutdown();
    let (frames, _) = collect_frames(&mut [&mut net], &mut raw, 4000, |_, r| r.closed);
    let mut expected: Vec<Frame> = (0..n).map(|i| Frame::Message(numbered(i))).collect();
    expected.push(Frame::Goodbye(GoodbyeReason::Shutdown));
    assert_eq!(frames.len(), expected.len());
    assert!(frames == expected, "messages in order, then GOODBYE 0");
    assert!(!raw.reset, "a graceful close is an EOF, not a reset");
    drop(raw);
    run_until(&mut [&mut net], 400, |n, _| n[0].is_shut_down());
}

#[test]
fn shutdown_stops_listening() {
    let (mut net, addr) = node();
    net.shutdown();
    run_until(&mut [&mut net], 400, |n, _| n[0].is_shut_down());
    assert!(net.listen_addrs().is_empty());
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener was closed at shutdown"
    );
}

// ---- Handle ----

#[test]
fn handle_commands_from_another_thread_wake_the_loop() {
    let (mut a, _) = node();
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    // Let every readiness of the handshake go by, so A's next poll has nothing to do.
    run_turns(&mut [&mut a, &mut b], 5);
    let handle = a.handle();
    let (go, wait) = mpsc::channel::<()>();
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        wait.recv().unwrap();
        handle.send(&b_id, "from a thread").unwrap();
        handle.broadcast("broadcast from a thread").unwrap();
        let rid = handle.request(&b_id, "request from a thread").unwrap();
        done.send(rid).unwrap();
    });
    let frames_before = a.peer_stats(&b_id).unwrap().frames_out;
    go.send(()).unwrap();
    // One turn with a long timeout: the commands arrive while A waits, and the waker
    // must end the wait and have them run in this very turn.
    let mut events = Vec::new();
    a.poll(&mut events, Some(Duration::from_secs(10))).unwrap();
    worker.join().unwrap();
    let rid = finished.recv().unwrap();
    let queued = a.peer_stats(&b_id).unwrap().frames_out - frames_before;
    assert!(
        queued >= 1,
        "the turn ended without running the handle's commands"
    );
    if queued < 3 {
        // The later commands landed after that turn's wake-up and woke the loop again,
        // so this turn does not wait.
        a.poll(&mut events, Some(Duration::from_secs(10))).unwrap();
    }
    assert_eq!(a.peer_stats(&b_id).unwrap().frames_out - frames_before, 3);
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        has(log, 1, |e| matches!(e, Event::Message { .. }))
            && has(log, 1, |e| matches!(e, Event::Broadcast { .. }))
            && has(log, 1, |e| matches!(e, Event::Request { .. }))
    });
    assert!(has(&log, 1, |e| *e
        == Event::Message {
            peer: a_id,
            payload: Bytes::from_static(b"from a thread")
        }));
    assert!(has(&log, 1, |e| matches!(e,
        Event::Broadcast { from, payload, .. } if *from == a_id && payload == "broadcast from a thread")));
    assert!(has(&log, 1, |e| *e
        == Event::Request {
            peer: a_id,
            id: rid,
            payload: Bytes::from_static(b"request from a thread")
        }));
    // The answer finds the request the handle made.
    b.respond(&a_id, rid, "answer").unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::Response { .. }))
    });
    assert!(has(&log, 0, |e| *e
        == Event::Response {
            peer: b_id,
            id: rid,
            payload: Bytes::from_static(b"answer")
        }));
}

#[test]
fn handle_failures_come_back_as_events() {
    let (mut net, _) = node();
    let listener = RawListener::bind();
    net.dial(listener.addr).unwrap();
    let handle = net.handle();
    let stranger = id(7);
    let sid = handle.send(&stranger, "x").unwrap();
    let rid = handle.request(&stranger, "y").unwrap();
    handle.dial(listener.addr).unwrap();
    let log = run_until(&mut [&mut net], 400, |_, log| log.len() >= 3);
    let events = of(&log, 0);
    assert!(events.contains(&Event::SendFailed {
        peer: stranger,
        id: sid,
        reason: SendError::NotConnected(stranger)
    }));
    assert!(events.contains(&Event::RequestFailed {
        peer: stranger,
        id: rid,
        reason: RequestError::NotSent(SendError::NotConnected(stranger))
    }));
    assert!(events.contains(&Event::DialFailed {
        addr: listener.addr,
        reason: CloseReason::DialRefused(DialError::AlreadyDialing(listener.addr))
    }));
}

// ---- send errors ----

#[test]
fn sending_to_an_unknown_peer_is_not_connected() {
    let (mut net, _) = node();
    assert_eq!(net.send(&id(9), "x"), Err(SendError::NotConnected(id(9))));
    assert_eq!(net.stats().queued_bytes, 0);
}

#[test]
fn payloads_over_max_frame_size_are_too_large_and_not_sent() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            max_frame_size: 1024,
            ..plain()
        },
        id(R),
    );
    let too_large = Err(SendError::TooLarge {
        len: 1025,
        max: 1024,
    });
    // MESSAGE body = payload; REQUEST/RESPONSE = 8 + payload; GOSSIP = 17 + payload.
    assert_eq!(net.send(&id(R), vec![1u8; 1025]), too_large);
    assert_eq!(net.request(&id(R), vec![1u8; 1017]).map(|_| ()), too_large);
    assert_eq!(
        net.respond(&id(R), p2p::RequestId(1), vec![1u8; 1017]),
        too_large
    );
    assert_eq!(net.broadcast(vec![1u8; 1008]).map(|_| ()), too_large);
    assert_eq!(net.stats().queued_bytes, 0, "nothing queued");
    // One byte less fits, for each kind.
    net.send(&id(R), vec![2u8; 1024]).unwrap();
    let rid = net.request(&id(R), vec![3u8; 1016]).unwrap();
    let gid = net.broadcast(vec![4u8; 1007]).unwrap();
    let (frames, _) = collect_frames(&mut [&mut net], &mut raw, 400, |f, _| f.len() >= 3);
    assert_eq!(
        frames,
        vec![
            Frame::Message(Bytes::from(vec![2u8; 1024])),
            Frame::Request {
                id: rid.0,
                payload: Bytes::from(vec![3u8; 1016])
            },
            Frame::Gossip {
                id: gid.0,
                hops: net.config().gossip_hops,
                payload: Bytes::from(vec![4u8; 1007])
            },
        ]
    );
}

fn seq(i: u64, size: usize) -> Bytes {
    let mut payload = vec![0xC3u8; size];
    payload[..8].copy_from_slice(&i.to_be_bytes());
    Bytes::from(payload)
}

#[test]
fn a_peer_that_does_not_read_fills_its_buffer_and_nothing_is_lost() {
    const CAP: usize = 64 * 1024;
    const SIZE: usize = 16 * 1024;
    let (mut net, mut raw) = with_raw_peer(
        Config {
            max_frame_size: SIZE,
            max_write_buffer: CAP,
            ..plain()
        },
        id(R),
    );
    // Send until refused; the raw peer reads nothing meanwhile, so kernel buffers fill.
    let mut sent = 0u64;
    let mut events = Vec::new();
    let refusal = loop {
        match net.send(&id(R), seq(sent, SIZE)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        net.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty(), "{events:?}");
        assert!(
            sent < 16 * 1024,
            "256 MiB accepted for a peer that never reads"
        );
    };
    match refusal {
        SendError::Full { peer, queued, cap } => {
            assert_eq!(peer, id(R));
            assert_eq!(cap, CAP);
            assert!(queued + SIZE + 5 > CAP, "refused although it fitted");
            assert!(queued <= CAP);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(net.stats().queued_bytes <= CAP);
    assert_eq!(net.peer_stats(&id(R)).unwrap().dropped_sends, 0);
    // Now read: every accepted message arrives, in order, and nothing else.
    let mut got = Vec::new();
    run_until(&mut [&mut net], 20_000, |_, _| {
        got.extend(raw.frames());
        got.len() as u64 >= sent
    });
    assert_eq!(got.len() as u64, sent);
    for (i, frame) in got.iter().enumerate() {
        assert!(
            *frame == Frame::Message(seq(i as u64, SIZE)),
            "message {i} of {sent} lost or out of order"
        );
    }
    // With the buffer drained, the next one goes through.
    net.send(&id(R), seq(sent, SIZE)).unwrap();
    let (frames, _) = collect_frames(&mut [&mut net], &mut raw, 400, |f, _| !f.is_empty());
    assert!(frames == vec![Frame::Message(seq(sent, SIZE))]);
}

#[test]
fn the_global_cap_is_shared_fairly_between_peers() {
    const CAP: usize = 64 * 1024;
    const SIZE: usize = 4 * 1024;
    let (mut net, addr) = listening(Config {
        max_frame_size: SIZE,
        max_write_buffer: CAP,
        max_write_buffer_total: CAP,
        ..plain()
    });
    let (mut r1, _) = Raw::handshake(&mut net, addr, id(1));
    let (_r2, _) = Raw::handshake(&mut net, addr, id(2));
    let mut events = Vec::new();
    let mut fill = |net: &mut Network, peer: PeerId| {
        let mut sent = 0u64;
        let refusal = loop {
            match net.send(&peer, seq(sent, SIZE)) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            net.poll(&mut events, Some(Duration::ZERO)).unwrap();
            assert!(net.stats().queued_bytes <= CAP);
            assert!(
                sent < 64 * 1024,
                "256 MiB accepted for a peer that never reads"
            );
        };
        (sent, refusal)
    };
    let (sent, refusal) = fill(&mut net, id(1));
    assert!(
        matches!(refusal, SendError::GlobalFull { cap: CAP, .. }),
        "{refusal:?}"
    );
    // The first peer holds no more than the room it leaves free...
    let first = net.queued_bytes(&id(1)).unwrap();
    assert!(first <= CAP / 2, "{first} of {CAP} for one peer");
    // ...so the other peer, with an empty queue, is still served, up to its share of
    // what is left.
    net.send(&id(2), seq(0, SIZE)).unwrap();
    let (_, refusal) = fill(&mut net, id(2));
    assert!(
        matches!(refusal, SendError::GlobalFull { cap: CAP, .. }),
        "{refusal:?}"
    );
    let second = net.queued_bytes(&id(2)).unwrap();
    assert!(
        second <= CAP - first - second,
        "{second} for the second peer"
    );
    // Draining the first peer makes room for it again.
    let mut got = 0u64;
    run_until(&mut [&mut net], 20_000, |_, _| {
        got += r1.frames().len() as u64;
        got >= sent
    });
    net.send(&id(1), seq(sent, SIZE)).unwrap();
}

#[test]
fn shutdown_with_a_peer_that_never_reads_ends_after_the_close_timeout() {
    const CAP: usize = 64 * 1024;
    let (mut net, _raw) = with_raw_peer(
        Config {
            max_frame_size: 16 * 1024,
            max_write_buffer: CAP,
            close_timeout: Duration::from_millis(200),
            ..plain()
        },
        id(R),
    );
    let mut events = Vec::new();
    let mut sent = 0;
    while net.send(&id(R), vec![0u8; 16 * 1024]).is_ok() {
        net.poll(&mut events, Some(Duration::ZERO)).unwrap();
        sent += 1;
        assert!(sent < 16 * 1024);
    }
    net.shutdown();
    let log = run_until(&mut [&mut net], 4000, |n, _| n[0].is_shut_down());
    // What the peer never took is reported, not dropped silently.
    let unflushed = net.stats().unflushed_bytes;
    assert!(unflushed > 0);
    assert_eq!(
        of(&log, 0),
        vec![
            Event::PeerDisconnected {
                peer: id(R),
                reason: CloseReason::Shutdown
            },
            Event::Unflushed {
                peer: id(R),
                bytes: unflushed as usize
            }
        ]
    );
}

#[test]
fn dial_to_a_closed_port_fails() {
    let (mut net, _) = node();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    match net.dial(addr) {
        Err(DialError::Io(_)) => {}
        Ok(()) => {
            let log = run_until(&mut [&mut net], 400, |_, log| !log.is_empty());
            assert!(
                matches!(
                    &of(&log, 0)[..],
                    [Event::DialFailed { addr: a, reason: CloseReason::ConnectFailed(_) }] if *a == addr
                ),
                "{log:?}"
            );
        }
        Err(e) => panic!("{e:?}"),
    }
    assert_eq!(net.stats().connections, 0);
}

#[test]
fn dial_limits_are_refused_at_once() {
    let (mut net, _) = listening(Config {
        max_outbound: 2,
        ..plain()
    });
    let l1 = RawListener::bind();
    let l2 = RawListener::bind();
    let l3 = RawListener::bind();
    net.dial(l1.addr).unwrap();
    assert_eq!(net.dial(l1.addr), Err(DialError::AlreadyDialing(l1.addr)));
    net.dial(l2.addr).unwrap();
    assert_eq!(net.dial(l3.addr), Err(DialError::OutboundLimit(2)));
    assert_eq!(net.stats().connections, 2, "refused dials reserve nothing");
}

#[test]
fn many_connections_come_and_go_with_matching_events() {
    // Twenty handshakes from one address in well under a second: more than the
    // per-address handshake rate allows, which is not what this test is about.
    let (mut net, addr) = listening(Config {
        handshake_rate_per_ip: 1000,
        ..plain()
    });
    let mut log = Log::new();
    for n in 1..=20u8 {
        let (mut raw, l) = Raw::handshake(&mut net, addr, id(n));
        log.extend(l);
        net.send(&id(n), vec![n]).unwrap();
        let (frames, l) = collect_frames(&mut [&mut net], &mut raw, 400, |f, _| !f.is_empty());
        log.extend(l);
        assert_eq!(frames, vec![Frame::Message(Bytes::from(vec![n]))]);
        drop(raw);
        log.extend(run_until(&mut [&mut net], 400, |n, _| {
            n[0].stats().connections == 0
        }));
    }
    let events = of(&log, 0);
    assert_eq!(events.len(), 40);
    for (i, pair) in events.chunks(2).enumerate() {
        let n = id(i as u8 + 1);
        assert!(
            matches!(&pair[0], Event::PeerConnected { peer, .. } if *peer == n),
            "{pair:?}"
        );
        assert_eq!(
            pair[1],
            Event::PeerDisconnected {
                peer: n,
                reason: CloseReason::PeerClosed
            }
        );
    }
}

#[test]
fn handle_dials_disconnects_and_shuts_down_from_another_thread() {
    let (mut a, _) = node();
    let (mut b, b_addr) = node();
    let b_id = b.local_id();
    let handle = a.handle();
    std::thread::spawn(move || handle.dial(b_addr).unwrap())
        .join()
        .unwrap();
    run_until(&mut [&mut a, &mut b], 400, |_, log| {
        connected_to(log, 0, b_id)
    });
    let handle = a.handle();
    std::thread::spawn(move || handle.disconnect(&b_id).unwrap())
        .join()
        .unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        has(log, 1, |e| matches!(e, Event::PeerDisconnected { .. }))
    });
    assert!(has(&log, 1, |e| matches!(
        e,
        Event::PeerDisconnected {
            reason: CloseReason::Goodbye(GoodbyeReason::Shutdown),
            ..
        }
    )));
    let handle = a.handle();
    std::thread::spawn(move || handle.shutdown().unwrap())
        .join()
        .unwrap();
    run_until(&mut [&mut a, &mut b], 400, |n, _| n[0].is_shut_down());
    assert!(a.listen_addrs().is_empty());
}

#[test]
fn shutdown_fails_dials_still_handshaking() {
    let (mut net, _) = node();
    let listener = RawListener::bind();
    net.dial(listener.addr).unwrap();
    // The raw side accepts and never answers: the dial is stuck in its handshake.
    let (_raw, _) = listener.accept(&mut [&mut net]);
    net.shutdown();
    let log = run_until(&mut [&mut net], 400, |n, _| n[0].is_shut_down());
    assert_eq!(
        of(&log, 0),
        vec![Event::DialFailed {
            addr: listener.addr,
            reason: CloseReason::Shutdown
        }]
    );
}

#[test]
fn handshake_limit_refuses_dials_at_once() {
    let (mut net, _) = listening(Config {
        max_pending_dials: 1,
        ..plain()
    });
    let l1 = RawListener::bind();
    let l2 = RawListener::bind();
    net.dial(l1.addr).unwrap();
    assert_eq!(net.dial(l2.addr), Err(DialError::HandshakeLimit(1)));
}

#[test]
fn handle_refuses_when_its_queue_is_full_or_the_network_is_gone() {
    let (mut net, _) = listening(Config {
        command_queue: 2,
        ..plain()
    });
    let handle = net.handle();
    handle.broadcast("1").unwrap();
    handle.broadcast("2").unwrap();
    assert_eq!(handle.broadcast("3"), Err(p2p::HandleError::Full));
    // The loop takes them, so there is room again.
    let mut events = Vec::new();
    net.poll(&mut events, Some(Duration::ZERO)).unwrap();
    handle.broadcast("3").unwrap();
    drop(net);
    assert_eq!(handle.broadcast("4"), Err(p2p::HandleError::Closed));
}

// ---- flush ----

#[test]
fn flush_writes_what_was_queued_without_a_turn_of_the_loop() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    net.send(&id(R), "now").unwrap();
    let frame = Frame::Message(Bytes::from_static(b"now"));
    assert_eq!(net.queued_bytes(&id(R)), Some(frame.wire_len()));
    assert_eq!(net.queued_bytes(&id(0x99)), None);
    net.flush();
    assert_eq!(net.queued_bytes(&id(R)), Some(0), "written by flush alone");
    // Loopback delivers within the write; a bounded number of non-blocking reads.
    let mut frames = Vec::new();
    for _ in 0..100_000 {
        frames.extend(raw.frames());
        if !frames.is_empty() {
            break;
        }
    }
    assert_eq!(frames, vec![frame]);
}
