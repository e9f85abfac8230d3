//! What the attack tests share beyond `tests/common`: raw peers from other loopback
//! addresses, the process's RSS, and running a heavy test in a process of its own.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::common::Raw;

/// The loopback address `127.0.0.n`, a distinct remote host as far as a node's
/// per-address limits go.
pub fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A blocking TCP connection to `addr` from `source` (any free port).
pub fn tcp_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// A raw peer connected to `addr` from `source`.
pub fn raw_from(source: IpAddr, addr: SocketAddr) -> Raw {
    Raw::from_stream(tcp_from(source, addr).expect("raw connect from source"))
}

/// This process's resident set size in bytes, where the platform tells it.
pub fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A deadline for a test's loops: every loop also has a count of turns, this is the
/// second bound so that a stuck test ends.
pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// Like `common::run_until`, and also bounded by the deadline `until`.
#[track_caller]
pub fn run_until_by(
    nets: &mut [&mut p2p::Network],
    max_turns: usize,
    until: Instant,
    mut cond: impl FnMut(&mut [&mut p2p::Network], &crate::common::Log) -> bool,
) -> crate::common::Log {
    let caller = std::panic::Location::caller();
    crate::common::run_until(nets, max_turns, |nets, log| {
        assert!(
            Instant::now() < until,
            "deadline passed in the loop at {caller}"
        );
        cond(nets, log)
    })
}

/// The variable that tells a test it runs in its own process.
const CHILD: &str = "P2P_HOSTILE_CHILD";

/// Runs the test `name` (its path, such as `writes::heavy_non_readers`) alone in a new
/// process of this test binary and returns true in the parent, whose caller then
/// returns; in that child it returns false and the caller runs the test body. RSS is
/// per process, so a test that measures it must not share its process with others.
/// The child's output is shown and its failure fails the parent.
pub fn in_own_process(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let exe = std::env::current_exe().expect("current test binary");
    let status = std::process::Command::new(exe)
        .args([
            name,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .status()
        .expect("spawn the test in its own process");
    assert!(
        status.success(),
        "{name} failed in its own process: {status}"
    );
    true
}

/// The global allocator of this test binary: the system's, counting the bytes held.
/// A precise measure of the heap, where RSS also moves with the allocator's caching.
pub struct CountingAlloc;

static HEAP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter only
// observes the sizes.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let ptr = unsafe { std::alloc::System.alloc(layout) };
        if !ptr.is_null() {
            HEAP.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        HEAP.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            HEAP.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
            HEAP.fetch_add(new_size, std::sync::atomic::Ordering::Relaxed);
        }
        new
    }
}

/// Bytes the heap holds now (allocations of every thread of this process).
pub fn heap() -> usize {
    HEAP.load(std::sync::atomic::Ordering::Relaxed)
}
