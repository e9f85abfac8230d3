//! A node driven line by line: commands on stdin, one event per line on stdout.
//!
//! ```text
//! cargo run --release --example node -- [OPTIONS]
//! ```
//!
//! Run `--help` for the options, the commands and the output format. The format is a
//! contract: scripts and tests read it, so every line is flushed as soon as it is written.
//!
//! The handshake is noise-xx unless `--plaintext` is given: the peer id is the static
//! public key, proven by the handshake. `--key-file PATH` keeps that key (and so the id)
//! across restarts, creating the file if it is missing; without it each run has a fresh
//! key. `--allow PEER_ID` (repeatable) closes every peer whose id is not listed.
//!
//! The node finds peers by itself (discovery, PROTOCOL.md §5.2): it keeps
//! `--target-outbound N` outbound connections (8 unless told; 0 turns it off),
//! dialling addresses from its address book and asking the peers it dialled for more.
//! The book starts from what peers tell and from `--seed ADDR` (repeatable), an
//! address among others: dialled only while the node is short of its target, and not
//! kept connected. A `--peer ADDR` is kept connected whatever the target, and counts
//! towards it. So `--peer` (or `--seed`) one node of a network is enough to meet the
//! rest.
//!
//! stdin is read on its own thread, which parses each line and hands the command over a
//! channel to the loop; the loop runs it on the [`Network`] directly, so a `request`
//! learns its id at once and `request-sent` is always printed before its `response`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use log::LevelFilter;
use p2p::{Config, Event, Network, PeerId, RequestId, Security};

const USAGE: &str = "\
usage: node [OPTIONS]

A p2p node: commands on stdin, events on stdout (one per line).

options:
  --listen ADDR               address to listen on; port 0 picks a free one [127.0.0.1:0]
  --peer ADDR                 a persistent peer: dialled at start and again, with
                              backoff, whenever it is lost (repeatable)
  --redial-max-ms MS          longest wait between two dials of a --peer [60000]
  --seed ADDR                 an address for the address book (repeatable): dialled
                              only while the node holds fewer outbound connections
                              than --target-outbound, and not kept connected; a
                              first contact to learn other nodes from
  --address-book FILE         the address book, loaded at start if the file exists
                              and saved at shutdown (and every minute), so that a
                              restart does not depend on the seeds alone
  --target-outbound N         outbound connections the node keeps by itself, dialling
                              addresses from its book (--seed, and what peers tell;
                              it asks the peers it dialled for more); --peer ones
                              count; 0 turns discovery off; at most 128
                              (max_outbound) [8]
  --network-id N              u32 network id of the preamble [1]
  --plaintext                 plaintext handshake: peer ids are claimed, not proven,
                              and traffic is not encrypted (trusted networks and
                              tests only) [default: noise-xx, ids proven, encrypted]
  --key-file PATH             the node's static key, in the p2p-noise-key-v1 format;
                              created (mode 0600) if missing, so the peer id stays the
                              same across restarts [default: a fresh key each run].
                              With --plaintext its public key is the claimed id.
                              A malformed or unreadable file is an error (exit 2),
                              and so is one that is a symbolic link, not owned by
                              this user, or open to group or others (chmod 600)
  --key-file-permissive       load --key-file even if it is a link, not ours, or
                              open to others (a secret mounted by an orchestrator);
                              a warning names what strict loading would refuse
  --allow PEER_ID             only keep peers with this id, 64 hex digits (repeatable);
                              any other peer is closed right after the handshake,
                              inbound or outbound [default: any peer]
  --max-frame BYTES           largest frame body accepted [8388608]
  --max-rejected N            rejected frames within a minute that close a peer [100]
  --max-inbound N             inbound connection limit [128]
  --max-inbound-per-ip N      inbound connections from one address [32]
  --max-pending-handshakes N  inbound connections handshaking at once [64]
  --handshake-rate N          handshakes one address may start per second [16]
  --max-write-buffer BYTES    bytes queued per peer [16777216, or one largest
                              frame with its overhead if --max-frame needs more]
  --max-write-buffer-total BYTES
                              bytes queued for all peers [268435456, or
                              --max-write-buffer if more]
  --max-read-buffer-total BYTES
                              bytes held for frames still arriving, all
                              connections [67108864]
  --max-gossip-rate N         GOSSIP frames per second accepted from one peer [1000]
  --write-timeout-ms MS       close a peer whose queue has not moved for this [45000]
  --frame-timeout-ms MS       close a peer whose unfinished frame gained under
                              64 KiB in this time [30000]
  --handshake-timeout-ms MS   preamble + handshake deadline [5000]
  --ping-interval-ms MS       idle time before a PING [15000]
                              (if only --idle-timeout-ms is given and it is not
                              above this default, idle/3 is used)
  --idle-timeout-ms MS        idle time before close with GOODBYE 4 [45000]
                              (if only --ping-interval-ms is given and it is not
                              below this default, 3 x ping is used)
  --request-timeout-ms MS     time a REQUEST waits for its RESPONSE [10000]
  --gossip-hops N             hops of a new broadcast [16]
  --log LEVEL                 log level on stderr: off, error, warn, info, debug, trace [warn]
  --help                      this text

