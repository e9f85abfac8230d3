//! PROTOCOL.md §5, REQUEST/RESPONSE: ids, timeouts, requests failing when their
//! connection closes first, late responses, and `respond` refusing ids it was not asked.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use p2p::wire::{Frame, GoodbyeReason};
use p2p::{CloseReason, Config, Event, Network, Reject, RequestError, RequestId, SendError};

const R: u8 = 0x42;

/// Sends a request to the raw peer and waits until the raw peer has read it.
fn request_read_by_raw(net: &mut Network, raw: &mut Raw, payload: &'static [u8]) -> RequestId {
    let rid = net.request(&id(R), payload).unwrap();
    let (frames, _) = collect_frames(&mut [net], raw, 400, |f, _| !f.is_empty());
    assert_eq!(
        frames,
        vec![Frame::Request {
            id: rid.0,
            payload: Bytes::from_static(payload)
        }],
        "the REQUEST carries the id `request` returned"
    );
    rid
}

#[test]
fn request_response_roundtrip_between_networks() {
    let (mut a, _) = node();
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    let q1 = a.request(&b_id, "q1").unwrap();
    let q2 = a.request(&b_id, "q2").unwrap();
    assert_ne!(q1, q2, "request ids are unique");
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        count(log, 1, |e| matches!(e, Event::Request { .. })) == 2
    });
    let requests: Vec<(RequestId, Bytes)> = of(&log, 1)
        .into_iter()
        .filter_map(|e| match e {
            Event::Request { peer, id, payload } => {
                assert_eq!(peer, a_id);
                Some((id, payload))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        requests,
        vec![
            (q1, Bytes::from_static(b"q1")),
            (q2, Bytes::from_static(b"q2"))
        ]
    );
    assert_eq!(a.stats().pending_requests, 2);
    // Answered out of order: each response still finds its request.
    b.respond(&a_id, q2, "r2").unwrap();
    b.respond(&a_id, q1, "r1").unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        count(log, 0, |e| matches!(e, Event::Response { .. })) == 2
    });
    assert_eq!(
        of(&log, 0),
        vec![
            Event::Response {
                peer: b_id,
                id: q2,
                payload: Bytes::from_static(b"r2")
            },
            Event::Response {
                peer: b_id,
                id: q1,
                payload: Bytes::from_static(b"r1")
            },
        ]
    );
    assert_eq!(a.stats().pending_requests, 0);
}

#[test]
fn raw_request_is_delivered_with_its_id_and_answered_with_it() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    raw.send_frame(&Frame::Request {
        id: 77,
        payload: Bytes::from_static(b"question"),
    });
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::Request { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::Request {
            peer: id(R),
            id: RequestId(77),
            payload: Bytes::from_static(b"question")
        }]
    );
    net.respond(&id(R), RequestId(77), "answer").unwrap();
    let (frames, _) = collect_frames(&mut [&mut net], &mut raw, 400, |f, _| !f.is_empty());
    assert_eq!(
        frames,
        vec![Frame::Response {
            id: 77,
            payload: Bytes::from_static(b"answer")
        }]
    );
}

#[test]
fn response_is_matched_to_our_request_once() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    let rid = request_read_by_raw(&mut net, &mut raw, b"q");
    let response = Frame::Response {
        id: rid.0,
        payload: Bytes::from_static(b"a"),
    };
    raw.send_frame(&response);
    raw.send_frame(&response); // a second answer is late: it matches nothing any more
    let log = run_until(&mut [&mut net], 400, |net, _| {
        raw.pump();
        late_responses(net[0], id(R)) == 1
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::Response {
            peer: id(R),
            id: rid,
            payload: Bytes::from_static(b"a")
        }]
    );
    assert_eq!(net.stats().pending_requests, 0);
    assert_eq!(net.stats().totals.rejected_frames, 0);
}

/// Late responses counted on the connection to `peer` (0 once it is gone).
fn late_responses(net: &Network, peer: p2p::PeerId) -> u64 {
    net.peer_stats(&peer).map_or(0, |s| s.late_responses)
}

