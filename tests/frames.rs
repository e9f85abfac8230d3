//! PROTOCOL.md §4: frame validation, rejected frames, oversize frames and the
//! rejected-frame limit, with a raw peer sending bytes by hand.

mod common;

use bytes::Bytes;
use common::*;
use p2p::wire::{Frame, GoodbyeReason, kind};
use p2p::{CloseReason, Config, Event, Reject};

const R: u8 = 0x42;

fn message(payload: &'static [u8]) -> Vec<u8> {
    encode(&Frame::Message(Bytes::from_static(payload)))
}

/// Sends `bad` then a valid MESSAGE: the node reports exactly one FrameRejected with
/// `expected`, keeps the connection, delivers the MESSAGE and sends nothing back.
fn assert_rejected(bad: &[u8], expected: Reject) {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    raw.send(bad);
    raw.send(&message(b"after"));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::Message { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![
            Event::FrameRejected {
                peer: id(R),
                reason: expected,
                count: 1
            },
            Event::Message {
                peer: id(R),
                payload: Bytes::from_static(b"after")
            }
        ]
    );
    assert!(net.is_connected(&id(R)));
    let stats = net.peer_stats(&id(R)).unwrap();
    assert_eq!(stats.rejected_frames, 1);
    assert!(
        raw.frames().is_empty(),
        "nothing is sent back for a rejection"
    );
    assert!(!raw.closed);
}

#[test]
fn empty_frame_is_rejected() {
    assert_rejected(&[0, 0, 0, 0], Reject::Empty);
}

#[test]
fn unknown_kind_is_rejected() {
    assert_rejected(&raw_frame(0x55, b"abc"), Reject::UnknownKind(0x55));
}

#[test]
fn unknown_kind_without_body_is_rejected() {
    assert_rejected(&raw_frame(0x00, b""), Reject::UnknownKind(0x00));
}

#[test]
fn ping_of_7_bytes_is_rejected() {
    assert_rejected(
        &raw_frame(kind::PING, &[1; 7]),
        Reject::BadLength {
            kind: kind::PING,
            len: 7,
        },
    );
}

#[test]
fn ping_of_9_bytes_is_rejected() {
    assert_rejected(
        &raw_frame(kind::PING, &[1; 9]),
        Reject::BadLength {
            kind: kind::PING,
            len: 9,
        },
    );
}

#[test]
fn pong_of_7_bytes_is_rejected() {
    assert_rejected(
        &raw_frame(kind::PONG, &[1; 7]),
        Reject::BadLength {
            kind: kind::PONG,
            len: 7,
        },
    );
}

#[test]
fn gossip_of_16_bytes_is_rejected() {
    assert_rejected(
        &raw_frame(kind::GOSSIP, &[1; 16]),
        Reject::BadLength {
            kind: kind::GOSSIP,
            len: 16,
        },
    );
}

#[test]
fn request_of_7_bytes_is_rejected() {
    assert_rejected(
        &raw_frame(kind::REQUEST, &[1; 7]),
        Reject::BadLength {
            kind: kind::REQUEST,
            len: 7,
        },
    );
}

#[test]
fn response_of_7_bytes_is_rejected() {
    assert_rejected(
        &raw_frame(kind::RESPONSE, &[1; 7]),
        Reject::BadLength {
            kind: kind::RESPONSE,
            len: 7,
        },
    );
}

#[test]
fn goodbye_of_2_bytes_is_rejected() {
    assert_rejected(
        &raw_frame(kind::GOODBYE, &[0, 0]),
        Reject::BadLength {
            kind: kind::GOODBYE,
            len: 2,
        },
    );
}

#[test]
fn goodbye_of_0_bytes_is_rejected() {
    assert_rejected(
        &raw_frame(kind::GOODBYE, &[]),
        Reject::BadLength {
            kind: kind::GOODBYE,
            len: 0,
        },
    );
}

#[test]
fn unmatched_response_is_rejected() {
    assert_rejected(
        &encode(&Frame::Response {
            id: 0xDEAD_BEEF,
            payload: Bytes::from_static(b"?"),
        }),
        Reject::UnmatchedResponse(0xDEAD_BEEF),
    );
}

#[test]
fn smallest_valid_bodies_are_accepted() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    // MESSAGE with an empty payload, GOSSIP of exactly 17, REQUEST of exactly 8,
    // PING and PONG of exactly 8.
    raw.send(&raw_frame(kind::MESSAGE, b""));
    let mut gossip = vec![7u8; 16];
    gossip.push(1);
    raw.send(&raw_frame(kind::GOSSIP, &gossip));
    raw.send(&raw_frame(kind::REQUEST, &5u64.to_be_bytes()));
    raw.send(&raw_frame(kind::PONG, &9u64.to_be_bytes()));
    raw.send(&raw_frame(kind::PING, &3u64.to_be_bytes()));
    let mut frames = Vec::new();
    let log = run_until(&mut [&mut net], 400, |_, log| {
        frames.extend(raw.frames());
        !frames.is_empty() && has(log, 0, |e| matches!(e, Event::Request { .. }))
    });
    let events = of(&log, 0);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[0],
        Event::Message {
            peer: id(R),
            payload: Bytes::new()
        }
    );
    assert!(
        matches!(&events[1], Event::Broadcast { from, id: g, payload }
            if *from == id(R) && g.0 == [7; 16] && payload.is_empty()),
        "{events:?}"
    );
    assert!(
        matches!(&events[2], Event::Request { peer, id: r, payload }
            if *peer == id(R) && r.0 == 5 && payload.is_empty()),
        "{events:?}"
    );
    assert_eq!(frames, vec![Frame::Pong(3)]);
    assert_eq!(net.peer_stats(&id(R)).unwrap().rejected_frames, 0);
}

