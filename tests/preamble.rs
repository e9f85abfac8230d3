//! PROTOCOL.md §1: the 12-byte preamble, its checks and their order, over loopback TCP.

mod common;

use common::*;
use p2p::wire::{MAGIC, PREAMBLE_LEN, Preamble, PreambleError, Security};
use p2p::{CloseReason, Config, Event};
use std::time::Duration;

const NET: u32 = 7;

fn config() -> Config {
    Config {
        network_id: NET,
        ..plain()
    }
}

/// A valid plaintext preamble for network `NET`, then changed by `f`.
fn preamble_with(f: impl FnOnce(&mut [u8; PREAMBLE_LEN])) -> [u8; PREAMBLE_LEN] {
    let mut bytes = Preamble::new(Security::Plaintext, NET).encode();
    f(&mut bytes);
    bytes
}

fn bad_magic(p: &mut [u8; PREAMBLE_LEN]) {
    p[..4].copy_from_slice(b"HTTP");
}
fn bad_version(p: &mut [u8; PREAMBLE_LEN]) {
    p[4] = 2;
}
fn noise(p: &mut [u8; PREAMBLE_LEN]) {
    p[5] = 1;
}
fn other_network(p: &mut [u8; PREAMBLE_LEN]) {
    p[8..].copy_from_slice(&(NET + 1).to_be_bytes());
}

