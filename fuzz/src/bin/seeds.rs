//! Writes the seed corpora (`corpus/<target>/seed-*`): real frames, real handshake
//! transcripts (plaintext and noise, both roles), sealed records, and operation
//! sequences that open connections and exchange every frame kind. Run from `fuzz/`:
//! `cargo run --release --no-default-features --bin seeds`.

use std::fs;
use std::path::Path;

use p2p::GoodbyeReason;
use p2p::fuzzing::{Harness, Input, Scope};
use p2p::wire::Frame;
use p2p_fuzz::encode;

fn main() -> std::io::Result<()> {
    let root = Path::new("corpus");
    write(root, "wire", "frames", &wire_seed(3, &every_frame()))?;
    write(root, "wire", "small-max", &wire_seed(1, &every_frame()))?;
    write(
        root,
        "wire",
        "garbage",
        &wire_seed(2, &[])
            .into_iter()
            .chain(garbage())
            .collect::<Vec<_>>(),
    )?;

    let mut records = Vec::new();
    for frames in [every_frame(), vec![Frame::Message(vec![7; 3000].into())]] {
        let stream = encode(&frames);
        records.extend([0, (stream.len() >> 8) as u8, stream.len() as u8]);
        records.extend(stream.iter().take(0xffff));
        records.extend([1, 0x01, 0x00, 1, 0xff, 0xff]);
    }
    write(root, "records", "seal-open", &records)?;
    records.extend([2, 0x00, 0x40, 0x80, 3, 4, 0, 0, 0, 1]);
    write(root, "records", "tampered", &records)?;

    for (target, scope) in [
        ("handshake_responder", Scope::Responder),
        ("handshake_initiator", Scope::Initiator),
    ] {
        for noise in [false, true] {
            let security = u8::from(noise);
            let mut ops = vec![2 | security];
            ops.extend(pumps(0));
            for frame in every_frame() {
                ops.extend(frame_op(0, &frame));
            }
            ops.extend(pumps(0));
            ops.extend([5, 0, 200, 6]);
            ops.extend(pumps(0));
            let transcripts = check(scope, &ops, 1, 9);
            let name = if noise { "noise" } else { "plaintext" };
            write(root, target, &format!("{name}-peer"), &ops)?;
            // The same bytes without a peer behind them: everything is seeded, so the
            // node answers as it did, and the raw bytes carry the handshake through.
            let mut raw = vec![security];
            let mut handshaken = 0;
            for piece in &transcripts[0] {
                for chunk in piece.chunks(255) {
                    raw.extend([0, 0, chunk.len() as u8]);
                    raw.extend(chunk);
                }
                raw.extend(pumps(0));
                if handshaken == 0 && connects(scope, &raw) {
                    handshaken = raw.len();
                }
            }
            check(scope, &raw, 1, handshaken);
            write(root, target, &format!("{name}-transcript"), &raw)?;
        }
    }

    for noise in [false, true] {
        let mut ops = vec![2 | u8::from(noise)];
        // One inbound link from identity 2, one outbound to identity 3.
        ops.extend([14, 1, 1, 14, 0, 2]);
        for link in 0..2 {
            ops.extend(pumps(link));
        }
        let connected = ops.len();
        ops.extend([8, 0, 0, 100, 9, 1, 50, 11, 0, 1, 0]);
        for link in 0..2 {
            ops.extend(pumps(link));
            ops.extend(frame_op(
                link,
                &Frame::Request {
                    id: 3,
                    payload: vec![1; 20].into(),
                },
            ));
            ops.extend(frame_op(
                link,
                &Frame::Response {
                    id: 1,
                    payload: vec![2; 20].into(),
                },
            ));
            ops.extend(pumps(link));
        }
        ops.extend([10, 0, 0, 10, 5, 0, 255, 8, 12, 0, 6, 1]);
        ops.extend(pumps(0));
        ops.extend(pumps(1));
        check(Scope::Node, &ops, 2, connected);
        let name = if noise { "noise" } else { "plaintext" };
        write(root, "node", &format!("{name}-two-peers"), &ops)?;
    }
    Ok(())
}

