//! Finding 3: peers that send PINGs and never read. Their queues take no more than a
//! fair share of the global write budget, honest peers' relays keep going through, and
//! a queue that does not move closes its connection with `WriteTimeout`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use p2p::wire::Frame;
use p2p::{CloseReason, Config, Event, Network, PeerId};
use socket2::{Domain, Socket, Type};

use crate::common::*;
use crate::support::{deadline, host, in_own_process, rss};

/// A peer that finishes the plaintext handshake with `net` from `source` as `me`,
/// then never reads again. Its receive buffer is made small before it connects, so
/// the kernel absorbs little of what the node sends it.
pub fn non_reader(net: &mut Network, addr: SocketAddr, source: IpAddr, me: PeerId) -> Raw {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind");
    socket.connect(&addr.into()).expect("connect");
    let mut raw = Raw::from_stream(socket.into());
    raw.send(&hello(net.config().network_id, me));
    run_until(&mut [net], 2000, |_, log| {
        raw.pump();
        raw.inbox.len() >= HELLO_LEN && connected_to(log, 0, me)
    });
    raw
}

/// PINGs a flooding peer sends at a time in the short tests.
const PING_BATCH: u64 = 500;

/// Sends `raw` (peer `hog` of `net`) another `batch` PINGs once `net` took the last
/// ones, so the attack is paced by the node rather than piled up in kernel buffers;
/// never reads.
fn ping_flood(net: &Network, hog: PeerId, raw: &mut Raw, nonce: &mut u64, batch: u64) {
    let taken = net.peer_stats(&hog).map_or(0, |s| s.frames_in);
    if raw.unsent() > 0 || taken < *nonce {
        return;
    }
    let mut pings = Vec::with_capacity(batch as usize * 13);
    for _ in 0..batch {
        pings.extend_from_slice(&encode(&Frame::Ping(*nonce)));
        *nonce += 1;
    }
    raw.send(&pings);
}

fn hog_id(i: usize) -> PeerId {
    id(0x80 + i as u8)
}

/// What one attack run measured.
struct Outcome {
    broadcasts: usize,
    delivered: usize,
    max_queued: usize,
    max_hog_queue: usize,
    hog_drops: u64,
    honest_connected: bool,
    /// The 99th percentile of delivery latency of the honest broadcasts delivered.
    p99: Duration,
    /// The process's largest RSS seen during the run.
    max_rss: Option<u64>,
    /// Live heap at most (the counting allocator of this test binary).
    max_heap: usize,
}

fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort_unstable();
    let at = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
    latencies.get(at).copied().unwrap_or_default()
}

/// An attack's size.
#[derive(Clone, Copy)]
struct Attack {
    /// Peers that ping and never read.
    hogs: usize,
    /// PINGs each sends at a time.
    ping_batch: u64,
    /// Honest broadcasts made while they hold their queues full.
    broadcasts: usize,
    /// If set, A also broadcasts payloads of this size while the hogs fill, so the
    /// megabytes the kernel's socket buffers absorb before A's queues grow go by
    /// faster than in PONGs.
    filler: Option<usize>,
    /// Deadline of the whole run.
    secs: u64,
}

