//! Persistent peers: dialled at once, redialled with backoff whenever the session ends
//! or a dial fails, never while connected, checked against an expected id.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2p::sim::{NodeIndex, Sim, SimConfig};
use p2p::{CloseReason, Config, DialError, Event, Network, PeerId, Security};

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_millis(1600);

fn config() -> Config {
    Config {
        redial_base: BASE,
        redial_max: MAX,
        redial_jitter: 0.25,
        ..Config::default()
    }
}

fn sim(seed: u64) -> (Sim, NodeIndex, NodeIndex) {
    let mut sim = Sim::new(SimConfig {
        seed,
        node: config(),
        ..SimConfig::default()
    })
    .expect("a valid configuration");
    let (a, b) = (sim.add_node(), sim.add_node());
    (sim, a, b)
}

/// Every `Redialing` of node `i` so far, as (attempt, wait).
fn redials(sim: &Sim, i: NodeIndex) -> Vec<(u32, Duration)> {
    sim.node(i)
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Redialing { attempt, after, .. } => Some((*attempt, *after)),
            _ => None,
        })
        .collect()
}

/// The wait before attempt `n` (1 after a session), before jitter.
fn full_wait(n: u32) -> Duration {
    (BASE * 2u32.pow(n - 1)).min(MAX)
}

#[test]
fn a_persistent_peer_is_dialled_at_once_and_again_with_backoff_until_it_is_back() {
    let (mut sim, a, b) = sim(1);
    let b_id = sim.node(b).id();
    sim.add_peer(a, b, None).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    assert!(redials(&sim, a).is_empty(), "connected at the first dial");
    sim.run_for(MAX + Duration::from_millis(100));

    // B goes down: A dials it again and again, each wait about twice the last.
    sim.crash(b);
    sim.run_for(Duration::from_secs(8));
    assert!(!sim.node(a).is_connected(&b_id));
    let waits = redials(&sim, a);
    assert!(waits.len() >= 6, "{waits:?}");
    for (k, &(attempt, after)) in waits.iter().enumerate() {
        assert_eq!(attempt, k as u32 + 1, "{waits:?}");
        let full = full_wait(attempt);
        assert!(
            after <= full && after >= full.mul_f64(0.75),
            "attempt {attempt}: {after:?} outside the jitter of {full:?}"
        );
    }
    assert_eq!(
        waits.last().unwrap().1.max(MAX.mul_f64(0.75)),
        waits.last().unwrap().1
    );
    let failed = sim
        .node(a)
        .events()
        .iter()
        .filter(|e| matches!(e, Event::DialFailed { .. }))
        .count();
    assert_eq!(
        failed + 1,
        waits.len(),
        "each failed dial is told, then redialled"
    );

    // B is back: A reconnects by itself, within one capped wait.
    sim.restart(b);
    let before = common::sim_connects(&sim, a);
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 1_000_000));
    assert_eq!(common::sim_connects(&sim, a), before + 1);

    // A session that lasts `redial_max` resets the backoff: the next loss starts
    // again at attempt 1.
    sim.run_for(MAX + Duration::from_millis(100));
    let seen = redials(&sim, a).len();
    sim.crash(b);
    sim.run_for(Duration::from_millis(50));
    let after_session = &redials(&sim, a)[seen..];
    assert_eq!(
        after_session.first().map(|r| r.0),
        Some(1),
        "{after_session:?}"
    );
}

/// A peer that takes the handshake and closes at once (it banned us) is a session
/// too short to reset the backoff: the waits still grow to the cap.
#[test]
fn a_peer_that_closes_every_session_at_once_is_backed_off() {
    let (mut sim, a, b) = sim(7);
    let (a_id, b_id) = (sim.node(a).id(), sim.node(b).id());
    sim.add_peer(a, b, Some(b_id)).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    sim.run_for(MAX + Duration::from_millis(100));
    assert!(sim.ban(b, &a_id, Duration::MAX));
    sim.run_for(Duration::from_secs(6));
    let attempts: Vec<u32> = redials(&sim, a).iter().map(|r| r.0).collect();
    assert!(attempts.len() >= 4, "{attempts:?}");
    assert_eq!(attempts, (1..=attempts.len() as u32).collect::<Vec<_>>());
    assert_eq!(
        redials(&sim, a).last().unwrap().1.max(MAX.mul_f64(0.75)),
        redials(&sim, a).last().unwrap().1
    );
}

