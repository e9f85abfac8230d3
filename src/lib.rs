//! `p2p`: the peer-to-peer layer of a blockchain-style node.
//!
//! It listens for peers, dials peers, authenticates them (noise-xx: a node's id is its
//! static X25519 public key, proven by the handshake), sends to one peer, makes
//! requests, broadcasts to the whole network by gossip, and hands what arrives up to
//! the node that embeds it. A sans-IO core (frames, handshake, socket state machines,
//! gossip, requests, limits) runs under a thin `mio` reactor, with no async executor:
//! the embedding node drives it one [`Network::poll`] at a time from its own loop, or
//! from other threads through a [`Handle`]. [`sim::Sim`] runs many nodes on the same
//! core in one thread, deterministically.
//!
//! * The wire protocol: [`protocol`] (the repository's `docs/PROTOCOL.md`, versioned).
//!   Docs that cite "PROTOCOL.md §x" mean a section of it.
//! * Limits against hostile peers: [`Config`] (every field has a default and a
//!   rule in [`protocol`] §6); what was dropped or refused: [`Stats`], [`PeerStats`].
//! * The README (operating a public node, the `node` and `cluster` examples,
//!   benchmarks) ships with the crate.
//!
//! Every error the crate returns converts into [`Error`], so one function returning
//! `Result<_, p2p::Error>` can `?` every call; the calls return their specific enums
//! ([`SendError`], [`DialError`], ...) to match on. Payloads are anything
//! [`Payload`]: `Bytes`, `Vec<u8>` and `String` owned, `&[u8]` and `&str` borrowed
//! (copied once).
//!
//! A peer may leave at any moment, so a command about one peer can fail on an
//! ordinary race; a node logs it and goes on. Only an error of `poll` itself ends the
//! loop:
//!
//! ```no_run
//! use p2p::{Config, Event, Network};
//!
//! fn main() -> Result<(), p2p::Error> {
//!     let mut net = Network::new(Config::default())?;
//!     let addr = net.listen("127.0.0.1:0".parse()?)?;
//!     println!("listening on {addr} as {}", net.local_id());
//!     let mut events = Vec::new();
//!     loop {
//!         net.poll(&mut events, None)?;
//!         for event in events.drain(..) {
//!             if let Err(e) = on_event(&mut net, event) {
//!                 eprintln!("{e}"); // the peer left, or its queue is full
//!             }
//!         }
//!     }
//! }
//!
//! fn on_event(net: &mut Network, event: Event) -> Result<(), p2p::Error> {
//!     match event {
//!         Event::Broadcast { payload, .. } => println!("got {} bytes", payload.len()),
//!         Event::Request { peer, id, payload } => {
//!             let answer = format!("{} bytes received", payload.len());
//!             net.respond(&peer, id, answer.as_bytes())?;
//!         }
//!         _ => {}
//!     }
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("p2p packs a slot and a generation into a mio token and needs a 64-bit target");

mod addrbook;
mod bucket;
mod budget;
mod config;
mod discovery;
mod duplicate;
mod error;
mod event;
// NOT API: hooks for the fuzz targets in fuzz/, behind the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gossip;
mod handle;
mod id;
#[cfg(feature = "noise")]
mod keypair;
mod network;
mod node;
mod ordered;
mod payload;
mod peer;
mod persistent;
mod queue;
mod reactor;
#[cfg(feature = "noise")]
mod resolver;
mod rng;
mod secret;
mod secure;
pub mod sim;
mod slots;
mod socket;
mod timers;
mod validation;
pub mod wire;

#[cfg(test)]
mod tests;

#[doc = include_str!("../docs/PROTOCOL.md")]
pub mod protocol {}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use bytes::Bytes;
pub use config::{
    Config, ConfigError, MAX_ADDRESS_BOOK, MAX_COUNT, MAX_DURATION, MAX_PER_PEER_TABLE,
};
pub use error::{CloseReason, DialError, Error, HandleError, RequestError, SendError};
pub use event::{Direction, Event};
pub use handle::Handle;
pub use id::{GossipId, RequestId, SendId};
#[cfg(feature = "noise")]
pub use keypair::{KeyError, KeyFileCheck, Keypair};
pub use network::{Network, PeerInfo};
pub use node::Stats;
pub use payload::Payload;
pub use peer::{ParsePeerIdError, PeerId};
#[cfg(feature = "noise")]
pub use resolver::NoiseResolver;
pub use socket::{PeerStats, Phase};
pub use validation::Validation;
pub use wire::{GoodbyeReason, Reject, Security};
