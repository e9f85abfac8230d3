//! A whole network in the deterministic simulator: the real node core, handshakes and
//! gossip on virtual links and a virtual clock, reproducible from its seed.
//!
//! ```text
//! cargo run --release --example simulate -- --nodes 1000 --degree 8 --broadcasts 100 --seed 7 [--plaintext] [--faults] [--bootstrap K]
//! ```
//!
//! The graph is a ring (so it is connected) plus random dials until each node has
//! dialled D others. With `--bootstrap K` there is no graph: each node is given the
//! addresses of only K others, drawn at random among the nodes before it (all of
//! them for the first K; the first node gets K later ones), and keeps D outbound
//! connections by itself
//! (`Config::target_outbound`), finding the other nodes by peer exchange; the run
//! waits until every node holds D outbound connections in one connected overlay,
//! and the summary gains `converged_ms` (virtual time from the start). With faults
//! too, nothing redials on the nodes' behalf: a restarted node is given its K seed
//! addresses again (its configuration), and the run waits after the last fault
//! until every live node is back in one connected overlay (`rejoined_ms`, virtual
//! time after the heal). Once the dials settle, a broadcast leaves a random node every
//! 10 ms of virtual time. With `--faults`, 1% of dials are refused, a tenth of the
//! nodes are cut off for 500 ms and then healed, ten connections are reset, one node
//! reads slowly, and two nodes crash and restart (re-dialling their peers).
//!
//! The last stdout line is the summary:
//!
//! ```text
//! sim: seed=7 nodes=1000 broadcasts=100 delivered=99900/99900 duplicates=0 virtual_ms=.. wall_ms=.. trace=<16 hex digits>
//! ```
//!
//! A broadcast is expected at every node that stayed connected to its origin from the
//! moment it left to the end of the run: through connections that were open then and
//! that neither end lost or reopened since ([`Sim::reachable_unchanged_since`]). With
//! faults, nodes dial their lost peers again after the heal, as a node's reconnection
//! policy would. The exit status is 0 exactly when every expected delivery happened,
//! once. The same seed prints the same trace.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use p2p::sim::{Sim, SimConfig};
use p2p::{Bytes, Config, Event, Security};

struct Options {
    nodes: usize,
    degree: usize,
    broadcasts: usize,
    seed: u64,
    plaintext: bool,
    faults: bool,
    bootstrap: Option<usize>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        nodes: 100,
        degree: 8,
        broadcasts: 100,
        seed: 7,
        plaintext: false,
        faults: false,
        bootstrap: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--nodes" => o.nodes = value("--nodes")? as usize,
            "--degree" => o.degree = value("--degree")? as usize,
            "--broadcasts" => o.broadcasts = value("--broadcasts")? as usize,
            "--seed" => o.seed = value("--seed")?,
            "--plaintext" => o.plaintext = true,
            "--faults" => o.faults = true,
            "--bootstrap" => o.bootstrap = Some(value("--bootstrap")? as usize),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if o.bootstrap == Some(0) {
        return Err("--bootstrap must be at least 1".into());
    }
    Ok(o)
}

/// splitmix64: the example's own choices (graph, origins), from the seed.
struct Choice(u64);

