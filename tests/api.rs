//! The public API as a new user meets it: one error type that every call's error
//! converts into with `?`, payloads passed borrowed or owned, and a `Handle` that
//! mirrors `Network` and whose failures come back with the id its call returned.

mod common;

use std::error::Error as _;
use std::net::SocketAddr;
#[cfg(feature = "noise")]
use std::path::PathBuf;

use common::*;
use p2p::sim::{Sim, SimConfig};
use p2p::{
    Bytes, CloseReason, Config, DialError, Event, GossipId, HandleError, Network, ParsePeerIdError,
    PeerId, RequestError, RequestId, SendError,
};

/// Polls both nodes until `done` holds of the events gathered so far, at most
/// `turns` turns; every call is `?`, as a user's loop would be.
fn step(
    mut nets: [&mut Network; 2],
    turns: usize,
    mut done: impl FnMut(&[(usize, Event)]) -> bool,
) -> Result<Vec<(usize, Event)>, p2p::Error> {
    let mut log = Vec::new();
    let mut events = Vec::new();
    for _ in 0..turns {
        if done(&log) {
            return Ok(log);
        }
        for (i, net) in nets.iter_mut().enumerate() {
            net.poll(&mut events, Some(TURN))?;
            log.extend(events.drain(..).map(|e| (i, e)));
        }
    }
    assert!(done(&log), "not reached in {turns} turns: {log:#?}");
    Ok(log)
}

#[cfg(feature = "noise")]
/// A key file in a directory of its own under the system temp dir, removed on drop.
struct KeyFile(PathBuf);

