//! Discovery against hostile and awkward peers, in virtual time: what a peer can make
//! the discovery dialler dial, how often, and what it can keep it from dialling.
//! (A review of the first version of discovery showed each of these: redials every
//! 2 s for ever, addresses hidden by a peer's claims, dials as fast as refusals came
//! back, a banned peer dialled again, a persistent peer's slot taken for good.)

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use p2p::sim::{Sim, SimConfig};
use p2p::{Config, DialError, Event, PeerId};

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
