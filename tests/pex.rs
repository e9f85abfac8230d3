//! Peer exchange and discovery dialling (PROTOCOL.md §5.2): GETADDRS is answered by
//! one PEERS from the address book, at most once per 10 s; PEERS is taken only in
//! answer to a GETADDRS of ours; only peers we dialled that set feature 0x02 are
//! asked; nodes told only of a seed find each other; what one network tells fills
//! only its shares of the book and of the outbound connections.
//!
//! Every address any node here may dial is on loopback (127.0.0.0/8): the tests never
//! send a SYN anywhere else.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use bytes::Buf;
use common::*;
use p2p::wire::{FEATURE_ADDRS, FEATURE_PEX, Frame, MAX_PEERS, Reject};
use p2p::{CloseReason, Config, Direction, Event, Network, PeerId};

/// Preamble byte 6 of a peer of revision 7: ADDRS and peer exchange.
const PEX: u8 = FEATURE_ADDRS | FEATURE_PEX;

/// Enough turns for a discovery pass every 2 s (`DISCOVERY_INTERVAL`) to come, at
/// most 5 ms a turn when idle.
const PASS_TURNS: usize = 3_000;

/// A plaintext hello claiming `me` with `features` in preamble byte 6.
fn hello_with(net: &Network, me: PeerId, features: u8) -> Vec<u8> {
    let mut out = hello(net.config().network_id, me);
    out[6] = features;
    out
}

/// Steps `net` until `raw` has the node's hello and the node announced `me`; checks
/// and consumes the hello.
#[track_caller]
fn finish_handshake(net: &mut Network, raw: &mut Raw, me: PeerId) {
    let expected = hello_of(net);
    run_until(&mut [net], 400, |_, log| {
        raw.pump();
        raw.inbox.len() >= HELLO_LEN && connected_to(log, 0, me)
    });
    assert_eq!(&raw.inbox[..HELLO_LEN], &expected[..], "node's hello");
    raw.inbox.advance(HELLO_LEN);
}

/// A raw peer that dials the node at `addr` as `me`, setting `features`.
#[track_caller]
fn inbound(net: &mut Network, addr: SocketAddr, me: PeerId, features: u8) -> Raw {
    let mut raw = Raw::connect(addr);
    raw.send(&hello_with(net, me, features));
    finish_handshake(net, &mut raw, me);
    raw
}

/// Accepts the node's dial at `listener` and answers its handshake as `me`, setting
/// `features`.
#[track_caller]
fn accept(listener: &RawListener, net: &mut Network, me: PeerId, features: u8) -> Raw {
    let (mut raw, _) = listener.accept(&mut [&mut *net]);
    raw.send(&hello_with(net, me, features));
    finish_handshake(net, &mut raw, me);
    raw
}

/// A loopback address nothing listens on: a dial to it is refused at once.
fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sends a PING from `raw` and steps `nets` until its PONG arrives, adding every
/// frame received meanwhile to `frames`. Whatever the node queued for `raw` in an
/// earlier turn arrives before the PONG; and once the PONG is in, the turn that
/// handled whatever `raw` sent before the PING is over.
#[track_caller]
fn fence(nets: &mut [&mut Network], raw: &mut Raw, frames: &mut Vec<Frame>, nonce: u64) {
    raw.send_frame(&Frame::Ping(nonce));
    run_until(nets, 400, |_, _| {
        frames.extend(raw.frames());
        frames.contains(&Frame::Pong(nonce))
    });
}

fn getaddrs(frames: &[Frame]) -> usize {
    frames.iter().filter(|f| **f == Frame::GetAddrs).count()
}

fn peers_frames(frames: &[Frame]) -> Vec<Vec<SocketAddr>> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Peers(addrs) => Some(addrs.clone()),
            _ => None,
        })
        .collect()
}

