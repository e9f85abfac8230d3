//! Hostile peers (issue 10): one module per attack, each asserting a bound and that
//! honest peers keep being served while the attack runs.
//!
//! Loopback only: attackers bind sources such as 127.0.0.2 to play other hosts. Every
//! loop is bounded by a count of turns and a deadline; no test sleeps to wait for the
//! network and none asserts how fast something happened. Variants that need many
//! connections or measure RSS run in release only (`cargo test --release --test
//! hostile`), each in a process of its own ([`support::in_own_process`]); a short
//! variant of each runs in `cargo test`.

#[path = "../common/mod.rs"]
mod common;
mod support;

/// Counts the heap, so that memory tests measure what the node holds precisely.
#[global_allocator]
static ALLOC: support::CountingAlloc = support::CountingAlloc;

mod censor;
mod gossip;
#[cfg(feature = "noise")]
mod keyless;
mod pinning;
mod receive;
mod shutdown;
mod slots;
mod writes;
