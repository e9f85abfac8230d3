//! One-way MESSAGE throughput between two [`Network`]s over loopback, plaintext and
//! noise-xx, beside a raw-mio baseline and the cipher's ceiling, run in the same
//! invocation.
//!
//! For each payload size (64 B, 1 KiB, 64 KiB, 1 MiB) the group `throughput` has three
//! benchmarks:
//!
//! * `p2p/<size>`: a sending `Network` on the bench thread calls [`Network::send`] and,
//!   every 256 KiB of payload, [`Network::poll`] with a zero timeout to flush; when `send`
//!   returns [`SendError::Full`] it polls until the socket takes more. A receiving
//!   `Network` on its own thread polls and counts the payload bytes of every
//!   [`Event::Message`]. Both ends use [`Security::Plaintext`], chosen explicitly.
//! * `noise/<size>` (feature `noise`): the same with [`Security::NoiseXx`], each end
//!   with the keypair it generates at start: frames cross in encrypted records.
//! * `baseline/<size>`: the same traffic as a hand-written mio program would move it:
//!   frames of a `u32` length and the payload, small payloads copied into one write
//!   buffer, large ones (4 KiB and up, like the library) written with `writev` beside
//!   their header, read into a reused buffer and parsed until `WouldBlock`.
//!
//! All receivers run on their own thread and all senders on the bench thread; a
//! connection (and its handshake) is set up once per benchmark, outside the timed part.
//! One iteration sends a fixed number of messages and ends when the receiver has
//! counted every payload byte, so the time covers the whole trip. Criterion reports
//! payload bytes per second (`Throughput::Bytes`; frame headers, record headers and
//! tags are not counted).
//!
//! The group `ceiling` (feature `noise`) measures snow's transport encryption alone, on
//! one core, without sockets: a `TransportState` pair from a whole noise-xx handshake
//! in memory, then `write_message` of 65 519-byte plaintexts into 65 535-byte records,
//! the largest the record layer makes (PROTOCOL.md §3). `ring/64KiB` uses the resolver
//! the crate uses (ring's ChaChaPoly), `default/64KiB` snow's default resolver alone.
//! `<resolver>-seal-open/64KiB` seals and then opens each record (both directions on
//! one core). Throughput is plaintext bytes.
//!
//! Read the results as ratios of throughputs: `p2p/<size>` ÷ `baseline/<size>`, the
//! share of a raw socket's speed the library keeps (targets ≥ 0.5 at 64 B, ≥ 0.85 at
//! 1 KiB and ≥ 0.9 at 64 KiB and 1 MiB), and `noise/64KiB` ÷ `ceiling/ring/64KiB`, the
//! share of the cipher's speed the encrypted stream keeps (target ≥ 0.85). They are
//! measurements, not pass/fail checks.
//!
//! The `noise/*` figures vary from run to run more than the others: the record layer
//! copies each record's bytes once in user space on each side, and a copy
//! whose source and destination sit within a few bytes of the same offset in a 4 KiB
//! page runs many times slower on some CPUs (4K aliasing: glibc's `rep movsb` on AMD
//! Zen). Which buffers land where depends on the heap, and stays the same for a whole
//! connection, so a run is slowed throughout or not at all. To tell this apart from
//! a real change, run again, or with
//! `GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2000000` (copies without
//! `rep movsb`).

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use p2p::{Bytes, Config, Event, Network, PeerId, Security, SendError};

#[cfg(feature = "noise")]
mod common;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Payload sizes, and the payload bytes one iteration moves at each.
const CASES: [(usize, &str, usize); 4] = [
    (64, "64B", 8 * MIB),
    (KIB, "1KiB", 16 * MIB),
    (64 * KIB, "64KiB", 32 * MIB),
    (MIB, "1MiB", 64 * MIB),
];

/// How long a receiver waits in one poll before it looks at the stop flag.
const RECV_POLL: Duration = Duration::from_millis(20);
/// How long a sender waits in one poll for its socket to become writable.
const SEND_POLL: Duration = Duration::from_millis(100);
/// How long an iteration may wait for anything before the bench gives up.
const STALL: Duration = Duration::from_secs(30);

