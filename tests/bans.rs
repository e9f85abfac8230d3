//! Runtime peer management: bans, and an allowlist replaced while the node runs.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use p2p::sim::{NodeIndex, Sim, SimConfig};
use p2p::wire::GoodbyeReason;
use p2p::{CloseReason, Config, Event, Network, PeerId, Security};

fn sim(seed: u64) -> (Sim, NodeIndex, NodeIndex) {
    let mut sim = Sim::new(SimConfig {
        seed,
        node: Config {
            redial_base: Duration::from_millis(100),
            redial_max: Duration::from_millis(400),
            ..Config::default()
        },
        ..SimConfig::default()
    })
    .expect("a valid configuration");
    let (a, b) = (sim.add_node(), sim.add_node());
    (sim, a, b)
}

fn disconnected(sim: &Sim, i: NodeIndex) -> Vec<CloseReason> {
    sim.node(i)
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::PeerDisconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_banned_peer_is_disconnected_refused_while_banned_and_let_in_after() {
    let (mut sim, a, b) = sim(1);
    let (a_id, b_id) = (sim.node(a).id(), sim.node(b).id());
    sim.dial(b, a).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));

    assert!(sim.ban(a, &b_id, Duration::from_secs(2)));
    sim.run_for(Duration::from_millis(100));
    assert!(!sim.node(a).is_connected(&b_id));
    assert_eq!(disconnected(&sim, a), vec![CloseReason::Banned]);
    assert_eq!(
        disconnected(&sim, b),
        vec![CloseReason::Goodbye(GoodbyeReason::Misbehaving)]
    );

    // While banned, its dial gets through the handshake and no further.
    let before = common::sim_connects(&sim, a);
    sim.dial(b, a).unwrap();
    sim.run_for(Duration::from_millis(500));
    assert!(!sim.node(b).is_connected(&a_id));
    assert_eq!(
        common::sim_connects(&sim, a),
        before,
        "the application never saw it"
    );

    // The ban ends by itself.
    sim.run_for(Duration::from_secs(2));
    sim.dial(b, a).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
}

#[test]
fn a_banned_persistent_peer_is_not_dialled_until_unbanned() {
    let (mut sim, a, b) = sim(2);
    let b_id = sim.node(b).id();
    sim.add_peer(a, b, Some(b_id)).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    assert!(sim.ban(a, &b_id, Duration::MAX));
    sim.run_for(Duration::from_secs(3));
    assert!(!sim.node(a).is_connected(&b_id));
    assert_eq!(common::sim_connects(&sim, a), 1, "not dialled while banned");
    // B saw A's one connection close, and no dial from A since.
    assert_eq!(common::sim_connects(&sim, b), 1);
    assert!(sim.unban(a, &b_id));
    assert!(!sim.unban(a, &b_id));
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 1_000_000));
}

#[test]
fn a_replaced_allowlist_closes_who_it_drops_and_dials_who_it_lets_in_at_once() {
    let (mut sim, a, b) = sim(3);
    let b_id = sim.node(b).id();
    sim.add_peer(a, b, Some(b_id)).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));

    sim.set_allowlist(a, Some(HashSet::new()));
    sim.run_for(Duration::from_secs(2));
    assert!(!sim.node(a).is_connected(&b_id));
    assert_eq!(disconnected(&sim, a), vec![CloseReason::NotAllowed]);
    assert!(
        sim.node(a).stats().not_allowed >= 2,
        "closed, then refused at a redial"
    );

    // Let back in: dialled at once, not after the backoff its refusals grew.
    sim.set_allowlist(a, Some(HashSet::from([b_id])));
    let start = sim.elapsed();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 1_000_000));
    assert!(
        sim.elapsed() - start < Duration::from_millis(100),
        "connected {:?} after the change (the first wait is 100 ms)",
        sim.elapsed() - start
    );
}

#[test]
fn the_ban_table_is_bounded_and_drops_expired_bans_first() {
    let mut net = Network::new(Config {
        security: Security::Plaintext,
        ..Config::default()
    })
    .unwrap();
    let id = |n: u32| {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        PeerId::from_bytes(bytes)
    };
    for n in 0..65_536 {
        assert!(net.ban(&id(n), Duration::ZERO));
    }
    // Those expired at once: room is made for a new one.
    assert!(net.ban(&id(70_000), Duration::MAX));
    for n in 0..65_535 {
        assert!(net.ban(&id(n), Duration::MAX));
    }
    assert!(!net.ban(&id(80_000), Duration::MAX), "the table is full");
    assert!(
        net.ban(&id(5), Duration::from_secs(1)),
        "a ban is replaced in place"
    );
    assert!(net.unban(&id(5)));
    assert!(net.ban(&id(80_000), Duration::MAX));
}

/// Every `Redialing` of node `i` so far.
fn redialings(sim: &Sim, i: NodeIndex) -> Vec<Duration> {
    sim.node(i)
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Redialing { after, .. } => Some(*after),
            _ => None,
        })
        .collect()
}

fn dial_events(sim: &Sim, i: NodeIndex) -> usize {
    sim.node(i)
        .events()
        .iter()
        .filter(|e| matches!(e, Event::PeerConnected { .. } | Event::DialFailed { .. }))
        .count()
}

/// A `Redialing` announces a dial: while a persistent peer is banned for good none
/// is announced (none follows), and once unbanned it is dialled at once, not after a
/// backoff that the ban grew.
#[test]
fn a_persistent_peer_banned_for_good_is_not_announced_and_is_dialled_at_once_when_unbanned() {
    let (mut sim, a, b) = sim(4);
    let b_id = sim.node(b).id();
    sim.add_peer(a, b, Some(b_id)).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    assert!(sim.ban(a, &b_id, Duration::MAX));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(
        redialings(&sim, a),
        Vec::<Duration>::new(),
        "no dial follows while it is banned"
    );
    assert!(sim.unban(a, &b_id));
    let start = sim.elapsed();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 1_000_000));
    assert!(
        sim.elapsed() - start < Duration::from_millis(50),
        "dialled {:?} after the unban",
        sim.elapsed() - start
    );
}

/// A ban that ends by itself: the one `Redialing` announced is the dial at its end.
#[test]
fn a_persistent_peer_banned_for_a_while_is_redialled_when_the_ban_ends() {
    let (mut sim, a, b) = sim(5);
    let b_id = sim.node(b).id();
    sim.add_peer(a, b, Some(b_id)).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    let ban = Duration::from_secs(2);
    let start = sim.elapsed();
    assert!(sim.ban(a, &b_id, ban));
    let dials = dial_events(&sim, a);
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 1_000_000));
    let back = sim.elapsed() - start;
    assert!(
        back >= ban && back < ban + Duration::from_millis(50),
        "back {back:?} after a ban of {ban:?}"
    );
    assert_eq!(
        dial_events(&sim, a),
        dials + 1,
        "one dial, at the ban's end"
    );
    assert_eq!(redialings(&sim, a), vec![ban], "announced once, truthfully");
}
