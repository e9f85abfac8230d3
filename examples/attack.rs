//! One hostile-peer attack against a node on loopback, with honest peers served beside
//! it, and what it cost: the figures of issue 10, rerunnable by anyone.
//!
//! ```text
//! cargo run --release --example attack -- ATTACK [--seconds S]
//! ```
//!
//! The victim `Network` and three honest `Network`s run in this thread: one honest node
//! broadcasts every 10 ms through the victim to the other two, and every half second a
//! new honest node dials the victim and the victim dials another. The attacker runs on
//! a thread of its own with raw sockets bound to 127.0.0.2 and up, so it plays other
//! hosts; everything stays on loopback and ends after `--seconds` (default 10).
//!
//! Attacks: `none` (the baseline), `slots` (silent connections, reopened as they
//! close), `pinning` (small GOSSIP relayed to a peer that never reads; the victim's
//! gossip rate limit is lifted so the payload memory alone is measured),
//! `non-readers` (20 peers that send PINGs and never read), `trickle` (100 frames one
//! byte short of the largest size, then silence), `gossip-flood` (one peer sends fresh
//! ids as fast as it can, after one id it sends again at the end), `handshake-flood`
//! (noise: a preamble and 32 random bytes as a first handshake message, again and
//! again) and `shutdown` (15 MiB queued for a slow reader, then `shutdown()`).
//!
//! The last line is a summary such as
//!
//! ```text
//! attack=non-readers seconds=10 rss_base_mib=.. rss_max_mib=.. honest_delivered=1998/2000 p99_ms=.. dials_in=20/20 dials_out=20/20 cpu_share=.. stats: connections=.. ...
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p::wire::{Frame, Preamble};
use p2p::{Config, Event, Network, PeerId, Security, Stats};
use socket2::{Domain, Socket, Type};

const ATTACKS: [&str; 8] = [
    "none",
    "slots",
    "pinning",
    "non-readers",
    "trickle",
    "gossip-flood",
    "handshake-flood",
    "shutdown",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(attack) = args.first().cloned() else {
        eprintln!("usage: attack ATTACK [--seconds S]; attacks: {ATTACKS:?}");
        return ExitCode::from(2);
    };
    let mut seconds = 10u64;
    if let Some(i) = args.iter().position(|a| a == "--seconds") {
        match args.get(i + 1).and_then(|s| s.parse().ok()) {
            Some(s) => seconds = s,
            None => {
                eprintln!("--seconds needs a number");
                return ExitCode::from(2);
            }
        }
    }
    if !ATTACKS.contains(&attack.as_str()) {
        eprintln!("unknown attack {attack:?}; attacks: {ATTACKS:?}");
        return ExitCode::from(2);
    }
    match run(&attack, Duration::from_secs(seconds)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("attack {attack}: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The system allocator, counting the bytes allocated and not freed, so RSS can be
/// told apart from live heap (what the caps bound) and from what the allocator holds.
struct Counting;

static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter
// is kept beside it.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as u64, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn security(attack: &str) -> Security {
    if attack == "handshake-flood" || attack == "none" {
        Security::NoiseXx
    } else {
        Security::Plaintext
    }
}

fn victim_config(attack: &str) -> Config {
    let mut config = Config {
        security: security(attack),
        ..Config::default()
    };
    if attack == "pinning" {
        // Measure what relayed payloads hold, not the rate limit in front of them.
        config.max_gossip_rate = u32::MAX;
    }
    if attack == "shutdown" {
        config.close_timeout = Duration::from_secs(2);
    }
    config
}

fn honest_config(attack: &str) -> Config {
    let mut config = Config {
        security: security(attack),
        ..Config::default()
    };
    if attack == "pinning" {
        // The victim relays all it gets here; its neighbours take it all too.
        config.max_gossip_rate = u32::MAX;
    }
    config
}

/// The process's resident set size in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// CPU time this thread has used, in clock ticks (1/100 s on Linux).
fn thread_cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0;
    };
    // Fields after the command name, which ends with ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(11) + tick(12)
}

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A TCP connection to `addr` from `source`, with a small receive buffer if asked.
fn connect_from(
    source: IpAddr,
    addr: SocketAddr,
    rcvbuf: Option<usize>,
) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(1))?;
    Ok(socket.into())
}

/// A frame's length field and kind.
const LEN_HEAD: usize = 5;

fn frame(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.to_vec()
}

fn random_id() -> PeerId {
    let mut id = [0u8; 32];
    let _ = getrandom::fill(&mut id);
    PeerId::from_bytes(id)
}