/// Baseline: payloads shorter than this are copied into the write buffer (the library's
/// `COPY_BELOW`); longer ones are written from where they are, beside their header.
const COPY_BELOW: usize = 4 * KIB;
/// Bytes the sender queues before it writes (both the baseline and p2p).
const FILL: usize = 256 * KIB;
/// Baseline: slices handed to one `writev` (the library's `MAX_SLICES`).
const MAX_SLICES: usize = 64;
/// Baseline: the smallest read buffer (the library reads 64 KiB at a time).
const READ_BUF: usize = 64 * KIB;
/// Baseline: bytes of the length prefix.
const LEN: usize = 4;

/// What a receiver thread shares with the bench thread.
#[derive(Default)]
struct Shared {
    /// Payload bytes received so far.
    received: AtomicU64,
    /// Set by the bench thread to end the receiver.
    stop: AtomicBool,
    /// Set by the receiver when its connection is gone.
    failed: AtomicBool,
}

impl Shared {
    /// Waits until the receiver has counted `target` payload bytes.
    fn wait_for(&self, target: u64) {
        let start = Instant::now();
        let mut spins = 0u32;
        while self.received.load(Ordering::Acquire) < target {
            assert!(
                !self.failed.load(Ordering::Acquire),
                "the receiver lost its connection"
            );
            assert!(
                start.elapsed() < STALL,
                "the receiver stalled at {} of {target} bytes",
                self.received.load(Ordering::Acquire)
            );
            if spins < 1000 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }
}

/// A receiver thread; stopped and joined on drop.
struct Receiver {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn spawn(name: &str, run: impl FnOnce(Arc<Shared>) + Send + 'static) -> Receiver {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(theirs))
            .expect("spawn the receiver thread");
        Receiver {
            shared,
            thread: Some(thread),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !thread::panicking()
        {
            panic!("the receiver thread panicked");
        }
    }
}

// ---------------------------------------------------------------------------------------
// p2p
// ---------------------------------------------------------------------------------------

/// A sending `Network` connected to a receiving one that runs on its own thread.
struct P2pRig {
    /// First, so it is stopped before the sender's connection closes under it.
    receiver: Receiver,
    net: Network,
    peer: PeerId,
    events: Vec<Event>,
    payload: Bytes,
    /// Payload bytes sent so far, over all iterations.
    sent: u64,
}

impl P2pRig {
    fn new(size: usize, security: Security) -> P2pRig {
        let config = Config {
            security,
            ..Config::default()
        };
        let mut receiving = Network::new(config.clone()).expect("create the receiving network");
        let addr = receiving
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("listen on loopback");
        let mut net = Network::new(config).expect("create the sending network");
        net.dial(addr).expect("dial the receiving network");

        let receiver_id = receiving.local_id();
        let mut events = Vec::new();
        let (mut sender_up, mut receiver_up) = (false, false);
        let start = Instant::now();
        while !(sender_up && receiver_up) {
            assert!(start.elapsed() < STALL, "the handshake did not finish");
            net.poll(&mut events, Some(Duration::from_millis(1)))
                .expect("poll the sending network");
            for event in &events {
                match event {
                    Event::PeerConnected { peer, .. } if *peer == receiver_id => sender_up = true,
                    Event::DialFailed { reason, .. } => panic!("dial failed: {reason}"),
                    _ => {}
                }
            }
            receiving
                .poll(&mut events, Some(Duration::from_millis(1)))
                .expect("poll the receiving network");
            receiver_up |= events
                .iter()
                .any(|e| matches!(e, Event::PeerConnected { .. }));
        }

        let receiver = Receiver::spawn("p2p-receiver", move |shared| {
            let mut net = receiving;
            let mut events = Vec::new();
            while !shared.stop.load(Ordering::Acquire) {
                net.poll(&mut events, Some(RECV_POLL))
                    .expect("poll the receiving network");
                let mut bytes = 0;
                for event in &events {
                    match event {
                        Event::Message { payload, .. } => bytes += payload.len() as u64,
                        Event::PeerDisconnected { reason, .. } => {
                            eprintln!("p2p receiver: peer disconnected: {reason}");
                            shared.failed.store(true, Ordering::Release);
                        }
                        _ => {}
                    }
                }
                if bytes > 0 {
                    shared.received.fetch_add(bytes, Ordering::Release);
                }
            }
        });

        P2pRig {
            net,
            peer: receiver_id,
            events,
            payload: Bytes::from(vec![0xa5; size]),
            receiver,
            sent: 0,
        }
    }