#[test]
fn a_response_to_an_id_we_never_issued_is_rejected() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    let rid = request_read_by_raw(&mut net, &mut raw, b"q");
    let made_up = rid.0 + 1000;
    raw.send_frame(&Frame::Response {
        id: made_up,
        payload: Bytes::new(),
    });
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::FrameRejected { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::FrameRejected {
            peer: id(R),
            reason: Reject::UnmatchedResponse(made_up),
            count: 1
        }]
    );
    assert_eq!(net.stats().pending_requests, 1, "ours still waits");
}

#[test]
fn unanswered_request_times_out() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            request_timeout: Duration::from_millis(100),
            ..plain()
        },
        id(R),
    );
    let rid = request_read_by_raw(&mut net, &mut raw, b"anyone?");
    let log = run_until(&mut [&mut net], 2000, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::RequestFailed { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::RequestFailed {
            peer: id(R),
            id: rid,
            reason: RequestError::Timeout
        }]
    );
    assert_eq!(net.stats().pending_requests, 0);
    assert!(
        net.is_connected(&id(R)),
        "a timeout does not close the peer"
    );
    // A response after the timeout is late: dropped and counted, not rejected.
    raw.send_frame(&Frame::Response {
        id: rid.0,
        payload: Bytes::from_static(b"late"),
    });
    let log = run_until(&mut [&mut net], 400, |net, _| {
        raw.pump();
        late_responses(net[0], id(R)) == 1
    });
    assert_eq!(of(&log, 0), vec![]);
    assert_eq!(net.stats().totals.rejected_frames, 0);
}

#[test]
fn timeout_between_networks_and_late_answer_is_counted_late() {
    let (mut a, _) = listening(Config {
        request_timeout: Duration::from_millis(100),
        ..plain()
    });
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    let rid = a.request(&b_id, "slow").unwrap();
    let log = run_until(&mut [&mut a, &mut b], 2000, |_, log| {
        has(log, 0, |e| matches!(e, Event::RequestFailed { .. }))
    });
    assert!(has(
        &log,
        1,
        |e| matches!(e, Event::Request { id, .. } if *id == rid)
    ));
    assert!(has(&log, 0, |e| *e
        == Event::RequestFailed {
            peer: b_id,
            id: rid,
            reason: RequestError::Timeout
        }));
    b.respond(&a_id, rid, "too late").unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |nets, _| {
        late_responses(nets[0], b_id) == 1
    });
    assert_eq!(of(&log, 0), vec![]);
    assert_eq!(a.stats().totals.rejected_frames, 0);
}

