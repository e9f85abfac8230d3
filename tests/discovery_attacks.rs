//! Discovery against hostile and awkward peers, in virtual time: what a peer can make
//! the discovery dialler dial, how often, and what it can keep it from dialling.
//! (A review of the first version of discovery showed each of these: redials every
//! 2 s for ever, addresses hidden by a peer's claims, dials as fast as refusals came
//! back, a banned peer dialled again, a persistent peer's slot taken for good.)

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use p2p::sim::{Sim, SimConfig};
use p2p::{CloseReason, Config, DialError, Event, PeerId};

fn sim(seed: u64) -> Sim {
    Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    })
    .unwrap()
}

fn discovering(target: usize) -> Config {
    Config {
        target_outbound: target,
        ..Config::default()
    }
}

fn sessions_with(events: &[Event], peer: &PeerId) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::PeerConnected { peer: p, .. } if p == peer))
        .count()
}

/// A node that takes our handshake and closes at once (its allowlist leaves us out)
/// is backed off like a failing one, then forgotten: not redialled every 2 s.
#[test]
fn a_node_that_refuses_us_after_the_handshake_is_backed_off_then_forgotten() {
    let mut sim = sim(1);
    let a = sim.add_node_with(discovering(1)).unwrap();
    let b = sim.add_node();
    let c = sim.add_node();
    sim.set_allowlist(b, Some(HashSet::from([sim.node(c).id()])));
    assert!(sim.add_addr(a, sim.node(b).addr()));
    sim.run_for(Duration::from_secs(600));
    let dials = sim.node(a).stats().discovery_dials;
    assert!((1..=8).contains(&dials), "{dials} dials in 10 min");
    assert!(!sim.node(a).known_addrs().contains(&sim.node(b).addr()));
}

/// The same for a node that banned us.
#[test]
fn a_node_that_banned_us_is_backed_off_then_forgotten() {
    let mut sim = sim(2);
    let a = sim.add_node_with(discovering(1)).unwrap();
    let b = sim.add_node();
    let a_id = sim.node(a).id();
    assert!(sim.ban(b, &a_id, Duration::from_secs(365 * 24 * 3600)));
    assert!(sim.add_addr(a, sim.node(b).addr()));
    sim.run_for(Duration::from_secs(600));
    let dials = sim.node(a).stats().discovery_dials;
    assert!((1..=8).contains(&dials), "{dials} dials in 10 min");
}

/// A peer connected to us that does not tell its address (it advertises another):
/// our dial to its address meets the duplicate rule. When the rule closes our dial,
/// that is no success that clears the address's failures: it is backed off and
/// forgotten, not dialled every 2 s.
#[test]
fn an_address_of_a_peer_connected_inbound_is_not_redialled_for_ever() {
    for seed in 3..7 {
        let mut sim = sim(seed);
        let elsewhere: SocketAddr = "10.200.0.1:9".parse().unwrap();
        let x = sim.add_node_with(discovering(1)).unwrap();
        let y = sim
            .add_node_with(Config {
                advertised_addrs: vec![elsewhere],
                ..discovering(1)
            })
            .unwrap();
        sim.dial(y, x).unwrap();
        assert!(sim.run_until(|s| s.node(x).peers() == 1, 10_000));
        assert!(sim.add_addr(x, sim.node(y).addr()));
        sim.run_for(Duration::from_secs(600));
        let dials = sim.node(x).stats().discovery_dials;
        assert!(dials <= 9, "seed {seed}: {dials} dials in 10 min");
        assert_eq!(sim.node(x).peers(), 1);
    }
}