/// A plaintext peer from `source`: preamble and claimed id sent, the victim's hello
/// read.
fn plaintext_peer(
    source: IpAddr,
    addr: SocketAddr,
    rcvbuf: Option<usize>,
) -> std::io::Result<TcpStream> {
    let mut tcp = connect_from(source, addr, rcvbuf)?;
    tcp.set_nodelay(true)?;
    let mut hello = Preamble::new(Security::Plaintext, 1).encode().to_vec();
    hello.extend_from_slice(random_id().as_bytes());
    tcp.write_all(&hello)?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut theirs = [0u8; 44];
    tcp.read_exact(&mut theirs)?;
    Ok(tcp)
}

/// Writes what the socket takes now; false once it failed for good.
fn write_some(tcp: &mut TcpStream, bytes: &[u8], at: &mut usize) -> bool {
    while *at < bytes.len() {
        match tcp.write(&bytes[*at..]) {
            Ok(0) => return false,
            Ok(n) => *at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// What the attacker thread reports.
#[derive(Default)]
struct Attacker {
    /// Connections it opened.
    opened: AtomicU64,
    /// Frames or messages it sent.
    sent: AtomicU64,
}

fn attacker(
    attack: &str,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    report: Arc<Attacker>,
) -> Res<()> {
    let running = || !stop.load(Ordering::Relaxed);
    match attack {
        "slots" => {
            let mut open: Vec<TcpStream> = Vec::new();
            while running() {
                // Those the victim closed are opened again.
                open.retain(|tcp| {
                    let mut b = [0u8; 64];
                    match (&*tcp).read(&mut b) {
                        Ok(0) => false,
                        Ok(_) => true,
                        Err(e) => e.kind() == ErrorKind::WouldBlock,
                    }
                });
                while open.len() < 200 && running() {
                    let n = 2 + (open.len() % 4) as u8;
                    match connect_from(host(n), addr, None) {
                        Ok(tcp) => {
                            tcp.set_nonblocking(true)?;
                            report.opened.fetch_add(1, Ordering::Relaxed);
                            open.push(tcp);
                        }
                        Err(_) => break,
                    }
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        "pinning" => {
            let reader = plaintext_peer(host(3), addr, Some(4096))?;
            let mut tcp = plaintext_peer(host(2), addr, None)?;
            tcp.set_read_timeout(None)?;
            tcp.set_write_timeout(Some(Duration::from_millis(200)))?;
            // Large gossips first fill the kernel's buffers towards the reader, so the
            // small ones after them wait in the victim's queue.
            for _ in 0..16 {
                let mut id = [0u8; 16];
                let _ = getrandom::fill(&mut id);
                let big = Frame::Gossip {
                    id,
                    hops: 2,
                    payload: vec![0u8; 1 << 20].into(),
                };
                tcp.write_all(&frame(&big))?;
            }
            // One small frame per read of the victim: each read chunk it arrives in
            // is kept alive by what holds the payload.
            for k in 0..5_000u64 {
                if !running() {
                    break;
                }
                let mut id = [0u8; 16];
                let _ = getrandom::fill(&mut id);
                let gossip = Frame::Gossip {
                    id,
                    hops: 2,
                    payload: vec![7u8; 27].into(),
                };
                if tcp.write_all(&frame(&gossip)).is_err() {
                    break;
                }
                report.sent.store(k + 1, Ordering::Relaxed);
                thread::sleep(Duration::from_micros(500));
            }
            while running() {
                thread::sleep(Duration::from_millis(10));
            }
            drop(reader);
        }
        "non-readers" => {
            let mut peers = Vec::new();
            for i in 0..20u8 {
                let tcp = plaintext_peer(host(10 + i), addr, Some(4096))?;
                tcp.set_nonblocking(true)?;
                peers.push((tcp, 0usize));
                report.opened.fetch_add(1, Ordering::Relaxed);
            }
            let mut pings = Vec::new();
            for n in 0..4096u64 {
                pings.extend(frame(&Frame::Ping(n)));
            }
            while running() {
                for (tcp, at) in &mut peers {
                    if *at >= pings.len() {
                        *at = 0;
                    }
                    if write_some(tcp, &pings, at) {
                        report.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        "trickle" => {
            let max = Config::default().max_frame_size;
            let mut head = Vec::new();
            head.extend_from_slice(&((max + 1) as u32).to_be_bytes());
            head.push(0x10);
            // One frame, one byte short, shared by every connection.
            let mut bytes = head;
            bytes.resize(LEN_HEAD + max - 1, 0);
            let mut peers = Vec::new();
            for i in 0..100usize {
                // One address each, as a botnet would: one address holds few.
                let tcp = plaintext_peer(host(2 + i as u8), addr, None)?;
                tcp.set_nonblocking(true)?;
                peers.push((tcp, 0usize));
                report.opened.fetch_add(1, Ordering::Relaxed);
            }
            while running() {
                for (tcp, at) in &mut peers {
                    if write_some(tcp, &bytes, at) && *at < bytes.len() {
                        report.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        "gossip-flood" => {
            let mut tcp = plaintext_peer(host(2), addr, None)?;
            tcp.set_read_timeout(None)?;
            tcp.set_write_timeout(Some(Duration::from_millis(200)))?;
            let old = [0xA5u8; 16];
            let _ = tcp.write_all(&frame(&Frame::Gossip {
                id: old,
                hops: 2,
                payload: b"old".to_vec().into(),
            }));
            let mut batch = Vec::with_capacity(64 * 1024);
            let mut k: u64 = 0;
            let flood_until = Instant::now() + Duration::from_secs(4);
            while running() && Instant::now() < flood_until {
                batch.clear();
                while batch.len() < 60 * 1024 {
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&k.to_be_bytes());
                    id[8] = 0xF1;
                    batch.extend(frame(&Frame::Gossip {
                        id,
                        hops: 2,
                        payload: b"flood".to_vec().into(),
                    }));
                    k += 1;
                }
                if tcp.write_all(&batch).is_err() && !running() {
                    break;
                }
                report.sent.store(k, Ordering::Relaxed);
            }
            // The old id again: delivered a second time if the flood flushed it.
            let _ = tcp.write_all(&frame(&Frame::Gossip {
                id: old,
                hops: 2,
                payload: b"old".to_vec().into(),
            }));
            while running() {
                thread::sleep(Duration::from_millis(10));
            }
        }
        "handshake-flood" => {
            let mut preamble = Preamble::new(Security::NoiseXx, 1).encode().to_vec();
            preamble.extend_from_slice(&32u16.to_be_bytes());
            let mut junk = [0u8; 32];
            while running() {
                let _ = getrandom::fill(&mut junk);
                let Ok(mut tcp) = connect_from(host(2), addr, None) else {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                };
                report.opened.fetch_add(1, Ordering::Relaxed);
                let mut first = preamble.clone();
                first.extend_from_slice(&junk);
                let _ = tcp.write_all(&first);
                drop(tcp);
            }
        }
        _ => {
            while running() {
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(())
}

/// Polls every node once (the first waits at most 1 ms, so an idle loop does not spin
/// and the thread's CPU time is work); returns their events, tagged.
fn turn(nets: &mut [&mut Network], out: &mut Vec<(usize, Event)>) -> Res<()> {
    let mut events = Vec::new();
    for (i, net) in nets.iter_mut().enumerate() {
        let wait = if i == 0 {
            Duration::from_millis(1)
        } else {
            Duration::ZERO
        };
        net.poll(&mut events, Some(wait))?;
        out.extend(events.drain(..).map(|e| (i, e)));
    }
    Ok(())
}

fn stats_words(s: &Stats) -> String {
    format!(
        "connections={} handshaking={} peers={} queued_bytes={} buffered_bytes={} gossip_ids={} dropped_sends={} rate_limited={} refused_inbound={} rate_limited_accepts={} evicted_handshakes={} failed_handshakes={} read_paused={} unflushed_bytes={}",
        s.connections,
        s.handshaking,
        s.peers,
        s.queued_bytes,
        s.buffered_bytes,
        s.gossip_ids,
        s.totals.dropped_sends,
        s.totals.rate_limited,
        s.refused_inbound,
        s.rate_limited_accepts,
        s.evicted_handshakes,
        s.failed_handshakes,
        s.read_paused,
        s.unflushed_bytes,
    )
}

/// Connects `a` to `b`, stepping both; false if it did not happen within 5 s.
fn connect(a: &mut Network, b: &mut Network, b_addr: SocketAddr) -> Res<bool> {
    a.dial(b_addr)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = Vec::new();
    while Instant::now() < deadline {
        turn(&mut [a, b], &mut log)?;
        if log
            .iter()
            .any(|(i, e)| *i == 0 && matches!(e, Event::PeerConnected { .. }))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A new honest node trying to connect to the victim (dialling it, or dialled by it).
struct Newcomer {
    net: Network,
    addr: SocketAddr,
    inbound: bool,
    deadline: Instant,
    done: bool,
}

fn run(attack: &str, duration: Duration) -> Res<String> {
    let mut victim = Network::new(victim_config(attack))?;
    let victim_addr = victim.listen("127.0.0.1:0".parse()?)?;
    let mut sender = Network::new(honest_config(attack))?;
    let mut receivers = [
        Network::new(honest_config(attack))?,
        Network::new(honest_config(attack))?,
    ];
    if !connect(&mut sender, &mut victim, victim_addr)? {
        return Err("the honest sender could not connect".into());
    }
    for r in &mut receivers {
        if !connect(r, &mut victim, victim_addr)? {
            return Err("an honest receiver could not connect".into());
        }
    }
    let epoch = Instant::now();
    let rss_base = rss();
    let mut rss_max = rss_base;
    let mut heap_max = LIVE.load(Ordering::Relaxed);

    // The shutdown attack is a queue, a slow reader, and the truth at the end.
    if attack == "shutdown" {
        return shutdown_run(victim, victim_addr);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(Attacker::default());
    let thread = {
        let (stop, report, attack) = (stop.clone(), report.clone(), attack.to_string());
        thread::spawn(move || {
            if let Err(e) = attacker(&attack, victim_addr, stop, report) {
                eprintln!("attacker: {e}");
            }
        })
    };

    let cpu_start = thread_cpu_ticks();
    let start = Instant::now();
    let mut log = Vec::new();
    let mut sent = 0u64;
    let mut next_broadcast = start;
    let mut latencies: Vec<f64> = Vec::new();
    let mut got = 0u64;
    let mut newcomers: Vec<Newcomer> = Vec::new();
    let mut next_newcomer = start + Duration::from_millis(500);
    let (mut dials_in, mut dials_in_ok, mut dials_out, mut dials_out_ok) = (0, 0, 0, 0);
    let mut old_delivered = 0u64;
    let mut flood_delivered = 0u64;
    let end = start + duration;
    let mut sample = start;
    let mut at_end: Option<Stats> = None;
    let mut peak = Stats::default();
    while Instant::now() < end + Duration::from_secs(1) {
        let now = Instant::now();
        if now < end && now >= next_broadcast {
            let mut payload = (now - epoch).as_nanos().to_be_bytes()[8..].to_vec();
            payload.extend_from_slice(&sent.to_be_bytes());
            if sender.broadcast(payload).is_ok() {
                sent += 1;
            }
            next_broadcast += Duration::from_millis(10);
        }
        if now < end && now >= next_newcomer {
            next_newcomer += Duration::from_millis(500);
            let mut net = Network::new(honest_config(attack))?;
            let addr = net.listen("127.0.0.1:0".parse()?)?;
            let inbound = dials_in <= dials_out;
            if inbound {
                dials_in += 1;
                net.dial(victim_addr)?;
            } else {
                dials_out += 1;
                if victim.dial(addr).is_err() {
                    // Refused at once: counted as a failed dial.
                    continue;
                }
            }
            newcomers.push(Newcomer {
                net,
                addr,
                inbound,
                deadline: now + Duration::from_secs(3),
                done: false,
            });
        }
        {
            let [r0, r1] = &mut receivers;
            turn(&mut [&mut victim, &mut sender, r0, r1], &mut log)?;
        }
        for (i, event) in log.drain(..) {
            // The receivers' deliveries (the sender, node 1, delivers nothing of its own).
            if let (2 | 3, Event::Broadcast { payload, .. }) = (i, &event) {
                if &payload[..] == b"old" {
                    old_delivered += 1;
                } else if &payload[..] == b"flood" {
                    flood_delivered += 1;
                } else if payload.len() == 16 {
                    let mut at = [0u8; 16];
                    at[8..].copy_from_slice(&payload[..8]);
                    let at = Duration::from_nanos(u128::from_be_bytes(at) as u64);
                    latencies.push((Instant::now() - epoch).saturating_sub(at).as_secs_f64() * 1e3);
                    got += 1;
                }
            }
            if i == 0
                && let Event::PeerConnected { addr, .. } = event
            {
                for n in newcomers.iter_mut().filter(|n| !n.done) {
                    if !n.inbound && n.addr == addr {
                        n.done = true;
                        dials_out_ok += 1;
                    }
                }
            }
        }
        let mut events = Vec::new();
        for n in newcomers.iter_mut().filter(|n| !n.done) {
            n.net.poll(&mut events, Some(Duration::ZERO))?;
            if n.inbound
                && events
                    .iter()
                    .any(|e| matches!(e, Event::PeerConnected { .. }))
            {
                n.done = true;
                dials_in_ok += 1;
            }
            events.clear();
        }
        newcomers.retain(|n| !n.done && n.deadline > Instant::now());
        if Instant::now() >= sample {
            sample += Duration::from_millis(100);
            rss_max = rss_max.max(rss());
            heap_max = heap_max.max(LIVE.load(Ordering::Relaxed));
            let s = victim.stats();
            peak.connections = peak.connections.max(s.connections);
            peak.handshaking = peak.handshaking.max(s.handshaking);
            peak.queued_bytes = peak.queued_bytes.max(s.queued_bytes);
            peak.buffered_bytes = peak.buffered_bytes.max(s.buffered_bytes);
            peak.gossip_ids = peak.gossip_ids.max(s.gossip_ids);
            peak.read_paused = peak.read_paused.max(s.read_paused);
        }
        if Instant::now() >= end && at_end.is_none() {
            // What the attack left, before its sockets close.
            at_end = Some(victim.stats());
            stop.store(true, Ordering::Relaxed);
        }
    }
    let cpu = thread_cpu_ticks().saturating_sub(cpu_start) as f64 / 100.0;
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN);
    let elapsed = start.elapsed().as_secs_f64();
    let stats = at_end.unwrap_or_else(|| victim.stats());
    let mut extra = String::new();
    if attack == "gossip-flood" {
        extra = format!(
            " flood_sent={} flood_delivered_per_receiver={} old_delivered_per_receiver={}",
            report.sent.load(Ordering::Relaxed),
            flood_delivered / 2,
            old_delivered as f64 / 2.0
        );
    }
    if attack == "handshake-flood" {
        extra = format!(
            " attacker_connects={} handshake_starts_per_s={:.0}",
            report.opened.load(Ordering::Relaxed),
            (stats.failed_handshakes as f64) / duration.as_secs_f64()
        );
    }
    if attack == "pinning" {
        extra = format!(" gossip_sent={}", report.sent.load(Ordering::Relaxed));
    }
    Ok(format!(
        "attack={attack} seconds={} rss_base_mib={:.1} rss_max_mib={:.1} heap_max_mib={:.1} honest_delivered={got}/{} p99_ms={p99:.2} dials_in={dials_in_ok}/{dials_in} dials_out={dials_out_ok}/{dials_out} cpu_share={:.2}{extra} peak: connections={} handshaking={} queued_bytes={} buffered_bytes={} gossip_ids={} read_paused={} at_end: {}",
        duration.as_secs(),
        rss_base as f64 / 1048576.0,
        rss_max as f64 / 1048576.0,
        heap_max as f64 / 1048576.0,
        sent * 2,
        cpu / elapsed,
        peak.connections,
        peak.handshaking,
        peak.queued_bytes,
        peak.buffered_bytes,
        peak.gossip_ids,
        peak.read_paused,
        stats_words(&stats),
    ))
}

/// 15 MiB queued for a peer that reads 1 MiB a second, then `shutdown()`: what the
/// node says was lost.
fn shutdown_run(mut victim: Network, victim_addr: SocketAddr) -> Res<String> {
    let mut slow = connect_from(host(2), victim_addr, Some(64 * 1024))?;
    let mut hello = Preamble::new(Security::Plaintext, 1).encode().to_vec();
    hello.extend_from_slice(random_id().as_bytes());
    slow.write_all(&hello)?;
    slow.set_nonblocking(true)?;
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut peer = None;
    while peer.is_none() && Instant::now() < deadline {
        turn(&mut [&mut victim], &mut log)?;
        for (_, e) in log.drain(..) {
            if let Event::PeerConnected { peer: p, addr, .. } = e
                && addr.ip() == host(2)
            {
                peer = Some(p);
            }
        }
    }
    let peer = peer.ok_or("the slow peer did not connect")?;
    let mut queued = 0usize;
    // 15 MiB: as much as one peer's default queue takes.
    for _ in 0..15 {
        victim.send(&peer, vec![1u8; 1 << 20])?;
        queued += 1 << 20;
    }
    victim.shutdown();
    let mut read = 0usize;
    let mut unflushed = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    let start = Instant::now();
    while !victim.is_shut_down() && start.elapsed() < Duration::from_secs(10) {
        turn(&mut [&mut victim], &mut log)?;
        for (_, e) in log.drain(..) {
            if let Event::Unflushed { bytes, .. } = e {
                unflushed += bytes;
            }
        }
        // About 1 MiB a second.
        if read < (start.elapsed().as_millis() as usize) * 1024 {
            match (&slow).read(&mut buf) {
                Ok(n) => read += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(format!(
        "attack=shutdown queued={queued} read_by_peer={read} unflushed_event_bytes={unflushed} shut_down={} stats: {}",
        victim.is_shut_down(),
        stats_words(&victim.stats())
    ))
}