    /// One poll of the sending network: flushes and waits for the socket at most `timeout`.
    fn poll(&mut self, timeout: Duration) {
        self.net
            .poll(&mut self.events, Some(timeout))
            .expect("poll the sending network");
        for event in &self.events {
            if let Event::PeerDisconnected { reason, .. } = event {
                panic!("the sender lost its peer: {reason}");
            }
        }
    }

    /// Writes what is queued and, if the socket would not take it all, waits until it
    /// takes more. `poll` writes before it waits, so a blocking poll whose write empties
    /// the queue would sleep its whole timeout: the zero-timeout poll comes first, and
    /// the blocking one only when the write stopped at `WouldBlock` (and so registered
    /// for writability).
    fn wait_writable(&mut self) {
        self.poll(Duration::ZERO);
        if self.net.stats().queued_bytes > 0 {
            self.poll(SEND_POLL);
        }
    }

    /// Sends `count` messages and waits until the receiver has counted them all.
    fn run(&mut self, count: usize) {
        let start = Instant::now();
        // Flush every FILL bytes, as the baseline writes, so the receiver works while
        // the sender queues; waiting for `Full` alone would queue a whole iteration
        // (the buffer holds 16 MiB) before the first byte left.
        let batch = (FILL / self.payload.len()).max(1);
        let mut left = count;
        let mut unflushed = 0;
        while left > 0 {
            if unflushed == batch {
                unflushed = 0;
                self.poll(Duration::ZERO);
            }
            match self.net.send(&self.peer, self.payload.clone()) {
                Ok(()) => {
                    left -= 1;
                    unflushed += 1;
                }
                Err(SendError::Full { .. }) => {
                    assert!(start.elapsed() < STALL, "the sender stalled");
                    self.wait_writable();
                }
                Err(e) => panic!("send failed: {e}"),
            }
        }
        self.poll(Duration::ZERO);
        while self.net.stats().queued_bytes > 0 {
            assert!(start.elapsed() < STALL, "the sender stalled");
            self.poll(SEND_POLL);
        }
        self.sent += (count * self.payload.len()) as u64;
        self.receiver.shared.wait_for(self.sent);
    }
}

// ---------------------------------------------------------------------------------------
// Raw mio baseline
// ---------------------------------------------------------------------------------------

/// A connected pair of nonblocking loopback streams with `TCP_NODELAY`, like the library's.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener =
        std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let dialled = std::net::TcpStream::connect(addr).expect("connect on loopback");
    let (accepted, _) = listener.accept().expect("accept on loopback");
    let prepare = |s: std::net::TcpStream| {
        s.set_nodelay(true).expect("set TCP_NODELAY");
        s.set_nonblocking(true).expect("set nonblocking");
        TcpStream::from_std(s)
    };
    (prepare(dialled), prepare(accepted))
}

fn io_failed(what: &str, e: io::Error) -> ! {
    panic!("baseline {what} failed: {e}")
}

/// The receiving half: reads into a reused buffer, parses length prefixes until
/// `WouldBlock`, and counts the payload bytes of every complete frame.
fn baseline_receive(mut stream: TcpStream, size: usize, shared: Arc<Shared>) {
    let mut poll = Poll::new().expect("create a mio poll");
    poll.registry()
        .register(&mut stream, Token(0), Interest::READABLE)
        .expect("register the receiving stream");
    let mut events = Events::with_capacity(16);
    // Room for two whole frames, so a frame split by a read rarely forces a move.
    let mut buf = vec![0u8; 2 * READ_BUF.max(LEN + size)];
    let (mut start, mut end) = (0, 0);
    while !shared.stop.load(Ordering::Acquire) {
        match poll.poll(&mut events, Some(RECV_POLL)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => io_failed("poll", e),
        }
        let mut bytes = 0;
        loop {
            if start == end {
                (start, end) = (0, 0);
            } else if buf.len() - end < READ_BUF.min(buf.len() / 2) {
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            }
            match stream.read(&mut buf[end..]) {
                Ok(0) => {
                    eprintln!("baseline receiver: the sender closed the stream");
                    shared.failed.store(true, Ordering::Release);
                    return;
                }
                Ok(n) => end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => io_failed("read", e),
            }
            while end - start >= LEN {
                let prefix: [u8; LEN] = buf[start..start + LEN].try_into().expect("4 bytes");
                let len = u32::from_be_bytes(prefix) as usize;
                if end - start < LEN + len {
                    break;
                }
                bytes += len as u64;
                start += LEN + len;
            }
        }
        if bytes > 0 {
            shared.received.fetch_add(bytes, Ordering::Release);
        }
    }
}

/// The sending half of the baseline, with its receiver thread.
struct BaselineRig {
    /// First, so it is stopped before the sender's stream closes under it.
    receiver: Receiver,
    stream: TcpStream,
    poll: Poll,
    events: Events,
    payload: Vec<u8>,
    out: Vec<u8>,
    /// Payload bytes sent so far, over all iterations.
    sent: u64,
}

impl BaselineRig {
    fn new(size: usize) -> BaselineRig {
        let (mut stream, accepted) = tcp_pair();
        let poll = Poll::new().expect("create a mio poll");
        poll.registry()
            .register(&mut stream, Token(0), Interest::WRITABLE)
            .expect("register the sending stream");
        let receiver = Receiver::spawn("baseline-receiver", move |shared| {
            baseline_receive(accepted, size, shared)
        });
        BaselineRig {
            stream,
            poll,
            events: Events::with_capacity(16),
            payload: vec![0xa5; size],
            out: Vec::with_capacity(2 * FILL),
            receiver,
            sent: 0,
        }
    }