#[test]
fn body_of_exactly_max_frame_size_is_accepted_one_more_is_oversize() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            max_frame_size: 1024,
            ..plain()
        },
        id(R),
    );
    raw.send(&raw_frame(kind::MESSAGE, &[1; 1024]));
    raw.send(&raw_frame(kind::MESSAGE, &[2; 1025]));
    raw.send(&message(b"after"));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        count(log, 0, |e| matches!(e, Event::Message { .. })) == 2
    });
    assert_eq!(
        of(&log, 0),
        vec![
            Event::Message {
                peer: id(R),
                payload: Bytes::from(vec![1; 1024])
            },
            Event::FrameRejected {
                peer: id(R),
                reason: Reject::Oversize {
                    len: 1025,
                    max: 1024
                },
                count: 1
            },
            Event::Message {
                peer: id(R),
                payload: Bytes::from_static(b"after")
            },
        ]
    );
}

/// Largest `buffered_bytes` a node may show while skipping: one frame plus one read chunk.
const BUFFER_BOUND: usize = 1024 + 5 + 64 * 1024;

#[test]
fn oversize_frame_is_skipped_as_it_streams_then_the_next_frame_is_delivered() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            max_frame_size: 1024,
            ..plain()
        },
        id(R),
    );
    let body = 2 * 1024 * 1024;
    let mut bytes = ((body + 1) as u32).to_be_bytes().to_vec();
    bytes.push(kind::MESSAGE);
    bytes.extend(std::iter::repeat_n(0xAA, body));
    raw.send(&bytes);
    raw.send(&message(b"after"));
    let mut max_buffered = 0;
    let log = run_until(&mut [&mut net], 4000, |nets, log| {
        raw.pump();
        max_buffered = max_buffered.max(nets[0].stats().buffered_bytes);
        has(log, 0, |e| matches!(e, Event::Message { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![
            Event::FrameRejected {
                peer: id(R),
                reason: Reject::Oversize {
                    len: body as u64,
                    max: 1024
                },
                count: 1
            },
            Event::Message {
                peer: id(R),
                payload: Bytes::from_static(b"after")
            },
        ]
    );
    assert!(
        max_buffered <= BUFFER_BOUND,
        "buffered {max_buffered} bytes of an oversize frame"
    );
    assert!(net.is_connected(&id(R)));
}

#[test]
fn oversize_frame_is_rejected_from_its_header_and_never_buffered() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            max_frame_size: 1024,
            ..plain()
        },
        id(R),
    );
    // Declares a ~4 GiB frame; only the header is sent at first.
    let mut header = u32::MAX.to_be_bytes().to_vec();
    header.push(kind::MESSAGE);
    raw.send(&header);
    let log = run_until(&mut [&mut net], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::FrameRejected { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::FrameRejected {
            peer: id(R),
            reason: Reject::Oversize {
                len: u32::MAX as u64 - 1,
                max: 1024
            },
            count: 1
        }],
        "rejected as soon as the header arrives"
    );
    // Then 3 MB of its body, in 64 KiB chunks.
    let chunk = vec![0x55u8; 64 * 1024];
    let total = 48 * chunk.len();
    let mut queued = 0;
    let mut max_buffered = 0;
    let target = (HELLO_LEN + header.len() + total) as u64;
    let log = run_until(&mut [&mut net], 4000, |nets, _| {
        if queued < total && raw.unsent() < 4 * chunk.len() {
            raw.send(&chunk);
            queued += chunk.len();
        }
        raw.pump();
        max_buffered = max_buffered.max(nets[0].stats().buffered_bytes);
        nets[0].stats().totals.bytes_in >= target
    });
    assert!(log.is_empty(), "one rejection per frame: {log:?}");
    assert!(
        max_buffered <= BUFFER_BOUND,
        "buffered {max_buffered} bytes of an oversize frame"
    );
    assert!(net.is_connected(&id(R)));
    assert_eq!(net.peer_stats(&id(R)).unwrap().rejected_frames, 1);
    // The connection still works the other way.
    net.send(&id(R), "still open").unwrap();
    let (got, _) = collect_frames(&mut [&mut net], &mut raw, 400, |f, _| !f.is_empty());
    assert_eq!(got, vec![Frame::Message(Bytes::from_static(b"still open"))]);
}