fn rejections(log: &Log, i: usize, peer: PeerId) -> Vec<Reject> {
    of(log, i)
        .into_iter()
        .filter_map(|e| match e {
            Event::FrameRejected {
                peer: p, reason, ..
            } if p == peer => Some(reason),
            _ => None,
        })
        .collect()
}

fn sorted(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    addrs.sort();
    addrs
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A config that looks for `target` outbound connections.
fn seeking(target: usize) -> Config {
    Config {
        target_outbound: target,
        ..plain()
    }
}

// ---- 1. The wire: GETADDRS, PEERS ----

/// A GETADDRS is answered by one PEERS holding the book's addresses, but neither
/// those whose last dial failed nor the asker's own; a second GETADDRS right after
/// is a rejected frame and is not answered.
#[test]
fn a_getaddrs_is_answered_by_one_peers_from_the_book_and_a_second_at_once_is_rejected() {
    let (mut net, addr) = listening(plain());
    let good = vec![
        sa("127.0.5.1:5001"),
        sa("127.0.5.2:5002"),
        sa("127.5.0.3:5003"),
    ];
    let theirs = sa("127.0.5.9:5009");
    for a in good.iter().chain([&theirs]) {
        assert!(net.add_addr(*a));
    }
    // The last dial to `dead` failed: it stays in the book, but is not told.
    let dead = dead_addr();
    assert!(net.add_addr(dead));
    net.dial(dead).unwrap();
    run_until(&mut [&mut net], 400, |_, log| {
        has(
            log,
            0,
            |e| matches!(e, Event::DialFailed { addr, .. } if *addr == dead),
        )
    });
    assert!(net.known_addrs().contains(&dead));

    let me = id(0x61);
    let mut raw = inbound(&mut net, addr, me, PEX);
    // The asker says where it listens: that is not news to it.
    raw.send_frame(&Frame::Addrs(vec![theirs]));
    let mut twice = encode(&Frame::GetAddrs);
    twice.extend(encode(&Frame::GetAddrs));
    raw.send(&twice);
    let mut frames = Vec::new();
    let log = run_until(&mut [&mut net], 400, |_, log| {
        frames.extend(raw.frames());
        !peers_frames(&frames).is_empty() && !rejections(log, 0, me).is_empty()
    });
    assert_eq!(rejections(&log, 0, me), vec![Reject::GetAddrsTooSoon]);
    fence(&mut [&mut net], &mut raw, &mut frames, 1);
    assert_eq!(frames[0], Frame::Addrs(vec![addr]), "{frames:?}");
    let answers = peers_frames(&frames);
    assert_eq!(answers.len(), 1, "one GETADDRS answered: {frames:?}");
    assert_eq!(sorted(answers[0].clone()), sorted(good));
    assert_eq!(net.peer_stats(&me).unwrap().rejected_frames, 1);
    assert!(net.is_connected(&me), "a rejected frame does not close");
}

/// However full the book, one PEERS carries at most 32 addresses, each from the book
/// and each once.
#[test]
fn a_peers_answer_holds_at_most_32_addresses() {
    let (mut net, addr) = listening(plain());
    let book: Vec<SocketAddr> = (1..=40u8)
        .map(|i| SocketAddr::from(([127, 0, 6, i], 6000 + u16::from(i))))
        .collect();
    for a in &book {
        assert!(net.add_addr(*a));
    }
    let mut raw = inbound(&mut net, addr, id(0x62), PEX);
    raw.send_frame(&Frame::GetAddrs);
    let mut frames = Vec::new();
    run_until(&mut [&mut net], 400, |_, _| {
        frames.extend(raw.frames());
        !peers_frames(&frames).is_empty()
    });
    let told = peers_frames(&frames).remove(0);
    assert_eq!(told.len(), MAX_PEERS);
    let distinct: HashSet<_> = told.iter().collect();
    assert_eq!(distinct.len(), MAX_PEERS, "no address twice: {told:?}");
    assert!(told.iter().all(|a| book.contains(a)), "{told:?}");
}

/// A PEERS frame is taken only in answer to a GETADDRS of ours on its connection: an
/// inbound peer's (never asked), or an outbound peer's second one for a single ask,
/// is rejected and its addresses stay out of the book; the answer itself fills it.
#[test]
fn a_peers_frame_that_answers_no_getaddrs_is_rejected_and_not_learned() {
    // One outbound connection is the target: the node, never short once connected,
    // dials none of what it learns.
    let (mut net, addr) = listening(seeking(1));
    let listener = RawListener::bind();
    let (asked, pusher) = (id(0x63), id(0x64));
    net.add_addr(listener.addr);
    let mut out = accept(&listener, &mut net, asked, PEX);
    let mut out_frames = Vec::new();
    run_until(&mut [&mut net], 400, |_, _| {
        out_frames.extend(out.frames());
        getaddrs(&out_frames) >= 1
    });

    // An inbound peer was never asked.
    let mut pushy = inbound(&mut net, addr, pusher, PEX);
    let pushed = sa("127.0.7.1:7001");
    pushy.send_frame(&Frame::Peers(vec![pushed]));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        pushy.pump();
        !rejections(log, 0, pusher).is_empty()
    });
    assert_eq!(rejections(&log, 0, pusher), vec![Reject::UnsolicitedPeers]);
    assert!(
        !net.known_addrs().contains(&pushed),
        "{:?}",
        net.known_addrs()
    );

    // The outbound peer answers our one GETADDRS: learned. Port 0 and the
    // unspecified IP mean nothing and are dropped, the rest kept; an IPv4-mapped
    // address is its IPv4 address.
    let answer = sa("127.0.7.2:7002");
    let mapped = sa("[::ffff:127.0.7.4]:7004");
    out.send_frame(&Frame::Peers(vec![
        sa("127.0.7.5:0"),
        sa("0.0.0.0:7006"),
        answer,
        mapped,
    ]));
    let mut frames = Vec::new();
    fence(&mut [&mut net], &mut out, &mut frames, 2);
    assert_eq!(
        net.known_addrs(),
        sorted(vec![listener.addr, answer, sa("127.0.7.4:7004")])
    );
    assert_eq!(net.peer_stats(&asked).unwrap().rejected_frames, 0);

    // A second PEERS answers nothing.
    let more = sa("127.0.7.3:7003");
    out.send_frame(&Frame::Peers(vec![more]));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        out.pump();
        !rejections(log, 0, asked).is_empty()
    });
    assert_eq!(rejections(&log, 0, asked), vec![Reject::UnsolicitedPeers]);
    assert!(
        !net.known_addrs().contains(&more),
        "{:?}",
        net.known_addrs()
    );
    assert!(net.is_connected(&asked) && net.is_connected(&pusher));
}