    /// Blocks until the socket is writable again (after a `WouldBlock`).
    fn wait_writable(&mut self, start: Instant) {
        assert!(start.elapsed() < STALL, "the baseline sender stalled");
        match self.poll.poll(&mut self.events, Some(SEND_POLL)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => io_failed("poll", e),
        }
    }

    /// Small payloads: frames are copied into one buffer, written until `WouldBlock`.
    fn send_copied(&mut self, count: usize, start: Instant) {
        let header = (self.payload.len() as u32).to_be_bytes();
        let mut left = count;
        let mut pos = 0;
        self.out.clear();
        loop {
            if pos == self.out.len() {
                self.out.clear();
                pos = 0;
            } else if pos >= FILL {
                self.out.drain(..pos);
                pos = 0;
            }
            while left > 0 && self.out.len() - pos < FILL {
                self.out.extend_from_slice(&header);
                self.out.extend_from_slice(&self.payload);
                left -= 1;
            }
            if pos == self.out.len() {
                return;
            }
            match self.stream.write(&self.out[pos..]) {
                Ok(0) => io_failed("write", io::ErrorKind::WriteZero.into()),
                Ok(n) => pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable(start),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => io_failed("write", e),
            }
        }
    }

    /// Large payloads: each is written from where it is, beside its header, with `writev`.
    fn send_vectored(&mut self, count: usize, start: Instant) {
        let header = (self.payload.len() as u32).to_be_bytes();
        let frame = LEN + self.payload.len();
        let total = count * frame;
        let mut done = 0;
        while done < total {
            let (index, offset) = (done / frame, done % frame);
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut n = 0;
            if offset < LEN {
                slices[0] = IoSlice::new(&header[offset..]);
                slices[1] = IoSlice::new(&self.payload);
                n += 2;
            } else {
                slices[0] = IoSlice::new(&self.payload[offset - LEN..]);
                n += 1;
            }
            let mut next = index + 1;
            while next < count && n + 2 <= MAX_SLICES {
                slices[n] = IoSlice::new(&header);
                slices[n + 1] = IoSlice::new(&self.payload);
                n += 2;
                next += 1;
            }
            match self.stream.write_vectored(&slices[..n]) {
                Ok(0) => io_failed("write", io::ErrorKind::WriteZero.into()),
                Ok(written) => done += written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable(start),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => io_failed("write", e),
            }
        }
    }