impl Choice {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Node `i` dials again those of its `dials` it is not connected to, as a node's
/// reconnection policy would.
fn redial(sim: &mut Sim, i: usize, dials: &[usize]) {
    for &j in dials {
        let peer = sim.node(j).id();
        if sim.node(j).is_up() && !sim.node(i).is_connected(&peer) {
            let _ = sim.dial(i, j);
        }
    }
}

/// Steps the simulation in 10 ms slices until `done`, for at most `limit`; the
/// virtual time it took, or `None`.
fn wait_for(sim: &mut Sim, limit: Duration, done: impl Fn(&Sim) -> bool) -> Option<Duration> {
    let start = sim.elapsed();
    loop {
        if done(sim) {
            return Some(sim.elapsed() - start);
        }
        if sim.elapsed() - start >= limit {
            return None;
        }
        sim.run_for(Duration::from_millis(10));
    }
}

/// Whether every live node holds `target` outbound connections and all of them are
/// one connected overlay.
fn whole(sim: &Sim, target: usize) -> bool {
    let up: Vec<usize> = (0..sim.len()).filter(|&i| sim.node(i).is_up()).collect();
    let Some(&first) = up.first() else {
        return true;
    };
    if up.iter().any(|&i| sim.node(i).outbound() < target) {
        return false;
    }
    let reach = sim.reachable(first);
    up.iter().all(|&i| reach[i])
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let node = Config {
        security: if o.plaintext {
            Security::Plaintext
        } else {
            Config::default().security
        },
        max_inbound: 4 * o.degree + 16,
        max_pending_handshakes: 4 * o.degree + 16,
        target_outbound: if o.bootstrap.is_some() {
            o.degree.min(o.nodes - 1)
        } else {
            0
        },
        ..Config::default()
    };
    let mut sim = match Sim::new(SimConfig {
        seed: o.seed,
        refuse_per_million: if o.faults { 10_000 } else { 0 },
        node,
        ..SimConfig::default()
    }) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let n = o.nodes;
    for _ in 0..n {
        sim.add_node();
    }
    let mut choice = Choice(o.seed ^ 0x5eed);
    // With --bootstrap: seeds[i], the addresses node i is given.
    let mut seeds: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut converged = None;
    if let Some(k) = o.bootstrap {
        for (i, list) in seeds.iter_mut().enumerate() {
            // The first node, which had nobody before it, is given later ones: if
            // it restarts, it must find the network again.
            let (from, span) = if i == 0 { (1, n - 1) } else { (0, i) };
            while list.len() < k.min(span) {
                let j = from + choice.below(span);
                if !list.contains(&j) {
                    list.push(j);
                }
            }
            for &j in list.iter() {
                sim.add_addr(i, sim.node(j).addr());
            }
        }
        let target = o.degree.min(n - 1);
        let started = Instant::now();
        let Some(took) = wait_for(&mut sim, Duration::from_secs(600), |sim| whole(sim, target))
        else {
            let short = (0..n).filter(|&i| sim.node(i).outbound() < target).count();
            eprintln!(
                "simulate: no whole overlay after 600 s virtual: {short} nodes short of {target} outbound"
            );
            return ExitCode::FAILURE;
        };
        eprintln!(
            "simulate: {n} nodes from {k} seed addresses each: {target} outbound each, one overlay, after {} ms virtual, {} ms wall",
            took.as_millis(),
            started.elapsed().as_millis()
        );
        converged = Some(took);
    }
    // The ring, then random extra dials; no pair twice in either direction.
    let graph = o.bootstrap.is_none();
    let mut linked = std::collections::HashSet::new();
    let mut dials: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, list) in dials.iter_mut().enumerate().filter(|_| graph) {
        let j = (i + 1) % n;
        if linked.insert((i.min(j), i.max(j))) {
            list.push(j);
        }
    }
    for (i, list) in dials.iter_mut().enumerate().filter(|_| graph) {
        let mut tries = 0;
        while list.len() < o.degree.min(n - 1) && tries < 100 * o.degree {
            tries += 1;
            let j = choice.below(n);
            if j != i && linked.insert((i.min(j), i.max(j))) {
                list.push(j);
            }
        }
    }
    for (i, list) in dials.iter().enumerate() {
        for &j in list {
            let _ = sim.dial(i, j);
        }
    }
    sim.run_for(Duration::from_secs(1));
    eprintln!(
        "simulate: {} nodes connected after {:?} wall",
        (0..n).filter(|&i| sim.node(i).peers() > 0).count(),
        wall.elapsed()
    );