/// Node A, with `hogs` peers that ping it and never read and two honest nodes that
/// reach each other only through A: the hogs fill their queues first, then the honest
/// nodes exchange `broadcasts` broadcasts while the hogs keep pinging.
fn attack(config: Config, attack: &Attack) -> Outcome {
    let Attack {
        hogs,
        ping_batch,
        broadcasts,
        filler,
        secs,
    } = *attack;
    let total = config.max_write_buffer_total;
    let (mut a, a_addr) = listening(config);
    let (mut h1, _) = listening(plain());
    let (mut h2, _) = listening(plain());
    connect(&mut h1, &mut a, a_addr);
    connect(&mut h2, &mut a, a_addr);
    let mut raws: Vec<Raw> = (0..hogs)
        .map(|i| non_reader(&mut a, a_addr, host(10 + i as u8), hog_id(i)))
        .collect();
    let mut nonces = vec![0u64; hogs];
    let until = deadline(secs);
    let mut max_queued = 0;
    let mut max_hog_queue = 0;
    let mut max_rss = None;
    let mut max_heap = 0;
    let mut watch = |a: &Network| {
        max_rss = max_rss.max(rss());
        max_heap = max_heap.max(crate::support::heap());
        let queued = a.stats().queued_bytes;
        assert!(queued <= total, "{queued} queued, cap {total}");
        max_queued = max_queued.max(queued);
        for i in 0..hogs {
            let q = a.queued_bytes(&hog_id(i)).unwrap_or(0);
            max_hog_queue = max_hog_queue.max(q);
        }
    };
    // The hogs flood until every one of them had a PONG refused: their queues are full.
    let full = |a: &Network| {
        (0..hogs).all(|i| {
            a.peer_stats(&hog_id(i))
                .is_some_and(|s| s.dropped_sends > 0)
        })
    };
    run_until(&mut [&mut a, &mut h1, &mut h2], 200_000, |nets, _| {
        assert!(Instant::now() < until, "the hogs did not fill their queues");
        if let Some(size) = filler {
            nets[0]
                .broadcast(vec![0xF1; size])
                .expect("filler broadcast");
        }
        for (i, (raw, nonce)) in raws.iter_mut().zip(&mut nonces).enumerate() {
            // One that is full waits for the others, so they fill in step.
            if nets[0]
                .peer_stats(&hog_id(i))
                .is_some_and(|s| s.dropped_sends == 0)
            {
                ping_flood(nets[0], hog_id(i), raw, nonce, ping_batch);
            }
        }
        watch(nets[0]);
        full(nets[0])
    });
    let (h1_id, h2_id) = (h1.local_id(), h2.local_id());
    let mut sent = 0;
    // Payloads are copied out of events, and events dropped each turn: a received
    // payload may be a slice of a whole read buffer, and keeping thousands of them
    // would measure the test's memory, not the node's.
    let mut got: HashSet<Vec<u8>> = HashSet::new();
    let mut expected: HashMap<Vec<u8>, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut done = false;
    for _ in 0..200_000 {
        for (i, (raw, nonce)) in raws.iter_mut().zip(&mut nonces).enumerate() {
            ping_flood(&a, hog_id(i), raw, nonce, ping_batch);
        }
        watch(&a);
        // A few per turn, from both sides.
        for _ in 0..2 {
            if sent < broadcasts {
                let payload = format!("honest broadcast {sent:06}").into_bytes();
                let origin = if sent % 2 == 0 { &mut h1 } else { &mut h2 };
                origin.broadcast(payload.clone()).expect("broadcast");
                expected.insert(payload, Instant::now());
                sent += 1;
            }
        }
        let mut log = Log::new();
        turn(&mut [&mut h1, &mut h2, &mut a], &mut log);
        for (i, e) in log {
            if let Event::Broadcast { from, payload, .. } = e
                && i < 2
                && from == a.local_id()
                && let Some(at) = expected.get(&payload[..])
                && got.insert(payload.to_vec())
            {
                latencies.push(at.elapsed());
            }
        }
        if sent == broadcasts && (got.len() == sent || Instant::now() >= until) {
            done = true;
            break;
        }
    }
    assert!(done, "turns ran out: {} of {sent} delivered", got.len());
    let hog_drops = (0..hogs)
        .filter_map(|i| a.peer_stats(&hog_id(i)))
        .map(|s| s.dropped_sends)
        .sum();
    Outcome {
        broadcasts,
        delivered: got.len(),
        p99: p99(&mut latencies),
        max_rss,
        max_heap,
        max_queued,
        max_hog_queue,
        hog_drops,
        honest_connected: a.is_connected(&h1_id) && a.is_connected(&h2_id),
    }
}

/// The assertions every run makes, whatever its size.
fn check(outcome: &Outcome, total: usize, hogs: usize) {
    let rate = outcome.delivered as f64 / outcome.broadcasts as f64;
    assert!(
        rate >= 0.99,
        "honest broadcasts delivered through the attacked node: {} of {}",
        outcome.delivered,
        outcome.broadcasts
    );
    // Filling together, each holds about 1/(hogs + 1) of the budget; allow twice that
    // for the order in which one turn reads them.
    let share = 2 * total / (hogs + 1);
    assert!(
        outcome.max_hog_queue <= share,
        "one non-reader held {} of {total} (share {share})",
        outcome.max_hog_queue
    );
    assert!(outcome.honest_connected, "honest peers stay");
    assert!(outcome.hog_drops > 0, "the non-readers were refused PONGs");
}

fn short_config() -> Config {
    Config {
        // One non-reader alone could take the whole budget under the per-peer cap.
        max_write_buffer: 256 * 1024,
        max_write_buffer_total: 256 * 1024,
        max_frame_size: 16 * 1024,
        // Long enough that the hogs stay through the test: the timeout has its own.
        write_timeout: Duration::from_secs(600),
        ..plain()
    }
}

