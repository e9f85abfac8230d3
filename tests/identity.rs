//! PROTOCOL.md §2.1 (plaintext handshake) and §2.3 (identity checks) over loopback TCP.

mod common;

use bytes::Bytes;
use common::*;
use p2p::wire::{Frame, GoodbyeReason};
use p2p::{CloseReason, Config, Direction, Event, Network, PeerId};

#[test]
fn claimed_id_is_the_inbound_peer() {
    let (mut net, addr) = node();
    let (raw, log) = Raw::handshake(&mut net, addr, id(0x42));
    let local = raw.stream.local_addr().unwrap();
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerConnected {
            peer: id(0x42),
            addr: local,
            direction: Direction::Inbound
        }]
    );
    let peers = net.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, id(0x42));
    assert_eq!(peers[0].direction, Direction::Inbound);
    assert!(net.is_connected(&id(0x42)));
}

#[test]
fn claimed_id_is_the_outbound_peer() {
    let (mut net, _) = node();
    let listener = RawListener::bind();
    net.dial(listener.addr).unwrap();
    let (mut raw, mut log) = listener.accept(&mut [&mut net]);
    raw.send(&hello(net.config().network_id, id(0x43)));
    log.extend(run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        connected_to(log, 0, id(0x43)) && raw.received >= HELLO_LEN
    }));
    assert_eq!(&raw.inbox[..], &hello_of(&net)[..]);
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerConnected {
            peer: id(0x43),
            addr: listener.addr,
            direction: Direction::Outbound
        }]
    );
    assert_eq!(net.peers()[0].direction, Direction::Outbound);
}

#[test]
fn frames_sent_with_the_id_in_one_write_are_delivered() {
    let (mut net, addr) = node();
    let mut raw = Raw::connect(addr);
    let mut bytes = hello(net.config().network_id, id(0x42));
    bytes.extend(encode(&Frame::Message(Bytes::from_static(b"first"))));
    raw.send(&bytes);
    let log = run_until(&mut [&mut net], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::Message { .. }))
    });
    let events = of(&log, 0);
    assert!(
        matches!(&events[0], Event::PeerConnected { peer, .. } if *peer == id(0x42)),
        "{events:?}"
    );
    assert_eq!(
        events[1],
        Event::Message {
            peer: id(0x42),
            payload: Bytes::from_static(b"first")
        }
    );
}

#[test]
fn dialling_ourselves_is_refused() {
    let (mut net, addr) = node();
    net.dial(addr).unwrap();
    let log = run_until(&mut [&mut net], 400, |nets, log| {
        has(log, 0, |e| matches!(e, Event::DialFailed { .. })) && nets[0].stats().connections == 0
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::DialFailed {
            addr,
            reason: CloseReason::SelfConnection
        }],
        "no PeerConnected for ourselves"
    );
    assert!(net.peers().is_empty());
    assert!(!net.is_connected(&net.local_id()));
}

/// Both nodes dial each other before either polls. After settling, each has exactly one
/// connection, it is the same TCP connection on both ends, and its initiator has the
/// smaller id.
fn simultaneous_dial(a_id: PeerId, b_id: PeerId) {
    let cfg = |id| Config {
        peer_id: Some(id),
        ..plain()
    };
    let (mut a, a_addr) = listening(cfg(a_id));
    let (mut b, b_addr) = listening(cfg(b_id));
    a.dial(b_addr).unwrap();
    b.dial(a_addr).unwrap();
    let settled = |n: &Network| n.peers().len() == 1 && n.stats().connections == 1;
    let mut log = run_until(&mut [&mut a, &mut b], 800, |nets, _| {
        settled(nets[0]) && settled(nets[1])
    });
    // A few more turns: nothing may change once settled.
    log.extend(run_turns(&mut [&mut a, &mut b], 10));
    assert!(
        settled(&a) && settled(&b),
        "{:?} {:?}",
        a.stats(),
        b.stats()
    );

    let (pa, pb) = (a.peers()[0], b.peers()[0]);
    assert_eq!(pa.id, b_id);
    assert_eq!(pb.id, a_id);
    let a_initiated = a_id < b_id;
    let expect_a = if a_initiated {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    assert_eq!(
        pa.direction, expect_a,
        "A keeps the smaller initiator's one"
    );
    assert_ne!(
        pa.direction, pb.direction,
        "both ends keep the same connection"
    );
    if a_initiated {
        assert_eq!(pa.addr, b_addr);
    } else {
        assert_eq!(pb.addr, a_addr);
    }
    for i in 0..2 {
        assert_eq!(
            count(&log, i, |e| matches!(e, Event::PeerConnected { .. })),
            1,
            "node {i} announces the peer exactly once: {log:?}"
        );
        assert!(
            !has(&log, i, |e| matches!(e, Event::PeerDisconnected { .. })),
            "the peer never left: {log:?}"
        );
    }
    // The survivor carries traffic both ways.
    a.send(&b_id, "a->b").unwrap();
    b.send(&a_id, "b->a").unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::Message { .. }))
            && has(log, 1, |e| matches!(e, Event::Message { .. }))
    });
    assert!(has(&log, 1, |e| *e
        == Event::Message {
            peer: a_id,
            payload: Bytes::from_static(b"a->b")
        }));
    assert!(has(&log, 0, |e| *e
        == Event::Message {
            peer: b_id,
            payload: Bytes::from_static(b"b->a")
        }));
}