/// Runs `ops` and returns the peers' transcripts; `peers` must be connected after the
/// first `upto` bytes of `ops` (before anything closes them).
fn check(scope: Scope, ops: &[u8], peers: usize, upto: usize) -> Vec<Vec<Vec<u8>>> {
    let mut input = Input::new(ops);
    let mut harness = Harness::new(scope, &mut input);
    harness.run(&mut input);
    let transcripts = harness.transcripts();
    let mut first = Input::new(&ops[..upto]);
    let mut early = Harness::new(scope, &mut first);
    early.run(&mut first);
    assert!(
        early.peers() >= peers,
        "a seed did not connect: {scope:?} {ops:?}"
    );
    transcripts
}

fn connects(scope: Scope, ops: &[u8]) -> bool {
    let mut input = Input::new(ops);
    let mut harness = Harness::new(scope, &mut input);
    harness.run(&mut input);
    harness.peers() > 0
}

fn pumps(link: u8) -> Vec<u8> {
    [7, link].repeat(4)
}

fn frame_op(link: u8, frame: &Frame) -> Vec<u8> {
    let (kind, id, len, tail): (u8, u64, usize, Vec<u8>) = match frame {
        Frame::Ping(n) => (0, *n, 0, vec![]),
        Frame::Pong(n) => (1, *n, 0, vec![]),
        Frame::Message(p) => (2, 0, p.len(), vec![]),
        Frame::Gossip { id, hops, payload } => (3, 0, payload.len(), vec![id[0], *hops]),
        Frame::Request { id, payload } => (4, *id, payload.len(), vec![]),
        Frame::Response { id, payload } => (5, *id, payload.len(), vec![]),
        Frame::Goodbye(reason) => (6, 0, 0, vec![reason.to_byte()]),
        Frame::Addrs(addrs) => (7, 0, addrs.len(), vec![]),
        Frame::GetAddrs => (8, 0, 0, vec![]),
        Frame::Peers(addrs) => (9, 0, addrs.len(), vec![]),
    };
    let mut op = vec![2, link, kind, id as u8, (len >> 8) as u8, len as u8];
    op.extend(tail);
    op
}

fn every_frame() -> Vec<Frame> {
    vec![
        Frame::Ping(7),
        Frame::Pong(7),
        Frame::Message(vec![1; 40].into()),
        Frame::Gossip {
            id: [9; 16],
            hops: 2,
            payload: vec![3; 30].into(),
        },
        Frame::Request {
            id: 1,
            payload: vec![4; 10].into(),
        },
        Frame::Response {
            id: 1,
            payload: vec![5; 10].into(),
        },
        Frame::Goodbye(GoodbyeReason::Timeout),
        Frame::Addrs(vec![std::net::SocketAddr::from(([10, 0, 0, 0], 30000))]),
        Frame::GetAddrs,
        Frame::Peers(vec![std::net::SocketAddr::from(([10, 0, 1, 0], 30000))]),
    ]
}

fn wire_seed(max: u8, frames: &[Frame]) -> Vec<u8> {
    let mut out = vec![max, 0x5b];
    out.extend(encode(frames));
    out
}

/// Headers the decoder must refuse: empty, unknown kind, bad lengths, oversize.
fn garbage() -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    out.extend([0, 0, 0, 2, 0x42, 0]);
    out.extend([0, 0, 0, 3, 0x01, 1, 2]);
    out.extend([0, 0, 0, 1, 0x7f]);
    out.extend([0, 0, 0x10, 0, 0x10]);
    out.extend([1; 64]);
    out.extend(encode(&[Frame::Ping(1)]));
    out
}

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = root.join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(format!("seed-{name}")), bytes)
}