#[cfg(feature = "noise")]
impl KeyFile {
    fn new() -> KeyFile {
        let dir = std::env::temp_dir().join(format!("p2p-api-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        KeyFile(dir)
    }

    fn path(&self) -> PathBuf {
        self.0.join("node.key")
    }
}

#[cfg(feature = "noise")]
impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the issue asked for: `fn run() -> Result<(), p2p::Error>` with `?` on listen,
/// dial, send, request, respond, broadcast, poll, the key file, a peer id parsed from
/// text, config validation and a handle's commands. Payloads are borrowed from values
/// that live only in this function.
fn run() -> Result<(), p2p::Error> {
    #[cfg(feature = "noise")]
    let (_keys, config) = {
        let keys = KeyFile::new();
        p2p::Keypair::generate()?.save(&keys.path())?;
        let keypair = p2p::Keypair::load(&keys.path())?;
        let config = Config {
            keypair: Some(keypair),
            ..Config::default()
        };
        (keys, config)
    };
    #[cfg(not(feature = "noise"))]
    let config = Config::default();
    config.validate()?;
    let mut a = Network::new(config)?;
    let mut b = Network::new(Config::default())?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let b_addr = b.listen(listen)?;
    a.dial(b_addr)?;
    let a_id = a.local_id();
    // As a peer id read from a file or a command line would be.
    let b_text = b.local_id().to_string();
    let b_id: PeerId = b_text.parse()?;
    step([&mut a, &mut b], 400, |log| {
        log.iter()
            .filter(|(_, e)| matches!(e, Event::PeerConnected { .. }))
            .count()
            == 2
    })?;

    let height = 7;
    let msg = format!("block {height}");
    a.send(&b_id, msg.as_bytes())?;
    let rid = a.request(&b_id, msg.as_str())?;
    let gid = a.broadcast(&msg)?;
    drop(msg);
    let log = step([&mut a, &mut b], 400, |log| {
        log.iter()
            .any(|(n, e)| *n == 1 && matches!(e, Event::Request { .. }))
    })?;
    let received: Vec<&Event> = log
        .iter()
        .filter(|(n, _)| *n == 1)
        .map(|(_, e)| e)
        .collect();
    assert!(received.contains(&&Event::Message {
        peer: a_id,
        payload: Bytes::from_static(b"block 7")
    }));
    assert!(received.contains(&&Event::Broadcast {
        from: a_id,
        id: gid,
        payload: Bytes::from_static(b"block 7")
    }));
    let answer = vec![b'o', b'k'];
    b.respond(&a_id, rid, &answer)?;
    let log = step([&mut a, &mut b], 400, |log| {
        log.iter()
            .any(|(n, e)| *n == 0 && matches!(e, Event::Response { .. }))
    })?;
    assert!(log.contains(&(
        0,
        Event::Response {
            peer: b_id,
            id: rid,
            payload: Bytes::from_static(b"ok")
        }
    )));

    let handle = a.handle();
    let note = String::from("from the handle");
    handle.send(&b_id, &note)?;
    let gid = handle.broadcast(note.as_bytes())?;
    let log = step([&mut a, &mut b], 400, |log| {
        log.iter()
            .any(|(n, e)| *n == 1 && matches!(e, Event::Broadcast { .. }))
    })?;
    assert!(log.contains(&(
        1,
        Event::Broadcast {
            from: a_id,
            id: gid,
            payload: Bytes::from_static(b"from the handle")
        }
    )));
    assert!(log.contains(&(
        1,
        Event::Message {
            peer: a_id,
            payload: Bytes::from_static(b"from the handle")
        }
    )));
    Ok(())
}

#[test]
fn a_run_function_returning_p2p_error_questions_every_call() -> Result<(), p2p::Error> {
    run()
}

#[test]
fn every_public_error_converts_into_p2p_error() {
    fn converts<E: Into<p2p::Error>>(_: E) {}
    converts(DialError::ShuttingDown);
    converts(SendError::ShuttingDown);
    converts(RequestError::Timeout);
    converts(HandleError::Full);
    converts(CloseReason::PeerClosed);
    converts(p2p::ConfigError::Zero("read_budget"));
    converts(ParsePeerIdError::Length(3));
    converts(std::io::Error::other("poll"));
    #[cfg(feature = "noise")]
    converts(p2p::KeyError::NotAFile { path: "k".into() });
    converts(p2p::wire::PreambleError::BadMagic);
    converts(p2p::sim::SimDialError::NoNode(3));
    converts("x".parse::<SocketAddr>().unwrap_err());
}

#[test]
fn a_wrapped_error_shows_as_itself_and_keeps_its_source() {
    let send = SendError::NotConnected(id(1));
    let e = p2p::Error::from(send.clone());
    assert_eq!(e.to_string(), send.to_string());
    assert!(matches!(e, p2p::Error::Send(ref s) if *s == send));
    let io = p2p::Error::from(std::io::Error::other("poller gone"));
    let source = io.source().expect("io keeps its source");
    assert_eq!(source.to_string(), "poller gone");
    let config = p2p::Error::from(p2p::ConfigError::Zero("read_budget"));
    assert!(
        config
            .source()
            .and_then(|s| s.downcast_ref::<p2p::ConfigError>())
            .is_some()
    );
}

#[test]
fn a_borrowed_payload_of_a_short_lived_string_is_delivered() {
    let (mut a, _) = node();
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let b_id = b.local_id();
    for i in 0..3 {
        let msg = format!("message {i}");
        a.send(&b_id, msg.as_bytes()).unwrap();
    }
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        count(log, 1, |e| matches!(e, Event::Message { .. })) == 3
    });
    let payloads: Vec<Bytes> = of(&log, 1)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, ["message 0", "message 1", "message 2"]);
}

#[test]
fn a_handle_broadcast_returns_the_id_every_node_reports() {
    let (mut a, _) = node();
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let handle = a.handle();
    let first = handle.broadcast("one").unwrap();
    let second = handle.broadcast(String::from("two")).unwrap();
    assert_ne!(first, second);
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        count(log, 1, |e| matches!(e, Event::Broadcast { .. })) == 2
    });
    let ids: Vec<(GossipId, Bytes)> = of(&log, 1)
        .into_iter()
        .filter_map(|e| match e {
            Event::Broadcast { id, payload, .. } => Some((id, payload)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ids,
        [
            (first, Bytes::from_static(b"one")),
            (second, Bytes::from_static(b"two"))
        ]
    );
}

#[test]
fn a_refused_handle_command_comes_back_with_the_id_its_call_returned() {
    let (mut a, _) = listening(Config {
        max_frame_size: 64,
        ..plain()
    });
    let (mut b, b_addr) = node();
    connect(&mut a, &mut b, b_addr);
    let b_id = b.local_id();
    let stranger = id(7);
    let handle = a.handle();
    let delivered = handle.send(&b_id, "fits").unwrap();
    let refused = handle.send(&stranger, "nobody").unwrap();
    let too_large = handle.send(&b_id, vec![0u8; 100]).unwrap();
    assert!(delivered != refused && refused != too_large);
    let fits = handle.broadcast("fits").unwrap();
    let oversize = handle.broadcast(&[1u8; 100]).unwrap();
    assert_ne!(fits, oversize);
    handle.respond(&b_id, RequestId(9), "unasked").unwrap();
    let log = run_until(&mut [&mut a, &mut b], 400, |_, log| {
        has(log, 0, |e| matches!(e, Event::RespondFailed { .. }))
            && has(log, 1, |e| matches!(e, Event::Broadcast { .. }))
    });
    let failures: Vec<Event> = of(&log, 0)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::SendFailed { .. }
                    | Event::BroadcastFailed { .. }
                    | Event::RespondFailed { .. }
            )
        })
        .collect();
    assert_eq!(
        failures,
        [
            Event::SendFailed {
                peer: stranger,
                id: refused,
                reason: SendError::NotConnected(stranger)
            },
            Event::SendFailed {
                peer: b_id,
                id: too_large,
                reason: SendError::TooLarge { len: 100, max: 64 }
            },
            Event::BroadcastFailed {
                id: oversize,
                reason: SendError::TooLarge { len: 117, max: 64 }
            },
            Event::RespondFailed {
                peer: b_id,
                id: RequestId(9),
                reason: SendError::UnknownRequest {
                    peer: b_id,
                    id: RequestId(9)
                }
            },
        ]
    );
    assert!(has(&log, 1, |e| matches!(e,
        Event::Broadcast { id, .. } if *id == fits)));
}