#[test]
fn rejected_frames_reaching_the_limit_close_with_goodbye_3() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            max_rejected_frames: 3,
            ..plain()
        },
        id(R),
    );
    raw.send(&[0, 0, 0, 0]);
    raw.send(&raw_frame(0x55, b""));
    raw.send(&encode(&Frame::Response {
        id: 9,
        payload: Bytes::new(),
    }));
    // Sent after the third rejection: must not be delivered.
    raw.send(&message(b"too late"));
    let (frames, log) = collect_frames(&mut [&mut net], &mut raw, 400, |_, raw| raw.closed);
    assert_eq!(
        frames,
        vec![Frame::Goodbye(GoodbyeReason::Misbehaving)],
        "GOODBYE 3, then the stream ends"
    );
    assert!(!raw.reset, "an orderly end of stream, not a reset");
    let log = if has(&log, 0, |e| matches!(e, Event::PeerDisconnected { .. })) {
        log
    } else {
        let mut log = log;
        log.extend(run_until(&mut [&mut net], 400, |_, log| {
            has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
        }));
        log
    };
    assert_eq!(
        of(&log, 0),
        vec![
            Event::FrameRejected {
                peer: id(R),
                reason: Reject::Empty,
                count: 1
            },
            Event::FrameRejected {
                peer: id(R),
                reason: Reject::UnknownKind(0x55),
                count: 2
            },
            Event::FrameRejected {
                peer: id(R),
                reason: Reject::UnmatchedResponse(9),
                count: 3
            },
            Event::PeerDisconnected {
                peer: id(R),
                reason: CloseReason::Misbehaving
            },
        ]
    );
    assert!(!net.is_connected(&id(R)));
}

#[test]
fn rejections_below_the_limit_keep_the_connection() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            max_rejected_frames: 3,
            ..plain()
        },
        id(R),
    );
    raw.send(&[0, 0, 0, 0]);
    raw.send(&[0, 0, 0, 0]);
    raw.send(&message(b"still welcome"));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::Message { .. }))
    });
    let counts: Vec<u32> = of(&log, 0)
        .iter()
        .filter_map(|e| match e {
            Event::FrameRejected { count, .. } => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![1, 2]);
    assert!(net.is_connected(&id(R)));
    assert!(raw.frames().is_empty());
}

#[test]
fn a_frame_split_into_single_bytes_is_delivered_once_whole() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    let bytes = message(b"byte by byte");
    let mut log = Log::new();
    for &b in &bytes {
        assert!(log.is_empty(), "delivered before it was whole: {log:?}");
        raw.send(&[b]);
        turn(&mut [&mut net], &mut log);
    }
    log.extend(run_until(&mut [&mut net], 400, |n, _| {
        n[0].peer_stats(&id(R)).unwrap().frames_in >= 1
    }));
    assert_eq!(
        of(&log, 0),
        vec![Event::Message {
            peer: id(R),
            payload: Bytes::from_static(b"byte by byte")
        }]
    );
}

#[test]
fn a_burst_over_the_read_budget_is_delivered_without_more_input() {
    // The read budget cuts reading short; with edge-triggered readiness the node must
    // come back to the socket on its own.
    let (mut net, mut raw) = with_raw_peer(
        Config {
            read_budget: 4096,
            ..plain()
        },
        id(R),
    );
    let mut burst = Vec::new();
    for i in 0..200u32 {
        let mut payload = vec![0x11u8; 1000];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        burst.extend(encode(&Frame::Message(Bytes::from(payload))));
    }
    raw.send(&burst);
    let log = run_until(&mut [&mut net], 2000, |_, log| {
        raw.pump();
        log.len() >= 200
    });
    assert!(raw.unsent() == 0);
    let events = of(&log, 0);
    assert_eq!(events.len(), 200);
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Message { payload, .. } => {
                assert_eq!(&payload[..4], &(i as u32).to_be_bytes(), "message {i}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_flood_of_tiny_frames_yields_bounded_events_per_turn_and_loses_none() {
    // 5-byte empty MESSAGEs become ~100-byte events: the read budget counts the events
    // too, so one turn cannot turn 1 MiB of input into ~20 MiB of events.
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    const FRAMES: usize = 400_000;
    raw.send(&message(b"").repeat(FRAMES));
    let mut events = Vec::new();
    let (mut delivered, mut most_in_a_turn) = (0, 0);
    for _ in 0..20_000 {
        raw.pump();
        net.poll(&mut events, Some(TURN)).unwrap();
        let n = events
            .iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .count();
        delivered += n;
        most_in_a_turn = most_in_a_turn.max(n);
        if delivered == FRAMES {
            break;
        }
    }
    assert_eq!(delivered, FRAMES, "every frame delivered, none lost");
    let budget = net.config().read_budget;
    let per_event = std::mem::size_of::<Event>();
    // At most the budget's worth of events, plus those of one 64 KiB read.
    let bound = budget / per_event + 64 * 1024 / 5;
    assert!(
        most_in_a_turn <= bound,
        "{most_in_a_turn} events in one turn (bound {bound})"
    );
    assert!(
        most_in_a_turn < FRAMES / 10,
        "spread over many turns: {most_in_a_turn}"
    );
}
