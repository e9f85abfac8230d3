//! Attack tests: peer ids without a private key (issue 11, finding 2). A malicious
//! peer runs noise-xx with `snow` and a resolver that forges one of its keys: it
//! presents a low-order point (every DH with it is zero, so the peer computes zeros
//! where it holds no key), or the bit-255 alias of its real static key (the same DHs,
//! another peer id). The node must fail each such handshake, as responder and as
//! initiator, with `HandshakeFailed`, while the same harness with an honest key
//! connects.

use std::net::SocketAddr;

use bytes::Buf;
use p2p::wire::{PREAMBLE_LEN, Preamble, Security};
use p2p::{CloseReason, Config, Event, Network, PeerId};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::common::*;
use crate::support::{deadline, run_until_by};

/// PROTOCOL.md §2.2.
const PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
const TURNS: usize = 2000;
/// The malicious peer's real static secret.
const SECRET: [u8; 32] = [0x5A; 32];

/// Which key of the malicious peer is forged, and how.
#[derive(Clone, Copy, Debug)]
struct Forgery {
    /// The static key if true, else the ephemeral one.
    static_key: bool,
    /// The public key it presents.
    claimed: [u8; 32],
    /// Every DH with it gives zeros (a low-order key, which is what the node computes
    /// then), instead of the real key's result (an alias).
    zeros: bool,
}

/// snow's default resolver, but one key is forged as `Forgery` says.
struct Forger(Forgery);

impl CryptoResolver for Forger {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        Some(Box::new(ForgedDh {
            inner: DefaultResolver.resolve_dh(choice)?,
            forgery: self.0,
            forged: false,
        }))
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// One key: snow sets the static key and generates the ephemeral one, which tells
/// them apart.
struct ForgedDh {
    inner: Box<dyn Dh>,
    forgery: Forgery,
    forged: bool,
}

impl Dh for ForgedDh {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn pub_len(&self) -> usize {
        self.inner.pub_len()
    }

    fn priv_len(&self) -> usize {
        self.inner.priv_len()
    }

    fn set(&mut self, privkey: &[u8]) {
        self.inner.set(privkey);
        self.forged = self.forgery.static_key;
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        self.inner.generate(rng)?;
        self.forged = !self.forgery.static_key;
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        if self.forged {
            &self.forgery.claimed
        } else {
            self.inner.pubkey()
        }
    }

    fn privkey(&self) -> &[u8] {
        self.inner.privkey()
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        if self.forged && self.forgery.zeros {
            out[..32].fill(0);
            Ok(())
        } else {
            self.inner.dh(pubkey, out)
        }
    }
}

/// A noise node that takes handshakes from one address as fast as they come.
fn noise_node() -> (Network, SocketAddr) {
    listening(Config {
        security: Security::NoiseXx,
        handshake_rate_per_ip: u32::MAX,
        ..Config::default()
    })
}

/// The malicious peer's handshake state: its static key `secret`, the prologue of
/// both preambles (initiator's first).
fn forged_handshake(
    forgery: Forgery,
    secret: &[u8; 32],
    prologue: &[u8],
    initiator: bool,
) -> snow::HandshakeState {
    let builder = snow::Builder::with_resolver(PARAMS.parse().unwrap(), Box::new(Forger(forgery)))
        .local_private_key(secret)
        .unwrap()
        .prologue(prologue)
        .unwrap();
    if initiator {
        builder.build_initiator().unwrap()
    } else {
        builder.build_responder().unwrap()
    }
}

/// Our next handshake message, framed for the wire (u16 big-endian length first).
fn framed_message(hs: &mut snow::HandshakeState) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = hs.write_message(&[], &mut buf).unwrap();
    let mut out = (n as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&buf[..n]);
    out
}

/// Steps `net` until `raw` holds a whole handshake message (taken and returned) or
/// the node closed the connection (`None`).
fn next_message(net: &mut Network, raw: &mut Raw, log: &mut Log) -> Option<Vec<u8>> {
    let whole = |raw: &Raw| {
        raw.inbox.len() >= 2
            && raw.inbox.len() >= 2 + usize::from(u16::from_be_bytes([raw.inbox[0], raw.inbox[1]]))
    };
    log.extend(run_until_by(&mut [net], TURNS, deadline(20), |_, _| {
        raw.pump();
        whole(raw) || raw.closed
    }));
    if !whole(raw) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([raw.inbox[0], raw.inbox[1]]));
    raw.inbox.advance(2);
    Some(raw.inbox.split_to(len).to_vec())
}

