//! Listening addresses travel (PROTOCOL.md §5.1): a node tells a peer that understands
//! ADDRS where it listens, and tells a peer of an earlier revision nothing.

mod common;

use std::net::SocketAddr;

use common::*;
use p2p::wire::{FEATURE_ADDRS, Frame, PREAMBLE_LEN, Reject};
use p2p::{Config, Event, Network, Security};

fn net(security: Security) -> Network {
    Network::new(Config {
        security,
        ..Config::default()
    })
    .unwrap()
}

fn told(log: &Log, i: usize) -> Vec<Vec<SocketAddr>> {
    of(log, i)
        .into_iter()
        .filter_map(|e| match e {
            Event::PeerAddrs { addrs, .. } => Some(addrs),
            _ => None,
        })
        .collect()
}

#[test]
fn each_side_learns_where_the_other_listens_not_the_port_it_dialled_from() {
    for security in [Security::Plaintext, Security::NoiseXx] {
        let (mut a, mut b) = (net(security), net(security));
        let a_listens = a.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        // A wildcard is told as such and heard as the IP the connection comes from.
        let b_bound = b.listen("0.0.0.0:0".parse().unwrap()).unwrap();
        let b_addr = SocketAddr::from(([127, 0, 0, 1], b_bound.port()));
        let (a_id, b_id) = (a.local_id(), b.local_id());
        a.dial(b_addr).unwrap();
        let log = run_until(&mut [&mut a, &mut b], 2_000, |_, log| {
            told(log, 0).len() == 1 && told(log, 1).len() == 1
        });
        assert_eq!(told(&log, 1), vec![vec![a_listens]], "{security:?}");
        assert_eq!(told(&log, 0), vec![vec![b_addr]], "{security:?}");
        // B sees A's connection come from another port: only ADDRS says where A listens.
        let seen = b.peers().iter().find(|p| p.id == a_id).unwrap().addr;
        assert_ne!(seen, a_listens);
        assert_eq!(b.peer_listen_addrs(&a_id), vec![a_listens]);
        assert_eq!(a.peer_listen_addrs(&b_id), vec![b_addr]);
    }
}

/// A peer of revision 5 or before sends 0 in preamble byte 6: it is never sent a
/// frame kind it does not know. Its PING is answered and nothing else arrives.
#[test]
fn a_peer_without_the_feature_bit_is_sent_no_addrs() {
    let (mut net, addr) = listening(plain());
    let (mut raw, _) = Raw::handshake(&mut net, addr, p2p::PeerId::from_bytes([0x51; 32]));
    raw.send_frame(&Frame::Ping(7));
    run_until(&mut [&mut net], 400, |_, _| {
        raw.pump();
        !raw.inbox.is_empty()
    });
    assert_eq!(raw.frames(), vec![Frame::Pong(7)]);
}

/// With the bit set, the peer hears the node's address first; its own ADDRS counts
/// once, and a second is a rejected frame.
#[test]
fn a_peer_with_the_feature_bit_hears_the_address_and_may_tell_its_own_once() {
    let (mut net, addr) = listening(plain());
    let me = p2p::PeerId::from_bytes([0x52; 32]);
    let mut raw = Raw::connect(addr);
    let mut hello = hello(net.config().network_id, me);
    hello[6] = FEATURE_ADDRS;
    raw.send(&hello);
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        raw.inbox.len() > PREAMBLE_LEN + 32 && connected_to(log, 0, me)
    });
    assert!(connected_to(&log, 0, me));
    let _ = raw.inbox.split_to(PREAMBLE_LEN + 32);
    assert_eq!(raw.frames(), vec![Frame::Addrs(vec![addr])]);

    let mine: SocketAddr = "127.0.0.1:4444".parse().unwrap();
    raw.send_frame(&Frame::Addrs(vec![mine]));
    raw.send_frame(&Frame::Addrs(vec![mine]));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::FrameRejected { .. }))
    });
    assert_eq!(told(&log, 0), vec![vec![mine]]);
    assert!(has(&log, 0, |e| matches!(
        e,
        Event::FrameRejected {
            reason: Reject::RepeatedAddrs,
            ..
        }
    )));
    assert_eq!(net.peer_listen_addrs(&me), vec![mine]);
}

/// Both dial each other at once and the duplicate rule keeps one connection (PROTOCOL.md
/// §2.3): whichever survives, each side knows where the other listens. The addresses
/// are told on every connection kept, not only on the one that served first.
#[test]
fn after_simultaneous_dials_each_side_still_knows_where_the_other_listens() {
    for (x, y) in [(0x01, 0x02), (0x02, 0x01)] {
        for security in [Security::Plaintext, Security::NoiseXx] {
            let cfg = |b| Config {
                security,
                peer_id: (security == Security::Plaintext).then(|| id(b)),
                ..Config::default()
            };
            let (mut a, a_addr) = listening(cfg(x));
            let (mut b, b_addr) = listening(cfg(y));
            let (a_id, b_id) = (a.local_id(), b.local_id());
            a.dial(b_addr).unwrap();
            b.dial(a_addr).unwrap();
            let settled = |n: &Network| n.peers().len() == 1 && n.stats().connections == 1;
            run_until(&mut [&mut a, &mut b], 800, |nets, _| {
                settled(nets[0]) && settled(nets[1])
            });
            run_until(&mut [&mut a, &mut b], 400, |nets, _| {
                !nets[0].peer_listen_addrs(&b_id).is_empty()
                    && !nets[1].peer_listen_addrs(&a_id).is_empty()
            });
            assert_eq!(a.peer_listen_addrs(&b_id), vec![b_addr], "{security:?}");
            assert_eq!(b.peer_listen_addrs(&a_id), vec![a_addr], "{security:?}");
        }
    }
}