#[test]
fn a_slow_peer_answering_every_request_late_stays_connected() {
    // More late answers than max_rejected_frames (100): they never count as rejected.
    const N: usize = 120;
    let (mut a, _) = listening(Config {
        request_timeout: Duration::from_millis(100),
        ..plain()
    });
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    for _ in 0..N {
        a.request(&b_id, "slow").unwrap();
    }
    let log = run_until(&mut [&mut a, &mut b], 4000, |_, log| {
        count(log, 0, |e| matches!(e, Event::RequestFailed { .. })) == N
            && count(log, 1, |e| matches!(e, Event::Request { .. })) == N
    });
    for event in of(&log, 1) {
        if let Event::Request { id, .. } = event {
            b.respond(&a_id, id, "late").unwrap();
        }
    }
    let log = run_until(&mut [&mut a, &mut b], 4000, |nets, log| {
        late_responses(nets[0], b_id) == N as u64
            || has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
    });
    assert!(
        !has(&log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
            && !has(&log, 1, |e| matches!(e, Event::PeerDisconnected { .. })),
        "a slow peer is not misbehaving: {log:?}"
    );
    assert!(a.is_connected(&b_id));
    assert_eq!(a.stats().totals.rejected_frames, 0);
}

#[test]
fn respond_to_the_wrong_peer_or_twice_fails_locally_and_sends_nothing() {
    let (mut a, _) = node();
    let (mut b, b_addr) = node();
    let (mut c, _) = node();
    connect(&mut a, &mut b, b_addr);
    connect(&mut c, &mut b, b_addr);
    let (a_id, c_id) = (a.local_id(), c.local_id());
    let rid = a.request(&b.local_id(), "q").unwrap();
    run_until(&mut [&mut a, &mut b, &mut c], 400, |_, log| {
        has(log, 1, |e| matches!(e, Event::Request { .. }))
    });
    let frames_to_c = |b: &Network| b.peer_stats(&c_id).map(|s| s.frames_out);
    let before = frames_to_c(&b);
    assert_eq!(
        b.respond(&c_id, rid, "not yours"),
        Err(SendError::UnknownRequest {
            peer: c_id,
            id: rid
        })
    );
    assert_eq!(frames_to_c(&b), before, "nothing queued for the wrong peer");
    assert_eq!(b.stats().unanswered_requests, 1);
    b.respond(&a_id, rid, "r").unwrap();
    assert_eq!(
        b.respond(&a_id, rid, "again"),
        Err(SendError::UnknownRequest {
            peer: a_id,
            id: rid
        })
    );
    assert_eq!(b.stats().unanswered_requests, 0);
    let log = run_until(&mut [&mut a, &mut b, &mut c], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::Response { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::Response {
            peer: b.local_id(),
            id: rid,
            payload: Bytes::from_static(b"r")
        }]
    );
    // B's ADDRS (its listening address, PROTOCOL.md §5.1), then the one RESPONSE.
    assert_eq!(a.peer_stats(&b.local_id()).unwrap().frames_in, 2);
    assert_eq!(of(&log, 2), vec![]);
}

#[test]
fn a_respond_through_a_handle_with_an_unknown_id_comes_back_as_respond_failed() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    let handle = net.handle();
    handle.respond(&id(R), RequestId(5), "made up").unwrap();
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::RespondFailed { .. }))
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::RespondFailed {
            peer: id(R),
            id: RequestId(5),
            reason: SendError::UnknownRequest {
                peer: id(R),
                id: RequestId(5)
            }
        }]
    );
    assert!(raw.frames().is_empty(), "nothing sent");
}

/// The events of node 0 from a request's failure, checking it comes before the
/// disconnect and carries `ConnectionClosed(reason)`.
fn assert_failed_then_disconnected(log: &Log, rid: RequestId, reason: CloseReason) {
    assert_eq!(
        of(log, 0),
        vec![
            Event::RequestFailed {
                peer: id(R),
                id: rid,
                reason: RequestError::ConnectionClosed(reason.clone())
            },
            Event::PeerDisconnected {
                peer: id(R),
                reason
            },
        ]
    );
}

#[test]
fn request_fails_when_the_peer_closes_first() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    let rid = request_read_by_raw(&mut net, &mut raw, b"q");
    // Everything sent to it was read, so this is a clean EOF.
    drop(raw);
    let log = run_until(&mut [&mut net], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
    });
    assert_failed_then_disconnected(&log, rid, CloseReason::PeerClosed);
    assert_eq!(net.stats().pending_requests, 0);
}

#[test]
fn request_fails_when_the_peer_says_goodbye() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    let rid = request_read_by_raw(&mut net, &mut raw, b"q");
    raw.send_frame(&Frame::Goodbye(GoodbyeReason::Shutdown));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
    });
    assert_failed_then_disconnected(&log, rid, CloseReason::Goodbye(GoodbyeReason::Shutdown));
}

#[test]
fn request_fails_when_we_disconnect() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    let rid = request_read_by_raw(&mut net, &mut raw, b"q");
    assert!(net.disconnect(&id(R)));
    let log = run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
    });
    assert_failed_then_disconnected(&log, rid, CloseReason::Disconnected);
}

#[test]
fn pending_request_limit_refuses_more() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            max_pending_requests: 2,
            ..plain()
        },
        id(R),
    );
    let first = net.request(&id(R), "1").unwrap();
    net.request(&id(R), "2").unwrap();
    assert_eq!(
        net.request(&id(R), "3"),
        Err(SendError::TooManyRequests(id(R)))
    );
    // Once one is answered there is room again.
    let (frames, _) = collect_frames(&mut [&mut net], &mut raw, 400, |f, _| f.len() == 2);
    assert_eq!(frames.len(), 2, "the refused request was not sent");
    raw.send_frame(&Frame::Response {
        id: first.0,
        payload: Bytes::new(),
    });
    run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::Response { .. }))
    });
    assert!(net.request(&id(R), "3").is_ok());
}