// ---- 2. Who is asked ----

/// A peer the node dialled, that set 0x02, hears a GETADDRS right after the
/// handshake, unprompted. With a target of one outbound connection, met by that peer,
/// the node runs no discovery pass that could have asked instead.
#[test]
fn a_dialled_peer_that_set_the_bit_is_asked_right_after_the_handshake() {
    let (mut net, addr) = listening(seeking(1));
    let listener = RawListener::bind();
    net.add_addr(listener.addr);
    let mut raw = accept(&listener, &mut net, id(0x65), PEX);
    let mut frames = Vec::new();
    run_until(&mut [&mut net], 400, |_, _| {
        frames.extend(raw.frames());
        frames.len() >= 2
    });
    fence(&mut [&mut net], &mut raw, &mut frames, 3);
    assert_eq!(
        frames,
        vec![Frame::Addrs(vec![addr]), Frame::GetAddrs, Frame::Pong(3)]
    );
}

/// A node short of its target asks its outbound peers again at its discovery passes,
/// but not one it asked less than 30 s ago: the peer asked at the handshake hears no
/// second GETADDRS at the next pass.
#[test]
fn a_peer_asked_is_not_asked_again_at_the_next_discovery_pass() {
    let (mut net, _) = listening(Config {
        redial_base: Duration::from_millis(10),
        redial_max: Duration::from_millis(10),
        ..seeking(3)
    });
    let listener = RawListener::bind();
    // Nothing listens at `dead`: each discovery pass while short dials it again,
    // which `discovery_dials` shows.
    net.add_addr(listener.addr);
    net.add_addr(dead_addr());
    let mut raw = accept(&listener, &mut net, id(0x6b), PEX);
    let mut frames = Vec::new();
    run_until(&mut [&mut net], 400, |_, _| {
        frames.extend(raw.frames());
        getaddrs(&frames) >= 1
    });
    let passes = net.stats().discovery_dials;
    run_until(&mut [&mut net], PASS_TURNS, |nets, _| {
        frames.extend(raw.frames());
        nets[0].stats().discovery_dials > passes
    });
    fence(&mut [&mut net], &mut raw, &mut frames, 3);
    assert_eq!(getaddrs(&frames), 1, "{frames:?}");
}

