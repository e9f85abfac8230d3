//! Noise-xx handshakes per second, and whole connection set-ups between two
//! [`Network`]s, every end on the bench thread.
//!
//! * `handshake/snow-<resolver>` (feature `noise`): snow alone, in memory. One
//!   iteration builds an initiator and a responder from fixed static keys (parsing the
//!   protocol name and hashing a 24-byte prologue, as the crate does), carries the
//!   three XX messages and switches both to transport mode: one whole handshake,
//!   both sides' work (each side generates an ephemeral key and does three X25519
//!   operations). `snow-p2p` is the resolver the crate uses ([`p2p::NoiseResolver`]),
//!   `snow-ring` what `snow::Builder::new` gives with `ring-accelerated`, and
//!   `snow-default` snow's default resolver alone.
//! * `connect/<security>`: the crate's own handshake path, which is not public, is
//!   measured through two `Network`s on loopback, both polled (zero timeout) by the
//!   bench thread. One iteration dials, and the timed part ends when both ends have
//!   reported [`Event::PeerConnected`]: TCP connect and accept, preambles and
//!   handshake. The client then disconnects and both are polled until neither holds a
//!   connection, outside the timed part. So one element is one connection set up,
//!   and the figure is connections per second.
//! * `cycle/<security>`: the same, with the close (GOODBYE, both shutdowns, both
//!   sockets freed) inside the timed part: connect-and-close cycles per second.
//!
//! `<security>` is `plaintext` or `noise` (feature `noise`); the difference between
//! the two is what the noise handshake adds to a connection's set-up. The target is
//! ≥ 3000 handshakes per second (`handshake/snow-p2p`); it is a measurement, not a
//! pass/fail check.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use p2p::{Config, Event, Network, PeerId, Security};

#[cfg(feature = "noise")]
mod common;

/// How long one connection may take before the bench gives up.
const STALL: Duration = Duration::from_secs(10);

/// snow alone: whole handshakes in memory.
#[cfg(feature = "noise")]
fn snow_handshakes(c: &mut Criterion) {
    use common::Resolver;
    use std::hint::black_box;

    let mut group = c.benchmark_group("handshake");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for resolver in Resolver::ALL {
        let (i, r) = (common::keypair(), common::keypair());
        group.bench_function(format!("snow-{}", resolver.label()), |b| {
            b.iter(|| black_box(common::handshake(resolver, black_box(&i), black_box(&r))))
        });
    }
    group.finish();
}

#[cfg(not(feature = "noise"))]
fn snow_handshakes(_: &mut Criterion) {}

/// Two networks on loopback, the client dialling the server again and again.
struct Pair {
    client: Network,
    server: Network,
    addr: SocketAddr,
    server_id: PeerId,
    events: Vec<Event>,
}

impl Pair {
    fn new(security: Security) -> Pair {
        // The client dials again and again from one address: the per-address
        // handshake rate (a defence against floods) would refuse it, and this
        // measures handshakes, not that limit.
        let config = Config {
            security,
            handshake_rate_per_ip: u32::MAX,
            ..Config::default()
        };
        let mut server = Network::new(config.clone()).expect("create the server network");
        let addr = server
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("listen on loopback");
        let client = Network::new(config).expect("create the client network");
        Pair {
            server_id: server.local_id(),
            client,
            server,
            addr,
            events: Vec::new(),
        }
    }

    /// Polls both once without waiting; true for each that reported `PeerConnected`.
    fn poll(&mut self) -> (bool, bool) {
        self.client
            .poll(&mut self.events, Some(Duration::ZERO))
            .expect("poll the client");
        let mut client_up = false;
        for event in &self.events {
            match event {
                Event::PeerConnected { peer, .. } if *peer == self.server_id => client_up = true,
                Event::DialFailed { reason, .. } => panic!("dial failed: {reason}"),
                _ => {}
            }
        }
        self.server
            .poll(&mut self.events, Some(Duration::ZERO))
            .expect("poll the server");
        let server_up = self
            .events
            .iter()
            .any(|e| matches!(e, Event::PeerConnected { .. }));
        (client_up, server_up)
    }

    /// Dials and polls until both ends have the other as a peer.
    fn connect(&mut self) {
        let start = Instant::now();
        self.client.dial(self.addr).expect("dial the server");
        let (mut client_up, mut server_up) = (false, false);
        while !(client_up && server_up) {
            assert!(start.elapsed() < STALL, "the connection did not come up");
            let (c, s) = self.poll();
            client_up |= c;
            server_up |= s;
        }
    }

    /// Disconnects and polls until neither end holds a connection.
    fn close(&mut self) {
        let start = Instant::now();
        assert!(
            self.client.disconnect(&self.server_id),
            "the client was not connected"
        );
        while self.client.stats().connections > 0 || self.server.stats().connections > 0 {
            assert!(start.elapsed() < STALL, "the connection did not close");
            self.poll();
        }
    }
}

/// Connections set up between two networks, with and without the close.
fn connections(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let mut securities = vec![(Security::Plaintext, "plaintext")];
    if cfg!(feature = "noise") {
        securities.push((Security::NoiseXx, "noise"));
    }
    for (security, label) in securities {
        let mut pair = Pair::new(security);
        group.bench_function(format!("connect/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    pair.connect();
                    timed += start.elapsed();
                    pair.close();
                }
                timed
            })
        });
        group.bench_function(format!("cycle/{label}"), |b| {
            b.iter(|| {
                pair.connect();
                pair.close();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, snow_handshakes, connections);
criterion_main!(benches);
