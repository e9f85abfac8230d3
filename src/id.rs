//! The ids the API hands out: of requests, of sends through a handle, of broadcasts.

use std::fmt;

use crate::peer::hex;

/// The id of a request, unique per node; a response carries the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The token of a send queued through a [`Handle`](crate::Handle), returned by
/// [`Handle::send`](crate::Handle::send) and carried by the
/// [`Event::SendFailed`](crate::Event::SendFailed) that reports its failure, if it fails. Unique per
/// [`Network`](crate::Network) and all its handles; it never crosses the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendId(pub u64);

impl fmt::Display for SendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The 16-byte id of a broadcast, the same at every node it reaches.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GossipId(pub [u8; 16]);

impl fmt::Display for GossipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for GossipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GossipId({self})")
    }
}