Ctrl-C (SIGINT) or SIGTERM shuts the node down as `quit` does.

commands (stdin, one per line; end of input = quit):
  dial <addr>
  send <peer-id-hex> <text>
  broadcast <text>
  request <peer-id-hex> <text>
  respond <peer-id-hex> <request-id> <text>
  disconnect <peer-id-hex>
  ban <peer-id-hex> <seconds>  disconnect the peer and refuse it for that long
  peers
  stats
  quit

events (stdout, one per line):
  listening <addr> <peer-id-hex>
  connected <peer-id-hex> <remote-addr> inbound|outbound
  disconnected <peer-id-hex> <reason words>
  dial-failed <addr> <reason words>
  redialing <addr> <attempt> <wait-ms>
                              a --peer is dialled again in <wait-ms>
  listens <peer-id-hex> <addr>...
                              where a peer said it listens (to dial it back)
  message <peer-id-hex> <payload>
  broadcast <peer-id-hex> <payload>
  request <peer-id-hex> <request-id> <payload>
  request-sent <peer-id-hex> <request-id>
  response <peer-id-hex> <request-id> <payload>
  request-failed <peer-id-hex> <request-id> <reason words>
  rejected <peer-id-hex> <reason words>
  peers <n> <peer-id-hex>...
  stats key=value ...         (answer to `stats`: connections, handshaking, peers,
                              queued_bytes, buffered_bytes, gossip_ids, dropped_sends,
                              rate_limited, refused_inbound, and more)
  unflushed <peer-id-hex> <bytes>
                              a graceful close ran out of time with <bytes> still
                              queued for the peer: they were never sent (also a
                              warning on stderr; `quit` then exits with status 1)
  error <command> <reason words>
                              a command that could not be carried out (a line that
                              does not parse, a dial refused at once, a send,
                              request or respond refused, an unknown peer), one line
                              each, in the order of the commands; <command> is the
                              line's first word

<payload> shows bytes 0x20..=0x7e other than backslash as they are and every other
byte as \\xHH (so a backslash is \\x5c). Logs and warnings go to stderr.
";

/// How long one turn of the loop may wait before it looks at stdin commands again.
const TURN: Duration = Duration::from_millis(50);
/// `--target-outbound` unless given: a node started with one `--peer` or `--seed`
/// finds more by itself.
const DEFAULT_TARGET_OUTBOUND: usize = 8;

// ---- command line ----

struct Options {
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
    /// `--seed`: put in the address book, not kept connected.
    seeds: Vec<SocketAddr>,
    /// `--address-book`: loaded at start, saved every minute and at shutdown.
    address_book: Option<PathBuf>,
    config: Config,
    log: LevelFilter,
    /// `--key-file`: loaded (or created) after the logger is up, so its warnings show.
    #[cfg(feature = "noise")]
    key_file: Option<PathBuf>,
    /// `--key-file-permissive`: the file's owner, mode and type are not checked.
    #[cfg(feature = "noise")]
    key_file_permissive: bool,
}

enum Parsed {
    Run(Box<Options>),
    Help,
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String>
where
    T::Err: Display,
{
    value
        .parse()
        .map_err(|e| format!("{name}: invalid value {value:?}: {e}"))
}

fn parse_millis(name: &str, value: &str) -> Result<Duration, String> {
    parse_number::<u64>(name, value).map(Duration::from_millis)
}

/// An `ip:port`, or a `host:port` resolved to its first address.
fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    match value.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{value:?} resolves to no address")),
        Err(e) => Err(format!("invalid address {value:?}: {e}")),
    }
}

