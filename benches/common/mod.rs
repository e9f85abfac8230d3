//! What the noise benches share: snow built on either resolver, and a whole noise-xx
//! handshake run in memory, both ends on the calling thread.
//!
//! The crate builds its handshakes on [`p2p::NoiseResolver`] ([`Resolver::P2p`]):
//! ring's ChaChaPoly, the default resolver's BLAKE2s, and its own X25519 on dalek's
//! Edwards form. [`Resolver::Ring`] is what `snow::Builder::new` gives with snow's
//! `ring-accelerated` feature (ring's ChaChaPoly, snow's X25519 and BLAKE2s).

// Each bench uses part of this module (throughput's ceiling leaves out `P2p`).
#![allow(dead_code)]

use p2p::{Keypair, NoiseResolver};
use snow::params::NoiseParams;
use snow::resolvers::{BoxedCryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::{Builder, TransportState};

/// The crate's noise protocol (PROTOCOL.md §2.2).
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// The prologue the crate hashes in: both 12-byte preambles.
pub const PROLOGUE: [u8; 2 * p2p::wire::PREAMBLE_LEN] = [0x5a; 2 * p2p::wire::PREAMBLE_LEN];
/// Room for any of the three handshake messages (their payloads are empty).
const MESSAGE: usize = 256;

/// Which snow crypto resolver builds the state.
#[derive(Clone, Copy, Debug)]
pub enum Resolver {
    /// The crate's own, knowing the static key it is built for.
    P2p,
    /// Ring first, the default resolver for what ring lacks (X25519, BLAKE2s).
    Ring,
    /// The default (pure Rust) resolver alone.
    Default,
}

impl Resolver {
    /// All three, fastest first.
    pub const ALL: [Resolver; 3] = [Resolver::P2p, Resolver::Ring, Resolver::Default];

    /// The name in bench ids.
    pub fn label(self) -> &'static str {
        match self {
            Resolver::P2p => "p2p",
            Resolver::Ring => "ring",
            Resolver::Default => "default",
        }
    }

    fn boxed(self, key: &Keypair) -> BoxedCryptoResolver {
        match self {
            Resolver::P2p => Box::new(NoiseResolver::for_key(key)),
            Resolver::Ring => Box::new(FallbackResolver::new(
                Box::new(RingResolver),
                Box::new(DefaultResolver),
            )),
            Resolver::Default => Box::new(DefaultResolver),
        }
    }

    /// A builder for the crate's protocol with `key` as the static key, parsing the
    /// protocol name as the crate does.
    pub fn builder(self, key: &Keypair) -> Builder<'_> {
        let params: NoiseParams = NOISE_PARAMS.parse().expect("parse the noise params");
        Builder::with_resolver(params, self.boxed(key))
            .local_private_key(key.secret())
            .expect("set the static key")
    }
}

/// A fresh static keypair.
pub fn keypair() -> Keypair {
    Keypair::generate().expect("generate a keypair")
}

/// One whole noise-xx handshake between `initiator` and `responder` (static secrets),
/// in memory: build both states, carry the three messages, switch both to transport.
pub fn handshake(
    resolver: Resolver,
    initiator: &Keypair,
    responder: &Keypair,
) -> (TransportState, TransportState) {
    let build = |key| {
        resolver
            .builder(key)
            .prologue(&PROLOGUE)
            .expect("set the prologue")
    };
    let mut i = build(initiator)
        .build_initiator()
        .expect("build the initiator");
    let mut r = build(responder)
        .build_responder()
        .expect("build the responder");
    let mut message = [0u8; MESSAGE];
    let mut payload = [0u8; MESSAGE];
    // -> e; <- e, ee, s, es; -> s, se
    let n = i.write_message(&[], &mut message).expect("write message 1");
    r.read_message(&message[..n], &mut payload)
        .expect("read message 1");
    let n = r.write_message(&[], &mut message).expect("write message 2");
    i.read_message(&message[..n], &mut payload)
        .expect("read message 2");
    let n = i.write_message(&[], &mut message).expect("write message 3");
    r.read_message(&message[..n], &mut payload)
        .expect("read message 3");
    (
        i.into_transport_mode().expect("initiator to transport"),
        r.into_transport_mode().expect("responder to transport"),
    )
}