#[test]
fn simultaneous_dials_settle_on_smaller_initiator_a_smaller() {
    for _ in 0..3 {
        simultaneous_dial(id(0x01), id(0x02));
    }
}

#[test]
fn simultaneous_dials_settle_on_smaller_initiator_a_larger() {
    for _ in 0..3 {
        simultaneous_dial(id(0x02), id(0x01));
    }
}

#[test]
fn simultaneous_dials_compare_ids_bytewise_from_the_first_byte() {
    // Bytewise A < B, but read from the last byte (or as a little-endian number) A > B.
    let mut a = [0x01; 32];
    a[31] = 0xFF;
    let mut b = [0x00; 32];
    b[0] = 0x02;
    for _ in 0..2 {
        simultaneous_dial(PeerId::from_bytes(a), PeerId::from_bytes(b));
        simultaneous_dial(PeerId::from_bytes(b), PeerId::from_bytes(a));
    }
}

#[test]
fn simultaneous_dials_settle_with_random_ids() {
    for _ in 0..3 {
        simultaneous_dial(PeerId::random().unwrap(), PeerId::random().unwrap());
    }
}

/// Reads until `raw` is closed; returns the frames seen.
fn frames_until_closed(net: &mut Network, raw: &mut Raw) -> (Vec<Frame>, Log) {
    collect_frames(&mut [net], raw, 400, |_, raw| raw.closed)
}

/// Checks and consumes the node's hello on `raw`, then reads frames until the node closes.
fn hello_then_frames_until_closed(net: &mut Network, raw: &mut Raw) -> (Vec<Frame>, Log) {
    let expected = hello_of(net);
    let mut log = run_until(&mut [&mut *net], 400, |_, _| {
        raw.pump();
        raw.inbox.len() >= HELLO_LEN
    });
    assert_eq!(&raw.inbox[..HELLO_LEN], &expected[..]);
    let _ = raw.inbox.split_to(HELLO_LEN);
    let (frames, more) = frames_until_closed(net, raw);
    log.extend(more);
    (frames, log)
}