fn parse_args(args: Vec<OsString>) -> Result<Parsed, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut peers = Vec::new();
    let mut seeds = Vec::new();
    let mut address_book = None;
    let mut config = Config {
        target_outbound: DEFAULT_TARGET_OUTBOUND,
        ..Config::default()
    };
    let mut log = LevelFilter::Warn;
    let mut ping_given = false;
    let mut idle_given = false;
    let mut write_buffer_given = false;
    let mut write_total_given = false;
    let mut read_total_given = false;
    let mut key_file = None;
    let mut key_file_permissive = false;
    let mut allowlist: Option<HashSet<PeerId>> = None;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        // Both `--name value` and `--name=value`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (arg, None),
        };
        match name.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--plaintext" => {
                if inline.is_some() {
                    return Err("--plaintext takes no value".into());
                }
                config.security = Security::Plaintext;
                continue;
            }
            "--key-file-permissive" => {
                key_file_permissive = true;
                continue;
            }
            _ => {}
        }
        let known = [
            "--listen",
            "--peer",
            "--seed",
            "--address-book",
            "--target-outbound",
            "--network-id",
            "--key-file",
            "--allow",
            "--max-frame",
            "--max-rejected",
            "--max-inbound",
            "--max-inbound-per-ip",
            "--max-pending-handshakes",
            "--handshake-rate",
            "--max-write-buffer",
            "--max-write-buffer-total",
            "--max-read-buffer-total",
            "--max-gossip-rate",
            "--write-timeout-ms",
            "--frame-timeout-ms",
            "--handshake-timeout-ms",
            "--ping-interval-ms",
            "--idle-timeout-ms",
            "--request-timeout-ms",
            "--gossip-hops",
            "--redial-max-ms",
            "--log",
        ];
        if !known.contains(&name.as_str()) {
            return Err(format!("unknown option {name:?}"));
        }
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .into_string()
                .map_err(|a| format!("{name}: value {a:?} is not valid UTF-8"))?,
        };
        let v = value.as_str();
        match name.as_str() {
            "--listen" => listen = parse_addr(v).map_err(|e| format!("--listen: {e}"))?,
            "--peer" => peers.push(parse_addr(v).map_err(|e| format!("--peer: {e}"))?),
            "--seed" => seeds.push(parse_addr(v).map_err(|e| format!("--seed: {e}"))?),
            "--address-book" => {
                if v.is_empty() {
                    return Err("--address-book: empty path".into());
                }
                address_book = Some(PathBuf::from(v));
            }
            "--target-outbound" => config.target_outbound = parse_number(&name, v)?,
            "--network-id" => config.network_id = parse_number(&name, v)?,
            "--key-file" => {
                if v.is_empty() {
                    return Err("--key-file: empty path".into());
                }
                key_file = Some(v.to_string());
            }
            "--allow" => {
                let id: PeerId = v
                    .parse()
                    .map_err(|e| format!("--allow: bad peer id {v:?}: {e}"))?;
                allowlist.get_or_insert_with(HashSet::new).insert(id);
            }
            "--max-frame" => config.max_frame_size = parse_number(&name, v)?,
            "--max-rejected" => config.max_rejected_frames = parse_number(&name, v)?,
            "--max-inbound" => config.max_inbound = parse_number(&name, v)?,
            "--max-inbound-per-ip" => config.max_inbound_per_ip = parse_number(&name, v)?,
            "--max-pending-handshakes" => config.max_pending_handshakes = parse_number(&name, v)?,
            "--handshake-rate" => config.handshake_rate_per_ip = parse_number(&name, v)?,
            "--max-write-buffer" => {
                config.max_write_buffer = parse_number(&name, v)?;
                write_buffer_given = true;
            }
            "--max-write-buffer-total" => {
                config.max_write_buffer_total = parse_number(&name, v)?;
                write_total_given = true;
            }
            "--max-read-buffer-total" => {
                config.max_read_buffer_total = parse_number(&name, v)?;
                read_total_given = true;
            }
            "--max-gossip-rate" => config.max_gossip_rate = parse_number(&name, v)?,
            "--write-timeout-ms" => config.write_timeout = parse_millis(&name, v)?,
            "--frame-timeout-ms" => config.frame_timeout = parse_millis(&name, v)?,
            "--handshake-timeout-ms" => config.handshake_timeout = parse_millis(&name, v)?,
            "--ping-interval-ms" => {
                config.ping_interval = parse_millis(&name, v)?;
                ping_given = true;
            }
            "--idle-timeout-ms" => {
                config.idle_timeout = parse_millis(&name, v)?;
                idle_given = true;
            }
            "--request-timeout-ms" => config.request_timeout = parse_millis(&name, v)?,
            "--gossip-hops" => config.gossip_hops = parse_number(&name, v)?,
            "--redial-max-ms" => {
                config.redial_max = parse_millis(&name, v)?;
                config.redial_base = config.redial_base.min(config.redial_max);
            }
            "--log" => {
                log = v.parse().map_err(|_| {
                    format!("--log: unknown level {v:?} (error, warn, info, debug, trace, off)")
                })?
            }
            _ => return Err(format!("unknown option {name:?}")),
        }
    }

    // One timer given alone should not clash with the other's default.
    if idle_given && !ping_given && config.ping_interval >= config.idle_timeout {
        config.ping_interval = (config.idle_timeout / 3).max(Duration::from_millis(1));
    }
    if ping_given && !idle_given && config.ping_interval >= config.idle_timeout {
        config.idle_timeout = config.ping_interval.saturating_mul(3);
    }
    config.allowlist = allowlist;
    #[cfg(feature = "noise")]
    let key_file = key_file.map(PathBuf::from);
    #[cfg(not(feature = "noise"))]
    if key_file.is_some() || key_file_permissive {
        return Err("--key-file needs the `noise` feature, which this build lacks".into());
    }
    // A frame of max-frame bytes must fit the write buffers: defaults grow to hold
    // one, sizes given on the command line are checked as given.
    if !write_buffer_given {
        config.max_write_buffer = config.max_write_buffer.max(config.min_write_buffer());
    }
    if !write_total_given {
        config.max_write_buffer_total = config.max_write_buffer_total.max(config.max_write_buffer);
    }
    if !read_total_given {
        config.max_read_buffer_total = config
            .max_read_buffer_total
            .max(config.min_read_buffer_total());
    }
    config
        .validate()
        .map_err(|e| format!("invalid configuration: {e}"))?;

    Ok(Parsed::Run(Box::new(Options {
        listen,
        peers,
        seeds,
        address_book,
        config,
        log,
        #[cfg(feature = "noise")]
        key_file,
        #[cfg(feature = "noise")]
        key_file_permissive,
    })))
}