    // Faults, at fixed points of the broadcast phase.
    let crash_victims: Vec<usize> = if o.faults {
        vec![choice.below(n), choice.below(n)]
    } else {
        Vec::new()
    };
    if o.faults {
        sim.set_read_rate(choice.below(n), Some(1_000_000));
    }
    let mut origins = Vec::with_capacity(o.broadcasts);
    // With --bootstrap and --faults: when the last heal or restart happened, and how
    // long after it every live node was back in one overlay.
    let (mut last_fault, mut rejoined) = (None, None);
    let target = o.degree.min(n - 1);
    // earlier[i]: the events of node i's cores before its last restart.
    let mut earlier: Vec<Vec<Event>> = vec![Vec::new(); n];
    // marks[k]: the trace's length when broadcast k left.
    let mut marks = Vec::with_capacity(o.broadcasts);
    for k in 0..o.broadcasts {
        if o.faults {
            if k == o.broadcasts / 5 {
                let island: Vec<usize> = (0..n / 10).map(|_| choice.below(n)).collect();
                sim.partition(&island);
            }
            // (A run too short to reach this heals after its last broadcast.)
            if k == o.broadcasts / 5 + 50 {
                sim.heal();
                last_fault = Some(sim.elapsed());
                for (i, list) in dials.iter().enumerate() {
                    redial(&mut sim, i, list);
                }
            }
            if k == o.broadcasts / 3 {
                for _ in 0..10 {
                    let a = choice.below(n);
                    if let Some(&b) = dials[a].first() {
                        sim.reset(a, b);
                    }
                }
                for &v in &crash_victims {
                    sim.crash(v);
                }
            }
            if k == o.broadcasts / 3 + 20 {
                for &v in &crash_victims {
                    // A restarted node is a new process: what it delivered before is
                    // no duplicate of what it delivers now.
                    let before = sim.take_events(v);
                    earlier[v].extend(before);
                    sim.restart(v);
                    last_fault = Some(sim.elapsed());
                    redial(&mut sim, v, &dials[v]);
                    // Its configuration: the seeds it starts from (nothing without
                    // --bootstrap).
                    for &j in &seeds[v] {
                        sim.add_addr(v, sim.node(j).addr());
                    }
                }
            }
        }
        let mut origin = choice.below(n);
        while !sim.node(origin).is_up() {
            origin = choice.below(n);
        }
        let mut payload = (k as u32).to_be_bytes().to_vec();
        payload.extend_from_slice(&[0xab; 60]);
        if sim.broadcast(origin, Bytes::from(payload)).is_err() {
            eprintln!("simulate: broadcast {k} refused at node {origin}");
        }
        origins.push(origin);
        marks.push(sim.trace_len());
        sim.run_for(Duration::from_millis(10));
        if let (Some(at), None, true) = (last_fault, rejoined, o.bootstrap.is_some()) {
            rejoined = whole(&sim, target).then(|| sim.elapsed() - at);
        }
    }
    if o.faults {
        sim.heal();
    }
    if let (Some(at), None, Some(_)) = (last_fault, rejoined, o.bootstrap) {
        // Nobody redials for the nodes: discovery alone brings every live node back
        // into one overlay.
        let Some(_) = wait_for(&mut sim, Duration::from_secs(600), |sim| whole(sim, target)) else {
            eprintln!("simulate: the overlay is not whole again 600 s after the last fault");
            return ExitCode::FAILURE;
        };
        rejoined = Some(sim.elapsed() - at);
    }
    sim.run_for(Duration::from_secs(5));
    // reach[k]: the nodes that stayed connected to broadcast k's origin since it left.
    let reach: Vec<Vec<bool>> = (0..o.broadcasts)
        .map(|k| sim.reachable_unchanged_since(origins[k], marks[k]))
        .collect();

    // Count.
    let mut expected = 0usize;
    let mut delivered = 0usize;
    let mut duplicates = 0usize;
    // How many times each broadcast is in `events`.
    let count = |events: &[Event]| {
        let mut seen = vec![0u32; o.broadcasts];
        for event in events {
            if let Event::Broadcast { payload, .. } = event
                && payload.len() >= 4
            {
                let k =
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
                if k < o.broadcasts {
                    seen[k] += 1;
                }
            }
        }
        seen
    };
    // seen[i][k]: how many times node i's current core delivered broadcast k; before:
    // its earlier cores.
    let seen: Vec<Vec<u32>> = (0..n).map(|i| count(sim.node(i).events())).collect();
    let before: Vec<Vec<u32>> = earlier.iter().map(|e| count(e)).collect();
    for (k, reached) in reach.iter().enumerate() {
        for (i, &expect) in reached.iter().enumerate() {
            duplicates += (seen[i][k].saturating_sub(1) + before[i][k].saturating_sub(1)) as usize;
            let count = seen[i][k] + before[i][k];
            if expect && origins[k] != i {
                expected += 1;
                if count >= 1 {
                    delivered += 1;
                } else if expected - delivered <= 10 {
                    eprintln!(
                        "simulate: node {i} missed broadcast {k} from node {} ({} peers now)",
                        origins[k],
                        sim.node(i).peers()
                    );
                }
            }
        }
    }
    let ok = delivered == expected && duplicates == 0;
    let mut discovery = String::new();
    if let Some(took) = converged {
        discovery += &format!(" converged_ms={}", took.as_millis());
    }
    if let Some(took) = rejoined {
        discovery += &format!(" rejoined_ms={}", took.as_millis());
    }
    println!(
        "sim: seed={} nodes={} broadcasts={} delivered={}/{} duplicates={}{discovery} virtual_ms={} wall_ms={} trace={:016x}",
        o.seed,
        n,
        o.broadcasts,
        delivered,
        expected,
        duplicates,
        sim.elapsed().as_millis(),
        wall.elapsed().as_millis(),
        sim.trace_hash()
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
