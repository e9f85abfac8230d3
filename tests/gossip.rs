//! PROTOCOL.md §5, GOSSIP: flooding, hop limit, no relay to the sender, duplicates
//! dropped. A neighbour's absence of traffic is checked with a barrier: a MESSAGE sent
//! after the fact on the same TCP connection, so anything queued before it arrives first.

mod common;

use bytes::Bytes;
use common::*;
use p2p::wire::Frame;
use p2p::{Config, Event, GossipId, Network};

/// Nodes with the given configs, connected along `links` (i dials j); returns the nodes
/// once every link is up.
fn topology(configs: Vec<Config>, links: &[(usize, usize)]) -> Vec<Network> {
    let mut nets = Vec::new();
    let mut addrs = Vec::new();
    for config in configs {
        let (net, addr) = listening(config);
        nets.push(net);
        addrs.push(addr);
    }
    for &(i, j) in links {
        nets[i].dial(addrs[j]).unwrap();
    }
    let mut degree = vec![0; nets.len()];
    for &(i, j) in links {
        degree[i] += 1;
        degree[j] += 1;
    }
    let mut refs: Vec<&mut Network> = nets.iter_mut().collect();
    run_until(&mut refs, 800, |nets, _| {
        nets.iter()
            .zip(&degree)
            .all(|(n, d)| n.peers().len() == *d && n.stats().handshaking == 0)
    });
    nets
}

/// Sends a marker MESSAGE both ways on every link and steps until all have arrived.
/// Returns every event seen meanwhile (markers included).
fn barrier(nets: &mut [&mut Network], links: &[(usize, usize)]) -> Log {
    let mut expected = 0;
    for &(i, j) in links {
        let (ii, jj) = (nets[i].local_id(), nets[j].local_id());
        nets[i].send(&jj, "barrier").unwrap();
        nets[j].send(&ii, "barrier").unwrap();
        expected += 2;
    }
    run_until(nets, 800, |_, log| {
        log.iter()
            .filter(|(_, e)| matches!(e, Event::Message { payload, .. } if payload == "barrier"))
            .count()
            == expected
    })
}

fn broadcasts(log: &Log, i: usize) -> Vec<(GossipId, Bytes, p2p::PeerId)> {
    of(log, i)
        .into_iter()
        .filter_map(|e| match e {
            Event::Broadcast { from, id, payload } => Some((id, payload, from)),
            _ => None,
        })
        .collect()
}

const CHAIN: [(usize, usize); 3] = [(0, 1), (1, 2), (2, 3)];

#[test]
fn broadcast_reaches_every_node_of_a_chain_once() {
    let mut nets = topology(vec![plain(); 4], &CHAIN);
    let ids: Vec<_> = nets.iter().map(|n| n.local_id()).collect();
    let gid = nets[0].broadcast("block 1").unwrap();
    let mut refs: Vec<&mut Network> = nets.iter_mut().collect();
    let mut log = run_until(&mut refs, 800, |_, log| {
        (1..4).all(|i| has(log, i, |e| matches!(e, Event::Broadcast { .. })))
    });
    log.extend(barrier(&mut refs, &CHAIN));
    assert!(
        broadcasts(&log, 0).is_empty(),
        "the origin does not deliver"
    );
    for i in 1..4 {
        assert_eq!(
            broadcasts(&log, i),
            vec![(gid, Bytes::from_static(b"block 1"), ids[i - 1])],
            "node {i} delivers once, from its neighbour towards the origin"
        );
    }
    for (i, net) in nets.iter().enumerate() {
        assert_eq!(
            net.stats().duplicate_gossip,
            0,
            "node {i}: a chain has no second path, so any duplicate was sent back"
        );
    }
}

#[test]
fn hop_limit_stops_the_flood() {
    let mut configs = vec![plain(); 4];
    configs[0].gossip_hops = 2;
    let mut nets = topology(configs, &CHAIN);
    let gid = nets[0].broadcast("near only").unwrap();
    let mut refs: Vec<&mut Network> = nets.iter_mut().collect();
    let mut log = run_until(&mut refs, 800, |_, log| {
        has(log, 2, |e| matches!(e, Event::Broadcast { .. }))
    });
    log.extend(barrier(&mut refs, &CHAIN));
    assert_eq!(broadcasts(&log, 1).len(), 1);
    assert_eq!(broadcasts(&log, 2).len(), 1);
    assert_eq!(broadcasts(&log, 2)[0].0, gid);
    assert!(
        broadcasts(&log, 3).is_empty(),
        "hops 2: A->B (2), B->C (1), C does not relay: {log:?}"
    );
}