#[test]
fn duplicate_of_same_initiator_is_left_for_the_initiator_to_close() {
    // The raw peer dials twice. The two ends may see the handshakes finish in different
    // orders, so only the initiator decides which one goes (README, protocol notes):
    // the node serves the peer on both until it does, then keeps the other one quietly.
    let (mut net, addr) = node();
    let r = id(0x42);
    let (mut first, _) = Raw::handshake(&mut net, addr, r);
    let mut second = Raw::connect(addr);
    second.send(&hello(net.config().network_id, r));
    second.send_frame(&Frame::Message(Bytes::from_static(b"on the second")));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        second.pump();
        second.inbox.len() >= HELLO_LEN && has(log, 0, |e| matches!(e, Event::Message { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::Message {
            peer: r,
            payload: Bytes::from_static(b"on the second")
        }],
        "no second PeerConnected, and the node does not close either connection"
    );
    let _ = second.inbox.split_to(HELLO_LEN);
    assert!(!second.closed && !first.closed);
    assert_eq!(net.peers().len(), 1);

    // The initiator closes the first with GOODBYE 1: no PeerDisconnected, and what the
    // node sends to the peer now goes over the second.
    first.send_frame(&Frame::Goodbye(GoodbyeReason::DuplicateConnection));
    let log = run_until(&mut [&mut net], 400, |_, _| {
        first.pump();
        first.closed
    });
    assert!(
        !has(&log, 0, |e| matches!(e, Event::PeerDisconnected { .. })),
        "{log:?}"
    );
    assert!(net.is_connected(&r));
    assert_served_on(&mut net, &mut second, r, "to the second");
}

/// A node with id `us`, served by raw peer `r` on an inbound connection (`old`), that
/// dialled `r` again: (node, old, the listener dialled, the new connection with `r`'s
/// hello sent on it, the log so far).
fn old_inbound_then_our_dial(us: PeerId, r: PeerId) -> (Network, Raw, RawListener, Raw, Log) {
    let (mut net, addr) = listening(Config {
        peer_id: Some(us),
        ..plain()
    });
    let (old, _) = Raw::handshake(&mut net, addr, r);
    let listener = RawListener::bind();
    net.dial(listener.addr).unwrap();
    let (mut new, log) = listener.accept(&mut [&mut net]);
    new.send(&hello(net.config().network_id, r));
    (net, old, listener, new, log)
}

#[test]
fn duplicate_keeps_the_new_connection_when_its_initiator_is_smaller() {
    // We (0x10) dial a peer (0x20) that is already connected inbound (initiator 0x20):
    // the new outbound one has the smaller initiator and is kept.
    let r = id(0x20);
    let (mut net, mut old, listener, mut new, mut log) = old_inbound_then_our_dial(id(0x10), r);
    let (old_frames, more) = frames_until_closed(&mut net, &mut old);
    log.extend(more);
    assert_eq!(
        old_frames,
        vec![Frame::Goodbye(GoodbyeReason::DuplicateConnection)],
        "the old connection is closed with GOODBYE 1"
    );
    assert!(!has(&log, 0, |e| matches!(
        e,
        Event::PeerDisconnected { .. } | Event::DialFailed { .. }
    )));
    assert!(net.is_connected(&r));
    let peers = net.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].direction, Direction::Outbound);
    assert_eq!(peers[0].addr, listener.addr);
    // Traffic goes over the new connection.
    let expected = hello_of(&net);
    run_until(&mut [&mut net], 400, |_, _| {
        new.pump();
        new.inbox.len() >= HELLO_LEN
    });
    assert_eq!(&new.inbox[..HELLO_LEN], &expected[..]);
    let _ = new.inbox.split_to(HELLO_LEN);
    assert_served_on(&mut net, &mut new, r, "over the new one");
}

#[test]
fn duplicate_closes_the_new_connection_when_its_initiator_is_larger() {
    // We (0x30) dial a peer (0x20) already connected inbound (initiator 0x20): the old
    // one has the smaller initiator, so the new outbound one is closed with GOODBYE 1.
    let r = id(0x20);
    let (mut net, mut old, listener, mut new, mut log) = old_inbound_then_our_dial(id(0x30), r);
    let (frames, more) = hello_then_frames_until_closed(&mut net, &mut new);
    log.extend(more);
    assert_eq!(
        frames,
        vec![Frame::Goodbye(GoodbyeReason::DuplicateConnection)]
    );
    assert!(!has(&log, 0, |e| matches!(
        e,
        Event::PeerDisconnected { .. }
    )));
    // `dial` ends in PeerConnected or DialFailed: here the dial's connection was dropped.
    assert_eq!(
        count(&log, 0, |e| *e
            == Event::DialFailed {
                addr: listener.addr,
                reason: CloseReason::DuplicateConnection
            }),
        1,
        "{log:?}"
    );
    assert!(
        !has(&log, 0, |e| matches!(e, Event::PeerConnected { .. })),
        "the peer was connected already: {log:?}"
    );
    let peers = net.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].direction, Direction::Inbound);
    // The old connection still carries traffic.
    assert_served_on(&mut net, &mut old, r, "over the old one");
}