/// A peer the node dialled that did not set 0x02 (byte 6 = 0, a node of revision 5,
/// or 0x01, of revision 6) is never sent GETADDRS, neither at the handshake nor at
/// the discovery passes after. A peer that dialled the node is asked only when no
/// connection the node dialled to a peer that understands GETADDRS is open: here the
/// two dialled ones do not, so it is asked, once (30 s apart at most).
#[test]
fn peers_without_the_bit_are_never_asked_and_inbound_ones_only_for_want_of_others() {
    let (mut net, addr) = listening(Config {
        redial_base: Duration::from_millis(10),
        redial_max: Duration::from_millis(10),
        ..seeking(4)
    });
    let (l0, l1) = (RawListener::bind(), RawListener::bind());
    net.add_addr(l0.addr);
    net.add_addr(l1.addr);
    net.add_addr(dead_addr());
    let mut raws = [
        accept(&l0, &mut net, id(0x66), 0),
        accept(&l1, &mut net, id(0x67), FEATURE_ADDRS),
        inbound(&mut net, addr, id(0x68), PEX),
    ];
    for raw in &raws {
        assert!(!raw.closed);
    }
    let mut frames: [Vec<Frame>; 3] = Default::default();
    let passes = net.stats().discovery_dials;
    run_until(&mut [&mut net], PASS_TURNS, |nets, _| {
        for (raw, frames) in raws.iter_mut().zip(&mut frames) {
            frames.extend(raw.frames());
        }
        nets[0].stats().discovery_dials > passes
    });
    for (i, (raw, frames)) in raws.iter_mut().zip(&mut frames).enumerate() {
        fence(&mut [&mut net], raw, frames, 10 + i as u64);
    }
    let asked: Vec<usize> = frames.iter().map(|f| getaddrs(f)).collect();
    assert_eq!(asked, [0, 0, 1], "GETADDRS each got: {frames:?}");
    let directions: Vec<Direction> = [id(0x66), id(0x67), id(0x68)]
        .iter()
        .map(|p| net.peers().iter().find(|i| i.id == *p).unwrap().direction)
        .collect();
    assert_eq!(
        directions,
        [Direction::Outbound, Direction::Outbound, Direction::Inbound]
    );
}

// ---- 3. Discovery ----

/// The addresses `n` dialled of its peers, sorted.
fn outbound(n: &Network) -> Vec<SocketAddr> {
    let mut to: Vec<SocketAddr> = n
        .peers()
        .iter()
        .filter(|p| p.direction == Direction::Outbound)
        .map(|p| p.addr)
        .collect();
    to.sort();
    to
}

