//! The fallback when libFuzzer cannot be built: runs every target on its corpus, then
//! on random mutations of it, for a bounded time. No coverage guidance: it catches
//! regressions on known inputs and shallow bugs, not new deep ones.
//!
//! `replay [SECONDS_PER_TARGET] [TARGET..]`, run from `fuzz/`.

use std::panic;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let only: Vec<String> = args.collect();
    let mut failed = Vec::new();
    for (name, target) in p2p_fuzz::TARGETS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let corpus = load(&Path::new("corpus").join(name));
        let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0u64;
        let mut crash = None;
        for input in &corpus {
            runs += 1;
            if !survives(target, input) {
                crash = Some(input.clone());
                break;
            }
        }
        while crash.is_none() && Instant::now() < deadline {
            let input = mutate(&corpus, &mut rng);
            runs += 1;
            if !survives(target, &input) {
                crash = Some(input);
            }
        }
        match crash {
            None => println!(
                "replay {name}: {} corpus inputs, {runs} runs, no crash",
                corpus.len()
            ),
            Some(input) => {
                let dir = Path::new("artifacts").join(name);
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("crash-replay-{runs}"));
                let _ = std::fs::write(&path, &input);
                println!(
                    "replay {name}: CRASH after {runs} runs, input in {}",
                    path.display()
                );
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        println!("replay: crashes in {failed:?}");
        std::process::exit(1);
    }
}

fn survives(target: fn(&[u8]), input: &[u8]) -> bool {
    panic::catch_unwind(|| target(input)).is_ok()
}

fn load(dir: &Path) -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    inputs.sort();
    if inputs.is_empty() {
        inputs.push(Vec::new());
    }
    inputs
}

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A corpus input with a few random edits: flipped, inserted, deleted or copied bytes,
/// or a splice with another input.
fn mutate(corpus: &[Vec<u8>], rng: &mut Xorshift) -> Vec<u8> {
    let mut out = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let piece = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, piece);
            }
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}
