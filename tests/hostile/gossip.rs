//! Attack tests: gossip (issue 10, finding 5). A peer's hops cannot lengthen a
//! broadcast's reach past ours, a peer's GOSSIP frames are rate limited, and a peer
//! flooding fresh ids at its full allowed rate cannot flush the seen-id cache.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use p2p::wire::Frame;
use p2p::{Config, Event, Network, PeerId};

use crate::common::*;
use crate::support::{deadline, run_until_by};

fn gossip(id: [u8; 16], hops: u8, payload: &'static [u8]) -> Frame {
    Frame::Gossip {
        id,
        hops,
        payload: Bytes::from_static(payload),
    }
}

/// A fresh gossip id from a number.
fn fresh(n: u32) -> [u8; 16] {
    let mut id = [0xEE; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id
}

/// Broadcasts node `i` delivered in `log` that match `pred` (on sender and payload).
fn delivered(log: &Log, i: usize, pred: impl Fn(&PeerId, &[u8; 16], &Bytes) -> bool) -> usize {
    count(log, i, |e| match e {
        Event::Broadcast { from, id, payload } => pred(from, &id.0, payload),
        _ => false,
    })
}

#[test]
fn relayed_hops_are_clamped_to_the_local_limit() {
    let config = Config {
        gossip_hops: 16,
        ..plain()
    };
    let (mut net, addr) = listening(config);
    let (mut attacker, _) = Raw::handshake(&mut net, addr, id(0xA1));
    let (mut neighbour, _) = Raw::handshake(&mut net, addr, id(0xB1));
    attacker.send_frame(&gossip([7; 16], 255, b"far"));
    let until = deadline(20);
    let mut frames = Vec::new();
    run_until_by(&mut [&mut net], 2000, until, |_, _| {
        attacker.pump();
        frames.extend(neighbour.frames());
        !frames.is_empty()
    });
    assert_eq!(
        frames,
        vec![gossip([7; 16], 15, b"far")],
        "a relay carries min(hops - 1, gossip_hops - 1)"
    );
}

#[test]
fn gossip_over_the_rate_is_dropped_and_honest_broadcasts_pass() {
    const RATE: u32 = 20;
    const FLOOD: u32 = 400;
    let target_config = Config {
        max_gossip_rate: RATE,
        ..plain()
    };
    let (mut target, addr) = listening(target_config);
    let (mut honest, _) = listening(plain());
    let honest_id = honest.local_id();
    connect(&mut honest, &mut target, addr);
    let attacker_id = id(0xA2);
    let (mut attacker, _) = Raw::handshake(&mut target, addr, attacker_id);

    let start = Instant::now();
    for n in 0..FLOOD {
        attacker.send_frame(&gossip(fresh(n), 2, b"flood"));
    }
    let honest_ids: Vec<[u8; 16]> = (0..3)
        .map(|_| honest.broadcast("honest").expect("broadcast").0)
        .collect();
    let until = deadline(60);
    let log = run_until_by(
        &mut [&mut target, &mut honest],
        20_000,
        until,
        |nets, log| {
            attacker.pump();
            let flooded = delivered(log, 0, |from, _, _| *from == attacker_id);
            let limited = nets[0]
                .peer_stats(&attacker_id)
                .map_or(0, |s| s.rate_limited);
            let honest_in = delivered(log, 0, |from, id, _| {
                *from == honest_id && honest_ids.contains(id)
            });
            flooded as u64 + limited == u64::from(FLOOD) && honest_in == honest_ids.len()
        },
    );
    let elapsed = start.elapsed();
    let accepted = delivered(&log, 0, |from, _, _| *from == attacker_id);
    // The bucket starts with at most RATE tokens and gains RATE a second.
    let bound = RATE as usize + (f64::from(RATE) * elapsed.as_secs_f64()).ceil() as usize;
    let stats = target.peer_stats(&attacker_id).expect("attacker connected");

    // What was relayed to the honest neighbour has arrived once a later MESSAGE has.
    target.send(&honest_id, "barrier").expect("send barrier");
    let after = run_until_by(&mut [&mut target, &mut honest], 2000, until, |_, log| {
        has(
            log,
            1,
            |e| matches!(e, Event::Message { payload, .. } if payload == "barrier"),
        )
    });
    let relayed = delivered(&[log, after].concat(), 1, |_, _, payload| {
        payload == "flood"
    });
    println!(
        "figure: gossip rate limit {RATE}/s: {FLOOD} frames sent, {accepted} delivered, \
         {relayed} relayed, {} rate limited in {elapsed:?} (bound {bound})",
        stats.rate_limited
    );
    assert!(
        accepted <= bound,
        "{accepted} of {FLOOD} flooded frames delivered in {elapsed:?}: over the bucket's {bound}"
    );
    assert!(
        relayed <= accepted,
        "{relayed} relayed, {accepted} delivered"
    );
    assert_eq!(stats.rate_limited, u64::from(FLOOD) - accepted as u64);
    assert!(stats.rate_limited > 0);
    assert_eq!(target.stats().totals.rate_limited, stats.rate_limited);
}

/// Sends `frame` from `raw` (peer `peer` of `target`) until the target took it in
/// (delivered it or dropped it as a duplicate) rather than dropping it for the rate
/// limit; returns the events meanwhile.
fn send_until_admitted(
    target: &mut Network,
    raw: &mut Raw,
    peer: PeerId,
    frame: &Frame,
    until: Instant,
) -> Log {
    let mut all = Log::new();
    // Bounded by the deadline and a count: a drained bucket gains a token only every
    // 1/rate seconds, and a release build tries many times in that while.
    for _ in 0..1_000_000 {
        if Instant::now() >= until {
            break;
        }
        let limited = target.peer_stats(&peer).map_or(0, |s| s.rate_limited);
        let duplicates = target.stats().duplicate_gossip;
        raw.send_frame(frame);
        let log = run_until_by(&mut [&mut *target], 2000, until, |nets, log| {
            raw.pump();
            has(log, 0, |e| matches!(e, Event::Broadcast { .. }))
                || nets[0].stats().duplicate_gossip > duplicates
                || nets[0].peer_stats(&peer).map_or(0, |s| s.rate_limited) > limited
        });
        let admitted = target.peer_stats(&peer).map_or(0, |s| s.rate_limited) == limited;
        all.extend(log);
        if admitted {
            return all;
        }
    }
    panic!("{frame:?} never admitted");
}

#[test]
fn a_flood_at_the_full_allowed_rate_cannot_flush_the_seen_id_cache() {
    const CACHE: usize = 64;
    const RATE: u32 = 2 * CACHE as u32;
    let config = Config {
        gossip_cache_size: CACHE,
        max_gossip_rate: RATE,
        ..plain()
    };
    let (mut target, addr) = listening(config);
    let (honest_id, flooder_id) = (id(0xB3), id(0xF3));
    let (mut honest, _) = Raw::handshake(&mut target, addr, honest_id);
    let (mut flooder, _) = Raw::handshake(&mut target, addr, flooder_id);
    let until = deadline(60);
    let mut log = Log::new();

    // `first` comes from the honest peer first; `relayed` from the flooder first (it
    // relays honest gossip too), then from the honest peer.
    let (first, relayed) = ([0x11; 16], [0x22; 16]);
    let frame = |id| gossip(id, 1, b"honest");
    log.extend(send_until_admitted(
        &mut target,
        &mut flooder,
        flooder_id,
        &frame(relayed),
        until,
    ));
    for id in [first, relayed] {
        log.extend(send_until_admitted(
            &mut target,
            &mut honest,
            honest_id,
            &frame(id),
            until,
        ));
    }

    // The flood: fresh ids written ahead of what the node has taken, so the flooder's
    // bucket stays drained and it gets every id the rate allows, until four times the
    // cache has gone in.
    let start = Instant::now();
    let mut sent = 0u32;
    // The flood needs (4 * CACHE - RATE) / RATE seconds whatever the speed of a turn,
    // so the deadline bounds this loop; the count only backs it up. (A bound of 50,000
    // turns failed once turns got faster than 20 us: the rate had not let 256 in yet.)
    log.extend(run_until_by(
        &mut [&mut target],
        50_000_000,
        until,
        |nets, log| {
            let flooded = delivered(log, 0, |_, _, payload| payload == "flood");
            let limited = nets[0]
                .peer_stats(&flooder_id)
                .map_or(0, |s| s.rate_limited);
            let taken = flooded as u64 + limited;
            if flooded < 4 * CACHE && u64::from(sent) < taken + 32 {
                for n in sent..sent + 16 {
                    flooder.send_frame(&gossip(fresh(n), 1, b"flood"));
                }
                sent += 16;
            }
            flooder.pump();
            flooded >= 4 * CACHE && taken == u64::from(sent)
        },
    ));
    let elapsed = start.elapsed();
    let flooded = delivered(&log, 0, |_, _, payload| payload == "flood");

    // Both ids again, from both peers, well within the cache age.
    for id in [first, relayed] {
        for (raw, peer) in [(&mut honest, honest_id), (&mut flooder, flooder_id)] {
            log.extend(send_until_admitted(
                &mut target,
                raw,
                peer,
                &frame(id),
                until,
            ));
        }
    }
    for id in [first, relayed] {
        let times = delivered(&log, 0, |_, gid, _| *gid == id);
        assert_eq!(
            times, 1,
            "{id:?} delivered {times} times after {flooded} flooded ids"
        );
    }
    // The flood ran at the allowed rate, no faster.
    let bound = RATE as usize + (f64::from(RATE) * elapsed.as_secs_f64()).ceil() as usize;
    assert!(
        flooded <= bound,
        "{flooded} flooded ids delivered in {elapsed:?}: over the bucket's {bound}"
    );
    assert!(target.stats().gossip_ids <= CACHE);
    println!(
        "figure: seen-id cache {CACHE}, flooder at {RATE}/s: {flooded} fresh ids taken in \
         ({sent} sent) in {elapsed:?}, honest ids delivered once; gossip_ids {}",
        target.stats().gossip_ids
    );
}

/// Finding 5 at the default limits: one peer, on a thread of its own, sends GOSSIP
/// frames with fresh ids as fast as it can (the issue measured 500,000 in 4 s, all
/// delivered and relayed) for as long as an honest neighbour's broadcasts take to
/// arrive. Prints what got through and the honest broadcasts' delivery and latency.
#[test]
#[cfg_attr(debug_assertions, ignore)]
fn heavy_flood_at_default_limits() {
    const HONEST: usize = 200;
    let (mut target, addr) = listening(plain());
    let (mut honest, _) = listening(plain());
    let honest_id = honest.local_id();
    connect(&mut honest, &mut target, addr);
    let attacker_id = id(0xA4);
    let (attacker, _) = Raw::handshake(&mut target, addr, attacker_id);
    let rate = target.config().max_gossip_rate as usize;

    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stream = attacker
            .stream
            .try_clone()
            .expect("clone the attacker's stream");
        stream.set_nonblocking(false).expect("blocking");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        let stop = stop.clone();
        std::thread::spawn(move || flood_until(stream, &stop))
    };
    let until = deadline(120);
    let start = Instant::now();
    let mut turns = 0usize;
    let mut sent_at: Vec<([u8; 16], Instant)> = Vec::new();
    let mut latencies: Vec<f64> = Vec::new();
    let mut seen = 0;
    let mut log = run_until_by(
        &mut [&mut target, &mut honest],
        100_000,
        until,
        |nets, log| {
            turns += 1;
            if sent_at.len() < HONEST && turns.is_multiple_of(2) {
                let gid = nets[1].broadcast("honest").expect("broadcast");
                sent_at.push((gid.0, Instant::now()));
            }
            for (_, e) in &log[seen..] {
                if let Event::Broadcast { from, id, .. } = e
                    && *from == honest_id
                    && let Some((_, at)) = sent_at.iter().find(|(g, _)| g == &id.0)
                {
                    latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                }
            }
            seen = log.len();
            latencies.len() == HONEST
        },
    );
    stop.store(true, Ordering::Relaxed);
    // The flooder's last write ends once the target has read it.
    log.extend(run_until_by(
        &mut [&mut target, &mut honest],
        100_000,
        until,
        |_, _| flood.is_finished(),
    ));
    let sent = flood.join().expect("flood thread").expect("flood writes");
    let earlier = delivered(&log, 0, |from, _, _| *from == attacker_id);
    log.extend(run_until_by(
        &mut [&mut target, &mut honest],
        100_000,
        until,
        |nets, log| {
            let flooded = earlier + delivered(log, 0, |from, _, _| *from == attacker_id);
            let limited = nets[0]
                .peer_stats(&attacker_id)
                .map_or(0, |s| s.rate_limited);
            flooded as u64 + limited == sent
        },
    ));
    let elapsed = start.elapsed();
    let accepted = delivered(&log, 0, |from, _, _| *from == attacker_id);
    let stats = target.peer_stats(&attacker_id).expect("attacker connected");
    target.send(&honest_id, "barrier").expect("send barrier");
    let after = run_until_by(&mut [&mut target, &mut honest], 20_000, until, |_, log| {
        has(
            log,
            1,
            |e| matches!(e, Event::Message { payload, .. } if payload == "barrier"),
        )
    });
    let relayed = delivered(&[log, after].concat(), 1, |_, _, payload| {
        payload == "flood"
    });
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    println!(
        "figure: gossip flood at default limits ({rate}/s): {sent} frames in {elapsed:?}, \
         {accepted} delivered, {relayed} relayed, {} rate limited",
        stats.rate_limited
    );
    println!(
        "figure: honest broadcasts during the gossip flood: {}/{HONEST} delivered, p99 {p99:.2} ms",
        latencies.len()
    );
    drop(attacker);
    let bound = rate + (rate as f64 * elapsed.as_secs_f64()).ceil() as usize;
    assert!(
        accepted <= bound,
        "{accepted} delivered: over the bucket's {bound}"
    );
    assert_eq!(stats.rate_limited, sent - accepted as u64);
}

