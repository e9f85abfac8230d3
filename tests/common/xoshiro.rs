//! The state-recovery attack on xoshiro256** that let a peer censor broadcasts (issue
//! 11): a gossip id is two consecutive outputs, little-endian, so two ids are four
//! outputs, from which the generator's whole state, and so every later id, follows.
//!
//! Shared by the crate's unit test (`src/rng.rs`) and the loopback censorship test
//! (`tests/hostile/censor.rs`), which include this file by path.
#![allow(dead_code)]

/// The multiplicative inverse of an odd `a` modulo 2^64 (Newton's iteration doubles
/// the correct low bits each round: 3, 6, 12, 24, 48, 96).
fn inverse(a: u64) -> u64 {
    let mut x = a;
    for _ in 0..5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

/// The second state word an output came from: xoshiro256**'s scrambler
/// `rotl(s1 * 5, 7) * 9` is a bijection.
fn unscramble(output: u64) -> u64 {
    output
        .wrapping_mul(inverse(9))
        .rotate_right(7)
        .wrapping_mul(inverse(5))
}

/// One step of xoshiro256**: the output, and the state moved on.
fn step(s: &mut [u64; 4]) -> u64 {
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

/// The state `(a, b, c, d)` a generator had before it gave `outputs`, four consecutive
/// outputs. Each output reveals the second word of its state, and the words mix
/// linearly: b1 = a ^ b ^ c, b2 = b1 ^ b ^ c ^ d ^ (b << 17), and
/// b3 = a1 ^ d1 ^ (b1 << 17) with a1 = a ^ b ^ d, d1 = rotl(b ^ d, 45).
pub fn recover_state(outputs: [u64; 4]) -> [u64; 4] {
    let [b, b1, b2, b3] = outputs.map(unscramble);
    let a_xor_c = b1 ^ b;
    let c_xor_d = b2 ^ b1 ^ b ^ (b << 17);
    let a1 = a_xor_c ^ c_xor_d ^ b;
    let d = (b3 ^ (b1 << 17) ^ a1).rotate_right(45) ^ b;
    let c = c_xor_d ^ d;
    let a = a_xor_c ^ c;
    [a, b, c, d]
}

/// The two outputs a gossip id is made of (the generator fills it 8 bytes at a time,
/// little-endian).
fn id_outputs(id: &[u8; 16]) -> [u64; 2] {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&id[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    [word(0), word(1)]
}

/// The id a node gives its next broadcast, predicted from its two last ones, if its
/// generator drew nothing else in between.
pub fn predict_next_id(first: &[u8; 16], second: &[u8; 16]) -> [u8; 16] {
    let [o0, o1] = id_outputs(first);
    let [o2, o3] = id_outputs(second);
    let mut state = recover_state([o0, o1, o2, o3]);
    for _ in 0..4 {
        step(&mut state);
    }
    let mut next = [0u8; 16];
    next[..8].copy_from_slice(&step(&mut state).to_le_bytes());
    next[8..].copy_from_slice(&step(&mut state).to_le_bytes());
    next
}

/// The attack checked against the reference generator itself.
#[test]
fn recovers_the_state_of_xoshiro256_from_four_outputs() {
    for seed in [1u64, 0x0123_4567_89ab_cdef, u64::MAX] {
        let mut state = [seed, seed.rotate_left(13) ^ 7, !seed, seed.wrapping_mul(3)];
        let start = state;
        let outputs = [(); 4].map(|_| step(&mut state));
        assert_eq!(recover_state(outputs), start);
    }
}