/// An attacker connected to us claims honest nodes' addresses as its own (ADDRS,
/// checked by nobody): those stay dialable, only addresses at the IP it connects
/// from count as its own.
#[test]
fn a_peer_claiming_honest_addresses_does_not_hide_them() {
    let mut sim = sim(5);
    let a = sim.add_node_with(discovering(4)).unwrap();
    let honest: Vec<usize> = (0..5).map(|_| sim.add_node()).collect();
    let claimed: Vec<SocketAddr> = honest.iter().map(|&h| sim.node(h).addr()).collect();
    let attacker = sim
        .add_node_with(Config {
            advertised_addrs: claimed.clone(),
            ..Config::default()
        })
        .unwrap();
    sim.dial(attacker, a).unwrap();
    assert!(sim.run_until(|s| s.node(a).peers() == 1, 10_000));
    for &addr in &claimed {
        sim.add_addr(a, addr);
    }
    sim.run_for(Duration::from_secs(60));
    let reached = honest
        .iter()
        .filter(|&&h| sim.node(a).is_connected(&sim.node(h).id()))
        .count();
    assert_eq!(reached, 4, "the honest nodes discovery reached");
}

/// However many addresses the book holds and however fast dials fail, discovery
/// dials `target_outbound` at once and then one a second.
#[test]
fn discovery_dials_at_most_one_a_second_after_its_burst() {
    let mut sim = sim(7);
    let a = sim.add_node_with(discovering(8)).unwrap();
    for i in 0..2000u32 {
        let [_, _, hi, lo] = i.to_be_bytes();
        // Addresses no node listens at: each dial is refused one round trip later.
        sim.add_addr(a, SocketAddr::from(([10, 100 + hi, lo, 1], 7000)));
    }
    sim.run_for(Duration::from_secs(1));
    let first = sim.node(a).stats().discovery_dials;
    sim.run_for(Duration::from_secs(9));
    let ten = sim.node(a).stats().discovery_dials;
    assert!(first <= 8 + 1, "{first} dials in the first second");
    assert!(ten <= 8 + 10, "{ten} dials in 10 s");
    assert!(ten >= 8 + 5, "{ten} dials in 10 s: the budget refills");
}

/// A peer we ban is not dialled again by discovery: its addresses leave the book.
#[test]
fn a_peer_we_banned_is_not_dialled_again() {
    let mut sim = sim(8);
    let a = sim.add_node_with(discovering(1)).unwrap();
    let b = sim.add_node();
    sim.add_addr(a, sim.node(b).addr());
    let b_id = sim.node(b).id();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 10_000));
    sim.run_for(Duration::from_secs(30));
    let before = sim.node(a).stats().discovery_dials;
    assert!(sim.ban(a, &b_id, Duration::from_secs(3600)));
    sim.run_for(Duration::from_secs(600));
    assert_eq!(sim.node(a).stats().discovery_dials, before);
    assert_eq!(sessions_with(sim.node(a).events(), &b_id), 1);
}

/// Persistent peers keep outbound slots of their own beside discovery's target: one
/// that would need a slot discovery may fill is refused, and one that fits comes
/// back after a restart although discovery filled its slot the moment it dropped.
#[test]
fn discovery_leaves_the_persistent_peers_their_slots() {
    let mut sim = sim(10);
    let full = sim
        .add_node_with(Config {
            max_outbound: 2,
            ..discovering(2)
        })
        .unwrap();
    let p = sim.add_node();
    assert!(matches!(
        sim.add_peer(full, p, None),
        Err(p2p::sim::SimDialError::Dial(DialError::OutboundLimit(2)))
    ));

    let a = sim
        .add_node_with(Config {
            max_outbound: 3,
            redial_max: Duration::from_secs(10),
            ..discovering(2)
        })
        .unwrap();
    let others: Vec<usize> = (0..6).map(|_| sim.add_node()).collect();
    sim.add_peer(a, p, None).unwrap();
    let p_id = sim.node(p).id();
    assert!(sim.run_until(|s| s.node(a).is_connected(&p_id), 10_000));
    for &o in &others {
        sim.add_addr(a, sim.node(o).addr());
    }
    sim.run_for(Duration::from_secs(10));
    sim.crash(p);
    sim.restart(p);
    sim.run_for(Duration::from_secs(60));
    assert!(
        sim.node(a).is_connected(&p_id),
        "the persistent peer is back"
    );
}

