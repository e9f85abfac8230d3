//! Finding 7: a graceful shutdown that cannot flush within `close_timeout` says how
//! many bytes each peer did not get, as an event and a counter, instead of ending
//! as if all was delivered.

use std::time::Duration;

use p2p::{Config, Event, PeerId};

use crate::common::*;
use crate::support::{deadline, host};
use crate::writes::non_reader;

#[test]
fn shutdown_reports_the_bytes_a_slow_peer_never_got() {
    const SIZE: usize = 64 * 1024;
    let (mut a, a_addr) = listening(Config {
        max_frame_size: SIZE,
        max_write_buffer: 1 << 20,
        close_timeout: Duration::from_millis(300),
        ..plain()
    });
    let (mut reader, _) = listening(plain());
    connect(&mut reader, &mut a, a_addr);
    let slow: PeerId = id(0x51);
    let _raw = non_reader(&mut a, a_addr, host(20), slow);
    let reader_id = reader.local_id();
    // Queue as much as the slow peer's queue takes, while the reader gets the same.
    let until = deadline(30);
    let mut queued_for_reader = 0usize;
    let before = run_until(&mut [&mut a, &mut reader], 100_000, |nets, _| {
        assert!(std::time::Instant::now() < until, "the queue did not fill");
        if nets[0].send(&reader_id, vec![2u8; SIZE]).is_ok() {
            queued_for_reader += 1;
        }
        nets[0].send(&slow, vec![1u8; SIZE]).is_err()
    });
    let queued = a.queued_bytes(&slow).expect("connected");
    assert!(queued > 0);
    a.shutdown();
    let log = run_until(&mut [&mut a, &mut reader], 100_000, |nets, _| {
        nets[0].is_shut_down()
    });
    let unflushed: Vec<(PeerId, usize)> = of(&log, 0)
        .into_iter()
        .filter_map(|e| match e {
            Event::Unflushed { peer, bytes } => Some((peer, bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(unflushed.len(), 1, "{unflushed:?}");
    let (peer, bytes) = unflushed[0];
    assert_eq!(peer, slow, "only the slow peer lost bytes");
    // What was queued and its GOODBYE, less what its kernel buffers still took.
    assert!(bytes > 0 && bytes <= queued + 6, "{bytes} of {queued}");
    assert_eq!(a.stats().unflushed_bytes, bytes as u64);
    // The reader got every message before the close, so it lost nothing.
    let message = |e: &Event| matches!(e, Event::Message { .. });
    let got = count(&before, 1, message) + count(&log, 1, message);
    assert!(queued_for_reader > 0);
    assert_eq!(got, queued_for_reader);
}
