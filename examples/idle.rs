//! What an idle connection costs: a server `Network` accepts N connections that then
//! send nothing, and prints the growth of its resident set size per connection.
//!
//! ```text
//! cargo run --release --example idle -- [--connections 10000] [--noise] [--message 60000]
//! ```
//!
//! Each client first sends one MESSAGE of `--message` bytes (0: none), the traffic an
//! idle connection has seen before it fell idle; the figure is taken once the server
//! has received them all.
//! The clients run in child processes (this program again, with `--client`), so their
//! memory does not count, and in several of them: each client is a `Network` of its
//! own, three file descriptors, and a process may have 20,000 on the machines this
//! was written for. The server raises its connection limits for the run and its
//! keepalive to ten minutes, so nothing but the handshakes moves. The last stdout line
//! gives the figure: the RSS growth per connection as it is, allocator slack
//! included, and once the allocator has returned its free pages (`malloc_trim`), which
//! is what the connections themselves hold.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use p2p::{Config, Event, Network, Security};

/// Clients per child process: three descriptors each (epoll, waker, socket).
const CLIENTS_PER_CHILD: usize = 4000;
/// Dials a client process has under way at once.
const IN_FLIGHT: usize = 100;
/// How long establishing every connection may take before the run is called stuck.
const STALL: Duration = Duration::from_secs(90);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut connections, mut security, mut client) = (10_000usize, Security::Plaintext, None);
    let mut message = 60_000usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connections" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => connections = n,
                None => return usage("--connections takes a number"),
            },
            "--message" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => message = n,
                None => return usage("--message takes a number"),
            },
            "--noise" => security = Security::NoiseXx,
            "--client" => match args.next().and_then(|v| v.parse::<SocketAddr>().ok()) {
                Some(addr) => client = Some(addr),
                None => return usage("--client takes an address"),
            },
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    raise_fd_limit();
    let result = match client {
        Some(server) => run_clients(server, connections, security, message),
        None => run_server(connections, security, message),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("{problem}\nusage: idle [--connections N] [--noise] [--message BYTES]");
    ExitCode::FAILURE
}

/// Idle on both sides: no PING for the length of the run; and thousands of
/// handshakes at once on a loaded machine must not time out.
fn quiet(config: Config) -> Config {
    Config {
        preamble_timeout: Duration::from_secs(60),
        handshake_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(60),
        ping_interval: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(1800),
        ..config
    }
}

