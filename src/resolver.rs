//! The snow crypto resolver noise-xx runs on: ring's ChaChaPoly, BLAKE2s, and an
//! X25519 tuned for handshakes.

use std::sync::{Arc, Mutex};

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroize;

use crate::secret::SecretKey;

/// The [`snow`] crypto resolver behind this crate's noise-xx: the same primitives as
/// `Noise_XX_25519_ChaChaPoly_BLAKE2s` anywhere, computed faster.
///
/// * ChaChaPoly comes from ring (about 1.7 times snow's default on 64 KiB records).
/// * BLAKE2s comes from snow's default resolver.
/// * X25519 is curve25519-dalek's, computed on the Edwards form of the curve, where
///   dalek has an AVX2 backend and precomputed base-point tables, instead of the
///   Montgomery ladder snow uses; the output is the RFC 7748 function bit for bit (a
///   point off the curve falls back to the ladder). The static public key of the
///   resolver's own keypair is remembered, so a handshake does not derive it again,
///   and the remote ephemeral key, which each side multiplies twice, is mapped to the
///   Edwards form once.
/// * A remote public key must be canonical (below p = 2^255 - 19, bit 255 clear) and
///   of large order, and no DH result may be all zeros: otherwise the DH fails, and
///   with it the handshake (Noise §12.1 lets a DH refuse an invalid key). So a peer
///   cannot present a low-order key without holding a private key. The crate's
///   handshake also requires the remote static key to lie in the prime-order
///   subgroup (not a real key plus a low-order point, which every DH reads as the
///   real key), so that a private key has one public key, hence one peer id; this
///   resolver cannot tell a static key from an ephemeral one, so snow driven
///   directly does not check that. Any key this or any RFC 7748 implementation
///   generates passes both.
///
/// A handshake then costs two base-point multiplications and six variable-base ones
/// (three per side), 1.4 times as many handshakes per second as with snow's own X25519
/// (`cargo bench -p p2p-benches --bench handshake`). The crate's handshake adds one
/// more per side, outside the resolver: the subgroup check of the remote static key.
///
/// One resolver serves one handshake at a time: snow builds every key of a handshake
/// from the resolver it was given, and they share what they learn.
///
/// The crate uses it for every handshake; it is public so that a test or a bench
/// driving [`snow`] directly can run the very same code:
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use p2p::{Keypair, NoiseResolver};
///
/// let key = Keypair::generate()?;
/// let mut initiator = snow::Builder::with_resolver(
///     "Noise_XX_25519_ChaChaPoly_BLAKE2s".parse()?,
///     Box::new(NoiseResolver::for_key(&key)),
/// )
/// .local_private_key(key.secret())?
/// .build_initiator()?;
/// let mut first = [0u8; 64];
/// assert_eq!(initiator.write_message(&[], &mut first)?, 32);
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct NoiseResolver {
    /// A static keypair whose public half need not be derived again; the secret is
    /// shared with the node, not copied.
    known: Option<(SecretKey, [u8; 32])>,
    /// The last remote key mapped to the Edwards form, shared by the handshake's keys.
    remote: Arc<Mutex<Option<Remote>>>,
    /// The node's generator for the handshake's ephemeral key, taken by the one
    /// `resolve_rng` call of a build; `None`: the operating system's.
    rng: std::sync::Mutex<Option<crate::rng::Rng>>,
}

/// A remote public key and its Edwards form (`None`: not on the curve).
type Remote = ([u8; 32], Option<EdwardsPoint>);

impl std::fmt::Debug for NoiseResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("NoiseResolver")
            .field("knows_key", &self.known.is_some())
            .finish()
    }
}

impl NoiseResolver {
    /// A resolver that derives every public key it needs.
    pub fn new() -> NoiseResolver {
        NoiseResolver::default()
    }

    /// A resolver that knows `key`, so setting it as the local static key is free.
    pub fn for_key(key: &crate::Keypair) -> NoiseResolver {
        NoiseResolver::with_static(key.secret_key().clone(), *key.peer_id().as_bytes())
    }

    /// As [`NoiseResolver::for_key`], from the raw halves. The caller vouches that
    /// `public` is the X25519 public key of `secret`.
    pub(crate) fn with_static(secret: impl Into<SecretKey>, public: [u8; 32]) -> NoiseResolver {
        NoiseResolver {
            known: Some((secret.into(), public)),
            remote: Arc::default(),
            rng: std::sync::Mutex::default(),
        }
    }