/// Writes GOSSIP frames with fresh ids to `stream` until `stop`; returns how many.
fn flood_until(mut stream: TcpStream, stop: &AtomicBool) -> std::io::Result<u64> {
    let mut chunk = BytesMut::new();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        chunk.clear();
        for _ in 0..1000 {
            gossip(fresh(sent as u32), 2, b"flood").encode(&mut chunk);
            sent += 1;
        }
        stream.write_all(&chunk)?;
    }
    Ok(sent)
}

/// A flood one peer is allowed must not censor the honest broadcasts relayed beside
/// it: without the relay budget, the node relayed all the flooder's allowed rate plus
/// the honest broadcasts to its neighbour, whose own per-connection limit then dropped
/// some of both. With it, the node relays at most half its rate, honest first.
#[test]
fn an_allowed_flood_does_not_crowd_honest_relays_out_of_a_neighbours_limit() {
    const RATE: u32 = 40;
    const HONEST: usize = 50;
    let (mut target, addr) = listening(Config {
        max_gossip_rate: RATE,
        ..plain()
    });
    let (mut honest, _) = listening(plain());
    // The neighbour downstream takes 30 GOSSIP a second from one connection.
    let (mut downstream, _) = listening(Config {
        max_gossip_rate: 30,
        ..plain()
    });
    connect(&mut honest, &mut target, addr);
    connect(&mut downstream, &mut target, addr);
    let attacker_id = id(0xA7);
    let (mut attacker, _) = Raw::handshake(&mut target, addr, attacker_id);

    let until = deadline(60);
    let mut next = Instant::now();
    let mut sent = Vec::new();
    let mut flood = 0u32;
    let log = run_until_by(
        &mut [&mut target, &mut honest, &mut downstream],
        100_000,
        until,
        |nets, log| {
            // The flooder writes far more than its rate, all along.
            for _ in 0..10 {
                attacker.send_frame(&gossip(fresh(flood), 2, b"flood"));
                flood += 1;
            }
            attacker.pump();
            // Ten honest broadcasts a second at most: after a stall of this thread (two
            // cores shared by parallel tests) the next one waits its 100 ms again
            // rather than catching up in a burst, which the honest sender's own rate
            // would not make either.
            if sent.len() < HONEST && Instant::now() >= next {
                next = Instant::now() + Duration::from_millis(100);
                sent.push(nets[1].broadcast("honest").expect("broadcast").0);
            }
            sent.len() == HONEST && delivered(log, 2, |_, id, _| sent.contains(id)) == HONEST
                || (sent.len() == HONEST && Instant::now() > next + Duration::from_secs(2))
        },
    );
    let got = delivered(&log, 2, |_, id, _| sent.contains(id));
    let flooded = delivered(&log, 2, |_, _, payload| payload == "flood");
    let stats = target.stats();
    println!(
        "figure: relay budget: downstream got {got}/{HONEST} honest broadcasts and {flooded} \
         of the flood; the node left {} unrelayed, rate limited {}",
        stats.unrelayed_gossip, stats.totals.rate_limited
    );
    assert_eq!(got, HONEST, "honest broadcasts crowded out downstream");
    assert!(
        stats.unrelayed_gossip > 0,
        "the flood never reached the relay budget"
    );
    let dropped_downstream = downstream.stats().totals.rate_limited;
    assert_eq!(
        dropped_downstream, 0,
        "the neighbour had to drop our relays"
    );
}