#[test]
fn inbound_over_the_limit_is_closed_before_any_byte() {
    let (mut net, addr) = listening(Config {
        max_inbound: 1,
        ..plain()
    });
    let r = id(0x42);
    let (mut first, _) = Raw::handshake(&mut net, addr, r);
    let mut second = Raw::connect(addr);
    let log = run_until(&mut [&mut net], 400, |nets, _| {
        second.pump();
        second.closed && nets[0].stats().refused_inbound == 1
    });
    assert_eq!(
        second.received, 0,
        "no byte is sent to a refused connection"
    );
    assert!(log.is_empty(), "{log:?}");
    assert_eq!(net.stats().refused_inbound, 1);
    assert_eq!(net.stats().connections, 1);
    // The first one is still served, both ways.
    first.send_frame(&Frame::Message(Bytes::from_static(b"ping?")));
    net.send(&r, "pong!").unwrap();
    let mut frames = Vec::new();
    let log = run_until(&mut [&mut net], 400, |_, log| {
        frames.extend(first.frames());
        !frames.is_empty() && has(log, 0, |e| matches!(e, Event::Message { .. }))
    });
    assert_eq!(frames, vec![Frame::Message(Bytes::from_static(b"pong!"))]);
    assert_eq!(
        of(&log, 0),
        vec![Event::Message {
            peer: r,
            payload: Bytes::from_static(b"ping?")
        }]
    );
}

#[test]
fn a_raw_peer_claiming_our_own_id_is_closed_without_event() {
    let (mut net, addr) = node();
    let mut raw = Raw::connect(addr);
    raw.send(&hello(net.config().network_id, net.local_id()));
    let (frames, log) = hello_then_frames_until_closed(&mut net, &mut raw);
    assert!(frames.is_empty(), "{frames:?}");
    drop(raw);
    let mut log = log;
    log.extend(run_until(&mut [&mut net], 400, |n, _| {
        n[0].stats().connections == 0
    }));
    assert!(log.is_empty(), "{log:?}");
    assert!(net.peers().is_empty());
    assert_eq!(net.stats().failed_handshakes, 1);
}

#[test]
fn two_dials_of_ours_to_one_peer_keep_the_older() {
    // The same peer behind two addresses: both connections are initiated by us, so the
    // newer one is closed with GOODBYE 1.
    let (mut net, _) = node();
    let r = id(0x42);
    let first_listener = RawListener::bind();
    net.dial(first_listener.addr).unwrap();
    let (mut first, _) = first_listener.accept(&mut [&mut net]);
    first.send(&hello(net.config().network_id, r));
    run_until(&mut [&mut net], 400, |n, _| {
        first.pump();
        n[0].is_connected(&r) && first.inbox.len() >= HELLO_LEN
    });
    let _ = first.inbox.split_to(HELLO_LEN);
    let second_listener = RawListener::bind();
    net.dial(second_listener.addr).unwrap();
    let (mut second, mut log) = second_listener.accept(&mut [&mut net]);
    second.send(&hello(net.config().network_id, r));
    let (frames, more) = hello_then_frames_until_closed(&mut net, &mut second);
    log.extend(more);
    assert_eq!(
        frames,
        vec![Frame::Goodbye(GoodbyeReason::DuplicateConnection)]
    );
    assert_eq!(
        of(&log, 0),
        vec![Event::DialFailed {
            addr: second_listener.addr,
            reason: CloseReason::DuplicateConnection
        }]
    );
    assert_eq!(net.peers()[0].addr, first_listener.addr);
    assert_served_on(&mut net, &mut first, r, "first");
}

#[test]
fn pending_handshake_limit_refuses_inbound_before_any_byte() {
    let (mut net, addr) = listening(Config {
        max_pending_handshakes: 1,
        ..plain()
    });
    // A peer that never finishes its handshake holds the only slot.
    let mut slow = Raw::connect(addr);
    run_until(&mut [&mut net], 400, |_, _| {
        slow.pump();
        slow.received >= HELLO_LEN
    });
    let mut refused = Raw::connect(addr);
    run_until(&mut [&mut net], 400, |n, _| {
        refused.pump();
        refused.closed && n[0].stats().refused_inbound == 1
    });
    assert_eq!(refused.received, 0);
    // Once the slow one finishes, the slot is free again.
    slow.send(&hello(net.config().network_id, id(1)));
    run_until(&mut [&mut net], 400, |n, _| {
        slow.pump();
        n[0].is_connected(&id(1))
    });
    let (_third, _) = Raw::handshake(&mut net, addr, id(2));
    assert!(net.is_connected(&id(2)));
}

