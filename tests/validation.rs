//! Gossip validated before relay (`Config::validate_gossip`): a broadcast goes on only
//! once the application accepts it; a rejected one counts against its sender.

use std::time::Duration;

use p2p::sim::{NodeIndex, Sim, SimConfig};
use p2p::{Bytes, CloseReason, Config, Event, GossipId, Reject, Validation};

/// A line A - B - C where only B validates; returns (sim, a, b, c).
fn line(b_config: Config) -> (Sim, NodeIndex, NodeIndex, NodeIndex) {
    let mut sim = Sim::new(SimConfig {
        seed: 11,
        ..SimConfig::default()
    })
    .expect("a valid configuration");
    let a = sim.add_node();
    let b = sim
        .add_node_with(Config {
            validate_gossip: true,
            ..b_config
        })
        .unwrap();
    let c = sim.add_node();
    sim.dial(a, b).unwrap();
    sim.dial(b, c).unwrap();
    assert!(sim.run_until(|s| s.node(b).peers() == 2, 100_000));
    (sim, a, b, c)
}

fn got(sim: &Sim, i: NodeIndex, id: GossipId) -> bool {
    sim.node(i)
        .events()
        .iter()
        .any(|e| matches!(e, Event::Broadcast { id: got, .. } if *got == id))
}

fn broadcast(sim: &mut Sim, from: NodeIndex, text: &str) -> GossipId {
    let id = sim
        .broadcast(from, Bytes::copy_from_slice(text.as_bytes()))
        .unwrap();
    sim.run_for(Duration::from_millis(200));
    id
}

#[test]
fn an_accepted_broadcast_is_relayed_only_once_accepted() {
    let (mut sim, a, b, c) = line(Config::default());
    let id = broadcast(&mut sim, a, "block 1");
    assert!(got(&sim, b, id), "delivered to the validating node");
    assert!(!got(&sim, c, id), "not relayed before the verdict");
    assert_eq!(sim.node(b).stats().pending_validations, 1);
    assert!(sim.validate(b, id, Validation::Accept));
    sim.run_for(Duration::from_millis(200));
    assert!(got(&sim, c, id));
    assert!(!sim.validate(b, id, Validation::Accept), "judged once");
    assert_eq!(sim.node(b).stats().pending_validations, 0);
}

#[test]
fn an_ignored_broadcast_is_not_relayed_and_costs_its_sender_nothing() {
    let (mut sim, a, b, c) = line(Config::default());
    let id = broadcast(&mut sim, a, "stale block");
    assert!(sim.validate(b, id, Validation::Ignore));
    sim.run_for(Duration::from_secs(1));
    assert!(!got(&sim, c, id));
    let a_id = sim.node(a).id();
    assert_eq!(sim.node(b).peer_stats(&a_id).unwrap().rejected_frames, 0);
}

#[test]
fn rejected_broadcasts_are_not_relayed_and_close_their_sender_at_the_limit() {
    let (mut sim, a, b, c) = line(Config {
        max_rejected_frames: 2,
        ..Config::default()
    });
    let a_id = sim.node(a).id();
    let first = broadcast(&mut sim, a, "bad block 1");
    assert!(sim.validate(b, first, Validation::Reject));
    sim.run_for(Duration::from_millis(200));
    assert!(!got(&sim, c, first));
    assert!(sim.node(b).events().iter().any(|e| matches!(
        e,
        Event::FrameRejected { peer, reason: Reject::RejectedBroadcast(id), count: 1 }
            if *peer == a_id && GossipId(*id) == first
    )));
    assert!(sim.node(b).is_connected(&a_id), "one is not enough");
    let second = broadcast(&mut sim, a, "bad block 2");
    assert!(sim.validate(b, second, Validation::Reject));
    sim.run_for(Duration::from_millis(200));
    assert!(!sim.node(b).is_connected(&a_id));
    assert!(sim.node(b).events().iter().any(|e| matches!(
        e,
        Event::PeerDisconnected { peer, reason: CloseReason::Misbehaving } if *peer == a_id
    )));
    assert!(!got(&sim, c, second));
}

#[test]
fn an_unjudged_broadcast_is_given_up_after_the_timeout() {
    let (mut sim, a, b, c) = line(Config {
        validation_timeout: Duration::from_millis(500),
        ..Config::default()
    });
    let id = broadcast(&mut sim, a, "block");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.node(b).stats().dropped_validations, 1);
    assert_eq!(sim.node(b).stats().pending_validations, 0);
    assert!(!sim.validate(b, id, Validation::Accept), "too late");
    sim.run_for(Duration::from_millis(200));
    assert!(!got(&sim, c, id));
}

#[test]
fn pending_verdicts_are_bounded_and_the_oldest_give_way() {
    let (mut sim, a, b, c) = line(Config {
        max_pending_validations: 2,
        ..Config::default()
    });
    let ids: Vec<GossipId> = (0..3)
        .map(|n| broadcast(&mut sim, a, &format!("block {n}")))
        .collect();
    assert_eq!(sim.node(b).stats().pending_validations, 2);
    assert_eq!(sim.node(b).stats().dropped_validations, 1);
    assert!(
        !sim.validate(b, ids[0], Validation::Accept),
        "the oldest gave way"
    );
    assert!(sim.validate(b, ids[1], Validation::Accept));
    assert!(sim.validate(b, ids[2], Validation::Accept));
    sim.run_for(Duration::from_millis(200));
    assert!(!got(&sim, c, ids[0]));
    assert!(got(&sim, c, ids[1]) && got(&sim, c, ids[2]));
}