/// Rotation goes on for as long as the node runs: in a quiet network at its target,
/// one rotation a period, not one and then none (the first version stalled after its
/// first round: closing the connection it rotated out overwrote the next wake).
#[test]
fn rotation_goes_on_in_a_quiet_network() {
    let mut sim = sim(21);
    let a = sim
        .add_node_with(Config {
            outbound_rotation: Duration::from_secs(10),
            ..discovering(4)
        })
        .unwrap();
    let others: Vec<usize> = (0..10).map(|_| sim.add_node()).collect();
    for &o in &others {
        sim.add_addr(a, sim.node(o).addr());
    }
    sim.run_for(Duration::from_secs(30));
    let rotated = |sim: &Sim| {
        sim.node(a)
            .events()
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::PeerDisconnected {
                        reason: CloseReason::Rotated,
                        ..
                    }
                )
            })
            .count()
    };
    let before = rotated(&sim);
    sim.run_for(Duration::from_secs(600));
    let during = rotated(&sim) - before;
    assert!((50..=61).contains(&during), "{during} rotations in 10 min");
    assert_eq!(sim.node(a).outbound(), 4);
}

/// Two halves of a network cut apart for longer than the idle timeout each fill
/// their targets among themselves; once the partition heals, with nothing else
/// going on, rotation joins them again.
#[test]
fn a_network_split_by_a_long_partition_joins_again_by_rotation() {
    for seed in 0..4 {
        let mut sim = Sim::new(SimConfig {
            seed,
            node: Config {
                target_outbound: 4,
                max_inbound: 32,
                redial_max: Duration::from_secs(8),
                outbound_rotation: Duration::from_secs(10),
                ping_interval: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(20),
                ..Config::default()
            },
            ..SimConfig::default()
        })
        .unwrap();
        let n = 24;
        for _ in 0..n {
            sim.add_node();
        }
        for i in 0..n {
            for k in 1..=3 {
                sim.add_addr(i, sim.node((i + k * 7) % n).addr());
            }
        }
        sim.run_for(Duration::from_secs(60));
        let island: Vec<usize> = (0..n / 2).collect();
        sim.partition(&island);
        sim.run_for(Duration::from_secs(300));
        let reach = sim.reachable(0);
        assert!(
            reach.iter().any(|r| !r),
            "seed {seed}: the partition cut nothing"
        );
        sim.heal();
        sim.run_for(Duration::from_secs(600));
        let reach = sim.reachable(0);
        let cut = reach.iter().filter(|r| !**r).count();
        assert_eq!(
            cut, 0,
            "seed {seed}: {cut} nodes cut off 10 min after the heal"
        );
    }
}

/// Banning a peer forgets where we reached it, not the honest addresses it only
/// claimed as its own (ADDRS is checked by nobody), nor the application's seeds.
#[test]
fn a_ban_does_not_forget_the_addresses_the_peer_only_claimed() {
    let mut sim = sim(11);
    let a = sim.add_node_with(Config::default()).unwrap();
    let honest: Vec<usize> = (0..5).map(|_| sim.add_node()).collect();
    let seeds: Vec<SocketAddr> = honest.iter().map(|&h| sim.node(h).addr()).collect();
    for &s in &seeds {
        assert!(sim.add_addr(a, s));
    }
    let attacker = sim
        .add_node_with(Config {
            advertised_addrs: seeds.clone(),
            ..Config::default()
        })
        .unwrap();
    sim.dial(attacker, a).unwrap();
    let attacker_id = sim.node(attacker).id();
    assert!(sim.run_until(|s| s.node(a).is_connected(&attacker_id), 10_000));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.ban(a, &attacker_id, Duration::from_secs(60)));
    let after = sim.node(a).known_addrs();
    assert!(seeds.iter().all(|s| after.contains(s)), "{after:?}");
}