/// Port 0 is no address to reach anyone at (PROTOCOL.md §5.1): the frame is taken, and
/// that address dropped from what the application hears.
#[test]
fn an_address_with_port_0_is_dropped_and_the_rest_of_the_frame_kept() {
    let (mut net, addr) = listening(plain());
    let me = p2p::PeerId::from_bytes([0x53; 32]);
    let mut raw = Raw::connect(addr);
    let mut hello = hello(net.config().network_id, me);
    hello[6] = FEATURE_ADDRS;
    raw.send(&hello);
    let unreachable: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mine: SocketAddr = "127.0.0.1:4444".parse().unwrap();
    raw.send_frame(&Frame::Addrs(vec![unreachable, mine]));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        !told(log, 0).is_empty()
    });
    assert_eq!(told(&log, 0), vec![vec![mine]]);
    assert!(!has(&log, 0, |e| matches!(e, Event::FrameRejected { .. })));
    assert_eq!(net.peer_listen_addrs(&me), vec![mine]);
}

/// The feature bits are read per connection: a peer that set the bit on its first
/// connection and not on its second (an older build behind the same key, say) is sent
/// ADDRS on the first only, also once the second serves it (PROTOCOL.md §1, §2.3).
#[test]
fn a_second_connection_without_the_bit_is_sent_no_addrs_even_once_it_serves() {
    let (mut net, addr) = listening(plain());
    let me = p2p::PeerId::from_bytes([0x54; 32]);
    let mut first = Raw::connect(addr);
    let mut with_bit = hello(net.config().network_id, me);
    with_bit[6] = FEATURE_ADDRS;
    first.send(&with_bit);
    run_until(&mut [&mut net], 400, |_, log| {
        first.pump();
        first.inbox.len() > HELLO_LEN && connected_to(log, 0, me)
    });
    let _ = first.inbox.split_to(HELLO_LEN);
    assert_eq!(first.frames(), vec![Frame::Addrs(vec![addr])]);

    let mut second = Raw::connect(addr);
    second.send(&hello(net.config().network_id, me));
    second.send_frame(&Frame::Ping(9));
    run_until(&mut [&mut net], 400, |_, _| {
        second.pump();
        second.inbox.len() >= HELLO_LEN + 13
    });
    let _ = second.inbox.split_to(HELLO_LEN);
    assert_eq!(second.frames(), vec![Frame::Pong(9)]);

    // The peer keeps the second: it serves from now on, and still hears no ADDRS.
    first.send_frame(&Frame::Goodbye(
        p2p::wire::GoodbyeReason::DuplicateConnection,
    ));
    run_until(&mut [&mut net], 400, |_, _| {
        first.pump();
        first.closed
    });
    second.send_frame(&Frame::Ping(10));
    run_until(&mut [&mut net], 400, |_, _| {
        second.pump();
        second.inbox.len() >= 13
    });
    assert_eq!(second.frames(), vec![Frame::Pong(10)]);
    assert!(net.is_connected(&me));
}

/// What peers say they listen on fills the address book, which survives a restart
/// through a file.
#[test]
fn told_addresses_fill_the_address_book_which_saves_and_loads() {
    let (mut a, mut b) = (net(Security::Plaintext), net(Security::Plaintext));
    let a_listens = a.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let b_addr = b.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    a.dial(b_addr).unwrap();
    run_until(&mut [&mut a, &mut b], 2_000, |nets, _| {
        nets[0].known_addrs() == vec![b_addr] && nets[1].known_addrs() == vec![a_listens]
    });
    let dir = std::env::temp_dir().join(format!("p2p-book-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("book");
    // A file in the way of a fixed temporary name does not stop a save.
    std::fs::create_dir_all(dir.join("book.tmp")).unwrap();
    b.save_address_book(&path).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["book", "book.tmp"], "no temporary file left");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        format!("p2p-address-book-v1\n{a_listens} 0 local v\n")
    );
    let mut restarted = net(Security::Plaintext);
    assert_eq!(restarted.load_address_book(&path).unwrap(), 1);
    assert_eq!(restarted.known_addrs(), vec![a_listens]);
    std::fs::write(&path, "p2p-address-book-v1\nnonsense\n").unwrap();
    let err = net(Security::Plaintext)
        .load_address_book(&path)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    std::fs::remove_dir_all(&dir).unwrap();
}