fn run_server(connections: usize, security: Security, message: usize) -> Result<(), String> {
    let config = quiet(Config {
        security,
        max_inbound: connections,
        // Every client dials from 127.0.0.1.
        max_inbound_per_ip: connections,
        max_pending_handshakes: connections,
        max_pending_handshakes_per_ip: connections,
        handshake_rate_per_ip: u32::MAX,
        // The kernel caps it (Linux at net.core.somaxconn, 4096 by default).
        listen_backlog: u32::try_from(connections).unwrap_or(u32::MAX),
        ..Config::default()
    });
    let mut server = Network::new(config).map_err(|e| format!("server: {e}"))?;
    let addr = server
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("listen: {e}"))?;
    let mut events = Vec::new();
    // A first turn, so the baseline holds what any running server holds.
    server
        .poll(&mut events, Some(Duration::ZERO))
        .map_err(|e| e.to_string())?;
    let before = rss_kib();
    let mut children = Vec::new();
    let mut left = connections;
    while left > 0 {
        let count = left.min(CLIENTS_PER_CHILD);
        left -= count;
        children.push(spawn_client(addr, count, security, message)?);
    }
    let start = Instant::now();
    let mut received = 0;
    let established = |server: &Network, received: usize| {
        let stats = server.stats();
        stats.peers == connections && stats.handshaking == 0 && received == connections * message
    };
    while !established(&server, received) {
        if start.elapsed() > STALL {
            return Err(format!(
                "{connections} connections not established after {STALL:?}: {:?}",
                server.stats()
            ));
        }
        server
            .poll(&mut events, Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        for event in &events {
            if let Event::Message { payload, .. } = event {
                received += payload.len();
            }
        }
        events.retain(|e| matches!(e, Event::PeerDisconnected { .. }));
        if let Some(Event::PeerDisconnected { reason, .. }) = events.first() {
            return Err(format!("a client disconnected: {reason:?}"));
        }
    }
    let took = start.elapsed();
    // Every child reports once all its clients have seen the handshake end, so the
    // last handshake bytes have been read by now; a few turns for what is in flight.
    for child in &mut children {
        wait_ready(child)?;
    }
    for _ in 0..10 {
        server
            .poll(&mut events, Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
    }
    let after = rss_kib();
    // What the connections hold, without the free heap the allocator kept from the
    // busiest moment (the messages arriving all at once).
    let trimmed = return_free_heap().then(rss_kib);
    let peers = server.stats().peers;
    for mut child in children {
        // Closing its stdin tells a child to exit.
        drop(child.stdin.take());
        let _ = child.wait();
    }
    let per = |rss: u64| rss.saturating_sub(before) as f64 / peers as f64;
    let trimmed = trimmed.map_or("unknown".to_string(), |rss| format!("{:.2}KiB", per(rss)));
    println!(
        "idle: security={security:?} connections={peers} message={message} established_in={:.1}s rss_before={before}KiB rss_after={after}KiB per_connection={:.2}KiB per_connection_after_trim={trimmed}",
        took.as_secs_f64(),
        per(after),
    );
    Ok(())
}

fn spawn_client(
    server: SocketAddr,
    count: usize,
    security: Security,
    message: usize,
) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.args([
        "--client",
        &server.to_string(),
        "--connections",
        &count.to_string(),
    ]);
    command.args(["--message", &message.to_string()]);
    if security == Security::NoiseXx {
        command.arg("--noise");
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn a client process: {e}"))
}

/// Waits for the child's line saying all its clients are connected.
fn wait_ready(child: &mut Child) -> Result<(), String> {
    let stdout = child.stdout.take().ok_or("no client stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() == "ready" {
        Ok(())
    } else {
        Err(format!("a client process said {line:?}"))
    }
}

/// `count` clients, each a `Network` dialling `server`; says "ready" once all are
/// connected, then keeps them open (polling now and then) until stdin closes.
fn run_clients(
    server: SocketAddr,
    count: usize,
    security: Security,
    message: usize,
) -> Result<(), String> {
    // Thousands of clients in one process: their tables kept small.
    let config = quiet(Config {
        security,
        command_queue: 1,
        gossip_cache_size: 1,
        ..Config::default()
    });
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(Network::new(config.clone()).map_err(|e| e.to_string())?);
    }
    let mut events = Vec::new();
    let start = Instant::now();
    // Dials go out a hundred at a time: the server's listen backlog (capped by the
    // kernel) holds only so many connections it has not accepted yet, and the kernel
    // drops those beyond it, which then wait seconds for TCP to resend.
    let (mut dialled, mut waiting) = (0, Vec::new());
    while dialled < count || !waiting.is_empty() {
        if start.elapsed() > STALL {
            return Err(format!(
                "{} clients not connected",
                count - dialled + waiting.len()
            ));
        }
        while dialled < count && waiting.len() < IN_FLIGHT {
            clients[dialled].dial(server).map_err(|e| e.to_string())?;
            waiting.push(dialled);
            dialled += 1;
        }
        for &i in &waiting {
            clients[i]
                .poll(&mut events, Some(Duration::ZERO))
                .map_err(|e| e.to_string())?;
            for event in events.drain(..) {
                if let Event::PeerDisconnected { reason, .. } = event {
                    return Err(format!("a client was disconnected: {reason:?}"));
                }
                if let Event::DialFailed { reason, .. } = event {
                    return Err(format!("a dial failed: {reason:?}"));
                }
            }
        }
        waiting.retain(|&i| clients[i].stats().peers == 0);
    }
    if message > 0 {
        let payload = p2p::Bytes::from(vec![0x5a; message]);
        for client in &mut clients {
            let Some(peer) = client.peers().first().map(|p| p.id) else {
                return Err("a client lost its connection".into());
            };
            client
                .send(&peer, payload.clone())
                .map_err(|e| e.to_string())?;
        }
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready").map_err(|e| e.to_string())?;
    stdout.flush().map_err(|e| e.to_string())?;
    // The parent closes stdin when it has measured; a thread waits for that while the
    // clients stay polled (the handshake's last message must leave).
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = done_tx.send(());
    });
    while done.recv_timeout(Duration::from_millis(20)).is_err() {
        for client in &mut clients {
            client
                .poll(&mut events, Some(Duration::ZERO))
                .map_err(|e| e.to_string())?;
            events.clear();
        }
    }
    Ok(())
}

/// The resident set size in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Gives the allocator's free pages back to the system (glibc's `malloc_trim`);
/// false where there is no such call.
fn return_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and releases the allocator's free memory.
        unsafe { libc::malloc_trim(0) };
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Up to the hard limit: the server holds one descriptor per connection.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
