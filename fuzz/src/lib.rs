//! The fuzz targets' bodies, shared by the libFuzzer binaries (`fuzz_targets/`) and by
//! `replay`, the fallback that runs them without libFuzzer. Each panics on a broken
//! invariant; see `p2p::fuzzing` for the drivers.

use bytes::BytesMut;
use p2p::fuzzing::{Harness, Input, RecordPair, Scope};
use p2p::wire::{Decoded, Decoder, Frame, LEN_FIELD};

/// A target's body: runs one input, panics on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target: its name (the binary's and the corpus folder's) and its body.
pub const TARGETS: [(&str, Target); 5] = [
    ("wire", wire),
    ("handshake_responder", handshake_responder),
    ("handshake_initiator", handshake_initiator),
    ("records", records),
    ("node", node),
];

/// The frame decoder fed a byte stream in chunks. Input: a byte choosing the maximum
/// body, a byte seeding the chunk sizes, then the stream.
///
/// Checks: whatever the cut, the decoder yields what it yields on the whole stream;
/// each frame re-encodes to exactly the bytes it took; an oversize header costs its 4
/// bytes at once; nothing is left waiting that is a whole frame or being skipped.
pub fn wire(data: &[u8]) {
    let mut input = Input::new(data);
    let max_body = match input.byte() % 4 {
        0 => 0,
        1 => 9,
        2 => 300,
        _ => 70_000,
    };
    let mut cut = u32::from(input.byte()) | 1;
    let stream = input.bytes(usize::MAX);

    let whole = decode_all(max_body, stream);

    let mut decoder = Decoder::new(max_body);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut got = Vec::new();
    while fed < stream.len() {
        // A small xorshift: cuts of 1 to 64 bytes, now and then a large one.
        cut ^= cut << 13;
        cut ^= cut >> 17;
        cut ^= cut << 5;
        let n = if cut % 8 == 0 {
            4096
        } else {
            1 + (cut % 64) as usize
        };
        let n = n.min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            let taken = fed - buf.len();
            let skipping = decoder.is_skipping();
            let Some(decoded) = decoder.decode(&mut buf) else {
                break;
            };
            let used = fed - buf.len() - taken;
            check_taken(&decoded, &stream[taken..taken + used], skipping);
            got.push(decoded);
        }
        // Waiting only for a frame that has not arrived whole.
        if decoder.is_skipping() {
            assert!(buf.is_empty(), "skipping with bytes left in the buffer");
        } else if let Some(need) = decoder.frame_need(&buf) {
            assert!(need > buf.len(), "a whole frame was left in the buffer");
        } else {
            assert!(buf.len() < LEN_FIELD, "a header was left undecided");
        }
    }
    assert_eq!(got, whole, "the cut changed what was decoded");
}

fn decode_all(max_body: usize, stream: &[u8]) -> Vec<Decoded> {
    let mut decoder = Decoder::new(max_body);
    let mut buf = BytesMut::from(stream);
    std::iter::from_fn(|| decoder.decode(&mut buf)).collect()
}

/// The bytes one decode took (`bytes`), against what it returned.
fn check_taken(decoded: &Decoded, bytes: &[u8], was_skipping: bool) {
    match decoded {
        Decoded::Frame(frame) => {
            let mut again = BytesMut::new();
            frame.encode(&mut again);
            let start = bytes.len() - again.len().min(bytes.len());
            // The bytes of a skipped frame may come first in the same call.
            assert!(was_skipping || start == 0, "a frame took extra bytes");
            assert_eq!(
                &again[..],
                &bytes[start..],
                "a frame re-encodes differently"
            );
            assert_eq!(frame.wire_len(), again.len());
        }
        Decoded::Rejected(reject) if !was_skipping => {
            let head: [u8; LEN_FIELD] = bytes[..LEN_FIELD].try_into().unwrap_or_default();
            let len = u32::from_be_bytes(head) as usize;
            let want = match reject {
                // Reported at once; the body is skipped as it comes.
                p2p::Reject::Oversize { .. } | p2p::Reject::Empty => LEN_FIELD,
                _ => LEN_FIELD + len,
            };
            assert_eq!(bytes.len(), want, "{reject:?} took the wrong bytes");
        }
        Decoded::Rejected(_) => assert!(bytes.len() >= LEN_FIELD),
    }
}

/// Preamble and handshake with the node as responder: raw bytes or a real peer,
/// plaintext or noise, cut anyhow and interleaved with timeouts.
pub fn handshake_responder(data: &[u8]) {
    harness(Scope::Responder, data);
}

/// The same with the node as initiator.
pub fn handshake_initiator(data: &[u8]) {
    harness(Scope::Initiator, data);
}

/// The whole node core: several connections both ways, bytes in chunks, timeouts,
/// sends, requests, responses, broadcasts, disconnects, resets, shutdown.
pub fn node(data: &[u8]) {
    harness(Scope::Node, data);
}

fn harness(scope: Scope, data: &[u8]) {
    let mut input = Input::new(data);
    let mut harness = Harness::new(scope, &mut input);
    harness.run(&mut input);
}

/// The noise record layer: frames sealed, the ciphertext cut anyhow, tampered with or
/// mixed with garbage, then opened.
pub fn records(data: &[u8]) {
    let mut input = Input::new(data);
    let mut pair = RecordPair::new();
    while !input.is_empty() {
        match input.byte() % 4 {
            0 => {
                let n = input.u16() as usize;
                pair.seal(input.bytes(n));
            }
            1 => pair.deliver(input.u16() as usize, 0),
            2 => {
                let n = input.u16() as usize;
                pair.deliver(n, input.byte());
            }
            _ => {
                let n = input.byte() as usize;
                pair.inject(input.bytes(n));
            }
        }
        pair.open();
    }
}

/// Encodes `frames` back to back, for seeds.
pub fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out.to_vec()
}