#[test]
fn the_jitter_comes_from_the_seed() {
    let run = |seed| {
        let (mut sim, a, b) = sim(seed);
        sim.add_peer(a, b, None).unwrap();
        sim.crash(b);
        sim.run_for(Duration::from_secs(3));
        redials(&sim, a)
    };
    assert_eq!(run(5), run(5), "a run repeats");
    assert_ne!(run(5), run(6), "another seed draws other waits");
}

#[test]
fn a_peer_with_another_id_at_the_address_is_closed_and_dialled_again() {
    let (mut sim, a, b) = sim(2);
    let b_id = sim.node(b).id();
    let expected = PeerId::from_bytes([9; 32]);
    sim.add_peer(a, b, Some(expected)).unwrap();
    sim.run_for(Duration::from_millis(500));
    assert!(!sim.node(a).is_connected(&b_id));
    assert_eq!(
        common::sim_connects(&sim, a),
        0,
        "the application never saw it connected"
    );
    let unexpected = common::sim_count(&sim, a, |e| {
        matches!(
            e,
            Event::DialFailed {
                reason: CloseReason::UnexpectedPeer,
                ..
            }
        )
    });
    assert!(unexpected >= 2, "closed, redialled, closed again");
    assert!(
        sim.node(a).events().iter().any(|e| matches!(
            e,
            Event::Redialing { peer: Some(p), .. } if *p == expected
        )),
        "the redial names the expected id"
    );
}

#[test]
fn a_persistent_peer_connected_by_its_own_dial_is_not_dialled() {
    let (mut sim, a, b) = sim(3);
    let b_id = sim.node(b).id();
    sim.dial(b, a).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    sim.add_peer(a, b, Some(b_id)).unwrap();
    let until = sim.elapsed() + Duration::from_secs(2);
    let mut most = 0;
    sim.run_until(
        |s| {
            most = most.max(s.node(a).connections());
            s.elapsed() >= until
        },
        1_000_000,
    );
    assert!(sim.node(a).is_connected(&b_id));
    assert_eq!(most, 1, "no second connection was dialled");
    assert!(redials(&sim, a).is_empty());
    // It goes: now A dials it, and the session is A's.
    sim.disconnect(b, &sim.node(a).id());
    assert!(sim.run_until(
        |s| redials(s, a).len() == 1 && s.node(a).is_connected(&b_id),
        1_000_000
    ));
}

#[test]
fn a_removed_peer_is_not_dialled_again() {
    let (mut sim, a, b) = sim(4);
    let b_id = sim.node(b).id();
    sim.add_peer(a, b, None).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    let addr = sim_addr(&sim, a, b_id);
    sim.crash(b);
    sim.run_for(Duration::from_millis(500));
    let seen = redials(&sim, a).len();
    assert!(seen >= 1);
    assert!(sim_remove(&mut sim, a, addr));
    sim.restart(b);
    sim.run_for(Duration::from_secs(5));
    assert!(!sim.node(a).is_connected(&b_id));
    assert_eq!(redials(&sim, a).len(), seen);
}

/// The address node `a` connected to `peer` at.
fn sim_addr(sim: &Sim, a: NodeIndex, peer: PeerId) -> SocketAddr {
    sim.node(a)
        .events()
        .iter()
        .find_map(|e| match e {
            Event::PeerConnected { peer: p, addr, .. } if *p == peer => Some(*addr),
            _ => None,
        })
        .expect("connected once")
}

fn sim_remove(sim: &mut Sim, a: NodeIndex, addr: SocketAddr) -> bool {
    sim.remove_peer(a, addr)
}

#[test]
fn persistent_peers_are_bounded_by_max_outbound() {
    let mut net = Network::new(Config {
        security: Security::Plaintext,
        max_outbound: 2,
        ..Config::default()
    })
    .unwrap();
    let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
    net.add_peer(addr(1), None).unwrap();
    net.add_peer(addr(2), None).unwrap();
    net.add_peer(addr(2), None).unwrap();
    assert_eq!(
        net.add_peer(addr(3), None),
        Err(DialError::OutboundLimit(2))
    );
    assert!(net.remove_peer(addr(2)));
    assert!(!net.remove_peer(addr(2)));
    net.add_peer(addr(3), None).unwrap();
}