    /// Ephemeral keys from `rng` (the node's, forked) instead of the operating
    /// system's: one source for the whole core, seeded in the simulator so that its
    /// runs repeat bit for bit.
    pub(crate) fn with_rng(self, rng: Option<crate::rng::Rng>) -> NoiseResolver {
        NoiseResolver {
            rng: std::sync::Mutex::new(rng),
            ..self
        }
    }
}

impl CryptoResolver for NoiseResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let injected = self.rng.lock().ok().and_then(|mut rng| rng.take());
        match injected {
            Some(rng) => Some(Box::new(Injected(rng))),
            None => DefaultResolver.resolve_rng(),
        }
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(X25519 {
                secret: [0; 32],
                public: [0; 32],
                known: self.known.clone(),
                remote: self.remote.clone(),
            })),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver
            .resolve_hash(choice)
            .or_else(|| DefaultResolver.resolve_hash(choice))
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver
            .resolve_cipher(choice)
            .or_else(|| DefaultResolver.resolve_cipher(choice))
    }
}

/// The node's own generator, as snow asks for one.
struct Injected(crate::rng::Rng);

impl Random for Injected {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

/// One X25519 key as snow holds it. snow copies the static secret in with `set` for
/// the handshake's lifetime; that copy, and an ephemeral secret, are wiped on drop.
struct X25519 {
    secret: [u8; 32],
    public: [u8; 32],
    known: Option<(SecretKey, [u8; 32])>,
    remote: Arc<Mutex<Option<Remote>>>,
}

impl Drop for X25519 {
    fn drop(&mut self) {
        // A volatile write: unlike an assignment, not elided as a dead store.
        self.secret.zeroize();
    }
}

impl X25519 {
    fn derive_public(&mut self) {
        self.public = match &self.known {
            Some((secret, public)) if secret.as_bytes() == &self.secret => *public,
            _ => public_key(&self.secret),
        };
    }
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        // snow checks the length before calling; a short key is zero-padded as snow's
        // own resolver does.
        let n = privkey.len().min(32);
        self.secret = [0; 32];
        self.secret[..n].copy_from_slice(&privkey[..n]);
        self.derive_public();
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        rng.try_fill_bytes(&mut self.secret)?;
        self.derive_public();
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.secret
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let (Some(pubkey), Some(out)) = (pubkey.get(..32), out.get_mut(..32)) else {
            return Err(snow::Error::Dh);
        };
        let mut u = [0u8; 32];
        u.copy_from_slice(pubkey);
        // Noise lets a DH refuse an invalid public key (§12.1). Every remote key of XX,
        // ephemeral and static, enters a DH with one of ours before the handshake
        // ends, so none is accepted unchecked, and the static key that becomes the
        // peer id has one encoding.
        check_remote_key(&u).map_err(|_| snow::Error::Dh)?;
        // A poisoned lock only means another key of this handshake panicked; the
        // cache holds plain values, so it is still sound to use.
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        let edwards = match *remote {
            Some((cached, edwards)) if cached == u => edwards,
            _ => {
                let edwards = MontgomeryPoint(u).to_edwards(0);
                *remote = Some((u, edwards));
                edwards
            }
        };
        drop(remote);
        let shared = x25519_with(&self.secret, &u, edwards);
        // RFC 7748 §6.1's check: a zero secret would mean a key no one needs to hold.
        // Unreachable once the low-order keys are refused; kept as the last line.
        if shared == [0; 32] {
            return Err(snow::Error::Dh);
        }
        out.copy_from_slice(&shared);
        Ok(())
    }
}

/// Why a remote X25519 public key is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadKey {
    /// Bit 255 set, or u >= p = 2^255 - 19: another encoding of a key in 0..p, which
    /// X25519 reads the same, so accepting it would give one key two peer ids.
    NonCanonical,
    /// A point of order 1, 2, 4 or 8 (on the curve or its twist): every secret
    /// multiplies it to zero, so a peer could present it without holding any key.
    LowOrder,
    /// Not in the prime-order subgroup every real public key lies in: on the twist,
    /// or a real key plus a point of order 2, 4 or 8. X25519 with any clamped secret
    /// (a multiple of 8) maps such a sum to the same results as the real key, so
    /// accepted as a static key it would give one private key up to eight peer ids.
    OutsideSubgroup,
}

