//! A whole gossip network in one process: N nodes on loopback, B broadcasts from random
//! nodes, and a count of who got what, how fast.
//!
//! ```text
//! cargo run --release --example cluster [-- --nodes N --degree D --broadcasts B --size BYTES --plaintext --seed S --bootstrap K]
//! ```
//!
//! Every node runs in this one thread: each turn polls every `Network` with a zero
//! timeout, so the run is fast and, for a given seed, the same graph and the same
//! origins every time. Nodes use the noise-xx handshake (each with a fresh key), or
//! the plaintext one with `--plaintext`. The graph is a ring (so it is surely
//! connected) plus random extra dials until each node has dialled D others; no pair is
//! dialled twice in either direction. Broadcasting starts once every node has all its
//! neighbours.
//!
//! With `--bootstrap K` nobody is told the graph: the nodes find each other by
//! discovery (PROTOCOL.md §5.2). Each node keeps `target_outbound` = D (`--degree`, at
//! most N-1) outbound connections, and its address book starts with K seed addresses
//! given with `Network::add_addr`: node i gets K distinct nodes drawn at random (from
//! the seed) among nodes 0..i, all of them if i <= K, and node 0 none, so the seeds
//! alone make the cluster connected. Seeds are addresses among others, not persistent
//! peers: a node dials them only while short of its target, and learns the rest from
//! what its peers tell (ADDRS, PEERS). Broadcasting starts once the overlay has
//! converged: the connections both ends hold make one connected graph and every node
//! has at least D peers (inbound ones count). The time that took goes to stderr; a
//! run that does not converge within `--converge-s` says which nodes fell short.
//!
//! Each payload starts with the nanoseconds since a shared epoch at which it was
//! broadcast; receivers subtract it from their own clock to get the latency. The rest of
//! the payload is a pattern derived from the broadcast's index, checked on delivery.
//!
//! Progress goes to stderr; the last stdout line is the summary, e.g.
//!
//! ```text
//! cluster: nodes=16 broadcasts=1000 delivered=15000/15000 duplicates=0 p50_ms=0.210 p99_ms=0.934 elapsed_s=0.152
//! ```
//!
//! The exit status is 0 exactly when every node got every broadcast once, intact.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt::Display;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use log::LevelFilter;
use p2p::{Bytes, Config, Direction, Event, GossipId, Network, PeerId, Security};

const USAGE: &str = "\
usage: cluster [OPTIONS]

Runs N nodes on loopback in one thread and floods B broadcasts through them.

options:
  --nodes N          nodes [16]
  --degree D         peers each node dials (a ring edge plus random ones); with
                     --bootstrap, each node's target_outbound (at most N-1) [4]
  --bootstrap K      no dialled graph: each node gets only K seed addresses
                     (Network::add_addr; node i draws them among nodes 0..i, node 0
                     gets none) and finds the others by discovery, with
                     target_outbound D; broadcasting starts once the overlay is
                     connected and every node has min(D, N-1) peers [off].
  --broadcasts B     broadcasts, each from a random node [1000]
  --size BYTES       payload size, at least 8 (a timestamp) [256]
  --plaintext        plaintext handshake: ids claimed, not proven, no encryption
                     [default: noise-xx]
  --seed S           seed of the graph (or of the --bootstrap seeds) and of the
                     origins [1]
  --per-turn K       broadcasts started per turn of the loop at most [1]
  --timeout-s SECS   give up this long after the first broadcast [60]
  --converge-s SECS  with --bootstrap, give up if the overlay has not converged
                     this long after start [60]
  --log LEVEL        log level on stderr: off, error, warn, info, debug, trace [warn]
  --help             this text

The last stdout line is
  cluster: nodes=.. broadcasts=.. delivered=X/Y duplicates=.. p50_ms=.. p99_ms=.. elapsed_s=..
and the exit status is 0 exactly when every node got every broadcast once.
";

/// Bytes of a GOSSIP frame around its payload: len (4), kind (1), id (16), hops (1).
const GOSSIP_OVERHEAD: usize = 22;
/// Deadline for every node to be connected to all its neighbours.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline for the graceful shutdown of all nodes.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

// ---- command line ----

