//! Attack test: censoring a broadcast by predicting its id (issue 11, finding 1). A
//! peer that receives a node's gossip learns its ids; were they the outputs of a
//! predictable generator, it could send junk under the id of the node's next broadcast
//! to the node's neighbours first, and they would drop the real one as a duplicate.

use bytes::Bytes;
use p2p::wire::Frame;
use p2p::{Event, PeerId};

use crate::common::*;
use crate::support::{deadline, host, raw_from, run_until_by};

#[path = "../common/xoshiro.rs"]
mod xoshiro;

/// Whether node `i` delivered a broadcast of `payload` from `from` in `log`.
fn delivered(log: &Log, i: usize, from: PeerId, payload: &'static [u8]) -> bool {
    has(
        log,
        i,
        |e| matches!(e, Event::Broadcast { from: f, payload: p, .. } if *f == from && p == payload),
    )
}

#[test]
fn a_peer_cannot_censor_a_broadcast_by_predicting_its_id() {
    let (mut a, a_addr) = listening(plain());
    let (mut b, b_addr) = listening(plain());
    connect(&mut a, &mut b, b_addr);
    let (a_id, attacker_id) = (a.local_id(), id(0xC1));
    // The attacker is a neighbour of both, from another host.
    let mut at_a = raw_from(host(2), a_addr);
    at_a.send(&hello(a.config().network_id, attacker_id));
    let mut at_b = raw_from(host(2), b_addr);
    at_b.send(&hello(b.config().network_id, attacker_id));
    let until = deadline(30);
    run_until_by(&mut [&mut a, &mut b], 2000, until, |_, log| {
        at_a.pump();
        at_b.pump();
        connected_to(log, 0, attacker_id) && connected_to(log, 1, attacker_id)
    });
    at_a.inbox.clear();
    at_b.inbox.clear();

    // It watches two of A's broadcasts go by.
    a.broadcast("first").expect("broadcast");
    a.broadcast("second").expect("broadcast");
    let mut seen = Vec::new();
    run_until_by(&mut [&mut a, &mut b], 2000, until, |_, _| {
        at_b.pump();
        for frame in at_a.frames() {
            if let Frame::Gossip { id, .. } = frame {
                seen.push(id);
            }
        }
        seen.len() >= 2
    });

    // It sends B junk under the id it predicts for A's next broadcast, and B takes it.
    let predicted = xoshiro::predict_next_id(&seen[0], &seen[1]);
    at_b.send_frame(&Frame::Gossip {
        id: predicted,
        hops: 2,
        payload: Bytes::from_static(b"junk"),
    });
    run_until_by(&mut [&mut a, &mut b], 2000, until, |_, log| {
        at_a.pump();
        at_b.pump();
        delivered(log, 1, attacker_id, b"junk")
    });

    // A broadcasts: B either delivers it or drops it as a duplicate of the junk.
    let duplicates = b.stats().duplicate_gossip;
    let real = a.broadcast("real").expect("broadcast");
    let log = run_until_by(&mut [&mut a, &mut b], 2000, until, |nets, log| {
        at_a.pump();
        at_b.pump();
        delivered(log, 1, a_id, b"real") || nets[1].stats().duplicate_gossip > duplicates
    });
    assert!(
        delivered(&log, 1, a_id, b"real"),
        "B dropped A's broadcast as a duplicate of the attacker's junk (id {:02x?} predicted {})",
        real.0,
        if real.0 == predicted {
            "exactly"
        } else {
            "wrong"
        }
    );
    assert_ne!(real.0, predicted, "A's next gossip id was predicted");
}