/// Nodes told by the application of a seed only find each other through it. They join
/// one by one, each once the seed knows where the previous ones listen (their ADDRS)
/// and the previous one reached the peers it could, so what each hears is fixed: N2
/// hears of N1, N3 of N1 and N2, N4 of three. Peers on loopback (the operator's own
/// network) are not held to half the target per teller network, so each dials every
/// node it hears of, up to its target of 4, and every node ends with at least 3
/// peers though the application named only S.
#[test]
fn nodes_told_only_of_a_seed_find_each_other() {
    let mut nets = Vec::new();
    let mut addrs = Vec::new();
    for config in [plain(), seeking(4), seeking(4), seeking(4), seeking(4)] {
        let (net, addr) = listening(config);
        nets.push(net);
        addrs.push(addr);
    }
    let seed = addrs[0];
    for k in 1..nets.len() {
        assert!(nets[k].add_addr(seed));
        let mut refs: Vec<&mut Network> = nets.iter_mut().collect();
        run_until(&mut refs, 1_000, |nets, _| {
            nets[0].known_addrs().contains(&addrs[k]) && outbound(nets[k]).len() == k.min(4)
        });
    }
    let mut refs: Vec<&mut Network> = nets.iter_mut().collect();
    run_until(&mut refs, 1_000, |nets, _| {
        nets[0].peers().len() == 4 && nets[1..].iter().all(|n| n.peers().len() >= 3)
    });
    assert_eq!(outbound(&nets[1]), vec![seed], "N1 heard of nobody");
    assert_eq!(outbound(&nets[2]), sorted(vec![seed, addrs[1]]));
    assert_eq!(outbound(&nets[3]), sorted(vec![seed, addrs[1], addrs[2]]));
    assert_eq!(
        outbound(&nets[4]),
        sorted(vec![seed, addrs[1], addrs[2], addrs[3]])
    );
    for (k, net) in nets.iter().enumerate().skip(1) {
        assert_eq!(
            net.stats().discovery_dials as usize,
            outbound(net).len(),
            "N{k} dialled by itself every node it reached, and only those"
        );
    }
}

/// A node listening on a wildcard does not know 127.0.0.1:port is itself; told so by a
/// peer's PEERS, it dials it once: the self-connection forgets the address, another
/// peer telling it again does not bring it back, and the discovery passes after never
/// dial it again.
#[test]
fn a_node_told_its_own_address_dials_it_once_and_forgets_it() {
    let mut net = Network::new(Config {
        redial_base: Duration::from_millis(500),
        redial_max: Duration::from_millis(500),
        ..seeking(3)
    })
    .unwrap();
    let port = net.listen(sa("0.0.0.0:0")).unwrap().port();
    let me = SocketAddr::from(([127, 0, 0, 1], port));
    let (l1, l2) = (RawListener::bind(), RawListener::bind());
    let dead = dead_addr();
    for a in [l1.addr, l2.addr, dead] {
        net.add_addr(a);
    }
    let mut r1 = accept(&l1, &mut net, id(0x69), PEX);
    let mut r2 = accept(&l2, &mut net, id(0x6a), PEX);
    let (mut f1, mut f2) = (Vec::new(), Vec::new());
    run_until(&mut [&mut net], 400, |_, _| {
        f1.extend(r1.frames());
        f2.extend(r2.frames());
        getaddrs(&f1) >= 1 && getaddrs(&f2) >= 1
    });
    let self_dials = |log: &Log| {
        count(
            log,
            0,
            |e| matches!(e, Event::DialFailed { addr, .. } if *addr == me),
        )
    };

    r1.send_frame(&Frame::Peers(vec![me]));
    let mut log = run_until(&mut [&mut net], 1_000, |_, log| self_dials(log) >= 1);
    assert!(has(&log, 0, |e| matches!(
        e,
        Event::DialFailed {
            addr,
            reason: CloseReason::SelfConnection,
        } if *addr == me
    )));
    assert!(!net.known_addrs().contains(&me), "{:?}", net.known_addrs());

    // Told again by another peer: not learned.
    r2.send_frame(&Frame::Peers(vec![me]));
    fence(&mut [&mut net], &mut r2, &mut f2, 4);
    assert!(!net.known_addrs().contains(&me), "{:?}", net.known_addrs());
    // Still short of 3, the node dials `dead` again at each discovery pass (every
    // 2 s; its backoff is shorter). For the backoff after a failed dial, none is
    // under way right after one: from there to the next, the pass between dials
    // `dead` alone.
    let dead_failed = |log: &Log| {
        count(
            log,
            0,
            |e| matches!(e, Event::DialFailed { addr, .. } if *addr == dead),
        )
    };
    log.extend(run_until(&mut [&mut net], PASS_TURNS, |_, more| {
        dead_failed(more) >= 1
    }));
    let dials = net.stats().discovery_dials;
    log.extend(run_until(&mut [&mut net], PASS_TURNS, |_, more| {
        dead_failed(more) >= 1
    }));
    assert_eq!(
        net.stats().discovery_dials,
        dials + 1,
        "the pass dialled `dead`, and nothing else"
    );
    assert_eq!(self_dials(&log), 1, "dialled itself once");
    assert!(!net.known_addrs().contains(&me));
}