// ---- logging ----

/// Logs go to stderr (simple_logger's `stderr` feature): stdout carries nothing but events.
fn init_log(level: LevelFilter) {
    let _ = simple_logger::SimpleLogger::new().with_level(level).init();
}

// ---- stdin commands ----

enum Command {
    /// A line that is no command: its first word, and what is wrong with it.
    Invalid {
        name: String,
        reason: String,
    },
    Dial(SocketAddr),
    Send(PeerId, Vec<u8>),
    Broadcast(Vec<u8>),
    Request(PeerId, Vec<u8>),
    Respond(PeerId, RequestId, Vec<u8>),
    Disconnect(PeerId),
    Ban(PeerId, u64),
    Peers,
    Stats,
    Quit,
}

/// Splits at the first space: the word before it, and the raw rest after it.
fn word(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("\"{}\" is not valid UTF-8", escape(bytes)))
}

fn parse_peer(bytes: &[u8]) -> Result<PeerId, String> {
    let text = utf8(bytes)?;
    if text.is_empty() {
        return Err("missing peer id".into());
    }
    text.parse()
        .map_err(|e| format!("bad peer id {text:?}: {e}"))
}

/// Parses one line (without its line ending). `Ok(None)` for a blank line.
fn parse_command(line: &[u8]) -> Result<Option<Command>, String> {
    let start = line
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(line.len());
    let line = &line[start..];
    if line.is_empty() {
        return Ok(None);
    }
    let (name, rest) = word(line);
    let trimmed = rest.trim_ascii();
    let command = match name {
        b"dial" => {
            let addr = utf8(trimmed)?;
            if addr.is_empty() {
                return Err("usage: dial <addr>".into());
            }
            Command::Dial(parse_addr(addr)?)
        }
        b"send" => {
            let (peer, text) = word(rest);
            Command::Send(parse_peer(peer)?, text.to_vec())
        }
        b"broadcast" => Command::Broadcast(rest.to_vec()),
        b"request" => {
            let (peer, text) = word(rest);
            Command::Request(parse_peer(peer)?, text.to_vec())
        }
        b"respond" => {
            let (peer, rest) = word(rest);
            let peer = parse_peer(peer)?;
            let (id, text) = word(rest);
            let id = utf8(id)?;
            let id = id
                .parse()
                .map_err(|e| format!("bad request id {id:?}: {e}"))?;
            Command::Respond(peer, RequestId(id), text.to_vec())
        }
        b"disconnect" => Command::Disconnect(parse_peer(trimmed)?),
        b"ban" => {
            let (peer, seconds) = word(trimmed);
            let seconds = utf8(seconds.trim_ascii())?;
            let seconds = seconds
                .parse()
                .map_err(|e| format!("usage: ban <peer-id-hex> <seconds>: {seconds:?}: {e}"))?;
            Command::Ban(parse_peer(peer)?, seconds)
        }
        b"peers" | b"stats" | b"quit" if !trimmed.is_empty() => {
            return Err(format!("{} takes no argument", escape(name)));
        }
        b"peers" => Command::Peers,
        b"stats" => Command::Stats,
        b"quit" => Command::Quit,
        _ => return Err(format!("unknown command \"{}\"", escape(name))),
    };
    Ok(Some(command))
}