#[test]
fn triangle_delivers_once_and_drops_the_duplicates() {
    let links = [(0, 1), (0, 2), (1, 2)];
    let mut nets = topology(vec![plain(); 3], &links);
    let gid = nets[0].broadcast("tx").unwrap();
    let mut refs: Vec<&mut Network> = nets.iter_mut().collect();
    let mut log = run_until(&mut refs, 800, |nets, _| {
        nets.iter().map(|n| n.stats().duplicate_gossip).sum::<u64>() >= 2
    });
    log.extend(barrier(&mut refs, &links));
    assert!(broadcasts(&log, 0).is_empty());
    for i in 1..3 {
        let got = broadcasts(&log, i);
        assert_eq!(got.len(), 1, "node {i} delivers exactly once: {log:?}");
        assert_eq!(got[0].0, gid);
    }
    // Four copies travel (A->B, A->C, and one relay each by B and C); two are delivered.
    let duplicates: u64 = nets.iter().map(|n| n.stats().duplicate_gossip).sum();
    assert_eq!(duplicates, 2);
}

const R1: u8 = 0x41;
const R2: u8 = 0x42;

/// A node with two raw neighbours.
fn star(config: Config) -> (Network, Raw, Raw) {
    let (mut net, addr) = listening(config);
    let (r1, _) = Raw::handshake(&mut net, addr, id(R1));
    let (r2, _) = Raw::handshake(&mut net, addr, id(R2));
    (net, r1, r2)
}

/// The node sends a marker MESSAGE to `raw`; returns every frame `raw` got up to it.
/// Panics if the node delivers a broadcast meanwhile.
fn frames_until_marker(net: &mut Network, raw: &mut Raw, peer: u8) -> Vec<Frame> {
    net.send(&id(peer), "marker").unwrap();
    let (frames, log) = collect_frames(&mut [net], raw, 400, |f, _| {
        f.iter()
            .any(|f| matches!(f, Frame::Message(p) if p == "marker"))
    });
    assert!(broadcasts(&log, 0).is_empty(), "{log:?}");
    frames
}

fn gossip(id: [u8; 16], hops: u8, payload: &'static [u8]) -> Frame {
    Frame::Gossip {
        id,
        hops,
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn relay_goes_to_others_with_one_hop_less_and_not_back_to_the_sender() {
    let (mut net, mut r1, mut r2) = star(plain());
    r1.send_frame(&gossip([9; 16], 5, b"news"));
    let (frames, log) = collect_frames(&mut [&mut net], &mut r2, 400, |f, _| !f.is_empty());
    assert_eq!(frames, vec![gossip([9; 16], 4, b"news")]);
    assert_eq!(
        of(&log, 0),
        vec![Event::Broadcast {
            from: id(R1),
            id: GossipId([9; 16]),
            payload: Bytes::from_static(b"news")
        }]
    );
    assert_eq!(
        frames_until_marker(&mut net, &mut r1, R1),
        vec![Frame::Message(Bytes::from_static(b"marker"))],
        "nothing relayed back to the sender"
    );
}

#[test]
fn last_hop_is_delivered_but_not_relayed() {
    let (mut net, mut r1, mut r2) = star(plain());
    r1.send_frame(&gossip([3; 16], 1, b"last hop"));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        r1.pump();
        has(log, 0, |e| matches!(e, Event::Broadcast { .. }))
    });
    assert_eq!(broadcasts(&log, 0).len(), 1);
    assert_eq!(
        frames_until_marker(&mut net, &mut r2, R2),
        vec![Frame::Message(Bytes::from_static(b"marker"))],
        "hops 1 is not relayed"
    );
}

#[test]
fn gossip_with_a_seen_id_is_dropped() {
    let (mut net, mut r1, mut r2) = star(plain());
    r1.send_frame(&gossip([5; 16], 3, b"once"));
    r1.send_frame(&gossip([5; 16], 3, b"once"));
    // The same id from another neighbour, even with other hops and payload, is seen too.
    r2.send_frame(&gossip([5; 16], 7, b"changed"));
    let log = run_until(&mut [&mut net], 400, |nets, _| {
        r1.pump();
        r2.pump();
        nets[0].stats().duplicate_gossip >= 2
    });
    let mut frames_r2 = frames_until_marker(&mut net, &mut r2, R2);
    let frames_r1 = frames_until_marker(&mut net, &mut r1, R1);
    assert_eq!(
        broadcasts(&log, 0),
        vec![(GossipId([5; 16]), Bytes::from_static(b"once"), id(R1))],
        "delivered once"
    );
    assert_eq!(net.stats().duplicate_gossip, 2);
    // Relayed once, to R2 only (it came from R1).
    frames_r2.retain(|f| !matches!(f, Frame::Message(_)));
    assert_eq!(frames_r2, vec![gossip([5; 16], 2, b"once")]);
    assert_eq!(
        frames_r1,
        vec![Frame::Message(Bytes::from_static(b"marker"))]
    );
}