// ---- 4. Against an eclipse ----

/// What the peers on the operator's own network tell (here loopback, 127/8, where
/// network groups mean nothing) counts as one source: together they fill at most a
/// thirty-second of the book (at least 8; 8 of a book of 256). Three peers in three
/// /16s each tell 32 addresses: the first fills the share, the others add none.
/// (The shares for public peers, by their network group, are unit tests in
/// src/addrbook.rs: a test cannot be a public peer.)
#[test]
fn what_local_peers_tell_fills_only_one_share_of_the_book() {
    // The node holds its target of outbound connections from the start (the three
    // tellers, dialled by the application), so it dials none of what it learns: no
    // failed dial changes what the book holds.
    let (mut net, _) = listening(Config {
        address_book_size: 256,
        max_outbound: 3,
        ..seeking(3)
    });
    let tellers: Vec<RawListener> = (1..=3)
        .map(|n| RawListener::bind_at([127, n, 0, 1]))
        .collect();
    for t in &tellers {
        net.dial(t.addr).unwrap();
    }
    let mut raws: Vec<Raw> = tellers
        .iter()
        .enumerate()
        .map(|(i, t)| accept(t, &mut net, id(0x70 + i as u8), PEX))
        .collect();
    let mut frames: Vec<Vec<Frame>> = vec![Vec::new(); 3];
    run_until(&mut [&mut net], 400, |_, _| {
        for (raw, f) in raws.iter_mut().zip(&mut frames) {
            f.extend(raw.frames());
        }
        frames.iter().all(|f| getaddrs(f) >= 1)
    });
    let told = |k: u8| -> Vec<SocketAddr> {
        (1..=32u8)
            .map(|i| SocketAddr::from(([127, 9 + k, k, i], 9000)))
            .collect()
    };
    let before = net.known_addrs().len();
    for k in 0..3 {
        raws[k].send_frame(&Frame::Peers(told(k as u8)));
        fence(&mut [&mut net], &mut raws[k], &mut frames[k], 20 + k as u64);
        let theirs = told(k as u8);
        let kept = net
            .known_addrs()
            .iter()
            .filter(|a| theirs.contains(a))
            .count();
        assert_eq!(kept, if k == 0 { 8 } else { 0 }, "teller {k}");
    }
    assert_eq!(net.known_addrs().len(), before + 8);
    assert_eq!(net.stats().discovery_dials, 0);
}