impl Command {
    /// The word that names the command, for its `error` line.
    fn name(&self) -> &str {
        match self {
            Command::Invalid { name, .. } => name,
            Command::Dial(_) => "dial",
            Command::Send(..) => "send",
            Command::Broadcast(_) => "broadcast",
            Command::Request(..) => "request",
            Command::Respond(..) => "respond",
            Command::Disconnect(_) => "disconnect",
            Command::Ban(..) => "ban",
            Command::Peers => "peers",
            Command::Stats => "stats",
            Command::Quit => "quit",
        }
    }
}

/// One line as the loop takes it: `None` for a blank line, a line that does not
/// parse as [`Command::Invalid`], so its `error` line comes in order with the others.
fn parse_line(line: &[u8]) -> Option<Command> {
    parse_command(line).unwrap_or_else(|reason| {
        let name = word(line.trim_ascii_start()).0;
        Some(Command::Invalid {
            name: escape(name),
            reason,
        })
    })
}

/// Reads stdin until `quit`, end of input or a read error, forwarding commands.
fn read_stdin(tx: mpsc::Sender<Command>) {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("error: reading stdin: {e}; shutting down");
                break;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let command = match parse_line(&line) {
            None => continue,
            Some(Command::Quit) => break,
            Some(command) => command,
        };
        if tx.send(command).is_err() {
            return;
        }
    }
    let _ = tx.send(Command::Quit);
}

// ---- output ----

/// Bytes 0x20..=0x7e but backslash as they are, anything else as `\xHH`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..=0x7e).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A reason's Display, kept on one line.
fn words(reason: &impl Display) -> String {
    reason.to_string().replace(['\n', '\r'], " ")
}

