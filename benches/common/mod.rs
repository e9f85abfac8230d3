//! What the noise benches share: snow built on either resolver, and a whole noise-xx
//! handshake run in memory, both ends on the calling thread.
//!
//! The crate builds its handshakes with `snow::Builder::new`, which (with snow's
//! `ring-accelerated` feature) is [`Resolver::Ring`]: ring's ChaChaPoly and random
//! numbers, the default resolver's X25519 and BLAKE2s.

use snow::params::NoiseParams;
use snow::resolvers::{BoxedCryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::{Builder, Keypair, TransportState};

/// The crate's noise protocol (PROTOCOL.md §2.2).
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// The prologue the crate hashes in: both 12-byte preambles.
pub const PROLOGUE: [u8; 2 * p2p::wire::PREAMBLE_LEN] = [0x5a; 2 * p2p::wire::PREAMBLE_LEN];
/// Room for any of the three handshake messages (their payloads are empty).
const MESSAGE: usize = 256;

/// Which snow crypto resolver builds the state.
#[derive(Clone, Copy, Debug)]
pub enum Resolver {
    /// Ring first, the default resolver for what ring lacks (X25519, BLAKE2s).
    Ring,
    /// The default (pure Rust) resolver alone.
    Default,
}

impl Resolver {
    /// Both, ring first.
    pub const ALL: [Resolver; 2] = [Resolver::Ring, Resolver::Default];

    /// The name in bench ids.
    pub fn label(self) -> &'static str {
        match self {
            Resolver::Ring => "ring",
            Resolver::Default => "default",
        }
    }

    fn boxed(self) -> BoxedCryptoResolver {
        match self {
            Resolver::Ring => Box::new(FallbackResolver::new(
                Box::new(RingResolver),
                Box::new(DefaultResolver),
            )),
            Resolver::Default => Box::new(DefaultResolver),
        }
    }

    /// A builder for the crate's protocol, parsing its name as the crate does.
    pub fn builder<'a>(self) -> Builder<'a> {
        let params: NoiseParams = NOISE_PARAMS.parse().expect("parse the noise params");
        Builder::with_resolver(params, self.boxed())
    }

    /// A fresh static keypair.
    pub fn keypair(self) -> Keypair {
        self.builder()
            .generate_keypair()
            .expect("generate a keypair")
    }
}

/// One whole noise-xx handshake between `initiator` and `responder` (static secrets),
/// in memory: build both states, carry the three messages, switch both to transport.
pub fn handshake(
    resolver: Resolver,
    initiator: &[u8],
    responder: &[u8],
) -> (TransportState, TransportState) {
    let build = |secret| {
        resolver
            .builder()
            .local_private_key(secret)
            .expect("set the static key")
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