#[test]
fn frames_sent_with_the_id_are_delivered_on_a_dial_too() {
    let (mut net, _) = node();
    let listener = RawListener::bind();
    net.dial(listener.addr).unwrap();
    let (mut raw, mut log) = listener.accept(&mut [&mut net]);
    let mut bytes = hello(net.config().network_id, id(0x43));
    bytes.extend(encode(&Frame::Request {
        id: 11,
        payload: Bytes::from_static(b"right away"),
    }));
    raw.send(&bytes);
    log.extend(run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::Request { .. }))
    }));
    let events = of(&log, 0);
    assert!(
        matches!(&events[0], Event::PeerConnected { peer, direction: Direction::Outbound, .. } if *peer == id(0x43)),
        "{events:?}"
    );
    assert_eq!(
        events[1],
        Event::Request {
            peer: id(0x43),
            id: p2p::RequestId(11),
            payload: Bytes::from_static(b"right away")
        }
    );
}

/// One node dials the same peer at two of its addresses (both connections initiated by
/// the same side). PROTOCOL.md §2.3: the newer one is closed with GOODBYE 1 and "both
/// ends reach the same verdict without talking", so exactly one connection survives.
/// The polls are interleaved so that A completes the handshake of X first while B
/// completes that of Y first.
#[test]
fn same_initiator_duplicates_over_two_addresses_keep_one_connection() {
    let (mut a, _) = node();
    let mut b = Network::new(plain()).unwrap();
    let y_addr = b.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let x_addr = b.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let (a_id, b_id) = (a.local_id(), b.local_id());
    // 1. A dials Y and sends its hello there; B has not accepted yet.
    a.dial(y_addr).unwrap();
    run_until(&mut [&mut a], 400, |n, _| {
        n[0].stats().totals.bytes_out >= HELLO_LEN as u64
    });
    // 2. A dials X (not polled: no hello on X yet). B accepts both and completes Y.
    a.dial(x_addr).unwrap();
    let mut log = Log::new();
    for (i, e) in run_until(&mut [&mut b], 400, |n, _| {
        n[0].stats().connections == 2 && n[0].is_connected(&a_id)
    }) {
        log.push((i + 1, e));
    }
    // 3. Then both nodes run until things settle.
    let settled = |n: &Network| n.stats().handshaking == 0 && n.stats().connections <= 1;
    log.extend(run_until(&mut [&mut a, &mut b], 800, |n, _| {
        settled(n[0]) && settled(n[1])
    }));
    log.extend(run_turns(&mut [&mut a, &mut b], 10));
    assert!(
        a.is_connected(&b_id) && b.is_connected(&a_id),
        "both connections were closed: the two ends disagreed on which one is newer; \
         events: {log:#?}"
    );
    assert_eq!(a.stats().connections, 1);
    assert_eq!(b.stats().connections, 1);
    assert_ne!(a.peers()[0].direction, b.peers()[0].direction);
    assert!(
        !has(&log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
            && !has(&log, 1, |e| matches!(e, Event::PeerDisconnected { .. })),
        "{log:#?}"
    );
}

/// A node serving a raw peer over two connections (the peer dialled twice and has not
/// closed either yet): (node, first, second), both hellos consumed. In plaintext the
/// node does not probe the second (README, protocol notes).
fn peer_with_two_connections(config: Config, r: PeerId) -> (Network, Raw, Raw) {
    let (mut net, addr) = listening(config);
    let (first, _) = Raw::handshake(&mut net, addr, r);
    let mut second = Raw::connect(addr);
    second.send(&hello(net.config().network_id, r));
    run_until(&mut [&mut net], 400, |_, _| {
        second.pump();
        second.inbox.len() >= HELLO_LEN
    });
    let _ = second.inbox.split_to(HELLO_LEN);
    // The node probes the second: a peer that answered would have lost the first.
    // One more turn so the node has read the second hello, not only sent its own.
    run_turns(&mut [&mut net], 3);
    (net, first, second)
}

/// `events` are exactly: `r`'s session ended for `reason`, and a new one began.
#[track_caller]
fn assert_new_session(events: &[Event], r: PeerId, reason: CloseReason) {
    assert!(
        matches!(
            events,
            [
                Event::PeerDisconnected { peer: p1, reason: why },
                Event::PeerConnected { peer: p2, direction: Direction::Inbound, .. },
            ] if *p1 == r && *p2 == r && *why == reason
        ),
        "{events:?}"
    );
}

/// What the node sends to `r` now arrives on `raw`.
#[track_caller]
fn assert_served_on(net: &mut Network, raw: &mut Raw, r: PeerId, text: &'static str) {
    net.send(&r, text).unwrap();
    let (got, _) = collect_frames(&mut [net], raw, 400, |f, _| !f.is_empty());
    assert_eq!(
        got,
        vec![Frame::Message(Bytes::from_static(text.as_bytes()))]
    );
}

#[test]
fn shutting_down_ends_a_peer_on_two_connections_once() {
    let r = id(0x43);
    let (mut net, mut first, mut second) = peer_with_two_connections(plain(), r);
    net.shutdown();
    let log = run_until(&mut [&mut net], 400, |_, _| {
        first.pump();
        second.pump();
        first.closed && second.closed
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: r,
            reason: CloseReason::Shutdown
        }]
    );
}