struct Options {
    nodes: usize,
    degree: usize,
    broadcasts: usize,
    size: usize,
    seed: u64,
    per_turn: usize,
    timeout: Duration,
    log: LevelFilter,
    security: Security,
    /// `--bootstrap K`: seeds per node, discovery instead of the dialled graph.
    bootstrap: Option<usize>,
    /// `--converge-s`: deadline for discovery to converge.
    converge_timeout: Duration,
}

enum Parsed {
    Run(Options),
    Help,
}

fn number<T: FromStr>(name: &str, value: &str) -> Result<T, String>
where
    T::Err: Display,
{
    value
        .parse()
        .map_err(|e| format!("{name}: invalid value {value:?}: {e}"))
}

fn parse_args(args: Vec<OsString>) -> Result<Parsed, String> {
    let mut o = Options {
        nodes: 16,
        degree: 4,
        broadcasts: 1000,
        size: 256,
        seed: 1,
        per_turn: 1,
        timeout: Duration::from_secs(60),
        log: LevelFilter::Warn,
        security: Config::default().security,
        bootstrap: None,
        converge_timeout: Duration::from_secs(60),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (arg, None),
        };
        match name.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--plaintext" if inline.is_none() => {
                o.security = Security::Plaintext;
                continue;
            }
            "--plaintext" => return Err("--plaintext takes no value".into()),
            "--nodes" | "--degree" | "--broadcasts" | "--size" | "--seed" | "--per-turn"
            | "--timeout-s" | "--log" | "--bootstrap" | "--converge-s" => {}
            _ => return Err(format!("unknown option {name:?}")),
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
            "--nodes" => o.nodes = number(&name, v)?,
            "--degree" => o.degree = number(&name, v)?,
            "--broadcasts" => o.broadcasts = number(&name, v)?,
            "--size" => o.size = number(&name, v)?,
            "--seed" => o.seed = number(&name, v)?,
            "--per-turn" => o.per_turn = number(&name, v)?,
            "--timeout-s" => {
                let secs: f64 = number(&name, v)?;
                o.timeout = Duration::try_from_secs_f64(secs)
                    .map_err(|e| format!("{name}: invalid value {v:?}: {e}"))?;
            }
            "--bootstrap" => o.bootstrap = Some(number(&name, v)?),
            "--converge-s" => {
                let secs: f64 = number(&name, v)?;
                o.converge_timeout = Duration::try_from_secs_f64(secs)
                    .map_err(|e| format!("{name}: invalid value {v:?}: {e}"))?;
            }
            "--log" => {
                o.log = v.parse().map_err(|_| {
                    format!("--log: unknown level {v:?} (error, warn, info, debug, trace, off)")
                })?
            }
            _ => return Err(format!("unknown option {name:?}")),
        }
    }
    if o.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if o.degree < 1 {
        return Err("--degree must be at least 1".into());
    }
    if o.size < 8 {
        return Err("--size must be at least 8 (the timestamp)".into());
    }
    if o.size > (u32::MAX as usize) - GOSSIP_OVERHEAD {
        return Err("--size is over the protocol's largest frame".into());
    }
    if o.nodes > 10_000 {
        return Err("--nodes is over 10000".into());
    }
    if o.broadcasts
        .checked_mul(o.nodes)
        .is_none_or(|n| n > 1 << 30)
    {
        return Err("--nodes x --broadcasts is over 2^30 deliveries".into());
    }
    if o.per_turn < 1 {
        return Err("--per-turn must be at least 1".into());
    }
    if o.timeout.is_zero() {
        return Err("--timeout-s must be above zero".into());
    }
    if o.converge_timeout.is_zero() {
        return Err("--converge-s must be above zero".into());
    }
    if o.bootstrap == Some(0) {
        return Err("--bootstrap must be at least 1 (a node with no seed finds nobody)".into());
    }
    Ok(Parsed::Run(o))
}