#[test]
fn without_the_switch_broadcasts_are_relayed_at_once() {
    let mut sim = Sim::new(SimConfig::default()).unwrap();
    let (a, b, c) = (sim.add_node(), sim.add_node(), sim.add_node());
    sim.dial(a, b).unwrap();
    sim.dial(b, c).unwrap();
    assert!(sim.run_until(|s| s.node(b).peers() == 2, 100_000));
    let id = broadcast(&mut sim, a, "block");
    assert!(got(&sim, c, id));
    assert!(!sim.validate(b, id, Validation::Accept), "nothing was held");
}

mod common;

/// A peer cannot swap the payload the application is judging: it sends id X with a
/// valid payload, floods fresh ids until the seen-id cache forgets X (its own ids go
/// first), then sends X again with another payload while the first still awaits its
/// verdict. The verdict the application gives on what it saw must relay what it saw.
#[test]
fn a_verdict_relays_the_payload_it_judged_not_a_later_one_under_the_same_id() {
    use common::*;
    use p2p::wire::Frame;
    const CACHE: usize = 4;
    let config = Config {
        validate_gossip: true,
        gossip_cache_size: CACHE,
        ..plain()
    };
    let (mut target, addr) = listening(config);
    let (neighbour_id, attacker_id) = (id(0xB1), id(0xA1));
    let (mut neighbour, _) = Raw::handshake(&mut target, addr, neighbour_id);
    let (mut attacker, _) = Raw::handshake(&mut target, addr, attacker_id);
    let x = [0x55; 16];
    let gossip = |id: [u8; 16], payload: &'static [u8]| Frame::Gossip {
        id,
        hops: 3,
        payload: Bytes::from_static(payload),
    };
    attacker.send_frame(&gossip(x, b"valid block"));
    for n in 0..2 * CACHE as u8 {
        attacker.send_frame(&gossip([n; 16], b"filler"));
    }
    attacker.send_frame(&gossip(x, b"invalid block"));
    let frames = 2 + 2 * CACHE;
    let log = run_until(&mut [&mut target], 2000, |nets, log| {
        attacker.pump();
        let taken = count(log, 0, |e| matches!(e, Event::Broadcast { .. }));
        taken as u64 + nets[0].stats().duplicate_gossip == frames as u64
    });
    // The application judges the first copy of X it was handed, and accepts it.
    let judged = of(&log, 0)
        .into_iter()
        .find_map(|e| match e {
            Event::Broadcast { id, payload, .. } if id == GossipId(x) => Some(payload),
            _ => None,
        })
        .unwrap();
    assert_eq!(judged, "valid block");
    assert!(target.validate(GossipId(x), Validation::Accept));
    target.send(&neighbour_id, "barrier").unwrap();
    let mut relayed = Vec::new();
    run_until(&mut [&mut target], 2000, |_, _| {
        relayed.extend(neighbour.frames());
        relayed
            .iter()
            .any(|f| matches!(f, Frame::Message(payload) if payload == "barrier"))
    });
    let relayed: Vec<&Bytes> = relayed
        .iter()
        .filter_map(|f| match f {
            Frame::Gossip { id, payload, .. } if *id == x => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(
        relayed,
        vec![&Bytes::from_static(b"valid block")],
        "the accepted broadcast is the one the application judged"
    );
}

/// One neighbour flooding broadcasts the application has yet to judge pushes out its
/// own oldest, not an honest neighbour's that came before the flood.
#[test]
fn a_flooding_neighbour_pushes_out_its_own_pending_verdicts_not_others() {
    let (mut sim, a, b, c) = line(Config {
        max_pending_validations: 8,
        ..Config::default()
    });
    let m = sim.add_node();
    sim.dial(m, b).unwrap();
    assert!(sim.run_until(|s| s.node(b).peers() == 3, 100_000));
    let honest = broadcast(&mut sim, a, "honest block");
    let flood: Vec<GossipId> = (0..20)
        .map(|n| broadcast(&mut sim, m, &format!("stale {n}")))
        .collect();
    assert_eq!(sim.node(b).stats().pending_validations, 8);
    assert!(
        sim.validate(b, honest, Validation::Accept),
        "the honest verdict still awaited"
    );
    sim.run_for(Duration::from_millis(200));
    assert!(got(&sim, c, honest));
    assert!(
        !sim.validate(b, flood[0], Validation::Accept),
        "the flooder's oldest went"
    );
    assert!(sim.validate(b, flood[19], Validation::Accept));
}

/// The same for the bytes held: the neighbour holding the most gives way.
#[test]
fn a_neighbour_flooding_large_broadcasts_pushes_out_its_own_bytes_first() {
    let (mut sim, a, b, c) = line(Config {
        max_pending_validation_bytes: 10_000,
        ..Config::default()
    });
    let m = sim.add_node();
    sim.dial(m, b).unwrap();
    assert!(sim.run_until(|s| s.node(b).peers() == 3, 100_000));
    let honest = broadcast(&mut sim, a, "honest block");
    for n in 0..20 {
        sim.broadcast(m, Bytes::from(vec![n as u8; 3000])).unwrap();
        sim.run_for(Duration::from_millis(50));
    }
    assert!(sim.validate(b, honest, Validation::Accept));
    sim.run_for(Duration::from_millis(200));
    assert!(got(&sim, c, honest));
}