/// The canonical encodings of the low-order points (RFC 7748 §6.1; libsodium's
/// list less its non-canonical aliases, which [`check_remote_key`] refuses as such):
/// u = 0 (order 2), u = 1 (order 4), the two points of order 8, and u = p - 1 (order
/// 4 on the twist).
const LOW_ORDER: [[u8; 32]; 5] = [
    [0; 32],
    {
        let mut one = [0; 32];
        one[0] = 1;
        one
    },
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    {
        let mut p_minus_one = [0xff; 32];
        p_minus_one[0] = 0xec;
        p_minus_one[31] = 0x7f;
        p_minus_one
    },
];

/// Whether `u` (little-endian) is the one encoding of a point of large order: below
/// p with bit 255 clear, and none of the low-order points. Public keys are public, so
/// this need not run in constant time.
pub(crate) fn check_remote_key(u: &[u8; 32]) -> Result<(), BadKey> {
    // u >= p with bit 255 clear: 0x7f, thirty 0xff, then a low byte >= 0xed.
    let past_p = u[31] == 0x7f && u[1..31].iter().all(|&b| b == 0xff) && u[0] >= 0xed;
    if u[31] & 0x80 != 0 || past_p {
        return Err(BadKey::NonCanonical);
    }
    if LOW_ORDER.contains(u) {
        return Err(BadKey::LowOrder);
    }
    Ok(())
}

/// Whether `u` may be a peer's static key, its peer id: [`check_remote_key`], and a
/// point of the prime-order subgroup, as `secret * 9` is for every secret, so that
/// the holder of one private key has one id. Ephemeral keys need not pass this: the
/// torsion part of a large-order point vanishes in every DH, and they name no one.
/// One variable-time multiplication by the subgroup's order, about two thirds of a
/// DH, paid once per handshake: a handshake costs about a fifth more instructions.
pub(crate) fn check_static_key(u: &[u8; 32]) -> Result<(), BadKey> {
    check_remote_key(u)?;
    let point = MontgomeryPoint(*u)
        .to_edwards(0)
        .ok_or(BadKey::OutsideSubgroup)?;
    if in_prime_order_subgroup(&point) {
        Ok(())
    } else {
        Err(BadKey::OutsideSubgroup)
    }
}

/// Whether `point` times the subgroup order ℓ is the identity, as dalek's
/// `is_torsion_free`, computed in variable time (a public key is public): (ℓ - 1)·P,
/// the scalar -1 taken as the integer ℓ - 1, is -P exactly when ℓ·P is the identity.
/// A fifth fewer instructions than `is_torsion_free`'s constant-time multiplication
/// (callgrind: 41 M against 51 M for the handshakes of `simulate --nodes 20 --degree 4`).
fn in_prime_order_subgroup(point: &EdwardsPoint) -> bool {
    let l_minus_one = -curve25519_dalek::Scalar::ONE;
    let product = EdwardsPoint::vartime_double_scalar_mul_basepoint(
        &l_minus_one,
        point,
        &curve25519_dalek::Scalar::ZERO,
    );
    product == -point
}

/// The X25519 public key of `secret` (RFC 7748: the clamped secret times the base
/// point), from dalek's precomputed base-point table.
pub(crate) fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(*secret).to_bytes()
}

/// RFC 7748 X25519 of `secret` and the u-coordinate `u`.
///
/// A u on the curve maps to an Edwards point (either sign: the result's u-coordinate
/// is the same for a point and its negation), which dalek multiplies with its AVX2
/// backend where the CPU has it, a third faster than the ladder. A u on the twist, or
/// u = -1, has no Edwards point, and takes the ladder. Both read u the same way
/// (the top bit ignored, values past p reduced), and a low-order point gives zero
/// either way.
#[cfg(test)]
fn x25519(secret: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    x25519_with(secret, u, MontgomeryPoint(*u).to_edwards(0))
}