/// Steps `net` until `raw` holds `n` bytes, and takes them.
fn take(net: &mut Network, raw: &mut Raw, n: usize, log: &mut Log) -> Vec<u8> {
    log.extend(run_until_by(&mut [net], TURNS, deadline(20), |_, _| {
        raw.pump();
        raw.inbox.len() >= n
    }));
    raw.inbox.split_to(n).to_vec()
}

/// The malicious peer dials `net` (the node responds); the id it claims if the node
/// accepted it, `None` if the node failed the handshake.
fn as_initiator(net: &mut Network, addr: SocketAddr, forgery: Forgery) -> Option<PeerId> {
    let failed = net.stats().failed_handshakes;
    let mut log = Log::new();
    let mut raw = Raw::connect(addr);
    let ours = Preamble::new(Security::NoiseXx, net.config().network_id).encode();
    raw.send(&ours);
    let theirs = take(net, &mut raw, PREAMBLE_LEN, &mut log);
    let mut hs = forged_handshake(forgery, &SECRET, &[&ours[..], &theirs].concat(), true);
    raw.send(&framed_message(&mut hs));
    if let Some(msg2) = next_message(net, &mut raw, &mut log) {
        hs.read_message(&msg2, &mut [0u8; 256])
            .expect("the node's message 2");
        raw.send(&framed_message(&mut hs));
    }
    let claimed = claimed_id(forgery);
    log.extend(run_until_by(&mut [net], TURNS, deadline(20), |_, log| {
        raw.pump();
        connected_to(log, 0, claimed) || raw.closed
    }));
    if connected_to(&log, 0, claimed) {
        return Some(claimed);
    }
    assert!(
        log.is_empty(),
        "a failed inbound handshake has no event: {log:?}"
    );
    assert_eq!(net.stats().failed_handshakes, failed + 1);
    None
}

/// `net` dials the malicious peer (which responds); the id it claims if the node
/// accepted it, `None` if the dial failed with `HandshakeFailed`.
fn as_responder(net: &mut Network, forgery: Forgery) -> Option<PeerId> {
    let listener = RawListener::bind();
    net.dial(listener.addr).expect("dial");
    let (mut raw, mut log) = listener.accept(&mut [&mut *net]);
    let theirs = take(net, &mut raw, PREAMBLE_LEN, &mut log);
    let ours = Preamble::new(Security::NoiseXx, net.config().network_id).encode();
    raw.send(&ours);
    let mut hs = forged_handshake(forgery, &SECRET, &[&theirs[..], &ours].concat(), false);
    let msg1 = next_message(net, &mut raw, &mut log).expect("the node's message 1");
    hs.read_message(&msg1, &mut [0u8; 256])
        .expect("the node's message 1");
    raw.send(&framed_message(&mut hs));
    let claimed = claimed_id(forgery);
    let done = |log: &Log| {
        connected_to(log, 0, claimed) || has(log, 0, |e| matches!(e, Event::DialFailed { .. }))
    };
    log.extend(run_until_by(
        &mut [&mut *net],
        TURNS,
        deadline(20),
        |_, log| {
            raw.pump();
            done(log)
        },
    ));
    if connected_to(&log, 0, claimed) {
        return Some(claimed);
    }
    assert!(
        has(&log, 0, |e| matches!(
            e,
            Event::DialFailed { addr, reason: CloseReason::HandshakeFailed } if *addr == listener.addr
        )),
        "{log:?}"
    );
    None
}

/// The real static public key of the malicious peer.
fn real_public() -> [u8; 32] {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("X25519");
    dh.set(&SECRET);
    dh.pubkey().try_into().expect("32 bytes")
}

/// The peer id the malicious peer presents.
fn claimed_id(forgery: Forgery) -> PeerId {
    PeerId::from_bytes(if forgery.static_key {
        forgery.claimed
    } else {
        real_public()
    })
}

/// p = 2^255 - 19 plus `k` (little-endian; no carry for k < 19).
fn p_plus(k: u8) -> [u8; 32] {
    let mut u = [0xff; 32];
    u[0] = 0xed + k;
    u[31] = 0x7f;
    u
}