#[test]
fn non_readers_hold_a_fair_share_and_honest_relays_go_through() {
    const HOGS: usize = 5;
    let config = short_config();
    let total = config.max_write_buffer_total;
    let outcome = attack(
        config,
        &Attack {
            hogs: HOGS,
            ping_batch: PING_BATCH,
            broadcasts: 200,
            filler: Some(8 * 1024),
            secs: 60,
        },
    );
    check(&outcome, total, HOGS);
}

#[test]
fn a_peer_whose_queue_does_not_move_is_closed_with_write_timeout() {
    const HOGS: usize = 3;
    let write_timeout = Duration::from_millis(500);
    let (mut a, a_addr) = listening(Config {
        write_timeout,
        ..short_config()
    });
    let (mut honest, _) = listening(plain());
    connect(&mut honest, &mut a, a_addr);
    let since = Instant::now();
    let mut raws: Vec<Raw> = (0..HOGS)
        .map(|i| non_reader(&mut a, a_addr, host(10 + i as u8), hog_id(i)))
        .collect();
    let mut nonces = vec![0u64; HOGS];
    let until = deadline(30);
    let mut closed = Vec::new();
    let mut refused = 0;
    run_until(&mut [&mut a, &mut honest], 1_000_000, |nets, log| {
        assert!(
            Instant::now() < until,
            "non-readers still open after {:?}: {closed:?}",
            since.elapsed()
        );
        // They keep sending, so the idle timeout never closes them: only their
        // queues not moving can.
        for (i, (raw, nonce)) in raws.iter_mut().zip(&mut nonces).enumerate() {
            ping_flood(nets[0], hog_id(i), raw, nonce, PING_BATCH);
        }
        for (i, e) in log {
            if let (0, Event::PeerDisconnected { peer, reason }) = (i, e)
                && !closed.iter().any(|(p, _)| p == peer)
            {
                closed.push((*peer, reason.clone()));
            }
        }
        // The honest peer is served meanwhile (its queue moves).
        if nets[0].send(&nets[1].local_id(), "still here").is_err() {
            refused += 1;
        }
        closed.len() >= HOGS
    });
    assert!(since.elapsed() >= write_timeout);
    for (peer, reason) in &closed {
        assert!(
            (0..HOGS).any(|i| hog_id(i) == *peer),
            "only non-readers close: {peer:?} {reason}"
        );
        assert_eq!(*reason, CloseReason::WriteTimeout, "{peer:?}");
    }
    assert!(a.is_connected(&honest.local_id()), "the honest peer stays");
    assert_eq!(refused, 0, "sends to the honest peer refused");
    assert_eq!(
        a.stats().queued_bytes,
        a.queued_bytes(&honest.local_id()).unwrap()
    );
}

#[test]
#[cfg_attr(debug_assertions, ignore)]
fn heavy_non_readers_at_default_caps() {
    if in_own_process("writes::heavy_non_readers_at_default_caps") {
        return;
    }
    const HOGS: usize = 20;
    const BROADCASTS: usize = 2000;
    let config = Config {
        write_timeout: Duration::from_secs(600),
        ..plain()
    };
    let total = config.max_write_buffer_total;
    let before = rss();
    // PONGs alone, as in the finding.
    let outcome = attack(
        config,
        &Attack {
            hogs: HOGS,
            ping_batch: 4000,
            broadcasts: BROADCASTS,
            filler: None,
            secs: 120,
        },
    );
    println!(
        "figure: writes: {HOGS} non-readers at default caps: honest broadcasts delivered \
         {} of {} ({:.2}%), p99 latency {:?}",
        outcome.delivered,
        outcome.broadcasts,
        100.0 * outcome.delivered as f64 / outcome.broadcasts as f64,
        outcome.p99
    );
    println!(
        "figure: writes: max queued_bytes {} of max_write_buffer_total {total}; largest \
         non-reader queue {} (1/(N+1) = {}); PONGs and relays refused to non-readers {}",
        outcome.max_queued,
        outcome.max_hog_queue,
        total / (HOGS + 1),
        outcome.hog_drops
    );
    if let (Some(before), Some(peak)) = (before, outcome.max_rss) {
        println!(
            "figure: writes: RSS {} MiB before the attack, at most {} MiB during it \
             (max_write_buffer_total {} MiB)",
            before >> 20,
            peak >> 20,
            total >> 20
        );
    }
    // What the queues hold is what they count, give or take a tenth: a queue that
    // only grows is a list of full 64 KiB chunks.
    println!(
        "figure: writes: live heap at most {} MiB",
        outcome.max_heap >> 20
    );
    assert!(
        outcome.max_heap <= total + total / 10 + (32 << 20),
        "live heap {} for a write budget of {total}",
        outcome.max_heap
    );
    check(&outcome, total, HOGS);
}
