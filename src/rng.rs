//! The core's random numbers, so it never reads a random source itself.
//!
//! Two generators, and the one a node gets is chosen where it is made, never by
//! default: [`Rng::secure`] (ChaCha20 seeded from the operating system) for every real
//! node, whose gossip ids and PING nonces a peer must not predict, and
//! [`Rng::from_seed`] (xoshiro256**) for the simulator and the unit-test harness only,
//! whose runs must repeat bit for bit. xoshiro256** is not a cryptographic generator:
//! its state follows from four consecutive outputs (two gossip ids), and then every
//! later id does, which let a peer that saw two broadcasts of a node send a junk one
//! under the id of its next, so that neighbours dropped the real one as a duplicate.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// A source of random numbers for the core: see the [module documentation](self).
pub(crate) enum Rng {
    /// Unpredictable: ChaCha20 keyed from `getrandom`. Boxed: its block buffer is ten
    /// times the seeded generator's state.
    Secure(Box<ChaCha20Rng>),
    /// Fixed by a seed, and predictable from its outputs: simulation and tests only.
    Seeded(Xoshiro),
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the state: it is every future value.
        match self {
            Rng::Secure(_) => f.write_str("Rng::Secure"),
            Rng::Seeded(_) => f.write_str("Rng::Seeded"),
        }
    }
}

impl Rng {
    /// A cryptographic generator keyed from the operating system's random source:
    /// what every [`Network`](crate::Network) uses.
    pub fn secure() -> Result<Self, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        Ok(Rng::Secure(Box::new(ChaCha20Rng::from_seed(seed))))
    }

    /// A generator whose whole sequence is fixed by `seed`, and follows from a few of
    /// its outputs: only for the simulator and the unit-test harness.
    pub fn from_seed(seed: u64) -> Self {
        Rng::Seeded(Xoshiro::from_seed(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        match self {
            Rng::Secure(rng) => rng.next_u64(),
            Rng::Seeded(rng) => rng.next_u64(),
        }
    }

    /// A new generator of the same kind, keyed from this one: a secure one gives a
    /// secure one (ChaCha20 keyed with 256 bits of this one's output), a seeded one
    /// a seeded one, so a simulated run still repeats. Each handshake draws its
    /// ephemeral key from one (src/secure.rs).
    pub fn fork(&mut self) -> Rng {
        match self {
            Rng::Secure(rng) => {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                Rng::Secure(Box::new(ChaCha20Rng::from_seed(seed)))
            }
            Rng::Seeded(rng) => Rng::from_seed(rng.next_u64()),
        }
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        match self {
            Rng::Secure(rng) => rng.fill_bytes(out),
            Rng::Seeded(rng) => rng.fill(out),
        }
    }
}

/// xoshiro256**: fast and well spread, fixed by its seed, and not secret.
#[derive(Debug)]
pub(crate) struct Xoshiro {
    s: [u64; 4],
}

impl Xoshiro {
    fn from_seed(seed: u64) -> Self {
        // splitmix64 spreads a small seed over the 256-bit state.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Xoshiro {
            s: [next(), next(), next(), next()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let w = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

/// The attack, shared with the loopback censorship test.
#[cfg(test)]
#[path = "../tests/common/xoshiro.rs"]
mod recovery;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::node::Node;
    use crate::peer::PeerId;
    use crate::secure::LocalKey;

    #[test]
    fn same_seed_same_sequence_other_seed_differs() {
        let mut a = Rng::from_seed(7);
        let mut b = Rng::from_seed(7);
        let mut c = Rng::from_seed(8);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert_ne!(xs[0], xs[1]);
    }

    #[test]
    fn fill_covers_odd_lengths() {
        for mut r in [Rng::from_seed(1), Rng::secure().unwrap()] {
            let mut buf = [0u8; 19];
            r.fill(&mut buf);
            assert!(buf[16..].iter().any(|&b| b != 0), "{r:?}");
        }
    }

    #[test]
    fn two_secure_generators_differ() {
        let (mut a, mut b) = (Rng::secure().unwrap(), Rng::secure().unwrap());
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_ne!(xs, ys);
    }

    #[test]
    fn a_fork_is_of_its_parents_kind() {
        // A real node's handshakes draw ephemeral keys from forks: never predictable.
        let mut secure = Rng::secure().unwrap();
        let (mut a, mut b) = (secure.fork(), secure.fork());
        assert!(matches!(a, Rng::Secure(_)), "{a:?}");
        assert_ne!(a.next_u64(), b.next_u64());
        // The simulator's repeat.
        let (mut x, mut y) = (Rng::from_seed(3).fork(), Rng::from_seed(3).fork());
        assert!(matches!(x, Rng::Seeded(_)), "{x:?}");
        assert_eq!(x.next_u64(), y.next_u64());
    }

    /// Three broadcast ids of a node whose generator is `rng`.
    fn three_ids(rng: Rng) -> [[u8; 16]; 3] {
        let key = LocalKey {
            id: PeerId::from_bytes([1; 32]),
            secret: [1; 32].into(),
        };
        let config = crate::Config {
            security: crate::Security::Plaintext,
            ..crate::Config::default()
        };
        let mut node = Node::new(config, key, rng);
        let now = Instant::now();
        [(); 3].map(|_| {
            node.broadcast(Bytes::from_static(b"block"), now)
                .expect("broadcast")
                .0
        })
    }

    #[test]
    fn seeded_node_ids_follow_from_two_earlier_ones() {
        let [first, second, third] = three_ids(Rng::from_seed(42));
        assert_eq!(recovery::predict_next_id(&first, &second), third);
    }

    #[test]
    fn secure_node_ids_do_not_follow_from_earlier_ones() {
        // The attack that predicts a seeded node exactly misses every time here.
        for _ in 0..8 {
            let [first, second, third] = three_ids(Rng::secure().unwrap());
            assert_ne!(recovery::predict_next_id(&first, &second), third);
        }
    }
}