/// [`x25519`], given the Edwards form of `u` (`None` when it has none).
fn x25519_with(secret: &[u8; 32], u: &[u8; 32], edwards: Option<EdwardsPoint>) -> [u8; 32] {
    match edwards {
        Some(edwards) => edwards.mul_clamped(*secret).to_montgomery().to_bytes(),
        None => MontgomeryPoint(*u).mul_clamped(*secret).to_bytes(),
    }
}

/// Runs the three messages of an XX handshake between an initiator and a responder
/// in memory (tests only).
#[cfg(test)]
pub(crate) fn run_xx(i: &mut snow::HandshakeState, r: &mut snow::HandshakeState) {
    let (mut buf, mut payload) = ([0u8; 256], [0u8; 256]);
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n], &mut payload).unwrap();
    let n = r.write_message(&[], &mut buf).unwrap();
    i.read_message(&buf[..n], &mut payload).unwrap();
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n], &mut payload).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The ladder alone: RFC 7748 as dalek writes it.
    fn ladder(secret: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
        MontgomeryPoint(*u).mul_clamped(*secret).to_bytes()
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn rfc7748_test_vectors() {
        // RFC 7748 §5.2.
        let cases = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ];
        for (k, u, out) in cases {
            assert_eq!(x25519(&hex32(k), &hex32(u)), hex32(out));
        }
    }

    #[test]
    fn rfc7748_diffie_hellman() {
        // RFC 7748 §6.1: Alice's and Bob's keys and their shared secret.
        let alice = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let bob = hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let alice_public = public_key(&alice);
        let bob_public = public_key(&bob);
        assert_eq!(
            alice_public,
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            bob_public,
            hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(x25519(&alice, &bob_public), shared);
        assert_eq!(x25519(&bob, &alice_public), shared);
    }

    #[test]
    fn matches_the_ladder_on_any_input() {
        // Random u: about half lie on the curve (Edwards path), half on the twist
        // (ladder path); every top bit and values past p are covered too.
        let mut rng = Rng::from_seed(7);
        let (mut curve, mut twist) = (0, 0);
        for _ in 0..400 {
            let mut secret = [0u8; 32];
            let mut u = [0u8; 32];
            rng.fill(&mut secret);
            rng.fill(&mut u);
            if MontgomeryPoint(u).to_edwards(0).is_some() {
                curve += 1;
            } else {
                twist += 1;
            }
            assert_eq!(x25519(&secret, &u), ladder(&secret, &u), "u = {u:02x?}");
        }
        assert!(
            curve > 100 && twist > 100,
            "{curve} on the curve, {twist} off"
        );
    }

    #[test]
    fn matches_the_ladder_on_special_points() {
        let p_minus = |k: u8| {
            // p - k, for small k: 2^255 - 19 - k.
            let mut u = [0xffu8; 32];
            u[31] = 0x7f;
            u[0] = 0xed - k;
            u
        };
        let mut specials = vec![[0u8; 32], p_minus(1), p_minus(0)];
        for small in [1u8, 2, 9, 0xff] {
            let mut u = [0u8; 32];
            u[0] = small;
            specials.push(u);
        }
        // Low-order points of curve25519 (RFC 7748 §6.1 warns of them).
        specials.push(hex32(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        ));
        specials.push(hex32(
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        ));
        // The same u with the top bit set, and non-canonical encodings past p.
        for u in specials.clone() {
            let mut high = u;
            high[31] |= 0x80;
            specials.push(high);
        }
        let mut rng = Rng::from_seed(11);
        for u in specials {
            let mut secret = [0u8; 32];
            rng.fill(&mut secret);
            assert_eq!(x25519(&secret, &u), ladder(&secret, &u), "u = {u:02x?}");
        }
    }

    #[test]
    fn known_static_key_is_not_derived_again_but_others_are() {
        let secret = [3u8; 32];
        let public = public_key(&secret);
        let resolver = NoiseResolver::with_static(secret, public);
        let mut dh = resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        dh.set(&secret);
        assert_eq!(dh.pubkey(), public);
        // Another secret gets its own public key, not the remembered one.
        dh.set(&[4u8; 32]);
        assert_eq!(dh.pubkey(), public_key(&[4u8; 32]));
        // A remembered pair is trusted as given: proof that the cache is what answered.
        let lying = NoiseResolver::with_static(secret, [9u8; 32]);
        let mut dh = lying.resolve_dh(&DHChoice::Curve25519).unwrap();
        dh.set(&secret);
        assert_eq!(dh.pubkey(), [9u8; 32]);
    }

    #[test]
    fn the_shared_edwards_form_follows_the_remote_key() {
        // Two keys of one resolver, alternating remotes (one on the twist): every
        // result is the ladder's, so a cached Edwards form never answers for another u.
        let resolver = NoiseResolver::new();
        let mut a = resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        let mut b = resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        a.set(&[1u8; 32]);
        b.set(&[2u8; 32]);
        let on_curve = public_key(&[3u8; 32]);
        let mut rng = Rng::from_seed(5);
        let twist = loop {
            let mut u = [0u8; 32];
            rng.fill(&mut u);
            u[31] &= 0x7f; // the canonical encoding, which the DH requires
            if MontgomeryPoint(u).to_edwards(0).is_none() {
                break u;
            }
        };
        for (dh, secret) in [(&a, [1u8; 32]), (&b, [2u8; 32])] {
            for u in [on_curve, twist, on_curve, on_curve, twist] {
                let mut out = [0u8; 32];
                dh.dh(&u, &mut out).unwrap();
                assert_eq!(out, ladder(&secret, &u));
            }
        }
    }

    /// u + k for a small k, little-endian, with no carry past byte 0.
    fn plus(u: [u8; 32], k: u8) -> [u8; 32] {
        let mut out = u;
        out[0] = u[0].checked_add(k).expect("no carry");
        out
    }

    /// p = 2^255 - 19, little-endian.
    const P: [u8; 32] = {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        p
    };

    fn with_bit_255(mut u: [u8; 32]) -> [u8; 32] {
        u[31] |= 0x80;
        u
    }

    #[test]
    fn the_low_order_list_is_low_order_and_refused() {
        // Every secret multiplies each of them to zero: the ladder says so, for the
        // curve's points and the twist's alike.
        let mut rng = Rng::from_seed(13);
        for u in LOW_ORDER {
            for _ in 0..8 {
                let mut secret = [0u8; 32];
                rng.fill(&mut secret);
                assert_eq!(ladder(&secret, &u), [0; 32], "u = {u:02x?}");
            }
            assert_eq!(check_remote_key(&u), Err(BadKey::LowOrder), "u = {u:02x?}");
        }
        // The order-8 points as libsodium's list writes them, in decimal, and p - 1.
        let order_8 = [
            "325606250916557431795983626356110631294008115727848805560023387167927233504",
            "39382357235489614581723060781553021112529911719440698176882885853963445705823",
        ];
        assert_eq!(LOW_ORDER[2], decimal(order_8[0]));
        assert_eq!(LOW_ORDER[3], decimal(order_8[1]));
        let mut p_minus_one = P;
        p_minus_one[0] -= 1;
        assert_eq!(LOW_ORDER[4], p_minus_one);
    }

    /// A decimal number as 32 little-endian bytes.
    fn decimal(digits: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for digit in digits.bytes() {
            let mut carry = u32::from(digit - b'0');
            for byte in out.iter_mut() {
                let v = u32::from(*byte) * 10 + carry;
                *byte = v as u8;
                carry = v >> 8;
            }
            assert_eq!(carry, 0, "over 256 bits");
        }
        out
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        // Every u from p to 2^255 - 1 (p and p + 1 are aliases of 0 and 1).
        for k in 0..19 {
            assert_eq!(
                check_remote_key(&plus(P, k)),
                Err(BadKey::NonCanonical),
                "p + {k}"
            );
        }
        // Bit 255 set: on the low-order points, on p, and on a real key.
        let real = public_key(&[7u8; 32]);
        assert_eq!(check_remote_key(&real), Ok(()));
        for u in LOW_ORDER.into_iter().chain([P, real]) {
            assert_eq!(
                check_remote_key(&with_bit_255(u)),
                Err(BadKey::NonCanonical)
            );
        }
        // The largest canonical value, p - 1, is refused only for its low order; the
        // one below it is fine.
        let mut p_minus_two = P;
        p_minus_two[0] -= 2;
        assert_eq!(check_remote_key(&p_minus_two), Ok(()));
    }

    #[test]
    fn the_dh_refuses_bad_remote_keys_and_accepts_real_ones() {
        let dh = NoiseResolver::new()
            .resolve_dh(&DHChoice::Curve25519)
            .unwrap();
        let mut out = [0u8; 32];
        let real = public_key(&[7u8; 32]);
        let mut refused = LOW_ORDER.to_vec();
        refused.extend((0..19).map(|k| plus(P, k)));
        refused.extend(LOW_ORDER.map(with_bit_255));
        refused.push(with_bit_255(real));
        for u in refused {
            assert!(dh.dh(&u, &mut out).is_err(), "u = {u:02x?} accepted");
        }
        dh.dh(&real, &mut out).unwrap();
        assert_ne!(out, [0; 32]);
        // Random canonical keys, on the curve and the twist, all pass.
        let mut rng = Rng::from_seed(17);
        for _ in 0..64 {
            let mut u = [0u8; 32];
            rng.fill(&mut u);
            u[31] &= 0x7f;
            assert!(dh.dh(&u, &mut out).is_ok(), "u = {u:02x?}");
        }
    }

    #[test]
    fn static_keys_must_lie_in_the_prime_order_subgroup() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let mut rng = Rng::from_seed(19);
        let mut twist = 0;
        for _ in 0..32 {
            let mut secret = [0u8; 32];
            rng.fill(&mut secret);
            // Every real key passes; plus any torsion point but the identity, it fails.
            let real = public_key(&secret);
            assert_eq!(check_static_key(&real), Ok(()));
            let point = MontgomeryPoint(real).to_edwards(0).unwrap();
            for t in &EIGHT_TORSION[1..] {
                let alias = (point + t).to_montgomery().to_bytes();
                assert_eq!(check_remote_key(&alias), Ok(()), "canonical, large order");
                assert_eq!(check_static_key(&alias), Err(BadKey::OutsideSubgroup));
                // The very DH results of the real key: why it would be a second id.
                assert_eq!(x25519(&[7u8; 32], &alias), x25519(&[7u8; 32], &real));
            }
            // A random canonical u: the checks agree with dalek's own.
            let mut u = [0u8; 32];
            rng.fill(&mut u);
            u[31] &= 0x7f;
            let in_subgroup = MontgomeryPoint(u)
                .to_edwards(0)
                .is_some_and(|p| p.is_torsion_free());
            twist += usize::from(MontgomeryPoint(u).to_edwards(0).is_none());
            assert_eq!(check_static_key(&u).is_ok(), in_subgroup, "u = {u:02x?}");
        }
        assert!(twist > 0, "the twist is covered");
        for u in LOW_ORDER {
            assert_eq!(check_static_key(&u), Err(BadKey::LowOrder));
        }
    }

    #[test]
    fn short_keys_are_an_error_not_a_panic() {
        let dh = NoiseResolver::new()
            .resolve_dh(&DHChoice::Curve25519)
            .unwrap();
        let mut out = [0u8; 32];
        assert!(dh.dh(&[1u8; 31], &mut out).is_err());
        assert!(dh.dh(&[1u8; 32], &mut [0u8; 31]).is_err());
    }

    #[test]
    fn handshakes_with_snows_own_resolver() {
        // Our X25519 on one side, snow's default on the other: the same protocol.
        let params: snow::params::NoiseParams = crate::secure::NOISE_PARAMS.parse().unwrap();
        let (si, sr) = ([5u8; 32], [6u8; 32]);
        let mut i = snow::Builder::with_resolver(
            params.clone(),
            Box::new(NoiseResolver::with_static(si, public_key(&si))),
        )
        .local_private_key(&si)
        .unwrap()
        .build_initiator()
        .unwrap();
        let mut r = snow::Builder::with_resolver(params, Box::new(DefaultResolver))
            .local_private_key(&sr)
            .unwrap()
            .build_responder()
            .unwrap();
        run_xx(&mut i, &mut r);
        let (mut buf, mut payload) = ([0u8; 256], [0u8; 256]);
        assert_eq!(r.get_remote_static().unwrap(), public_key(&si));
        assert_eq!(i.get_remote_static().unwrap(), public_key(&sr));
        let (mut i, mut r) = (
            i.into_transport_mode().unwrap(),
            r.into_transport_mode().unwrap(),
        );
        let n = i.write_message(b"hello", &mut buf).unwrap();
        let m = r.read_message(&buf[..n], &mut payload).unwrap();
        assert_eq!(&payload[..m], b"hello");
    }
}