/// Over loopback: B restarts on the same port with the same id, and A, which only
/// ever called `add_peer`, is connected to the new B again without any dial of the
/// application.
#[test]
fn two_networks_reconnect_by_themselves_after_one_restarts() {
    let b_id = PeerId::from_bytes([0xB0; 32]);
    let config = |id| Config {
        security: Security::Plaintext,
        peer_id: id,
        redial_base: Duration::from_millis(10),
        redial_max: Duration::from_millis(80),
        ..Config::default()
    };
    let mut b = Network::new(config(Some(b_id))).unwrap();
    let addr = b.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut a = Network::new(config(None)).unwrap();
    a.add_peer(addr, Some(b_id)).unwrap();
    common::run_until(&mut [&mut a, &mut b], 5_000, |nets, _| {
        nets[0].is_connected(&b_id)
    });
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    let mut redialed = 0;
    for _ in 0..100_000 {
        assert!(Instant::now() < deadline, "A never redialled B");
        a.poll(&mut events, Some(Duration::from_millis(5))).unwrap();
        redialed += events
            .iter()
            .filter(|e| matches!(e, Event::Redialing { .. }))
            .count();
        if redialed >= 2 {
            break;
        }
    }
    assert!(
        redialed >= 2,
        "the session's end and a failed dial are both redialled"
    );
    assert!(!a.is_connected(&b_id));
    let mut b = Network::new(config(Some(b_id))).unwrap();
    b.listen(addr).unwrap();
    common::run_until(&mut [&mut a, &mut b], 50_000, |nets, _| {
        nets[0].is_connected(&b_id) && nets[1].peers().len() == 1
    });
}

/// The application changes the id expected at an address while the peer known there
/// is connected (the node waits for it to go before dialling): the address is
/// dialled again, to find the id it now expects, not left waiting for a peer that is
/// no longer what it expects.
#[test]
fn a_changed_expected_id_is_looked_for_at_the_address() {
    let (mut sim, a, b) = sim(8);
    let b_id = sim.node(b).id();
    sim.dial(b, a).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    sim.add_peer(a, b, Some(b_id)).unwrap();
    sim.run_for(Duration::from_millis(500));
    assert!(redials(&sim, a).is_empty(), "not dialled while connected");
    // B's address should now hold another validator: A looks for it there.
    let other = PeerId::from_bytes([9; 32]);
    sim.add_peer(a, b, Some(other)).unwrap();
    sim.run_for(Duration::from_millis(500));
    let unexpected = common::sim_count(&sim, a, |e| {
        matches!(
            e,
            Event::DialFailed {
                reason: CloseReason::UnexpectedPeer,
                ..
            }
        )
    });
    assert!(
        unexpected >= 1,
        "the address was dialled: {:?}",
        redials(&sim, a)
    );
}

/// The application makes persistent an address it already dialled itself: that
/// connection is the peer's session (not a dial refused as `AlreadyDialing` at every
/// wait, each announced), and its end is redialled from the first wait.
#[test]
fn an_address_the_application_dialled_itself_is_not_redialled_while_connected() {
    let (mut sim, a, b) = sim(9);
    let (a_id, b_id) = (sim.node(a).id(), sim.node(b).id());
    sim.dial(a, b).unwrap();
    assert!(sim.run_until(|s| s.node(a).is_connected(&b_id), 100_000));
    sim.add_peer(a, b, None).unwrap();
    sim.run_for(MAX * 3);
    assert!(sim.node(a).is_connected(&b_id));
    assert_eq!(
        redials(&sim, a),
        vec![],
        "nothing to redial while connected"
    );
    sim.disconnect(b, &a_id);
    assert!(sim.run_until(
        |s| !redials(s, a).is_empty() && s.node(a).is_connected(&b_id),
        1_000_000
    ));
    assert_eq!(redials(&sim, a).len(), 1);
    assert!(redials(&sim, a)[0].1 <= BASE, "{:?}", redials(&sim, a));
}

/// Made persistent while the application's own dial to it is under way, that dial is
/// the persistent one: its id is checked against the one expected.
#[test]
fn a_dial_of_the_application_under_way_is_taken_as_the_persistent_dial() {
    let (mut sim, a, b) = sim(10);
    let b_id = sim.node(b).id();
    sim.dial(a, b).unwrap();
    sim.add_peer(a, b, Some(PeerId::from_bytes([9; 32])))
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(!sim.node(a).is_connected(&b_id));
    assert!(sim.node(a).events().iter().any(|e| matches!(
        e,
        Event::DialFailed {
            reason: CloseReason::UnexpectedPeer,
            ..
        }
    )));
    assert_eq!(redials(&sim, a).len(), 1, "{:?}", redials(&sim, a));
}