#[test]
fn broadcast_starts_with_the_hop_limit_and_its_own_echo_is_dropped() {
    let (mut net, mut r1, mut r2) = star(Config {
        gossip_hops: 7,
        ..plain()
    });
    let gid = net.broadcast("mine").unwrap();
    let (f1, _) = collect_frames(&mut [&mut net], &mut r1, 400, |f, _| !f.is_empty());
    let (f2, _) = collect_frames(&mut [&mut net], &mut r2, 400, |f, _| !f.is_empty());
    let expected = Frame::Gossip {
        id: gid.0,
        hops: 7,
        payload: Bytes::from_static(b"mine"),
    };
    assert_eq!(f1, vec![expected.clone()]);
    assert_eq!(f2, vec![expected]);
    // R1 relays it back: the node has seen its own id.
    r1.send_frame(&gossip(gid.0, 6, b"mine"));
    let log = run_until(&mut [&mut net], 400, |nets, _| {
        r1.pump();
        nets[0].stats().duplicate_gossip == 1
    });
    assert!(broadcasts(&log, 0).is_empty(), "{log:?}");
    assert_eq!(
        frames_until_marker(&mut net, &mut r2, R2),
        vec![Frame::Message(Bytes::from_static(b"marker"))]
    );
}

#[test]
fn broadcast_ids_are_fresh() {
    let (mut net, _) = node();
    let a = net.broadcast("x").unwrap();
    let b = net.broadcast("x").unwrap();
    assert_ne!(a, b);
    assert_ne!(a.0, [0; 16]);
}

#[test]
fn remembered_ids_are_bounded_in_number() {
    let (mut net, mut r1, _r2) = star(Config {
        gossip_cache_size: 2,
        ..plain()
    });
    for n in 1..=3 {
        r1.send_frame(&gossip([n; 16], 1, b"g"));
    }
    // Id 1 was evicted by ids 2 and 3, so it is new again; id 3 is still known.
    r1.send_frame(&gossip([1; 16], 1, b"g"));
    r1.send_frame(&gossip([3; 16], 1, b"g"));
    r1.send_frame(&Frame::Message(Bytes::from_static(b"end")));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        r1.pump();
        has(log, 0, |e| matches!(e, Event::Message { .. }))
    });
    let ids: Vec<[u8; 16]> = broadcasts(&log, 0).iter().map(|b| b.0.0).collect();
    assert_eq!(ids, vec![[1; 16], [2; 16], [3; 16], [1; 16]]);
    assert_eq!(net.stats().duplicate_gossip, 1);
    assert!(net.stats().gossip_ids <= 2);
}

#[test]
fn remembered_ids_expire_with_age() {
    // The node's PING, sent after 100 ms of silence, shows that more than the 50 ms
    // cache age has gone by.
    let (mut net, mut r1, _r2) = star(Config {
        gossip_cache_age: std::time::Duration::from_millis(50),
        ping_interval: std::time::Duration::from_millis(100),
        idle_timeout: std::time::Duration::from_secs(30),
        ..plain()
    });
    r1.send_frame(&gossip([8; 16], 1, b"old news"));
    let log1 = run_until(&mut [&mut net], 400, |_, log| {
        r1.pump();
        has(log, 0, |e| matches!(e, Event::Broadcast { .. }))
    });
    let (frames, log2) = collect_frames(&mut [&mut net], &mut r1, 4000, |f, _| {
        f.iter().any(|f| matches!(f, Frame::Ping(_)))
    });
    assert!(frames.iter().all(|f| matches!(f, Frame::Ping(_))));
    r1.send_frame(&gossip([8; 16], 1, b"old news"));
    let log3 = run_until(&mut [&mut net], 400, |_, log| {
        r1.pump();
        has(log, 0, |e| matches!(e, Event::Broadcast { .. }))
    });
    let all = [log1, log2, log3].concat();
    assert_eq!(
        broadcasts(&all, 0).len(),
        2,
        "forgotten, so delivered again"
    );
    assert_eq!(net.stats().duplicate_gossip, 0);
}

#[test]
fn a_neighbour_with_a_full_buffer_misses_a_broadcast_and_it_is_counted() {
    const CAP: usize = 64 * 1024;
    const SIZE: usize = 16 * 1024;
    let (mut net, _r1, mut r2) = star(Config {
        max_frame_size: SIZE,
        max_write_buffer: CAP,
        ..plain()
    });
    // R1 never reads: fill its buffer until a send is refused.
    let mut events = Vec::new();
    let mut sent = 0;
    while net.send(&id(R1), vec![0u8; SIZE]).is_ok() {
        net.poll(&mut events, Some(std::time::Duration::ZERO))
            .unwrap();
        sent += 1;
        assert!(
            sent < 16 * 1024,
            "256 MiB accepted for a peer that never reads"
        );
    }
    let gid = net.broadcast(vec![1u8; SIZE - 17]).unwrap();
    assert_eq!(net.peer_stats(&id(R1)).unwrap().dropped_sends, 1);
    assert_eq!(net.peer_stats(&id(R2)).unwrap().dropped_sends, 0);
    let (frames, _) = collect_frames(&mut [&mut net], &mut r2, 400, |f, _| !f.is_empty());
    assert!(matches!(&frames[..], [Frame::Gossip { id, .. }] if *id == gid.0));
}
