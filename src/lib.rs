//! `p2p`: the peer-to-peer layer of a blockchain-style node.
//!
//! A sans-IO core (frames, handshake, socket state machines, gossip, requests) under a
//! thin `mio` reactor. The embedding node drives it step by step with
//! [`Network::poll`], or from other threads through a [`Handle`]. The wire protocol is
//! described in the README.
//!
//! ```no_run
//! use p2p::{Config, Event, Network};
//!
//! let mut net = Network::new(Config::default())?;
//! let addr = net.listen("127.0.0.1:0".parse().unwrap())?;
//! println!("listening on {addr} as {}", net.local_id());
//! let mut events = Vec::new();
//! loop {
//!     net.poll(&mut events, None)?;
//!     for event in events.drain(..) {
//!         match event {
//!             Event::Broadcast { payload, .. } => println!("got {} bytes", payload.len()),
//!             Event::Request { peer, id, .. } => net.respond(&peer, id, "ok")?,
//!             _ => {}
//!         }
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("p2p packs a slot and a generation into a mio token and needs a 64-bit target");

mod bucket;
mod config;
mod error;
mod event;
// NOT API: hooks for the fuzz targets in fuzz/, behind the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gossip;
mod handle;
#[cfg(feature = "noise")]
mod keypair;
mod network;
#[cfg(test)]
mod pair;
mod peer;
mod queue;
mod reactor;
#[cfg(feature = "noise")]
mod resolver;
mod rng;
mod secure;
pub mod sim;
mod slots;
mod socket;
pub mod wire;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use bytes::Bytes;
pub use config::{Config, ConfigError, MAX_COUNT, MAX_DURATION};
pub use error::{CloseReason, DialError, Error, HandleError, RequestError, SendError};
pub use event::{Direction, Event, GossipId, RequestId};
pub use handle::Handle;
#[cfg(feature = "noise")]
pub use keypair::{KeyError, Keypair};
pub use network::Stats;
pub use peer::{ParsePeerIdError, PeerId};
pub use reactor::{Network, PeerInfo};
#[cfg(feature = "noise")]
pub use resolver::NoiseResolver;
pub use socket::{PeerStats, Phase};
pub use wire::{GoodbyeReason, Reject, Security};
