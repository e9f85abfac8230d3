//! One-way MESSAGE stream between two [`Network`]s over loopback, both driven from one
//! thread with zero-timeout polls: a fixed workload for instruction counts, which a
//! noisy machine does not blur the way it blurs wall time (`benches/throughput.rs`).
//!
//! ```text
//! cargo build --release --example stream
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/stream --size 64 --mib 16 [--noise] [--broadcast]
//! ```
//!
//! With `--broadcast` the sender broadcasts instead (GOSSIP frames, queued shared).
//! The sender queues 256 KiB of payload between polls, like the throughput bench; the
//! run ends when the receiver has counted every payload byte. The last stdout line
//! says what moved.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use p2p::{Bytes, Config, Event, Network, Security, SendError};

/// Payload bytes queued between two polls of the sender.
const FILL: usize = 256 * 1024;
/// How long the run may take before it is called stuck (wall time: callgrind is slow).
const STALL: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let (mut size, mut mib, mut security) = (64usize, 16usize, Security::Plaintext);
    let mut broadcast = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<usize>().ok());
        match arg.as_str() {
            "--size" => size = value().unwrap_or(size),
            "--mib" => mib = value().unwrap_or(mib),
            "--noise" => security = Security::NoiseXx,
            "--broadcast" => broadcast = true,
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    let total = (mib << 20) / size * size;
    let config = Config {
        security,
        // Broadcasts at this rate are the workload, not a flood.
        max_gossip_rate: 1 << 30,
        max_gossip_bytes_rate: 1 << 40,
        ..Config::default()
    };
    let mut rx = Network::new(config.clone()).expect("create the receiving network");
    let addr = rx
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("listen on loopback");
    let mut tx = Network::new(config).expect("create the sending network");
    tx.dial(addr).expect("dial");
    let peer = rx.local_id();
    let (mut events, mut received) = (Vec::new(), 0usize);
    let start = Instant::now();
    while !tx.is_connected(&peer) {
        assert!(start.elapsed() < STALL, "the handshake did not finish");
        received += poll_both(&mut tx, &mut rx, &mut events);
    }
    let payload = Bytes::from(vec![0xa5; size]);
    let (mut sent, mut unflushed) = (0, 0);
    while sent < total {
        if broadcast {
            // A broadcast that finds the queue full is dropped, not refused: poll
            // before it could.
            if tx.stats().queued_bytes > 4 * FILL {
                received += poll_both(&mut tx, &mut rx, &mut events);
                continue;
            }
            tx.broadcast(payload.clone()).expect("broadcast");
        } else if let Err(e) = tx.send(&peer, payload.clone()) {
            match e {
                SendError::Full { .. } => {
                    assert!(start.elapsed() < STALL, "the sender stalled");
                    received += poll_both(&mut tx, &mut rx, &mut events);
                    continue;
                }
                e => panic!("send failed: {e}"),
            }
        }
        sent += size;
        unflushed += size;
        if unflushed >= FILL {
            unflushed = 0;
            received += poll_both(&mut tx, &mut rx, &mut events);
        }
    }
    while received < total {
        assert!(start.elapsed() < STALL, "the receiver stalled");
        received += poll_both(&mut tx, &mut rx, &mut events);
    }
    let dropped = tx.stats().totals.dropped_sends;
    println!(
        "stream: size={size} bytes={received} security={security:?} broadcast={broadcast} dropped={dropped}"
    );
    ExitCode::SUCCESS
}

/// One zero-timeout turn of each end; the payload bytes the receiver got in it.
fn poll_both(tx: &mut Network, rx: &mut Network, events: &mut Vec<Event>) -> usize {
    tx.poll(events, Some(Duration::ZERO)).expect("poll tx");
    rx.poll(events, Some(Duration::ZERO)).expect("poll rx");
    events
        .iter()
        .map(|event| match event {
            Event::Message { payload, .. } | Event::Broadcast { payload, .. } => payload.len(),
            _ => 0,
        })
        .sum()
}