/// A little number as a 32-byte u.
fn small(n: u8) -> [u8; 32] {
    let mut u = [0; 32];
    u[0] = n;
    u
}

/// Little-endian bytes from hex.
fn hex32(s: &str) -> [u8; 32] {
    std::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
}

/// The low-order points of curve25519 and its twist in every encoding X25519 reads
/// (libsodium's list): 0, 1, the two points of order 8, p - 1, p, p + 1, and each with
/// bit 255 set.
fn low_order_points() -> Vec<[u8; 32]> {
    let mut points = vec![
        small(0),
        small(1),
        hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        p_plus(0),
        p_plus(1),
    ];
    for u in points.clone() {
        let mut high = u;
        high[31] |= 0x80;
        points.push(high);
    }
    points
}

/// Each forgery tried against a node in both roles: what the node accepted.
fn accepted(forgeries: impl IntoIterator<Item = Forgery>) -> Vec<String> {
    let (mut responder, addr) = noise_node();
    let (mut dialler, _) = noise_node();
    let mut accepted = Vec::new();
    for forgery in forgeries {
        let key = format!(
            "{} {}",
            if forgery.static_key {
                "static"
            } else {
                "ephemeral"
            },
            PeerId::from_bytes(forgery.claimed)
        );
        if let Some(id) = as_initiator(&mut responder, addr, forgery) {
            accepted.push(format!("{key} key from an initiator, as {id}"));
        }
        if let Some(id) = as_responder(&mut dialler, forgery) {
            accepted.push(format!("{key} key from a responder, as {id}"));
        }
    }
    accepted
}

#[test]
fn low_order_static_keys_fail_the_handshake_in_both_roles() {
    let forgeries = low_order_points().into_iter().map(|claimed| Forgery {
        static_key: true,
        claimed,
        zeros: true,
    });
    let accepted = accepted(forgeries);
    assert!(accepted.is_empty(), "accepted without a key: {accepted:#?}");
}

#[test]
fn low_order_ephemeral_keys_fail_the_handshake_in_both_roles() {
    let forgeries = low_order_points().into_iter().map(|claimed| Forgery {
        static_key: false,
        claimed,
        zeros: true,
    });
    let accepted = accepted(forgeries);
    assert!(accepted.is_empty(), "accepted without a key: {accepted:#?}");
}

#[test]
fn the_bit_255_alias_of_a_real_key_fails_the_handshake_in_both_roles() {
    let mut alias = real_public();
    alias[31] |= 0x80;
    let accepted = accepted([Forgery {
        static_key: true,
        claimed: alias,
        zeros: false,
    }]);
    assert!(
        accepted.is_empty(),
        "a second id for one key: {accepted:#?}"
    );
}

/// The real key plus each point of the curve's 8-torsion but the identity: seven
/// other u-coordinates, canonical and of large order, that X25519 with any clamped
/// secret (a multiple of 8) maps to the very same results as the real key.
fn torsion_aliases() -> Vec<[u8; 32]> {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::montgomery::MontgomeryPoint;
    let real = MontgomeryPoint(real_public())
        .to_edwards(0)
        .expect("a real key is on the curve");
    EIGHT_TORSION[1..]
        .iter()
        .map(|t| (real + t).to_montgomery().to_bytes())
        .collect()
}

#[test]
fn the_torsion_aliases_of_a_real_key_fail_the_handshake_in_both_roles() {
    let forgeries = torsion_aliases().into_iter().map(|claimed| Forgery {
        static_key: true,
        claimed,
        zeros: false,
    });
    let accepted = accepted(forgeries);
    assert!(accepted.is_empty(), "more ids for one key: {accepted:#?}");
}

#[test]
fn the_harness_with_the_real_key_connects_in_both_roles() {
    // The control: the same forging resolver, presenting the real key, is an honest
    // peer, so what fails above is the key, not the harness.
    let (mut responder, addr) = noise_node();
    let (mut dialler, _) = noise_node();
    let honest = Forgery {
        static_key: true,
        claimed: real_public(),
        zeros: false,
    };
    let id = PeerId::from_bytes(real_public());
    assert_eq!(as_initiator(&mut responder, addr, honest), Some(id));
    assert_eq!(as_responder(&mut dialler, honest), Some(id));
}