#[test]
fn requests_to_unknown_peers_are_refused() {
    let (mut net, _) = node();
    assert_eq!(
        net.request(&id(9), "q"),
        Err(SendError::NotConnected(id(9)))
    );
    assert_eq!(
        net.respond(&id(9), RequestId(1), "a"),
        Err(SendError::NotConnected(id(9)))
    );
    assert_eq!(net.stats().pending_requests, 0);
}

#[test]
fn a_timed_out_request_is_not_failed_again_when_the_connection_closes() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            request_timeout: Duration::from_millis(100),
            ..plain()
        },
        id(R),
    );
    let rid = request_read_by_raw(&mut net, &mut raw, b"q");
    let mut log = run_until(&mut [&mut net], 2000, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::RequestFailed { .. }))
    });
    net.disconnect(&id(R));
    log.extend(run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
    }));
    assert_eq!(
        of(&log, 0),
        vec![
            Event::RequestFailed {
                peer: id(R),
                id: rid,
                reason: RequestError::Timeout
            },
            Event::PeerDisconnected {
                peer: id(R),
                reason: CloseReason::Disconnected
            },
        ]
    );
}

#[test]
fn a_request_made_long_after_the_last_turn_gets_its_whole_timeout() {
    // The application is busy between two turns for longer than the request timeout;
    // the request it then makes must still get the full timeout, counted from the call.
    let config = Config {
        request_timeout: Duration::from_millis(300),
        ..plain()
    };
    let (mut a, _) = listening(config.clone());
    let (mut b, b_addr) = listening(config);
    connect(&mut a, &mut b, b_addr);
    std::thread::sleep(Duration::from_millis(400)); // the application's own work, not a wait for the network
    let peer = b.local_id();
    let rid = a.request(&peer, "q").unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        has(log, 1, |e| matches!(e, Event::Request { .. }))
    });
    let Some(Event::Request { peer: from, id, .. }) = of(&log, 1).into_iter().last() else {
        panic!("no request arrived: {log:?}");
    };
    b.respond(&from, id, "r").unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        has(log, 0, |e| {
            matches!(e, Event::Response { .. } | Event::RequestFailed { .. })
        })
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::Response {
            peer,
            id: rid,
            payload: Bytes::from_static(b"r")
        }]
    );
}

#[test]
fn a_late_answer_to_a_request_from_before_the_peer_restarted_answers_nothing() {
    // A restarted peer keeps its id but numbers its requests afresh. Were the numbers
    // to start where they did last time, the late answer to its old request would
    // answer its new one, which asked something else.
    let (mut server, addr) = node();
    let server_id = server.local_id();
    let client = || {
        listening(Config {
            peer_id: Some(id(3)),
            ..plain()
        })
    };
    let request_of = |log: &Log, payload: &'static str| {
        of(log, 1).into_iter().find_map(|e| match e {
            Event::Request { id, payload: p, .. } if p == payload => Some(id),
            _ => None,
        })
    };
    let (mut before, _) = client();
    connect(&mut before, &mut server, addr);
    let old = before.request(&server_id, "old").unwrap();
    let log = run_until(&mut [&mut before, &mut server], 400, |_, log| {
        request_of(log, "old").is_some()
    });
    assert_eq!(request_of(&log, "old"), Some(old));
    drop(before);
    run_until(&mut [&mut server], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
    });
    let (mut after, _) = client();
    connect(&mut after, &mut server, addr);
    let new = after.request(&server_id, "new").unwrap();
    let log = run_until(&mut [&mut after, &mut server], 400, |_, log| {
        request_of(log, "new").is_some()
    });
    assert_eq!(request_of(&log, "new"), Some(new));
    assert_eq!(
        server.respond(&id(3), old, "the answer to old"),
        Err(SendError::UnknownRequest {
            peer: id(3),
            id: old
        }),
        "the old request went with its connection"
    );
}