/// The node dials a raw listener that answers with `preamble` and a peer id. Checks that
/// the node sent exactly its hello, nothing after, and closed; returns the DialFailed reason.
fn outbound_refused(preamble: [u8; PREAMBLE_LEN]) -> CloseReason {
    let (mut net, _) = listening(config());
    let listener = RawListener::bind();
    net.dial(listener.addr).unwrap();
    let (mut raw, mut log) = listener.accept(&mut [&mut net]);
    // The node speaks first, without waiting for our preamble.
    log.extend(run_until(&mut [&mut net], 400, |_, _| {
        raw.pump();
        raw.received >= HELLO_LEN
    }));
    assert_eq!(&raw.inbox[..], &hello_of(&net)[..]);
    raw.send(&preamble);
    raw.send(id(0x42).as_bytes());
    log.extend(run_until(&mut [&mut net], 400, |_, log| {
        raw.pump();
        raw.closed && has(log, 0, |e| matches!(e, Event::DialFailed { .. }))
    }));
    assert_eq!(
        raw.received, HELLO_LEN,
        "nothing may be sent after a failed preamble check"
    );
    assert!(
        !has(&log, 0, |e| matches!(e, Event::PeerConnected { .. })),
        "{log:?}"
    );
    let failures: Vec<_> = of(&log, 0)
        .into_iter()
        .filter_map(|e| match e {
            Event::DialFailed { addr, reason } => {
                assert_eq!(addr, listener.addr);
                Some(reason)
            }
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1, "one DialFailed: {log:?}");
    assert_eq!(net.stats().failed_handshakes, 1);
    assert!(net.peers().is_empty());
    failures.into_iter().next().unwrap()
}

/// A raw peer dials the node and sends `preamble` and an id: the node, having sent its
/// own hello at accept, sends nothing more and closes, with no event.
fn inbound_refused(preamble: [u8; PREAMBLE_LEN]) {
    let (mut net, addr) = listening(config());
    let mut raw = Raw::connect(addr);
    let mut log = run_until(&mut [&mut net], 400, |_, _| {
        raw.pump();
        raw.received >= HELLO_LEN
    });
    assert_eq!(&raw.inbox[..], &hello_of(&net)[..]);
    raw.send(&preamble);
    raw.send(id(0x42).as_bytes());
    log.extend(run_until(&mut [&mut net], 400, |nets, _| {
        raw.pump();
        raw.closed && nets[0].stats().connections == 0
    }));
    assert_eq!(
        raw.received, HELLO_LEN,
        "nothing may be sent after a failed preamble check"
    );
    assert!(log.is_empty(), "an inbound refusal has no event: {log:?}");
    assert_eq!(net.stats().failed_handshakes, 1);
    assert!(net.peers().is_empty());
}

#[test]
fn hello_bytes_are_exact_and_sent_unprompted_on_accept() {
    let (mut net, addr) = listening(Config {
        network_id: 0x0A0B_0C0D,
        ..plain()
    });
    let mut raw = Raw::connect(addr);
    // We send nothing: the node must speak first.
    run_until(&mut [&mut net], 400, |_, _| {
        raw.pump();
        raw.received >= HELLO_LEN
    });
    let bytes = &raw.inbox[..];
    assert_eq!(&bytes[0..4], &MAGIC);
    assert_eq!(&bytes[0..4], &[0x50, 0x32, 0x50, 0x56]);
    assert_eq!(bytes[4], 1, "version");
    assert_eq!(bytes[5], 0, "security: plaintext");
    assert_eq!(&bytes[6..8], &[3, 0], "features (ADDRS, PEX), reserved");
    assert_eq!(
        &bytes[8..12],
        &[0x0A, 0x0B, 0x0C, 0x0D],
        "network id, big-endian"
    );
    assert_eq!(&bytes[12..44], net.local_id().as_bytes(), "peer id");
    assert_eq!(raw.received, HELLO_LEN, "nothing but the hello before ours");
}

#[test]
fn hello_bytes_are_exact_and_sent_unprompted_on_dial() {
    let (mut net, _) = listening(Config {
        network_id: 0xFFFF_FFFE,
        ..plain()
    });
    let listener = RawListener::bind();
    net.dial(listener.addr).unwrap();
    let (mut raw, _) = listener.accept(&mut [&mut net]);
    run_until(&mut [&mut net], 400, |_, _| {
        raw.pump();
        raw.received >= HELLO_LEN
    });
    let bytes = &raw.inbox[..];
    assert_eq!(&bytes[0..4], b"P2PV");
    assert_eq!(bytes[4], 1);
    assert_eq!(bytes[5], 0);
    assert_eq!(&bytes[6..8], &[3, 0]);
    assert_eq!(&bytes[8..12], &[0xFF, 0xFF, 0xFF, 0xFE]);
    assert_eq!(&bytes[12..44], net.local_id().as_bytes());
    assert_eq!(raw.received, HELLO_LEN);
}

#[test]
fn dial_bad_magic() {
    assert_eq!(
        outbound_refused(preamble_with(bad_magic)),
        CloseReason::Preamble(PreambleError::BadMagic)
    );
}

#[test]
fn dial_unsupported_version() {
    assert_eq!(
        outbound_refused(preamble_with(bad_version)),
        CloseReason::Preamble(PreambleError::UnsupportedVersion(2))
    );
}

#[test]
fn dial_noise_peer_while_plaintext() {
    assert_eq!(
        outbound_refused(preamble_with(noise)),
        CloseReason::Preamble(PreambleError::SecurityMismatch {
            ours: Security::Plaintext,
            theirs: 1
        })
    );
}

#[test]
fn dial_undefined_security_byte() {
    assert_eq!(
        outbound_refused(preamble_with(|p| p[5] = 9)),
        CloseReason::Preamble(PreambleError::SecurityMismatch {
            ours: Security::Plaintext,
            theirs: 9
        })
    );
}

#[test]
fn dial_network_mismatch() {
    assert_eq!(
        outbound_refused(preamble_with(other_network)),
        CloseReason::Preamble(PreambleError::NetworkMismatch {
            ours: NET,
            theirs: NET + 1
        })
    );
}

#[test]
fn check_order_magic_before_version() {
    let reason = outbound_refused(preamble_with(|p| {
        bad_magic(p);
        bad_version(p);
    }));
    assert_eq!(reason, CloseReason::Preamble(PreambleError::BadMagic));
}

#[test]
fn check_order_everything_wrong_is_bad_magic() {
    let reason = outbound_refused(preamble_with(|p| {
        bad_magic(p);
        bad_version(p);
        noise(p);
        other_network(p);
    }));
    assert_eq!(reason, CloseReason::Preamble(PreambleError::BadMagic));
}

#[test]
fn check_order_version_before_security_and_network() {
    let reason = outbound_refused(preamble_with(|p| {
        p[4] = 0;
        noise(p);
        other_network(p);
    }));
    assert_eq!(
        reason,
        CloseReason::Preamble(PreambleError::UnsupportedVersion(0))
    );
}

#[test]
fn check_order_security_before_network() {
    let reason = outbound_refused(preamble_with(|p| {
        noise(p);
        other_network(p);
    }));
    assert_eq!(
        reason,
        CloseReason::Preamble(PreambleError::SecurityMismatch {
            ours: Security::Plaintext,
            theirs: 1
        })
    );
}

#[test]
fn inbound_bad_magic_is_closed_silently() {
    inbound_refused(preamble_with(bad_magic));
}

#[test]
fn inbound_unsupported_version_is_closed_silently() {
    inbound_refused(preamble_with(bad_version));
}

#[test]
fn inbound_noise_peer_is_closed_silently() {
    inbound_refused(preamble_with(noise));
}

#[test]
fn inbound_network_mismatch_is_closed_silently() {
    inbound_refused(preamble_with(other_network));
}

#[test]
fn reserved_bytes_are_ignored_on_receive() {
    let (mut net, addr) = listening(config());
    let mut raw = Raw::connect(addr);
    raw.send(&preamble_with(|p| {
        p[6] = 0xAB;
        p[7] = 0xCD;
    }));
    raw.send(id(0x42).as_bytes());
    run_until(&mut [&mut net], 400, |_, log| {
        connected_to(log, 0, id(0x42))
    });
    assert!(net.is_connected(&id(0x42)));
}

#[test]
fn preamble_and_id_may_arrive_one_byte_at_a_time() {
    let (mut net, addr) = listening(config());
    let mut raw = Raw::connect(addr);
    let bytes = hello(NET, id(0x42));
    let mut log = Log::new();
    for &b in &bytes {
        assert!(
            !connected_to(&log, 0, id(0x42)),
            "connected before the whole id arrived"
        );
        raw.send(&[b]);
        turn(&mut [&mut net], &mut log);
    }
    log.extend(run_until(&mut [&mut net], 400, |nets, _| {
        nets[0].is_connected(&id(0x42))
    }));
    assert_eq!(
        count(&log, 0, |e| matches!(e, Event::PeerConnected { .. })),
        1
    );
    assert!(connected_to(&log, 0, id(0x42)));
}

#[test]
fn networks_with_different_ids_refuse_each_other() {
    let (mut a, _) = listening(Config {
        network_id: 1,
        ..plain()
    });
    let (mut b, b_addr) = listening(Config {
        network_id: 2,
        ..plain()
    });
    a.dial(b_addr).unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |nets, log| {
        has(log, 0, |e| matches!(e, Event::DialFailed { .. })) && nets[1].stats().connections == 0
    });
    assert_eq!(
        of(&log, 0),
        vec![Event::DialFailed {
            addr: b_addr,
            reason: CloseReason::Preamble(PreambleError::NetworkMismatch { ours: 1, theirs: 2 }),
        }]
    );
    assert!(of(&log, 1).is_empty(), "{log:?}");
    assert_eq!(b.stats().failed_handshakes, 1);
    assert!(a.peers().is_empty() && b.peers().is_empty());
}