// ---- a small seeded PRNG (splitmix64) ----

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`, `n > 0`.
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

// ---- the graph ----

/// The dials to make, `(from, to)`: a ring, then random extra dials until each node
/// dialled `degree` others (or ran out of nodes it is not yet linked to).
fn build_graph(nodes: usize, degree: usize, rng: &mut SplitMix64) -> Vec<(usize, usize)> {
    let mut linked: Vec<HashSet<usize>> = vec![HashSet::new(); nodes];
    let mut dials = Vec::new();
    let mut dialled = vec![0usize; nodes];
    let mut link = |from: usize, to: usize, linked: &mut Vec<HashSet<usize>>| {
        linked[from].insert(to);
        linked[to].insert(from);
        dials.push((from, to));
    };
    for from in 0..nodes {
        let to = (from + 1) % nodes;
        if !linked[from].contains(&to) {
            link(from, to, &mut linked);
            dialled[from] += 1;
        }
    }
    for from in 0..nodes {
        let mut candidates: Vec<usize> = (0..nodes)
            .filter(|&to| to != from && !linked[from].contains(&to))
            .collect();
        while dialled[from] < degree && !candidates.is_empty() {
            let to = candidates.swap_remove(rng.below(candidates.len()));
            link(from, to, &mut linked);
            dialled[from] += 1;
        }
    }
    dials
}

/// Each node's seeds for `--bootstrap k`: node i gets `k` distinct nodes drawn at
/// random among nodes 0..i (all of them if i <= k), node 0 none. Every node but 0
/// has a seed below it, so the seeds alone connect the cluster: following them from
/// any node leads to node 0.
fn choose_seeds(nodes: usize, k: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    (0..nodes)
        .map(|i| {
            if i <= k {
                return (0..i).collect();
            }
            if 2 * k >= i {
                // Most of them: the first k of a partial shuffle.
                let mut all: Vec<usize> = (0..i).collect();
                for n in 0..k {
                    let j = n + rng.below(i - n);
                    all.swap(n, j);
                }
                all.truncate(k);
                return all;
            }
            // Few of many: draw until k distinct (at most twice as many draws, on average).
            let mut seen = HashSet::with_capacity(k);
            let mut seeds = Vec::with_capacity(k);
            while seeds.len() < k {
                let j = rng.below(i);
                if seen.insert(j) {
                    seeds.push(j);
                }
            }
            seeds
        })
        .collect()
}

// ---- payloads ----

fn pattern(index: usize, at: usize) -> u8 {
    (index as u8).wrapping_mul(31).wrapping_add(at as u8)
}

/// `sent_ns` (little-endian) then the broadcast's pattern.
fn payload(index: usize, size: usize, sent_ns: u64) -> Bytes {
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&sent_ns.to_le_bytes());
    bytes.extend((8..size).map(|at| pattern(index, at)));
    Bytes::from(bytes)
}

/// The timestamp of an intact payload of broadcast `index`.
fn check_payload(index: usize, size: usize, payload: &[u8]) -> Option<u64> {
    if payload.len() != size {
        return None;
    }
    let (stamp, rest) = payload.split_at(8);
    let intact = rest
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(index, i + 8));
    let stamp: [u8; 8] = stamp.try_into().ok()?;
    intact.then(|| u64::from_le_bytes(stamp))
}

// ---- the run ----

/// A broadcast in flight.
struct Sent {
    index: usize,
    /// Nodes that still have to deliver it.
    missing: usize,
}

struct Tally {
    /// `delivered[node][index]`; the origin's own entry is set when it broadcasts.
    delivered: Vec<Vec<bool>>,
    sent: HashMap<GossipId, Sent>,
    deliveries: usize,
    duplicates: usize,
    corrupt: usize,
    unknown: usize,
    /// Broadcasts started and not yet delivered everywhere.
    in_flight: usize,
    latencies_ns: Vec<u64>,
    last_delivery: Option<Instant>,
}

impl Tally {
    fn deliver(&mut self, node: usize, id: GossipId, payload: &[u8], size: usize, now_ns: u64) {
        let Some(sent) = self.sent.get_mut(&id) else {
            self.unknown += 1;
            return;
        };
        let seen = &mut self.delivered[node][sent.index];
        if *seen {
            self.duplicates += 1;
            return;
        }
        *seen = true;
        let Some(stamp) = check_payload(sent.index, size, payload) else {
            self.corrupt += 1;
            return;
        };
        self.deliveries += 1;
        self.latencies_ns.push(now_ns.saturating_sub(stamp));
        self.last_delivery = Some(Instant::now());
        sent.missing -= 1;
        if sent.missing == 0 {
            self.in_flight -= 1;
        }
    }
}

fn percentile_ms(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted_ns.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_ns.len()) - 1;
    sorted_ns[i] as f64 / 1e6
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn config_for(o: &Options) -> Config {
    let mut config = Config {
        security: o.security,
        max_inbound: Config::default().max_inbound.max(o.nodes),
        max_outbound: Config::default().max_outbound.max(o.nodes),
        max_pending_handshakes: Config::default().max_pending_handshakes.max(o.nodes),
        // Every node is on 127.0.0.1: one address, as far as the per-address limits go.
        max_inbound_per_ip: Config::default().max_inbound_per_ip.max(o.nodes),
        max_pending_handshakes_per_ip: Config::default().max_pending_handshakes_per_ip.max(o.nodes),
        max_pending_dials: Config::default().max_pending_dials.max(o.nodes),
        handshake_rate_per_ip: Config::default().handshake_rate_per_ip.max(o.nodes as u32),
        // A throughput run among trusted nodes: the broadcast rate is what is measured,
        // so the per-peer and relay gossip rates do not bound it.
        max_gossip_rate: u32::MAX,
        // With --bootstrap, discovery makes the graph; without, it would add to it.
        target_outbound: match o.bootstrap {
            Some(_) => o.degree.min(o.nodes - 1),
            None => 0,
        },
        ..Config::default()
    };
    let body = o.size + GOSSIP_OVERHEAD - 5;
    if body > config.max_frame_size {
        config.max_frame_size = body;
        config.max_write_buffer = config.max_write_buffer.max(4 * (body + 5));
        config.max_write_buffer_total = config.max_write_buffer_total.max(config.max_write_buffer);
        config.max_read_buffer_total = config
            .max_read_buffer_total
            .max(config.min_read_buffer_total());
    }
    config
}

/// How the nodes meet: the dialled graph, or seeds and discovery (`--bootstrap`).
enum Plan {
    /// The dials to make, `(from, to)`, and each node's neighbours.
    Graph {
        dials: Vec<(usize, usize)>,
        neighbours: Vec<HashSet<usize>>,
    },
    /// Each node's seed nodes, and the `target_outbound` every node keeps.
    Bootstrap {
        seeds: Vec<Vec<usize>>,
        target: usize,
    },
}

/// The summary line of a run that never got to broadcast, and the nodes shut down.
fn give_up(o: &Options, nets: &mut [Network]) {
    let expected = o.broadcasts * (o.nodes - 1);
    println!(
        "cluster: nodes={} broadcasts={} delivered=0/{expected} duplicates=0 p50_ms=0.000 p99_ms=0.000 elapsed_s=0.000",
        o.nodes, o.broadcasts
    );
    shut_down(nets);
}

/// Polls until every node is connected to all its neighbours in the graph: the
/// largest degree, or `None` (reported) when [`SETUP_TIMEOUT`] passed first.
fn wait_for_graph(
    o: &Options,
    nets: &mut [Network],
    index_of: &HashMap<PeerId, usize>,
    dials: &[(usize, usize)],
    neighbours: &[HashSet<usize>],
) -> Result<Option<usize>, String> {
    let setup = Instant::now();
    let mut events = Vec::new();
    let mut connected: Vec<HashSet<usize>> = vec![HashSet::new(); o.nodes];
    let mut ready = 0;
    while ready < o.nodes {
        if setup.elapsed() > SETUP_TIMEOUT {
            let missing: usize = (0..o.nodes)
                .map(|i| neighbours[i].len() - connected[i].intersection(&neighbours[i]).count())
                .sum();
            eprintln!(
                "cluster: setup timed out after {SETUP_TIMEOUT:?}: {ready}/{} nodes ready, {missing} links missing",
                o.nodes
            );
            return Ok(None);
        }
        for (i, net) in nets.iter_mut().enumerate() {
            net.poll(&mut events, Some(Duration::ZERO))
                .map_err(|e| format!("node {i}: poll failed: {e}"))?;
            for event in events.drain(..) {
                match event {
                    Event::PeerConnected { peer, .. } => match index_of.get(&peer) {
                        Some(&j) if neighbours[i].contains(&j) => {
                            connected[i].insert(j);
                        }
                        _ => eprintln!("cluster: node {i}: unexpected peer {peer}"),
                    },
                    Event::PeerDisconnected { peer, reason } => {
                        if let Some(j) = index_of.get(&peer) {
                            connected[i].remove(j);
                        }
                        eprintln!("cluster: node {i}: peer {peer} disconnected: {reason}");
                    }
                    Event::DialFailed { addr, reason } => {
                        eprintln!("cluster: node {i}: dial {addr} failed: {reason}")
                    }
                    other => log::debug!("node {i}: {other:?}"),
                }
            }
        }
        ready = (0..o.nodes)
            .filter(|&i| connected[i] == neighbours[i])
            .count();
    }
    eprintln!(
        "cluster: all {} links up in {:.3} s",
        dials.len(),
        setup.elapsed().as_secs_f64()
    );
    Ok(Some(neighbours.iter().map(HashSet::len).max().unwrap_or(0)))
}

/// What the nodes hold now, read from [`Network::peers`]: each node's peers (by
/// index) among the connections both ends hold (a handshake the dialler finished
/// first, the other end not yet, is left out), and how many connections it dialled.
fn overlay(
    nets: &[Network],
    index_of: &HashMap<PeerId, usize>,
) -> (Vec<HashSet<usize>>, Vec<usize>) {
    let (held, outbound): (Vec<HashSet<usize>>, Vec<usize>) = nets
        .iter()
        .map(|net| {
            let peers = net.peers();
            let outbound = peers
                .iter()
                .filter(|p| p.direction == Direction::Outbound)
                .count();
            let indices = peers
                .iter()
                .filter_map(|p| index_of.get(&p.id).copied())
                .collect();
            (indices, outbound)
        })
        .unzip();
    let both = (0..held.len())
        .map(|i| {
            held[i]
                .iter()
                .copied()
                .filter(|&j| held[j].contains(&i))
                .collect()
        })
        .collect();
    (both, outbound)
}

/// How many pieces the graph of `peers` (symmetric) falls into.
fn components(peers: &[HashSet<usize>]) -> usize {
    let mut seen = vec![false; peers.len()];
    let mut count = 0;
    for start in 0..peers.len() {
        if seen[start] {
            continue;
        }
        count += 1;
        seen[start] = true;
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for &j in &peers[i] {
                if !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
    }
    count
}

/// `min avg max` of `values`.
fn spread(values: impl Iterator<Item = usize>) -> String {
    let values: Vec<usize> = values.collect();
    let sum: usize = values.iter().sum();
    format!(
        "min {} avg {:.1} max {}",
        values.iter().copied().min().unwrap_or(0),
        sum as f64 / values.len().max(1) as f64,
        values.iter().copied().max().unwrap_or(0)
    )
}

/// Polls until discovery has converged: the connections both ends hold make one
/// connected graph and every node has at least `target` peers (inbound ones count:
/// a node's outbound connections alone may stay below its target, see the usage).
/// The largest number of peers a node holds then, or `None` (reported) when
/// `--converge-s` passed first.
fn wait_for_discovery(
    o: &Options,
    nets: &mut [Network],
    index_of: &HashMap<PeerId, usize>,
    target: usize,
) -> Result<Option<usize>, String> {
    let setup = Instant::now();
    let mut events = Vec::new();
    let mut report = setup + Duration::from_secs(5);
    loop {
        let mut changed = false;
        for (i, net) in nets.iter_mut().enumerate() {
            net.poll(&mut events, Some(Duration::ZERO))
                .map_err(|e| format!("node {i}: poll failed: {e}"))?;
            for event in events.drain(..) {
                match event {
                    Event::PeerConnected { peer, .. } => {
                        changed = true;
                        if !index_of.contains_key(&peer) {
                            eprintln!("cluster: node {i}: unexpected peer {peer}");
                        }
                    }
                    Event::PeerDisconnected { peer, reason } => {
                        changed = true;
                        eprintln!("cluster: node {i}: peer {peer} disconnected: {reason}");
                    }
                    Event::DialFailed { addr, reason } => {
                        eprintln!("cluster: node {i}: dial {addr} failed: {reason}")
                    }
                    other => log::debug!("node {i}: {other:?}"),
                }
            }
        }
        let now = Instant::now();
        let late = now.duration_since(setup) > o.converge_timeout;
        if !changed && !late && now < report {
            continue;
        }
        let (peers, outbound) = overlay(nets, index_of);
        let short: Vec<usize> = (0..o.nodes).filter(|&i| peers[i].len() < target).collect();
        let pieces = components(&peers);
        if short.is_empty() && pieces == 1 {
            let links = peers.iter().map(HashSet::len).sum::<usize>() / 2;
            let dials: u64 = nets.iter().map(|n| n.stats().discovery_dials).sum();
            eprintln!(
                "cluster: converged in {:.3} s: {links} links, peers {}, outbound {}, {dials} discovery dials",
                setup.elapsed().as_secs_f64(),
                spread(peers.iter().map(HashSet::len)),
                spread(outbound.iter().copied()),
            );
            return Ok(Some(peers.iter().map(HashSet::len).max().unwrap_or(0)));
        }
        if late || now >= report {
            let shown: Vec<String> = short
                .iter()
                .take(10)
                .map(|&i| {
                    format!(
                        "node {i}: {} peers ({} outbound), {} known addresses",
                        peers[i].len(),
                        outbound[i],
                        nets[i].stats().known_addrs
                    )
                })
                .collect();
            let state = format!(
                "{pieces} connected piece(s), {}/{} nodes below {target} peers{}{}",
                short.len(),
                o.nodes,
                if shown.is_empty() { "" } else { ": " },
                shown.join("; ")
            );
            if late {
                eprintln!(
                    "cluster: discovery did not converge within {:?}: {state}",
                    o.converge_timeout
                );
                return Ok(None);
            }
            eprintln!(
                "cluster: converging, t={:.1}s: {state}",
                setup.elapsed().as_secs_f64()
            );
            report = now + Duration::from_secs(5);
        }
    }
}

fn run(o: &Options) -> Result<bool, String> {
    let mut rng = SplitMix64(o.seed);
    let plan = match o.bootstrap {
        None => {
            let dials = build_graph(o.nodes, o.degree, &mut rng);
            let mut neighbours: Vec<HashSet<usize>> = vec![HashSet::new(); o.nodes];
            for &(a, b) in &dials {
                neighbours[a].insert(b);
                neighbours[b].insert(a);
            }
            eprintln!(
                "cluster: {} nodes, {} links, degree {}, seed {}, security {}",
                o.nodes,
                dials.len(),
                spread(neighbours.iter().map(HashSet::len)),
                o.seed,
                o.security,
            );
            Plan::Graph { dials, neighbours }
        }
        Some(k) => {
            let seeds = choose_seeds(o.nodes, k, &mut rng);
            let target = o.degree.min(o.nodes - 1);
            eprintln!(
                "cluster: {} nodes, bootstrap: {} seeds each (node i among nodes 0..i), target_outbound {target}, seed {}, security {}",
                o.nodes, k, o.seed, o.security,
            );
            Plan::Bootstrap { seeds, target }
        }
    };

    // Start the nodes and wire them up.
    let config = config_for(o);
    let mut nets = Vec::with_capacity(o.nodes);
    let mut addrs = Vec::with_capacity(o.nodes);
    for i in 0..o.nodes {
        let mut net = Network::new(config.clone()).map_err(|e| format!("node {i}: {e}"))?;
        let addr = net
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| format!("node {i}: cannot listen: {e}"))?;
        nets.push(net);
        addrs.push(addr);
    }
    let ids: Vec<PeerId> = nets.iter().map(Network::local_id).collect();
    let index_of: HashMap<PeerId, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let ready = match &plan {
        Plan::Graph { dials, neighbours } => {
            for &(from, to) in dials {
                nets[from]
                    .dial(addrs[to])
                    .map_err(|e| format!("node {from} cannot dial node {to}: {e}"))?;
            }
            wait_for_graph(o, &mut nets, &index_of, dials, neighbours)?
        }
        Plan::Bootstrap { seeds, target } => {
            for (i, seeds) in seeds.iter().enumerate() {
                for &j in seeds {
                    nets[i].add_addr(addrs[j]);
                }
            }
            wait_for_discovery(o, &mut nets, &index_of, *target)?
        }
    };
    let Some(max_degree) = ready else {
        give_up(o, &mut nets);
        return Ok(false);
    };

    // Flood. At most `window` broadcasts in flight, so a link's queue stays far below
    // the write buffer caps whatever the size, and nothing is dropped.
    let frame = o.size + GOSSIP_OVERHEAD;
    let room =
        (config.max_write_buffer / 4).min(config.max_write_buffer_total / (4 * max_degree.max(1)));
    let window = (room / frame).max(1);
    log::info!("window of {window} broadcasts in flight");

    let expected = o.broadcasts * (o.nodes - 1);
    let mut tally = Tally {
        delivered: vec![vec![false; o.broadcasts]; o.nodes],
        sent: HashMap::with_capacity(o.broadcasts),
        deliveries: 0,
        duplicates: 0,
        corrupt: 0,
        unknown: 0,
        in_flight: 0,
        latencies_ns: Vec::with_capacity(expected),
        last_delivery: None,
    };
    let mut failed = 0usize;
    let mut disconnects = 0usize;
    let mut next = 0usize;
    let epoch = Instant::now();
    let mut first_broadcast: Option<Instant> = None;
    let mut report = Instant::now() + Duration::from_secs(1);
    let mut timed_out = false;
    let mut events = Vec::new();

    loop {
        let done = next == o.broadcasts && tally.in_flight == 0;
        if done {
            break;
        }
        if first_broadcast.is_some_and(|t| t.elapsed() > o.timeout) {
            timed_out = true;
            break;
        }
        for _ in 0..o.per_turn {
            if next == o.broadcasts || tally.in_flight >= window {
                break;
            }
            let origin = rng.below(o.nodes);
            let sent_ns = nanos_since(epoch);
            first_broadcast.get_or_insert_with(Instant::now);
            match nets[origin].broadcast(payload(next, o.size, sent_ns)) {
                Ok(id) => {
                    tally.delivered[origin][next] = true;
                    tally.sent.insert(
                        id,
                        Sent {
                            index: next,
                            missing: o.nodes - 1,
                        },
                    );
                    tally.in_flight += 1;
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("cluster: broadcast {next} from node {origin} failed: {e}");
                }
            }
            next += 1;
        }
        for (i, net) in nets.iter_mut().enumerate() {
            net.poll(&mut events, Some(Duration::ZERO))
                .map_err(|e| format!("node {i}: poll failed: {e}"))?;
            for event in events.drain(..) {
                match event {
                    Event::Broadcast { id, payload, .. } => {
                        tally.deliver(i, id, &payload, o.size, nanos_since(epoch))
                    }
                    Event::PeerDisconnected { peer, reason } => {
                        disconnects += 1;
                        eprintln!("cluster: node {i}: peer {peer} disconnected: {reason}");
                    }
                    Event::FrameRejected { peer, reason, .. } => {
                        eprintln!("cluster: node {i}: frame from {peer} rejected: {reason}")
                    }
                    other => log::debug!("node {i}: {other:?}"),
                }
            }
        }
        if Instant::now() >= report {
            report += Duration::from_secs(1);
            eprintln!(
                "cluster: {} t={:.1}s broadcast {next}/{} delivered {}/{expected}",
                o.security,
                first_broadcast.map_or(0.0, |t| t.elapsed().as_secs_f64()),
                o.broadcasts,
                tally.deliveries,
            );
        }
    }

    let dropped: u64 = nets.iter().map(|n| n.stats().totals.dropped_sends).sum();
    let rejected: u64 = nets.iter().map(|n| n.stats().totals.rejected_frames).sum();
    let relayed_dups: u64 = nets.iter().map(|n| n.stats().duplicate_gossip).sum();
    let bytes_out: u64 = nets.iter().map(|n| n.stats().totals.bytes_out).sum();
    eprintln!(
        "cluster: dropped_sends={dropped} rejected_frames={rejected} duplicate_gossip_dropped={relayed_dups} bytes_out={bytes_out}"
    );
    if timed_out {
        eprintln!("cluster: gave up after {:?}", o.timeout);
    }
    if failed + tally.corrupt + tally.unknown + disconnects > 0 {
        eprintln!(
            "cluster: failed_broadcasts={failed} corrupt={} unknown_ids={} disconnects={disconnects}",
            tally.corrupt, tally.unknown
        );
    }

    tally.latencies_ns.sort_unstable();
    let elapsed = match (first_broadcast, tally.last_delivery) {
        (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "cluster: nodes={} broadcasts={} delivered={}/{expected} duplicates={} p50_ms={:.3} p99_ms={:.3} elapsed_s={elapsed:.3}",
        o.nodes,
        o.broadcasts,
        tally.deliveries,
        tally.duplicates,
        percentile_ms(&tally.latencies_ns, 0.50),
        percentile_ms(&tally.latencies_ns, 0.99),
    );

    shut_down(&mut nets);
    Ok(tally.deliveries == expected
        && tally.duplicates == 0
        && tally.corrupt == 0
        && tally.unknown == 0)
}

/// Shuts every node down gracefully and polls until all are done (bounded).
fn shut_down(nets: &mut [Network]) {
    for net in nets.iter_mut() {
        net.shutdown();
    }
    let start = Instant::now();
    let mut events = Vec::new();
    while !nets.iter().all(Network::is_shut_down) {
        if start.elapsed() > SHUTDOWN_TIMEOUT {
            let open = nets.iter().filter(|n| !n.is_shut_down()).count();
            eprintln!("cluster: {open} nodes still closing after {SHUTDOWN_TIMEOUT:?}");
            return;
        }
        for (i, net) in nets.iter_mut().enumerate() {
            if let Err(e) = net.poll(&mut events, Some(Duration::ZERO)) {
                eprintln!("cluster: node {i}: poll failed during shutdown: {e}");
            }
        }
    }
    eprintln!(
        "cluster: all nodes shut down in {:.3} s",
        start.elapsed().as_secs_f64()
    );
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cluster: {e}");
            eprintln!("cluster: try --help");
            return ExitCode::from(2);
        }
    };
    // simple_logger is built with its `stderr` feature: stdout carries only the report.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(options.log)
        .init();
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_distinct_earlier_nodes_and_follow_the_seed() {
        let seeds = choose_seeds(50, 3, &mut SplitMix64(7));
        assert!(seeds[0].is_empty());
        for (i, s) in seeds.iter().enumerate() {
            assert_eq!(s.len(), i.min(3), "node {i}: {s:?}");
            assert!(s.iter().all(|&j| j < i), "node {i}: {s:?}");
            let distinct: HashSet<_> = s.iter().collect();
            assert_eq!(distinct.len(), s.len(), "node {i}: {s:?}");
        }
        assert_eq!(seeds, choose_seeds(50, 3, &mut SplitMix64(7)));
        assert_ne!(seeds, choose_seeds(50, 3, &mut SplitMix64(8)));
    }

    #[test]
    fn components_counts_the_pieces_of_a_symmetric_graph() {
        let graph = |edges: &[(usize, usize)], n: usize| {
            let mut peers = vec![HashSet::new(); n];
            for &(a, b) in edges {
                peers[a].insert(b);
                peers[b].insert(a);
            }
            peers
        };
        assert_eq!(components(&graph(&[(0, 1), (1, 2)], 3)), 1);
        assert_eq!(components(&graph(&[(0, 1)], 3)), 2);
        assert_eq!(components(&graph(&[], 2)), 2);
    }

    #[test]
    fn bootstrap_needs_a_seed() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(parse_args(args(&["--bootstrap", "0"])).is_err());
        match parse_args(args(&["--bootstrap=2", "--converge-s", "5"])) {
            Ok(Parsed::Run(o)) => {
                assert_eq!(o.bootstrap, Some(2));
                assert_eq!(o.converge_timeout, Duration::from_secs(5));
            }
            _ => panic!("not parsed"),
        }
    }
}