    /// Sends `count` frames and waits until the receiver has counted them all.
    fn run(&mut self, count: usize) {
        let start = Instant::now();
        if self.payload.len() < COPY_BELOW {
            self.send_copied(count, start);
        } else {
            self.send_vectored(count, start);
        }
        self.sent += (count * self.payload.len()) as u64;
        self.receiver.shared.wait_for(self.sent);
    }
}

// ---------------------------------------------------------------------------------------
// Criterion
// ---------------------------------------------------------------------------------------

/// Times `iters` runs of `run`.
fn timed(iters: u64, mut run: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        run();
    }
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    for (size, label, per_iter) in CASES {
        let count = per_iter / size;
        group.throughput(Throughput::Bytes((count * size) as u64));

        let mut rig = P2pRig::new(size, Security::Plaintext);
        group.bench_function(format!("p2p/{label}"), |b| {
            b.iter_custom(|iters| timed(iters, || rig.run(count)))
        });
        drop(rig);

        #[cfg(feature = "noise")]
        {
            let mut rig = P2pRig::new(size, Security::NoiseXx);
            group.bench_function(format!("noise/{label}"), |b| {
                b.iter_custom(|iters| timed(iters, || rig.run(count)))
            });
            drop(rig);
        }

        let mut rig = BaselineRig::new(size);
        group.bench_function(format!("baseline/{label}"), |b| {
            b.iter_custom(|iters| timed(iters, || rig.run(count)))
        });
        drop(rig);
    }
    group.finish();
}

/// The largest record body (a u16 length).
#[cfg(feature = "noise")]
const RECORD: usize = u16::MAX as usize;
/// The AEAD tag each record carries.
#[cfg(feature = "noise")]
const TAG: usize = 16;
/// The most plaintext one record carries: 65 519 bytes.
#[cfg(feature = "noise")]
const RECORD_PLAINTEXT: usize = RECORD - TAG;

/// snow's transport encryption alone, one 65 519-byte plaintext per iteration.
#[cfg(feature = "noise")]
fn ceiling(c: &mut Criterion) {
    use common::Resolver;
    use std::hint::black_box;

    let mut group = c.benchmark_group("ceiling");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(RECORD_PLAINTEXT as u64));
    // One arena, each buffer on its own 4 KiB boundary plus 0, 1 or 2 KiB. Buffers
    // allocated one after the other can sit a few bytes past a multiple of 4 KiB from
    // each other, and a copy between them (snow copies the plaintext into the record
    // before sealing it in place) then runs many times slower (4K aliasing; glibc's
    // `rep movsb` on AMD): that would measure the allocator rather than the cipher.
    const SLOT: usize = 80 * KIB;
    let mut arena = vec![0u8; 3 * SLOT + 4 * KIB];
    let skip = arena.as_ptr().align_offset(4 * KIB);
    let (plaintext, rest) = arena[skip..].split_at_mut(SLOT);
    let (record, opened) = rest.split_at_mut(SLOT);
    let plaintext = &mut plaintext[..RECORD_PLAINTEXT];
    plaintext.fill(0xa5);
    let plaintext = &*plaintext;
    let record = &mut record[KIB..KIB + RECORD];
    let opened = &mut opened[2 * KIB..2 * KIB + RECORD];
    let pair = |resolver: Resolver| {
        let (i, r) = (common::keypair(), common::keypair());
        common::handshake(resolver, &i, &r)
    };

    for resolver in [Resolver::Ring, Resolver::Default] {
        let (mut sealing, _) = pair(resolver);
        group.bench_function(format!("{}/64KiB", resolver.label()), |b| {
            b.iter(|| {
                sealing
                    .write_message(black_box(plaintext), record)
                    .expect("seal a record")
            })
        });
    }
    for resolver in [Resolver::Ring, Resolver::Default] {
        let (mut sealing, mut opening) = pair(resolver);
        group.bench_function(format!("{}-seal-open/64KiB", resolver.label()), |b| {
            b.iter(|| {
                let n = sealing
                    .write_message(black_box(plaintext), record)
                    .expect("seal a record");
                opening
                    .read_message(&record[..n], opened)
                    .expect("open a record")
            })
        });
    }
    group.finish();
}

#[cfg(not(feature = "noise"))]
fn ceiling(_: &mut Criterion) {}

criterion_group!(benches, ceiling, throughput);
criterion_main!(benches);