fn short_handshake() -> Config {
    Config {
        handshake_timeout: Duration::from_millis(150),
        ..config()
    }
}

#[test]
fn inbound_handshake_timeout_closes() {
    let (mut net, addr) = listening(short_handshake());
    let mut raw = Raw::connect(addr);
    raw.send(&preamble_with(|_| {})[..5]);
    let log = run_until(&mut [&mut net], 2000, |nets, _| {
        raw.pump();
        raw.closed && nets[0].stats().connections == 0
    });
    assert_eq!(raw.received, HELLO_LEN);
    assert!(log.is_empty(), "{log:?}");
    assert_eq!(net.stats().failed_handshakes, 1);
}

#[test]
fn outbound_handshake_timeout_is_dial_failed() {
    let (mut net, _) = listening(short_handshake());
    let listener = RawListener::bind();
    net.dial(listener.addr).unwrap();
    let (mut raw, mut log) = listener.accept(&mut [&mut net]);
    log.extend(run_until(&mut [&mut net], 2000, |_, log| {
        raw.pump();
        has(log, 0, |e| matches!(e, Event::DialFailed { .. }))
    }));
    assert_eq!(
        of(&log, 0),
        vec![Event::DialFailed {
            addr: listener.addr,
            reason: CloseReason::HandshakeTimeout
        }]
    );
}