/// A teller on the operator's own network (here loopback) is not held to half of
/// `target_outbound`, as a public teller network is (unit tests in
/// src/discovery.rs): a peer in 127.1/16 telling six listening peers gets the four
/// slots left of a target of 6 dialled, and what another tells later none.
#[test]
fn a_local_teller_fills_the_outbound_connections_it_can() {
    let (mut net, _) = listening(seeking(6));
    let (t1, t2) = (
        RawListener::bind_at([127, 1, 0, 1]),
        RawListener::bind_at([127, 2, 0, 1]),
    );
    net.add_addr(t1.addr);
    net.add_addr(t2.addr);
    let mut r1 = accept(&t1, &mut net, id(0x80), PEX);
    let mut r2 = accept(&t2, &mut net, id(0x81), PEX);
    let (mut f1, mut f2) = (Vec::new(), Vec::new());
    run_until(&mut [&mut net], 400, |_, _| {
        f1.extend(r1.frames());
        f2.extend(r2.frames());
        getaddrs(&f1) >= 1 && getaddrs(&f2) >= 1
    });
    // Twelve peers that complete any handshake and stay.
    let listeners: Vec<RawListener> = (0..12).map(|_| RawListener::bind()).collect();
    let mut served: Vec<Vec<Raw>> = (0..12).map(|_| Vec::new()).collect();
    let serve = |net: &Network, served: &mut Vec<Vec<Raw>>| {
        for (i, l) in listeners.iter().enumerate() {
            while let Some(mut raw) = l.try_accept() {
                raw.send(&hello_with(net, id(0x90 + i as u8), 0));
                served[i].push(raw);
            }
        }
    };
    let dialled = |served: &Vec<Vec<Raw>>, from: std::ops::Range<usize>| {
        served[from].iter().map(Vec::len).sum::<usize>()
    };
    let told: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();

    // Steps `net` for `turns` turns, serving the peers it dials.
    let settle = |net: &mut Network, served: &mut Vec<Vec<Raw>>, turns: usize| {
        let mut log = Log::new();
        for _ in 0..turns {
            turn(&mut [&mut *net], &mut log);
            serve(net, served);
        }
    };

    r1.send_frame(&Frame::Peers(told[..6].to_vec()));
    run_until(&mut [&mut net], 1_000, |nets, _| {
        serve(nets[0], &mut served);
        nets[0].peers().len() >= 6
    });
    // A discovery pass dials all it chose at once: a fifth would be under way.
    settle(&mut net, &mut served, 50);
    assert_eq!(dialled(&served, 0..6), 4, "the four slots left of 6");
    assert_eq!(net.peers().len(), 6);

    r2.send_frame(&Frame::Peers(told[6..].to_vec()));
    settle(&mut net, &mut served, 50);
    assert_eq!(dialled(&served, 6..12), 0, "the target is held");
    assert_eq!(net.stats().discovery_dials, 6);
}

/// A peer the node dialled listens where it was dialled, ADDRS or not: its own
/// address is not news to it (PROTOCOL.md §5.2: "never the asker's own").
///
/// The node leaves out only the addresses the asker told in ADDRS
/// (`Node::answer_addrs` filters on `listen_addrs`), not the one it dialled the asker
/// at: a peer that set 0x02 without 0x01, or that asks before its ADDRS, hears its
/// own address back.
#[test]

fn a_peer_we_dialled_is_not_told_the_address_we_dialled_it_at() {
    let (mut net, _) = listening(seeking(1));
    let listener = RawListener::bind();
    let others = [sa("127.0.8.1:8001"), sa("127.0.8.2:8002")];
    net.add_addr(listener.addr);
    // It understands peer exchange but not ADDRS, so it tells no listening address.
    let mut raw = accept(&listener, &mut net, id(0x6c), FEATURE_PEX);
    // Learned once the target is met: never dialled.
    for a in others {
        net.add_addr(a);
    }
    raw.send_frame(&Frame::GetAddrs);
    let mut frames = Vec::new();
    run_until(&mut [&mut net], 400, |_, _| {
        frames.extend(raw.frames());
        !peers_frames(&frames).is_empty()
    });
    assert_eq!(
        sorted(peers_frames(&frames).remove(0)),
        sorted(others.to_vec())
    );
}