#[test]
fn the_simulator_takes_borrowed_payloads_too() -> Result<(), p2p::Error> {
    let mut sim = Sim::new(SimConfig {
        seed: 1,
        ..SimConfig::default()
    })?;
    let (a, b) = (sim.add_node(), sim.add_node());
    sim.dial(a, b)?;
    assert!(sim.run_until(|s| s.node(a).peers() == 1 && s.node(b).peers() == 1, 10_000));
    let b_id = sim.node(b).id();
    let msg = String::from("simulated");
    sim.send(a, &b_id, msg.as_bytes())?;
    sim.broadcast(a, &msg)?;
    drop(msg);
    let got = |s: &Sim| {
        s.node(b)
            .events()
            .iter()
            .any(|e| matches!(e, Event::Message { payload, .. } if payload == "simulated"))
    };
    assert!(sim.run_until(got, 10_000));
    Ok(())
}

/// A thread that refills a handle's queue as fast as the loop drains it must not hold
/// the loop in one `poll`: each drain runs at most a queue's worth of commands, so a
/// turn's events (here one `DialFailed` per command) stay bounded and the loop gets
/// back to its sockets and timers. (Found by review: the drain ran until the queue was
/// empty, which a producer faster than the loop need never let happen.)
#[test]
fn a_thread_that_keeps_the_command_queue_full_does_not_hold_the_loop() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const QUEUE: usize = 64;
    const MOST: usize = 100_000;
    let mut net = Network::new(Config {
        command_queue: QUEUE,
        ..plain()
    })
    .expect("network");
    let handle = net.handle();
    let (full, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    // A dial the kernel refuses at once (network unreachable) costs the loop a socket
    // and a connect call, and the producer only a queue slot: the producer is the
    // faster by far.
    let unreachable: SocketAddr = "255.255.255.255:1".parse().expect("addr");
    let producer = {
        let (full, stop) = (full.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut queued = 0usize;
            while queued < MOST && !stop.load(Ordering::Relaxed) {
                match handle.dial(unreachable) {
                    Ok(()) => queued += 1,
                    Err(HandleError::Full) => full.store(true, Ordering::Relaxed),
                    Err(e) => panic!("{e}"),
                }
            }
            queued
        })
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !full.load(Ordering::Relaxed) && std::time::Instant::now() < end {
        std::hint::spin_loop();
    }
    assert!(full.load(Ordering::Relaxed), "the queue never filled");
    let mut events = Vec::new();
    net.poll(&mut events, Some(std::time::Duration::ZERO))
        .expect("poll");
    stop.store(true, Ordering::Relaxed);
    let queued = producer.join().expect("producer");
    assert!(
        events
            .iter()
            .all(|e| matches!(e, Event::DialFailed { addr, .. } if *addr == unreachable)),
        "{:?}",
        events.first()
    );
    // The drain before the wait and the one after the waker fired.
    assert!(
        events.len() <= 2 * QUEUE,
        "one poll ran {} commands ({queued} queued in all)",
        events.len()
    );
}