/// A connection discovery made that the application then made a persistent peer's
/// (`add_peer` adopts it) is not rotated out.
#[test]
fn rotation_leaves_an_adopted_persistent_peer_alone() {
    for seed in 0..10 {
        let mut sim = sim(100 + seed);
        let a = sim
            .add_node_with(Config {
                outbound_rotation: Duration::from_secs(10),
                ..discovering(2)
            })
            .unwrap();
        let p = sim.add_node();
        let others: Vec<usize> = (0..6).map(|_| sim.add_node()).collect();
        assert!(sim.add_addr(a, sim.node(p).addr()));
        let p_id = sim.node(p).id();
        assert!(sim.run_until(|s| s.node(a).is_connected(&p_id), 100_000));
        sim.add_peer(a, p, None).unwrap();
        for &o in &others {
            sim.add_addr(a, sim.node(o).addr());
        }
        sim.take_events(a);
        sim.run_for(Duration::from_secs(300));
        let rotated_out = sim.node(a).events().iter().any(|e| {
            matches!(e, Event::PeerDisconnected { peer, reason: CloseReason::Rotated } if *peer == p_id)
        });
        assert!(!rotated_out, "seed {seed}");
        assert!(sim.node(a).is_connected(&p_id), "seed {seed}");
    }
}

/// While a peer the node dialled is there to ask, the peers that dialled it are not
/// asked for addresses: an attacker must get dialled to be heard.
#[test]
fn inbound_peers_are_not_asked_while_an_outbound_one_is_there() {
    let mut sim = sim(12);
    let v = sim.add_node_with(discovering(4)).unwrap();
    let h = sim.add_node();
    assert!(sim.add_addr(v, sim.node(h).addr()));
    let h_id = sim.node(h).id();
    assert!(sim.run_until(|s| s.node(v).is_connected(&h_id), 100_000));
    let x = sim.add_node();
    let junk: Vec<SocketAddr> = (0..32u8)
        .map(|i| SocketAddr::from(([10, 250, i, 1], 9999)))
        .collect();
    for &j in &junk {
        sim.add_addr(x, j);
    }
    sim.dial(x, v).unwrap();
    sim.run_for(Duration::from_secs(60));
    let known = sim.node(v).known_addrs();
    assert_eq!(junk.iter().filter(|j| known.contains(j)).count(), 0);
}

/// A node with no connection of its own to ask (it only ever accepted) asks the
/// peers that dialled it, and so finds outbound peers.
#[test]
fn a_node_that_only_accepted_asks_the_peers_that_dialled_it() {
    let mut sim = sim(13);
    let v = sim.add_node_with(discovering(2)).unwrap();
    let x = sim.add_node();
    let others: Vec<usize> = (0..3).map(|_| sim.add_node()).collect();
    for &o in &others {
        sim.add_addr(x, sim.node(o).addr());
    }
    sim.dial(x, v).unwrap();
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.node(v).outbound(), 2, "{:?}", sim.node(v).known_addrs());
    assert!(
        others
            .iter()
            .filter(|&&o| sim.node(v).is_connected(&sim.node(o).id()))
            .count()
            >= 1
    );
}

/// A connection discovery made is not kept for good because the application's
/// persistent peers filled the target after it: rotation spares only its own fresh
/// dial, and closes the older one.
#[test]
fn a_discovered_connection_does_not_keep_its_slot_for_good() {
    let mut sim = sim(14);
    let a = sim
        .add_node_with(Config {
            outbound_rotation: Duration::from_secs(10),
            ..discovering(4)
        })
        .unwrap();
    let found = sim.add_node();
    assert!(sim.add_addr(a, sim.node(found).addr()));
    let found_id = sim.node(found).id();
    assert!(sim.run_until(|s| s.node(a).is_connected(&found_id), 100_000));
    let persistent: Vec<usize> = (0..5).map(|_| sim.add_node()).collect();
    for &p in &persistent {
        sim.add_peer(a, p, None).unwrap();
    }
    sim.run_for(Duration::from_secs(60));
    assert!(!sim.node(a).is_connected(&found_id));
    assert!(
        persistent
            .iter()
            .all(|&p| sim.node(a).is_connected(&sim.node(p).id()))
    );
}