/// Writes one line to stdout and flushes it; a closed stdout is not fatal.
fn emit(line: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// What `shut_down` reports: bytes that graceful closes could not flush.
#[derive(Default)]
struct Lost {
    bytes: u64,
}

fn emit_event(event: Event, lost: &mut Lost) {
    match event {
        Event::Unflushed { peer, bytes } => {
            lost.bytes += bytes as u64;
            eprintln!(
                "warning: {bytes} queued bytes for {peer} were not sent before close_timeout"
            );
            emit(&format!("unflushed {peer} {bytes}"));
        }
        Event::PeerConnected {
            peer,
            addr,
            direction,
        } => emit(&format!("connected {peer} {addr} {direction}")),
        Event::PeerDisconnected { peer, reason } => {
            emit(&format!("disconnected {peer} {}", words(&reason)))
        }
        Event::DialFailed { addr, reason } => {
            emit(&format!("dial-failed {addr} {}", words(&reason)))
        }
        Event::Redialing {
            addr,
            attempt,
            after,
            ..
        } => emit(&format!("redialing {addr} {attempt} {}", after.as_millis())),
        Event::PeerAddrs { peer, addrs } => {
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            emit(&format!("listens {peer} {}", addrs.join(" ")))
        }
        Event::Message { peer, payload } => emit(&format!("message {peer} {}", escape(&payload))),
        Event::Broadcast { from, payload, .. } => {
            emit(&format!("broadcast {from} {}", escape(&payload)))
        }
        Event::Request { peer, id, payload } => {
            emit(&format!("request {peer} {id} {}", escape(&payload)))
        }
        Event::Response { peer, id, payload } => {
            emit(&format!("response {peer} {id} {}", escape(&payload)))
        }
        Event::RequestFailed { peer, id, reason } => {
            emit(&format!("request-failed {peer} {id} {}", words(&reason)))
        }
        Event::FrameRejected {
            peer,
            reason,
            count,
        } => {
            log::debug!("frame {count} rejected from {peer}");
            emit(&format!("rejected {peer} {}", words(&reason)))
        }
        Event::BroadcastFailed { reason, .. } => eprintln!("error: broadcast failed: {reason}"),
        Event::SendFailed { peer, reason, .. } => {
            eprintln!("error: send to {peer} failed: {reason}")
        }
        Event::RespondFailed { peer, id, reason } => {
            eprintln!("error: respond to {peer} {id} failed: {reason}")
        }
        other => log::info!("event not shown: {other:?}"),
    }
}

// ---- the loop ----

/// Runs one command: the line it prints, if any, or why it could not be carried out.
fn run_command(net: &mut Network, command: Command) -> Result<Option<String>, String> {
    let failed = |e: p2p::SendError| words(&e);
    match command {
        Command::Invalid { reason, .. } => return Err(reason),
        Command::Dial(addr) => net.dial(addr).map_err(|e| words(&e))?,
        Command::Send(peer, text) => net.send(&peer, text).map_err(failed)?,
        Command::Broadcast(text) => {
            net.broadcast(text).map_err(failed)?;
        }
        Command::Request(peer, text) => {
            let id = net.request(&peer, text).map_err(failed)?;
            return Ok(Some(format!("request-sent {peer} {id}")));
        }
        Command::Respond(peer, id, text) => net.respond(&peer, id, text).map_err(failed)?,
        Command::Disconnect(peer) => {
            if !net.disconnect(&peer) {
                return Err(format!("peer {peer} is not connected"));
            }
        }
        Command::Ban(peer, seconds) => {
            if !net.ban(&peer, Duration::from_secs(seconds)) {
                return Err("the ban table is full".into());
            }
        }
        Command::Peers => {
            let mut ids: Vec<PeerId> = net.peers().iter().map(|p| p.id).collect();
            ids.sort();
            let mut line = format!("peers {}", ids.len());
            for id in ids {
                line.push(' ');
                line.push_str(&id.to_string());
            }
            return Ok(Some(line));
        }
        Command::Stats => return Ok(Some(stats_line(net))),
        Command::Quit => {}
    }
    Ok(None)
}

/// Runs one command and returns the line it prints: its answer, or
/// `error <command> <reason words>` if it could not be carried out.
fn execute(net: &mut Network, command: Command) -> Option<String> {
    let name = command.name().to_owned();
    run_command(net, command)
        .unwrap_or_else(|reason| Some(format!("error {name} {}", words(&reason))))
}

/// The answer to `stats`: one line of `key=value` pairs.
fn stats_line(net: &Network) -> String {
    let s = net.stats();
    let pairs: [(&str, u64); 22] = [
        ("connections", s.connections as u64),
        ("handshaking", s.handshaking as u64),
        ("peers", s.peers as u64),
        ("queued_bytes", s.queued_bytes as u64),
        ("buffered_bytes", s.buffered_bytes as u64),
        ("gossip_ids", s.gossip_ids as u64),
        ("dropped_sends", s.totals.dropped_sends),
        (
            "rate_limited",
            s.totals.rate_limited + s.rate_limited_accepts,
        ),
        ("refused_inbound", s.refused_inbound),
        ("rate_limited_gossip", s.totals.rate_limited),
        ("rate_limited_accepts", s.rate_limited_accepts),
        ("evicted_handshakes", s.evicted_handshakes),
        ("failed_handshakes", s.failed_handshakes),
        ("read_paused", s.read_paused as u64),
        ("unflushed_bytes", s.unflushed_bytes),
        ("rejected_frames", s.totals.rejected_frames),
        ("late_responses", s.totals.late_responses),
        ("pending_requests", s.pending_requests as u64),
        ("unanswered_requests", s.unanswered_requests as u64),
        ("forgotten_requests", s.totals.forgotten_requests),
        ("bytes_in", s.totals.bytes_in),
        ("bytes_out", s.totals.bytes_out),
    ];
    let mut line = String::from("stats");
    for (key, value) in pairs {
        line.push_str(&format!(" {key}={value}"));
    }
    line
}

/// Runs commands and polls until `quit` or end of input.
/// A flag that SIGINT (Ctrl-C) and SIGTERM raise instead of killing the process, so
/// that the loop can shut down as gracefully as on `quit`.
fn stop_on_signals() -> io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// How often `--address-book` is saved while the node runs.
const BOOK_SAVE_EVERY: Duration = Duration::from_secs(60);

/// Saves the address book to `path`, if one was given; a failure is a warning.
fn save_book(net: &Network, path: Option<&PathBuf>) {
    if let Some(path) = path
        && let Err(e) = net.save_address_book(path)
    {
        eprintln!("node: warning: cannot save the address book to {path:?}: {e}");
    }
}

fn serve(
    net: &mut Network,
    commands: &Receiver<Command>,
    stop: &AtomicBool,
    lost: &mut Lost,
    book: Option<&PathBuf>,
) -> io::Result<()> {
    let mut events = Vec::new();
    let mut next_save = Instant::now() + BOOK_SAVE_EVERY;
    loop {
        if Instant::now() >= next_save {
            save_book(net, book);
            next_save = Instant::now() + BOOK_SAVE_EVERY;
        }
        // Checked every turn: a signal at most one TURN before the shutdown starts.
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        loop {
            match commands.try_recv() {
                Ok(Command::Quit) | Err(TryRecvError::Disconnected) => return Ok(()),
                Ok(command) => {
                    if let Some(line) = execute(net, command) {
                        emit(&line);
                    }
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        net.poll(&mut events, Some(TURN))?;
        for event in events.drain(..) {
            emit_event(event, lost);
        }
    }
}

/// Shuts down gracefully: queued data flushed, GOODBYE 0 to every peer.
fn shut_down(net: &mut Network, lost: &mut Lost) -> io::Result<()> {
    net.shutdown();
    let limit = net.config().close_timeout + Duration::from_secs(1);
    let deadline = Instant::now() + limit;
    let mut events = Vec::new();
    while !net.is_shut_down() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!("warning: connections still open after {limit:?}; exiting anyway");
            break;
        }
        net.poll(&mut events, Some(left.min(TURN)))?;
        for event in events.drain(..) {
            emit_event(event, lost);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    #[cfg_attr(not(feature = "noise"), allow(unused_mut))]
    let mut options = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("node: {e}");
            eprintln!("node: try --help");
            return ExitCode::from(2);
        }
    };
    init_log(options.log);
    if options.config.security == Security::Plaintext {
        eprintln!(
            "node: warning: plaintext mode: peer ids are claimed, not proven, and traffic is not encrypted"
        );
    }
    #[cfg(feature = "noise")]
    if let Some(path) = &options.key_file {
        let check = if options.key_file_permissive {
            p2p::KeyFileCheck::Permissive
        } else {
            p2p::KeyFileCheck::Strict
        };
        match p2p::Keypair::load_or_generate_with(path, check) {
            Ok(keypair) => options.config.keypair = Some(keypair),
            // The file given is unusable: a usage error, like a bad option.
            Err(
                e @ (p2p::KeyError::Io { .. }
                | p2p::KeyError::Malformed { .. }
                | p2p::KeyError::Symlink { .. }
                | p2p::KeyError::NotAFile { .. }
                | p2p::KeyError::WrongOwner { .. }
                | p2p::KeyError::OpenToOthers { .. }),
            ) => {
                eprintln!("node: {e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("node: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let mut net = match Network::new(options.config) {
        Ok(net) => net,
        Err(e @ p2p::Error::Config(_)) => {
            eprintln!("node: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("node: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match net.listen(options.listen) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("node: cannot listen on {}: {e}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    emit(&format!("listening {addr} {}", net.local_id()));
    for peer in options.peers {
        if let Err(e) = net.add_peer(peer, None) {
            emit(&format!("error peer {}", words(&e)));
        }
    }
    if !options.seeds.is_empty() && net.config().target_outbound == 0 {
        eprintln!(
            "node: warning: --target-outbound 0: the --seed addresses are never dialled (only told to peers that ask)"
        );
    }
    if let Some(path) = &options.address_book {
        match net.load_address_book(path) {
            Ok(n) => eprintln!("node: {n} addresses loaded from {path:?}"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!("node: cannot load the address book {path:?}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    for seed in options.seeds {
        // False for an address the book holds already (a --seed given twice).
        if !net.add_addr(seed) {
            eprintln!(
                "node: warning: --seed {seed}: not added (known already, or the book is full)"
            );
        }
    }

    let (tx, commands) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(tx));
    if let Err(e) = spawned {
        eprintln!("node: cannot start the stdin thread: {e}");
        return ExitCode::FAILURE;
    }

    let stop = match stop_on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("node: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lost = Lost::default();
    let book = options.address_book.as_ref();
    let served = serve(&mut net, &commands, &stop, &mut lost, book);
    // Saved before the connections close: what the node knew while running.
    save_book(&net, book);
    if let Err(e) = served.and_then(|()| shut_down(&mut net, &mut lost)) {
        eprintln!("node: poll failed: {e}");
        return ExitCode::FAILURE;
    }
    // Connections still open when the wait above gave up lose what they hold too.
    let held = net.stats().queued_bytes as u64;
    if lost.bytes > 0 || held > 0 {
        eprintln!(
            "node: warning: {} queued bytes were never sent",
            lost.bytes + held
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plaintext() -> Config {
        Config {
            security: Security::Plaintext,
            ..Config::default()
        }
    }

    fn listening() -> (Network, SocketAddr) {
        let mut net = Network::new(plaintext()).expect("network");
        let addr = net.listen("127.0.0.1:0".parse().unwrap()).expect("listen");
        (net, addr)
    }

    /// Runs a line as the loop would, returning what it prints.
    fn run_line(net: &mut Network, line: &str) -> Option<String> {
        parse_line(line.as_bytes()).and_then(|command| execute(net, command))
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn options(list: &[&str]) -> Result<Box<Options>, String> {
        match parse_args(args(list))? {
            Parsed::Run(options) => Ok(options),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn discovery_is_on_by_default_and_bounded_by_max_outbound() {
        let o = options(&[]).expect("defaults");
        assert_eq!(o.config.target_outbound, DEFAULT_TARGET_OUTBOUND);
        assert!(o.seeds.is_empty());
        let o = options(&["--target-outbound", "0", "--seed", "127.0.0.1:4000"]).expect("off");
        assert_eq!(o.config.target_outbound, 0);
        let o = options(&[
            "--target-outbound=3",
            "--seed",
            "127.0.0.1:4000",
            "--seed=127.0.0.1:4001",
            "--peer",
            "127.0.0.1:4002",
        ])
        .expect("seeds");
        assert_eq!(o.config.target_outbound, 3);
        assert_eq!(
            o.seeds,
            vec![
                "127.0.0.1:4000".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:4001".parse().unwrap()
            ]
        );
        assert_eq!(o.peers.len(), 1);
        let max = Config::default().max_outbound;
        assert!(options(&["--target-outbound", &max.to_string()]).is_ok());
        let err = options(&["--target-outbound", &(max + 1).to_string()])
            .err()
            .expect("over max_outbound");
        assert!(err.contains("target_outbound"), "{err}");
        assert!(options(&["--seed", "not an address"]).is_err());
    }

    /// Ctrl-C ends the loop as `quit` does, for the same graceful shutdown.
    #[test]
    fn a_sigint_ends_the_loop_instead_of_the_process() {
        let (mut net, _) = listening();
        let stop = stop_on_signals().expect("handlers");
        let (_tx, commands) = mpsc::channel();
        signal_hook::low_level::raise(signal_hook::consts::SIGINT).expect("raise");
        assert!(stop.load(Ordering::Relaxed));
        // Returns (bounded: the flag is checked before the first poll).
        serve(&mut net, &commands, &stop, &mut Lost::default(), None).expect("serve");
        shut_down(&mut net, &mut Lost::default()).expect("shut down");
        assert!(net.is_shut_down());
    }

    #[test]
    fn every_command_it_cannot_carry_out_prints_one_error_line_naming_it() {
        let (mut net, addr) = listening();
        // Connecting (never polled): a second dial to it is refused at once.
        assert_eq!(run_line(&mut net, &format!("dial {addr}")), None);
        let stranger = PeerId::from_bytes([7; 32]);
        let cases = [
            (
                "frobnicate x",
                "error frobnicate unknown command \"frobnicate\"",
            ),
            ("send nothex hi", "error send bad peer id \"nothex\""),
            ("respond 0707 x y", "error respond bad peer id \"0707\""),
            ("peers now", "error peers peers takes no argument"),
            (
                &format!("send {stranger} hi"),
                &format!("error send peer {stranger} is not connected"),
            ),
            (
                &format!("request {stranger} q"),
                &format!("error request peer {stranger} is not connected"),
            ),
            (
                &format!("respond {stranger} 3 a"),
                &format!("error respond peer {stranger} is not connected"),
            ),
            (
                &format!("disconnect {stranger}"),
                &format!("error disconnect peer {stranger} is not connected"),
            ),
            (
                &format!("dial {addr}"),
                &format!("error dial already connected or dialling {addr}"),
            ),
        ];
        for (line, expected) in cases {
            let printed = run_line(&mut net, line).unwrap_or_default();
            assert!(
                printed.starts_with(expected),
                "{line:?} printed {printed:?}, expected {expected:?}..."
            );
        }
    }

    #[test]
    fn a_respond_to_a_request_not_received_prints_an_error_line() {
        let (mut a, _) = listening();
        let (mut b, b_addr) = listening();
        a.dial(b_addr).expect("dial");
        let b_id = b.local_id();
        let mut events = Vec::new();
        let mut asked = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        for _ in 0..2000 {
            if a.is_connected(&b_id) && asked.is_none() {
                a.request(&b_id, "q").expect("request");
                asked = Some(());
            }
            a.poll(&mut events, Some(Duration::from_millis(5))).unwrap();
            events.clear();
            b.poll(&mut events, Some(Duration::from_millis(5))).unwrap();
            let request = events.iter().find_map(|e| match e {
                Event::Request { peer, id, .. } => Some((*peer, *id)),
                _ => None,
            });
            if let Some((peer, id)) = request {
                let wrong = RequestId(id.0 + 1);
                assert_eq!(
                    run_line(&mut b, &format!("respond {peer} {wrong} nope")),
                    Some(format!(
                        "error respond no unanswered request {wrong} from {peer}"
                    ))
                );
                assert_eq!(run_line(&mut b, &format!("respond {peer} {id} yes")), None);
                assert_eq!(
                    run_line(&mut b, &format!("respond {peer} {id} again")),
                    Some(format!(
                        "error respond no unanswered request {id} from {peer}"
                    ))
                );
                return;
            }
            assert!(Instant::now() < deadline, "no request arrived");
        }
        panic!("no request arrived");
    }
}
