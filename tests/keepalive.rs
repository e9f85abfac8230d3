//! PROTOCOL.md §5, PING/PONG and keepalive: pings after silence, GOODBYE 4 after the
//! idle timeout, and liveness kept by answering.

mod common;

use std::time::Duration;

use common::*;
use p2p::wire::{Frame, GoodbyeReason};
use p2p::{CloseReason, Config, Event, Network};

const R: u8 = 0x42;

fn short_keepalive() -> Config {
    Config {
        ping_interval: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(200),
        ..plain()
    }
}

#[test]
fn ping_is_answered_with_pong_carrying_the_same_nonce() {
    let (mut net, mut raw) = with_raw_peer(plain(), id(R));
    raw.send_frame(&Frame::Ping(0xDEAD_BEEF_1234_5678));
    raw.send_frame(&Frame::Ping(0));
    raw.send_frame(&Frame::Ping(u64::MAX));
    let (frames, log) = collect_frames(&mut [&mut net], &mut raw, 400, |f, _| f.len() >= 3);
    assert_eq!(
        frames,
        vec![
            Frame::Pong(0xDEAD_BEEF_1234_5678),
            Frame::Pong(0),
            Frame::Pong(u64::MAX)
        ]
    );
    assert!(log.is_empty(), "PINGs are not application events: {log:?}");
}

#[test]
fn silent_peer_is_sent_a_ping() {
    let (mut net, mut raw) = with_raw_peer(
        Config {
            ping_interval: Duration::from_millis(50),
            idle_timeout: Duration::from_secs(30),
            ..plain()
        },
        id(R),
    );
    let (frames, log) = collect_frames(&mut [&mut net], &mut raw, 2000, |f, _| !f.is_empty());
    assert!(matches!(frames[..], [Frame::Ping(_)]), "{frames:?}");
    assert!(log.is_empty(), "{log:?}");
    // Our PONG is accepted (counted, no rejection).
    let Frame::Ping(nonce) = frames[0] else {
        unreachable!()
    };
    raw.send_frame(&Frame::Pong(nonce));
    let before = net.peer_stats(&id(R)).unwrap().frames_in;
    run_until(&mut [&mut net], 400, |nets, _| {
        raw.pump();
        nets[0].peer_stats(&id(R)).unwrap().frames_in > before
    });
    assert_eq!(net.peer_stats(&id(R)).unwrap().rejected_frames, 0);
}

#[test]
fn silent_peer_is_closed_with_goodbye_4_after_the_idle_timeout() {
    let (mut net, mut raw) = with_raw_peer(short_keepalive(), id(R));
    let (frames, mut log) = collect_frames(&mut [&mut net], &mut raw, 4000, |_, raw| raw.closed);
    assert!(
        matches!(frames.first(), Some(Frame::Ping(_))),
        "pinged first: {frames:?}"
    );
    assert_eq!(
        frames.last(),
        Some(&Frame::Goodbye(GoodbyeReason::Timeout)),
        "then GOODBYE 4 and EOF: {frames:?}"
    );
    assert!(!raw.reset, "an orderly end of stream, not a reset");
    assert!(
        frames[..frames.len() - 1]
            .iter()
            .all(|f| matches!(f, Frame::Ping(_))),
        "{frames:?}"
    );
    if !has(&log, 0, |e| matches!(e, Event::PeerDisconnected { .. })) {
        log.extend(run_until(&mut [&mut net], 400, |_, log| {
            has(log, 0, |e| matches!(e, Event::PeerDisconnected { .. }))
        }));
    }
    assert_eq!(
        of(&log, 0),
        vec![Event::PeerDisconnected {
            peer: id(R),
            reason: CloseReason::IdleTimeout
        }]
    );
}

#[test]
fn answering_pings_keeps_the_connection_open() {
    let (mut net, addr) = listening(short_keepalive());
    let (mut alive, _) = Raw::handshake(&mut net, addr, id(R));
    // A second, silent peer connected later is the clock: once it is closed for
    // idleness, the first one has been open longer than the idle timeout too.
    let (mut clock, _) = Raw::handshake(&mut net, addr, id(0x43));
    let mut pings = 0;
    let mut others = Vec::new();
    let mut clock_frames = Vec::new();
    let log = run_until(&mut [&mut net], 8000, |_, _| {
        for frame in alive.frames() {
            match frame {
                Frame::Ping(nonce) => {
                    pings += 1;
                    alive.send_frame(&Frame::Pong(nonce));
                }
                other => others.push(other),
            }
        }
        clock_frames.extend(clock.frames());
        clock.closed || alive.closed
    });
    assert!(
        !alive.closed,
        "closed although every PING was answered: {others:?}"
    );
    assert_eq!(
        clock_frames.last(),
        Some(&Frame::Goodbye(GoodbyeReason::Timeout))
    );
    assert!(pings >= 2, "pinged repeatedly ({pings})");
    assert!(others.is_empty(), "{others:?}");
    assert!(
        !has(
            &log,
            0,
            |e| matches!(e, Event::PeerDisconnected { peer, .. } if *peer == id(R))
        ),
        "{log:?}"
    );
    assert!(net.is_connected(&id(R)));
}

#[test]
fn two_networks_keep_each_other_alive() {
    let (mut a, _) = listening(short_keepalive());
    let (mut b, b_addr) = listening(short_keepalive());
    connect(&mut a, &mut b, b_addr);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    // A silent raw peer of B, connected after A, is the clock (see above).
    let (mut clock, _) = Raw::handshake(&mut b, b_addr, id(0x43));
    let log = run_until(&mut [&mut a, &mut b], 8000, |_, _| {
        clock.pump();
        clock.closed
    });
    assert!(
        !has(&log, 0, |e| matches!(e, Event::PeerDisconnected { .. })),
        "{log:?}"
    );
    assert!(
        !has(
            &log,
            1,
            |e| matches!(e, Event::PeerDisconnected { peer, .. } if *peer == a_id)
        ),
        "{log:?}"
    );
    assert!(a.is_connected(&b_id) && b.is_connected(&a_id));
    let seen = |n: &Network, p| n.peer_stats(p).map_or(0, |s| s.frames_in);
    assert!(
        seen(&a, &b_id) >= 2 && seen(&b, &a_id) >= 2,
        "they pinged each other"
    );
}