#[test]
fn the_second_connection_carries_on_as_a_new_session_when_the_first_dies() {
    let r = id(0x44);
    let (mut net, first, mut second) = peer_with_two_connections(plain(), r);
    // The first ends without the duplicate rule's GOODBYE: the session on it ended.
    drop(first);
    let log = run_until(&mut [&mut net], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::PeerConnected { .. }))
    });
    assert_new_session(&of(&log, 0), r, CloseReason::PeerClosed);
    assert_served_on(&mut net, &mut second, r, "served here");
}

#[test]
fn disconnect_closes_every_connection_of_the_peer() {
    let r = id(0x46);
    let (mut net, mut first, mut second) = peer_with_two_connections(plain(), r);
    assert!(net.disconnect(&r));
    let mut got = (Vec::new(), Vec::new());
    let log = run_until(&mut [&mut net], 400, |_, _| {
        got.0.extend(first.frames());
        got.1.extend(second.frames());
        first.closed && second.closed
    });
    let goodbye = vec![Frame::Goodbye(GoodbyeReason::Shutdown)];
    assert_eq!((got.0, got.1), (goodbye.clone(), goodbye));
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: r,
            reason: CloseReason::Disconnected
        }]
    );
    assert!(!net.is_connected(&r));
}

#[test]
fn a_response_goes_back_over_the_connection_its_request_came_on() {
    let r = id(0x47);
    let (mut net, mut first, mut second) = peer_with_two_connections(plain(), r);
    second.send_frame(&Frame::Request {
        id: 7,
        payload: Bytes::from_static(b"q"),
    });
    let log = run_until(&mut [&mut net], 400, |_, log| {
        second.pump();
        has(log, 0, |e| matches!(e, Event::Request { .. }))
    });
    let Some(Event::Request { id: rid, .. }) = of(&log, 0).pop() else {
        panic!("no request: {log:?}");
    };
    net.respond(&r, rid, "a").unwrap();
    // A marker on the serving connection: whatever the node sent there before it
    // arrives first.
    net.send(&r, "marker").unwrap();
    let mut got = (Vec::new(), Vec::new());
    run_until(&mut [&mut net], 400, |_, _| {
        got.0.extend(first.frames());
        got.1.extend(second.frames());
        !got.0.is_empty() && !got.1.is_empty()
    });
    assert_eq!(
        got.1,
        vec![Frame::Response {
            id: 7,
            payload: Bytes::from_static(b"a")
        }],
        "the asking connection gets the response"
    );
    assert_eq!(
        got.0,
        vec![Frame::Message(Bytes::from_static(b"marker"))],
        "the other one gets nothing else"
    );
}

#[test]
fn a_peer_misbehaving_on_one_connection_loses_both() {
    let r = id(0x48);
    let config = Config {
        max_rejected_frames: 1,
        ..plain()
    };
    let (mut net, mut first, mut second) = peer_with_two_connections(config, r);
    second.send(&raw_frame(0x55, b""));
    let mut got = (Vec::new(), Vec::new());
    let log = run_until(&mut [&mut net], 400, |_, _| {
        got.0.extend(first.frames());
        got.1.extend(second.frames());
        first.closed && second.closed
    });
    let goodbye = vec![Frame::Goodbye(GoodbyeReason::Misbehaving)];
    assert_eq!((got.0, got.1), (goodbye.clone(), goodbye));
    assert_eq!(
        count(&log, 0, |e| matches!(
            e,
            Event::PeerDisconnected {
                reason: CloseReason::Misbehaving,
                ..
            }
        )),
        1,
        "{log:?}"
    );
    assert!(!net.is_connected(&r));
}
