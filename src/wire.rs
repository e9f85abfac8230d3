//! Wire format: the connection preamble, the length-prefixed frames and a streaming decoder.

use std::fmt;
use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The four ASCII bytes every connection starts with.
pub const MAGIC: [u8; 4] = *b"P2PV";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Size of the connection preamble.
pub const PREAMBLE_LEN: usize = 12;
/// Size of the `len` field.
pub const LEN_FIELD: usize = 4;
/// Frames of at most this many wire bytes (`LEN_FIELD + len`) have their payload
/// copied out of the buffer they were decoded from; larger ones are slices of it. A
/// payload kept after the read (queued for relay, held by the application) then pins
/// no more than its own size: small ones own their bytes, and a reader that gives
/// each larger frame a buffer of its own (as this crate's does) lets a large payload
/// pin only that buffer.
pub const COPY_LIMIT: usize = 64 * 1024;

/// Where a MESSAGE's payload starts in its frame: after the len field and the kind.
pub const MESSAGE_PAYLOAD_AT: usize = LEN_FIELD + 1;

/// Frame kind bytes.
pub mod kind {
    /// Liveness probe; body = nonce u64.
    pub const PING: u8 = 0x01;
    /// Answer to a PING; body = the same nonce u64.
    pub const PONG: u8 = 0x02;
    /// Direct application message; body = payload.
    pub const MESSAGE: u8 = 0x10;
    /// Flooded message; body = 16-byte id, hops u8, payload.
    pub const GOSSIP: u8 = 0x11;
    /// Request expecting a RESPONSE; body = id u64, payload.
    pub const REQUEST: u8 = 0x12;
    /// Answer to a REQUEST; body = id u64, payload.
    pub const RESPONSE: u8 = 0x13;
    /// The sender's listening addresses (PROTOCOL.md §5.1); sent only to a peer
    /// whose preamble set [`FEATURE_ADDRS`](super::FEATURE_ADDRS).
    pub const ADDRS: u8 = 0x20;
    /// A request for addresses of other nodes (PROTOCOL.md §5.2); empty body; sent
    /// only to a peer whose preamble set [`FEATURE_PEX`](super::FEATURE_PEX).
    pub const GETADDRS: u8 = 0x21;
    /// The answer to a GETADDRS: addresses of other nodes, at most
    /// [`MAX_PEERS`](super::MAX_PEERS), in the ADDRS encoding.
    pub const PEERS: u8 = 0x22;
    /// Orderly close; body = reason u8.
    pub const GOODBYE: u8 = 0x7F;
}

/// Preamble byte 6, bit 0: the sender understands ADDRS frames (PROTOCOL.md §1, §5.1).
pub const FEATURE_ADDRS: u8 = 0x01;

/// Preamble byte 6, bit 1: the sender understands GETADDRS and PEERS frames, peer
/// exchange (PROTOCOL.md §1, §5.2).
pub const FEATURE_PEX: u8 = 0x02;

/// The features this version sets in its preamble.
pub const FEATURES: u8 = FEATURE_ADDRS | FEATURE_PEX;

/// The most addresses one ADDRS frame carries.
pub const MAX_ADDRS: usize = 8;

/// The most addresses one PEERS frame carries.
pub const MAX_PEERS: usize = 32;

// `len` is a u32 and is cast to usize below; that is lossless only on targets of 32 bits or more.
const _: () = assert!(usize::BITS >= 32);

const NONCE_LEN: usize = 8;
const REQUEST_ID_LEN: usize = 8;
const GOSSIP_ID_LEN: usize = 16;
/// A GOSSIP body's bytes before its payload: id and hops.
pub(crate) const GOSSIP_HEAD_LEN: usize = GOSSIP_ID_LEN + 1;

/// The transport security a node runs, announced in the preamble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Security {
    /// No encryption.
    Plaintext,
    /// Noise protocol, XX handshake pattern.
    NoiseXx,
}

impl Security {
    /// The preamble byte for this mode.
    pub fn to_byte(self) -> u8 {
        match self {
            Security::Plaintext => 0,
            Security::NoiseXx => 1,
        }
    }

    /// Parses a preamble byte; `None` for values this version does not define.
    pub fn from_byte(b: u8) -> Option<Security> {
        match b {
            0 => Some(Security::Plaintext),
            1 => Some(Security::NoiseXx),
            _ => None,
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Plaintext => "plaintext",
            Security::NoiseXx => "noise-xx",
        })
    }
}

/// The 12 bytes each side sends first on a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preamble {
    /// Transport security the sender runs.
    pub security: Security,
    /// Network the sender belongs to; peers of other networks are refused.
    pub network_id: u32,
}

impl Preamble {
    /// A preamble for this protocol version.
    pub fn new(security: Security, network_id: u32) -> Self {
        Preamble {
            security,
            network_id,
        }
    }

    /// The wire bytes, with version = [`VERSION`], the [`FEATURES`] this version
    /// understands in byte 6, and byte 7 zero.
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.security.to_byte();
        out[6] = FEATURES;
        out[8..].copy_from_slice(&self.network_id.to_be_bytes());
        out
    }

    /// The feature bits a received preamble sets (byte 6; a version-1 peer that
    /// predates them sends 0). Bits this version does not know are ignored.
    pub fn features(bytes: &[u8; PREAMBLE_LEN]) -> u8 {
        bytes[6]
    }

    /// Checks a received preamble against what this node expects, in the order of the spec.
    pub fn check(bytes: &[u8; PREAMBLE_LEN], expected: &Preamble) -> Result<(), PreambleError> {
        if bytes[..4] != MAGIC {
            return Err(PreambleError::BadMagic);
        }
        if bytes[4] != VERSION {
            return Err(PreambleError::UnsupportedVersion(bytes[4]));
        }
        // Compared as a raw byte so that an undefined value is reported as sent.
        if bytes[5] != expected.security.to_byte() {
            return Err(PreambleError::SecurityMismatch {
                ours: expected.security,
                theirs: bytes[5],
            });
        }
        // Byte 6 holds feature bits and byte 7 is reserved: neither is checked, so a
        // peer of any revision of version 1 is accepted (PROTOCOL.md §1).
        let theirs = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if theirs != expected.network_id {
            return Err(PreambleError::NetworkMismatch {
                ours: expected.network_id,
                theirs,
            });
        }
        Ok(())
    }
}

/// Why a received preamble was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// The first four bytes are not [`MAGIC`].
    #[error("bad magic: not a peer of this protocol")]
    BadMagic,
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The peer runs another (or an unknown) security mode.
    #[error("security mismatch: we use {ours}, the peer sent byte {theirs}")]
    SecurityMismatch {
        /// Our mode.
        ours: Security,
        /// The byte the peer sent.
        theirs: u8,
    },
    /// The peer belongs to another network.
    #[error("network mismatch: we are on network {ours}, the peer on {theirs}")]
    NetworkMismatch {
        /// Our network id.
        ours: u32,
        /// The peer's network id.
        theirs: u32,
    },
}

/// Why a peer closes the connection, carried by GOODBYE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoodbyeReason {
    /// The node is shutting down.
    Shutdown,
    /// Another connection to the same peer is kept instead.
    DuplicateConnection,
    /// The node has no room for another peer.
    TooManyPeers,
    /// The peer broke the protocol too often.
    Misbehaving,
    /// The peer stayed silent for too long.
    Timeout,
    /// A reason byte this version does not define.
    Other(u8),
}

impl GoodbyeReason {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            GoodbyeReason::Shutdown => 0,
            GoodbyeReason::DuplicateConnection => 1,
            GoodbyeReason::TooManyPeers => 2,
            GoodbyeReason::Misbehaving => 3,
            GoodbyeReason::Timeout => 4,
            GoodbyeReason::Other(b) => b,
        }
    }

    /// Parses a wire byte; unknown values are kept as [`GoodbyeReason::Other`], not refused.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => GoodbyeReason::Shutdown,
            1 => GoodbyeReason::DuplicateConnection,
            2 => GoodbyeReason::TooManyPeers,
            3 => GoodbyeReason::Misbehaving,
            4 => GoodbyeReason::Timeout,
            other => GoodbyeReason::Other(other),
        }
    }
}

impl fmt::Display for GoodbyeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoodbyeReason::Shutdown => f.write_str("shutdown"),
            GoodbyeReason::DuplicateConnection => f.write_str("duplicate connection"),
            GoodbyeReason::TooManyPeers => f.write_str("too many peers"),
            GoodbyeReason::Misbehaving => f.write_str("misbehaving"),
            GoodbyeReason::Timeout => f.write_str("timeout"),
            GoodbyeReason::Other(b) => write!(f, "unknown reason {b}"),
        }
    }
}

/// A 16-byte gossip id.
pub type GossipIdBytes = [u8; 16];

/// One decoded or to-be-sent frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Liveness probe with a nonce to echo.
    Ping(u64),
    /// Echo of a PING's nonce.
    Pong(u64),
    /// Direct application message.
    Message(Bytes),
    /// Flooded application message.
    Gossip {
        /// Id used to drop duplicates.
        id: GossipIdBytes,
        /// Relays so far.
        hops: u8,
        /// Application payload.
        payload: Bytes,
    },
    /// Request expecting a RESPONSE with the same id.
    Request {
        /// Id chosen by the requester.
        id: u64,
        /// Application payload.
        payload: Bytes,
    },
    /// Answer to the REQUEST with the same id.
    Response {
        /// The request's id.
        id: u64,
        /// Application payload.
        payload: Bytes,
    },
    /// The sender's listening addresses, at most [`MAX_ADDRS`]; an unspecified IP
    /// (`0.0.0.0`, `::`) means the address the receiver sees the sender at.
    Addrs(Vec<SocketAddr>),
    /// A request for addresses of other nodes, answered by one PEERS.
    GetAddrs,
    /// Addresses of other nodes, at most [`MAX_PEERS`], answering a GETADDRS.
    Peers(Vec<SocketAddr>),
    /// Orderly close.
    Goodbye(GoodbyeReason),
}

/// The bytes an address takes in an ADDRS body: family, IP, port.
fn addr_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

impl Frame {
    /// The frame's kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Frame::Ping(_) => kind::PING,
            Frame::Pong(_) => kind::PONG,
            Frame::Message(_) => kind::MESSAGE,
            Frame::Gossip { .. } => kind::GOSSIP,
            Frame::Request { .. } => kind::REQUEST,
            Frame::Response { .. } => kind::RESPONSE,
            Frame::Addrs(_) => kind::ADDRS,
            Frame::GetAddrs => kind::GETADDRS,
            Frame::Peers(_) => kind::PEERS,
            Frame::Goodbye(_) => kind::GOODBYE,
        }
    }

    /// Body bytes before the payload.
    fn fixed_len(&self) -> usize {
        match self {
            Frame::Ping(_) | Frame::Pong(_) => NONCE_LEN,
            Frame::Message(_) => 0,
            Frame::Gossip { .. } => GOSSIP_HEAD_LEN,
            Frame::Request { .. } | Frame::Response { .. } => REQUEST_ID_LEN,
            Frame::Addrs(addrs) | Frame::Peers(addrs) => addrs.iter().map(addr_len).sum(),
            Frame::GetAddrs => 0,
            Frame::Goodbye(_) => 1,
        }
    }

    fn body_len(&self) -> usize {
        self.fixed_len() + self.payload().map_or(0, Bytes::len)
    }

    /// Total bytes on the wire: LEN_FIELD + 1 + body.
    #[inline]
    pub fn wire_len(&self) -> usize {
        // MESSAGE first: the hot path of every send, kept off the match of every kind.
        if let Frame::Message(payload) = self {
            return LEN_FIELD + 1 + payload.len();
        }
        LEN_FIELD + 1 + self.body_len()
    }

    /// Writes everything but the application payload (len, kind, fixed fields) to `out`.
    /// Together with `payload()` this lets the caller queue a shared payload without copying it.
    ///
    /// # Panics
    /// If the body does not fit the u32 `len` field (over 4 GiB): a local bug, since peers'
    /// frames are bounded by the decoder's maximum.
    pub fn encode_head(&self, out: &mut BytesMut) {
        if let Frame::Message(payload) = self {
            let len =
                u32::try_from(1 + payload.len()).expect("frame body exceeds the u32 len field");
            out.reserve(LEN_FIELD + 1);
            out.put_u32(len);
            out.put_u8(kind::MESSAGE);
            return;
        }
        let len = u32::try_from(1 + self.body_len()).expect("frame body exceeds the u32 len field");
        out.reserve(LEN_FIELD + 1 + self.fixed_len());
        out.put_u32(len);
        out.put_u8(self.kind());
        match self {
            Frame::Ping(nonce) | Frame::Pong(nonce) => out.put_u64(*nonce),
            Frame::Message(_) => {}
            Frame::Gossip { id, hops, .. } => {
                out.put_slice(id);
                out.put_u8(*hops);
            }
            Frame::Request { id, .. } | Frame::Response { id, .. } => out.put_u64(*id),
            Frame::GetAddrs => {}
            Frame::Addrs(addrs) | Frame::Peers(addrs) => {
                for addr in addrs {
                    match addr {
                        SocketAddr::V4(v4) => {
                            out.put_u8(4);
                            out.put_slice(&v4.ip().octets());
                        }
                        SocketAddr::V6(v6) => {
                            out.put_u8(6);
                            out.put_slice(&v6.ip().octets());
                        }
                    }
                    out.put_u16(addr.port());
                }
            }
            Frame::Goodbye(reason) => out.put_u8(reason.to_byte()),
        }
    }

    /// The application payload, for the kinds that carry one.
    pub fn payload(&self) -> Option<&Bytes> {
        match self {
            Frame::Message(payload)
            | Frame::Gossip { payload, .. }
            | Frame::Request { payload, .. }
            | Frame::Response { payload, .. } => Some(payload),
            Frame::Ping(_)
            | Frame::Pong(_)
            | Frame::Addrs(_)
            | Frame::GetAddrs
            | Frame::Peers(_)
            | Frame::Goodbye(_) => None,
        }
    }

    /// Writes the whole frame (head then payload) — convenience for tests and small frames.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.wire_len());
        self.encode_head(out);
        if let Some(payload) = self.payload() {
            out.put_slice(payload);
        }
    }
}

/// Why a received frame was dropped; the connection stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// `len` was 0, so there is not even a kind byte.
    #[error("empty frame (len = 0)")]
    Empty,
    /// The kind byte is not one this version defines.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A known kind whose body size is wrong for it.
    #[error("frame kind {kind:#04x} with a body of the wrong size ({len} bytes)")]
    BadLength {
        /// The kind byte.
        kind: u8,
        /// The body size received.
        len: usize,
    },
    /// The body is larger than the configured maximum; its bytes are skipped.
    #[error("frame body of {len} bytes is over the maximum of {max}")]
    Oversize {
        /// The declared body size (`len - 1`).
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A RESPONSE whose id the receiver never issued (not produced by the decoder).
    /// One for a request it issued that timed out, failed or was answered already is
    /// late, not rejected (`PeerStats::late_responses`).
    #[error("response {0} matches no request we sent")]
    UnmatchedResponse(u64),
    /// A REQUEST reusing the id of one from the same peer still unanswered (not
    /// produced by the decoder): a response could not say which it answers.
    #[error("request {0} reuses the id of an unanswered request")]
    DuplicateRequest(u64),
    /// A second ADDRS on one connection (not produced by the decoder): a peer tells
    /// its addresses once a connection.
    #[error("a second ADDRS frame on the connection")]
    RepeatedAddrs,
    /// A GETADDRS less than [`GETADDRS_INTERVAL`] after the last one answered on the
    /// connection (not produced by the decoder).
    #[error("a GETADDRS too soon after the last one answered")]
    GetAddrsTooSoon,
    /// A PEERS frame answering no GETADDRS of ours on the connection (not produced by
    /// the decoder).
    #[error("a PEERS frame answering no GETADDRS")]
    UnsolicitedPeers,
    /// A GOSSIP frame (its id) whose broadcast the application judged invalid
    /// (`Validation::Reject`; not produced by the decoder).
    #[error("broadcast {id} rejected by the application", id = crate::id::GossipId(*.0))]
    RejectedBroadcast([u8; 16]),
}

/// What the decoder took from the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid frame.
    Frame(Frame),
    /// A frame that was dropped.
    Rejected(Reject),
}

/// A streaming frame decoder.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_body: usize,
    /// Bytes of an oversize frame still to discard.
    skip: usize,
}

impl Decoder {
    /// `max_body` is the largest accepted `len - 1`.
    pub fn new(max_body: usize) -> Self {
        // Capped so `LEN_FIELD + 1 + body` never overflows on 32-bit targets; no real
        // buffer could hold a frame that large anyway.
        let max_body = max_body.min(usize::MAX - LEN_FIELD - 1);
        Decoder { max_body, skip: 0 }
    }

    /// Takes the next frame (or rejection) from the front of `buf`, consuming its bytes.
    /// Returns None when `buf` does not hold a whole frame yet (or is all being skipped).
    /// An oversize frame: the 4 len bytes are consumed and `Rejected(Oversize)` is returned at once
    /// (exactly once per frame); then its remaining len bytes are discarded as they arrive over
    /// subsequent calls, without ever waiting for the whole frame to be buffered.
    /// Payloads of frames up to [`COPY_LIMIT`] wire bytes are copies; those of larger
    /// frames are zero-copy `buf.split_to(..).freeze()` slices of the buffer.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Decoded> {
        if self.skip > 0 {
            let n = self.skip.min(buf.len());
            buf.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return None;
            }
        }
        let len = read_len(buf)?;
        if len == 0 {
            buf.advance(LEN_FIELD);
            return Some(Decoded::Rejected(Reject::Empty));
        }
        let body_len = len - 1;
        if body_len > self.max_body {
            // Reported before the body arrives so a hostile peer cannot make us buffer it.
            buf.advance(LEN_FIELD);
            self.skip = len;
            return Some(Decoded::Rejected(Reject::Oversize {
                len: body_len as u64,
                max: self.max_body,
            }));
        }
        if buf.len() < LEN_FIELD + len {
            return None;
        }
        let kind = buf[LEN_FIELD];
        let body = if LEN_FIELD + len <= COPY_LIMIT {
            // A slice would keep the whole buffer alive for as long as the payload lives.
            // One `advance` past the whole frame: each costs a few dozen instructions,
            // as much as the copy of a small payload.
            let body = Bytes::copy_from_slice(&buf[LEN_FIELD + 1..LEN_FIELD + len]);
            buf.advance(LEN_FIELD + len);
            body
        } else {
            buf.advance(LEN_FIELD + 1);
            buf.split_to(body_len).freeze()
        };
        Some(match parse(kind, body) {
            Ok(frame) => Decoded::Frame(frame),
            Err(reject) => Decoded::Rejected(reject),
        })
    }

    /// The payload length of the frame at the front of `buf` when it is a whole MESSAGE
    /// small enough to be copied (at most [`COPY_LIMIT`] wire bytes), else `None` (then
    /// [`Decoder::decode`] takes the frame). The payload is
    /// `buf[MESSAGE_PAYLOAD_AT..MESSAGE_PAYLOAD_AT + n]`; the caller copies it and
    /// advances `buf` by `MESSAGE_PAYLOAD_AT + n`. This is the receive hot path: the
    /// payload is copied once, straight into where it goes, rather than moved through a
    /// returned `Frame` (each move of which cost a store-forwarding stall per message).
    #[inline]
    pub fn small_message(&self, buf: &[u8]) -> Option<usize> {
        if self.skip > 0 {
            return None;
        }
        let body_len = read_len(buf)?.checked_sub(1)?;
        // Checked before the sum, which a length near u32::MAX would overflow on a
        // 32-bit target.
        if body_len > self.max_body {
            return None;
        }
        let whole = MESSAGE_PAYLOAD_AT + body_len;
        (whole <= COPY_LIMIT && buf.len() >= whole && buf[LEN_FIELD] == kind::MESSAGE)
            .then_some(body_len)
    }

    /// True while the decoder is discarding the rest of an oversize frame.
    pub fn is_skipping(&self) -> bool {
        self.skip > 0
    }

    /// How many bytes the frame at the front of `buf` needs in total (LEN_FIELD + len), when its
    /// header has arrived and it is not oversize; lets the reader reserve capacity once.
    pub fn frame_need(&self, buf: &[u8]) -> Option<usize> {
        if self.is_skipping() {
            return None;
        }
        let len = read_len(buf)?;
        (len.saturating_sub(1) <= self.max_body).then_some(LEN_FIELD + len)
    }
}

/// The `len` field at the front of `buf`, if it has arrived.
fn read_len(buf: &[u8]) -> Option<usize> {
    let field: [u8; LEN_FIELD] = buf.get(..LEN_FIELD)?.try_into().ok()?;
    Some(u32::from_be_bytes(field) as usize)
}

/// Parses a complete body. Every getter below runs only after the size check of its arm,
/// so none of them can run short.
fn parse(kind: u8, mut body: Bytes) -> Result<Frame, Reject> {
    let len = body.len();
    let bad_length = || Reject::BadLength { kind, len };
    let size_ok = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Reject::BadLength { kind, len })
        }
    };
    let frame = match kind {
        kind::PING | kind::PONG => {
            size_ok(len == NONCE_LEN)?;
            let nonce = body.get_u64();
            if kind == kind::PING {
                Frame::Ping(nonce)
            } else {
                Frame::Pong(nonce)
            }
        }
        kind::MESSAGE => Frame::Message(body),
        kind::GOSSIP => {
            size_ok(len >= GOSSIP_HEAD_LEN)?;
            let mut id = [0u8; GOSSIP_ID_LEN];
            body.copy_to_slice(&mut id);
            let hops = body.get_u8();
            Frame::Gossip {
                id,
                hops,
                payload: body,
            }
        }
        kind::REQUEST | kind::RESPONSE => {
            size_ok(len >= REQUEST_ID_LEN)?;
            let id = body.get_u64();
            if kind == kind::REQUEST {
                Frame::Request { id, payload: body }
            } else {
                Frame::Response { id, payload: body }
            }
        }
        kind::GOODBYE => {
            size_ok(len == 1)?;
            Frame::Goodbye(GoodbyeReason::from_byte(body.get_u8()))
        }
        kind::ADDRS => Frame::Addrs(parse_addrs(body, MAX_ADDRS).ok_or(bad_length())?),
        kind::PEERS => Frame::Peers(parse_addrs(body, MAX_PEERS).ok_or(bad_length())?),
        kind::GETADDRS => {
            size_ok(len == 0)?;
            Frame::GetAddrs
        }
        unknown => return Err(Reject::UnknownKind(unknown)),
    };
    Ok(frame)
}

/// An ADDRS or PEERS body: whole addresses back to back, at most `max` of them;
/// `None` if it is not that.
fn parse_addrs(mut body: Bytes, max: usize) -> Option<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    while body.has_remaining() {
        let ip = match body.get_u8() {
            4 if body.remaining() >= 4 + 2 => {
                let mut ip = [0u8; 4];
                body.copy_to_slice(&mut ip);
                std::net::IpAddr::from(ip)
            }
            6 if body.remaining() >= 16 + 2 => {
                let mut ip = [0u8; 16];
                body.copy_to_slice(&mut ip);
                std::net::IpAddr::from(ip)
            }
            _ => return None,
        };
        if addrs.len() >= max {
            return None;
        }
        addrs.push(SocketAddr::new(ip, body.get_u16()));
    }
    Some(addrs)
}

/// The least time between two GETADDRS a node answers on one connection (PROTOCOL.md
/// §5.2): one sooner is rejected.
pub const GETADDRS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The least time between two GETADDRS a node sends on one connection: three times
/// what the receiver requires, so that delays on the way do not make an honest one
/// arrive too soon.
pub const GETADDRS_SEND_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1024;

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        out.to_vec()
    }

    /// A frame with an arbitrary kind and body, bypassing `Frame`'s own checks.
    fn raw(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(kind);
        out.extend_from_slice(body);
        out
    }

    fn drain(dec: &mut Decoder, buf: &mut BytesMut) -> Vec<Decoded> {
        std::iter::from_fn(|| dec.decode(buf)).collect()
    }

    fn preamble_with(f: impl FnOnce(&mut [u8; PREAMBLE_LEN])) -> [u8; PREAMBLE_LEN] {
        let mut bytes = Preamble::new(Security::NoiseXx, 7).encode();
        f(&mut bytes);
        bytes
    }

    const OURS: Preamble = Preamble {
        security: Security::NoiseXx,
        network_id: 7,
    };

    fn check(bytes: [u8; PREAMBLE_LEN]) -> Result<(), PreambleError> {
        Preamble::check(&bytes, &OURS)
    }

    fn security_mismatch(theirs: u8) -> Result<(), PreambleError> {
        let ours = Security::NoiseXx;
        Err(PreambleError::SecurityMismatch { ours, theirs })
    }

    fn b(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    #[test]
    fn preamble_exact_bytes() {
        let bytes = Preamble::new(Security::NoiseXx, 0x0102_0304).encode();
        // Byte 6: the features this version understands (ADDRS, PEX); byte 7 reserved.
        assert_eq!(bytes, [0x50, 0x32, 0x50, 0x56, 1, 1, 3, 0, 1, 2, 3, 4]);
        assert_eq!(Preamble::features(&bytes), FEATURE_ADDRS | FEATURE_PEX);
        let bytes = Preamble::new(Security::Plaintext, 0xFFFF_FFFE).encode();
        assert_eq!(
            bytes,
            [b'P', b'2', b'P', b'V', 1, 0, 3, 0, 0xFF, 0xFF, 0xFF, 0xFE]
        );
    }

    #[test]
    fn preamble_accepts_own_and_ignores_reserved() {
        assert_eq!(check(OURS.encode()), Ok(()));
        assert_eq!(
            check(preamble_with(|b| b[6..8].copy_from_slice(&[0xAB, 0xCD]))),
            Ok(())
        );
    }

    #[test]
    fn preamble_each_error() {
        assert_eq!(
            check(preamble_with(|b| b[1] = b'3')),
            Err(PreambleError::BadMagic)
        );
        let version = check(preamble_with(|b| b[4] = 2));
        assert_eq!(version, Err(PreambleError::UnsupportedVersion(2)));
        assert_eq!(check(preamble_with(|b| b[5] = 0)), security_mismatch(0));
        assert_eq!(check(preamble_with(|b| b[5] = 9)), security_mismatch(9));
        let network = check(preamble_with(|b| b[11] = 8));
        assert_eq!(
            network,
            Err(PreambleError::NetworkMismatch { ours: 7, theirs: 8 })
        );
    }

    #[test]
    fn preamble_check_order() {
        // Each case breaks its field and every later one: the earliest must win.
        let all_bad = [b'X', b'2', b'P', b'V', 9, 5, 0, 0, 0, 0, 0, 1];
        assert_eq!(check(all_bad), Err(PreambleError::BadMagic));
        let from_version = preamble_with(|b| {
            b[4] = 9;
            b[5] = 5;
            b[11] = 1;
        });
        assert_eq!(
            check(from_version),
            Err(PreambleError::UnsupportedVersion(9))
        );
        let from_security = preamble_with(|b| {
            b[5] = 5;
            b[11] = 1;
        });
        assert_eq!(check(from_security), security_mismatch(5));
    }

    #[test]
    fn display_strings() {
        assert_eq!(Security::Plaintext.to_string(), "plaintext");
        assert_eq!(Security::NoiseXx.to_string(), "noise-xx");
        let err = security_mismatch(0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "security mismatch: we use noise-xx, the peer sent byte 0"
        );
        let words: Vec<String> = (0..=5)
            .map(|b| GoodbyeReason::from_byte(b).to_string())
            .collect();
        let expected = [
            "shutdown",
            "duplicate connection",
            "too many peers",
            "misbehaving",
            "timeout",
            "unknown reason 5",
        ];
        assert_eq!(words, expected);
        assert_eq!(
            Reject::UnknownKind(3).to_string(),
            "unknown frame kind 0x03"
        );
    }

    #[test]
    fn byte_conversions_roundtrip() {
        for b in 0..=u8::MAX {
            assert_eq!(GoodbyeReason::from_byte(b).to_byte(), b);
            if let Some(s) = Security::from_byte(b) {
                assert_eq!(s.to_byte(), b);
            }
        }
        assert_eq!(Security::from_byte(1), Some(Security::NoiseXx));
        assert_eq!(Security::from_byte(2), None);
    }

    #[test]
    fn each_kind_exact_bytes_and_roundtrip() {
        let id: GossipIdBytes = std::array::from_fn(|i| i as u8);
        let mut gossip_wire = vec![0, 0, 0, 19, 0x11];
        gossip_wire.extend_from_slice(&id);
        gossip_wire.extend_from_slice(&[3, b'x']);
        let cases: Vec<(Frame, Vec<u8>)> = vec![
            (
                Frame::Ping(0x0102_0304_0506_0708),
                vec![0, 0, 0, 9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8],
            ),
            (
                Frame::Pong(7),
                vec![0, 0, 0, 9, 0x02, 0, 0, 0, 0, 0, 0, 0, 7],
            ),
            (Frame::Message(b(b"hi")), vec![0, 0, 0, 3, 0x10, b'h', b'i']),
            (Frame::Message(Bytes::new()), vec![0, 0, 0, 1, 0x10]),
            (
                Frame::Gossip {
                    id,
                    hops: 3,
                    payload: b(b"x"),
                },
                gossip_wire,
            ),
            (
                Frame::Request {
                    id: 10,
                    payload: b(b"ab"),
                },
                vec![0, 0, 0, 11, 0x12, 0, 0, 0, 0, 0, 0, 0, 10, b'a', b'b'],
            ),
            (
                Frame::Response {
                    id: 1,
                    payload: Bytes::new(),
                },
                vec![0, 0, 0, 9, 0x13, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            (
                Frame::Goodbye(GoodbyeReason::TooManyPeers),
                vec![0, 0, 0, 2, 0x7F, 2],
            ),
            (
                Frame::Goodbye(GoodbyeReason::Other(200)),
                vec![0, 0, 0, 2, 0x7F, 200],
            ),
        ];
        for (frame, wire) in cases {
            assert_eq!(encoded(&frame), wire, "{frame:?}");
            assert_eq!(frame.wire_len(), wire.len(), "{frame:?}");
            assert_eq!(frame.kind(), wire[4], "{frame:?}");

            let mut split = BytesMut::new();
            frame.encode_head(&mut split);
            if let Some(payload) = frame.payload() {
                split.extend_from_slice(payload);
            }
            assert_eq!(split.to_vec(), wire, "head + payload of {frame:?}");

            let mut buf = BytesMut::from(&wire[..]);
            let mut dec = Decoder::new(MAX);
            assert_eq!(dec.decode(&mut buf), Some(Decoded::Frame(frame.clone())));
            assert!(buf.is_empty());
            assert_eq!(dec.decode(&mut buf), None);
        }
    }

    /// Decodes one REQUEST of `payload_len` bytes and tells whether its payload points
    /// into the buffer it was decoded from.
    fn payload_in_buffer(payload_len: usize) -> bool {
        let frame = Frame::Request {
            id: 5,
            payload: Bytes::from(vec![3; payload_len]),
        };
        let mut buf = BytesMut::from(&encoded(&frame)[..]);
        let range = buf.as_ptr_range();
        let Some(Decoded::Frame(Frame::Request { payload, .. })) =
            Decoder::new(COPY_LIMIT * 2).decode(&mut buf)
        else {
            panic!("expected a request");
        };
        assert_eq!(payload.len(), payload_len);
        range.contains(&payload.as_ptr())
    }

    #[test]
    fn small_payloads_are_copied_large_ones_are_slices() {
        // A frame of COPY_LIMIT wire bytes is copied; one byte more and it is a slice.
        let at_limit = COPY_LIMIT - LEN_FIELD - 1 - 8;
        assert!(!payload_in_buffer(9), "a small payload owns its bytes");
        assert!(!payload_in_buffer(at_limit));
        assert!(
            payload_in_buffer(at_limit + 1),
            "a large payload is zero-copy"
        );
    }

    /// `small_message` is the receive fast path: it must claim exactly the frames that
    /// `decode` would give as a copied MESSAGE, with the same payload, and no other.
    #[test]
    fn small_message_agrees_with_decode() {
        let at_limit = COPY_LIMIT - MESSAGE_PAYLOAD_AT;
        let message = |len: usize| encoded(&Frame::Message(Bytes::from(vec![7; len])));
        let mut cases = vec![
            message(0),
            message(1),
            message(64),
            message(at_limit),
            message(at_limit + 1),
            encoded(&Frame::Ping(1)),
            encoded(&Frame::Request {
                id: 1,
                payload: Bytes::from_static(b"x"),
            }),
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 9, 0x01],
            vec![0, 0],
        ];
        let whole = message(10);
        cases.push(whole[..whole.len() - 1].to_vec());
        for max in [COPY_LIMIT * 2, 32] {
            for wire in &cases {
                let mut dec = Decoder::new(max);
                let fast = dec.small_message(wire);
                let mut buf = BytesMut::from(&wire[..]);
                let slow = match dec.decode(&mut buf) {
                    Some(Decoded::Frame(Frame::Message(p))) if wire.len() <= COPY_LIMIT => Some(p),
                    _ => None,
                };
                let fast = fast.map(|n| &wire[MESSAGE_PAYLOAD_AT..MESSAGE_PAYLOAD_AT + n]);
                assert_eq!(
                    fast,
                    slow.as_deref(),
                    "max {max}, wire {:?}",
                    &wire[..5.min(wire.len())]
                );
            }
        }
        // While the rest of an oversize frame is discarded, nothing is a message.
        let mut dec = Decoder::new(4);
        let mut big = BytesMut::from(&message(100)[..]);
        big.truncate(20);
        assert!(matches!(dec.decode(&mut big), Some(Decoded::Rejected(_))));
        assert!(dec.is_skipping());
        assert_eq!(dec.small_message(&message(1)), None);
    }

    #[test]
    fn addrs_frames_round_trip_and_malformed_ones_are_rejected() {
        let addrs = vec![
            "192.0.2.1:30333".parse().unwrap(),
            "[2001:db8::1]:9".parse().unwrap(),
            "0.0.0.0:4000".parse().unwrap(),
        ];
        let wire = encoded(&Frame::Addrs(addrs.clone()));
        assert_eq!(wire.len(), LEN_FIELD + 1 + 7 + 19 + 7);
        assert_eq!(&wire[4..13], &[kind::ADDRS, 4, 192, 0, 2, 1, 0x76, 0x7d, 6]);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            Decoder::new(MAX).decode(&mut buf),
            Some(Decoded::Frame(Frame::Addrs(addrs)))
        );
        let body = |bytes: &[u8]| {
            let mut wire = ((bytes.len() + 1) as u32).to_be_bytes().to_vec();
            wire.push(kind::ADDRS);
            wire.extend_from_slice(bytes);
            Decoder::new(MAX).decode(&mut BytesMut::from(&wire[..]))
        };
        assert_eq!(body(&[]), Some(Decoded::Frame(Frame::Addrs(Vec::new()))));
        let bad = |len| {
            Some(Decoded::Rejected(Reject::BadLength {
                kind: kind::ADDRS,
                len,
            }))
        };
        assert_eq!(body(&[5, 1, 2, 3, 4, 0, 1]), bad(7), "an unknown family");
        assert_eq!(body(&[4, 1, 2, 3, 4, 0]), bad(6), "a port cut short");
        assert_eq!(body(&[6, 0, 0, 0]), bad(4), "an IPv6 address cut short");
        let nine: Vec<u8> = (0..9).flat_map(|_| [4, 10, 0, 0, 1, 0, 80]).collect();
        assert_eq!(body(&nine), bad(63), "more than MAX_ADDRS");
        let eight = &nine[..56];
        assert!(matches!(body(eight), Some(Decoded::Frame(Frame::Addrs(a))) if a.len() == 8));
    }

    #[test]
    fn partial_frames_wait() {
        let wire = encoded(&Frame::Ping(1));
        let mut dec = Decoder::new(MAX);
        let mut buf = BytesMut::new();
        for &byte in &wire[..wire.len() - 1] {
            buf.put_u8(byte);
            assert_eq!(dec.decode(&mut buf), None);
        }
        buf.put_u8(wire[wire.len() - 1]);
        assert_eq!(dec.decode(&mut buf), Some(Decoded::Frame(Frame::Ping(1))));
    }

    #[test]
    fn each_rejection_then_continues() {
        let bad_len = |kind, len| Reject::BadLength { kind, len };
        let cases: Vec<(Vec<u8>, Reject)> = vec![
            (vec![0, 0, 0, 0], Reject::Empty),
            (raw(0x03, &[]), Reject::UnknownKind(0x03)),
            (raw(0xFF, &[1, 2, 3]), Reject::UnknownKind(0xFF)),
            (raw(kind::PING, &[0; 7]), bad_len(kind::PING, 7)),
            (raw(kind::PING, &[0; 9]), bad_len(kind::PING, 9)),
            (raw(kind::PONG, &[0; 7]), bad_len(kind::PONG, 7)),
            (raw(kind::PONG, &[0; 9]), bad_len(kind::PONG, 9)),
            (raw(kind::GOSSIP, &[0; 16]), bad_len(kind::GOSSIP, 16)),
            (raw(kind::REQUEST, &[0; 7]), bad_len(kind::REQUEST, 7)),
            (raw(kind::RESPONSE, &[0; 7]), bad_len(kind::RESPONSE, 7)),
            (raw(kind::GOODBYE, &[]), bad_len(kind::GOODBYE, 0)),
            (raw(kind::GOODBYE, &[0, 0]), bad_len(kind::GOODBYE, 2)),
        ];
        let good = Frame::Request {
            id: 42,
            payload: b(b"ok"),
        };
        for (bad, reject) in cases {
            let mut stream = bad.clone();
            stream.extend_from_slice(&encoded(&good));
            let expected = vec![Decoded::Rejected(reject), Decoded::Frame(good.clone())];

            let mut dec = Decoder::new(MAX);
            let mut buf = BytesMut::from(&stream[..]);
            assert_eq!(drain(&mut dec, &mut buf), expected, "whole: {bad:?}");
            assert!(buf.is_empty());

            let mut dec = Decoder::new(MAX);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for &byte in &stream {
                buf.put_u8(byte);
                got.extend(drain(&mut dec, &mut buf));
            }
            assert_eq!(got, expected, "bytewise: {bad:?}");
        }
    }

    #[test]
    fn max_body_boundary() {
        let at_max = Frame::Message(Bytes::from(vec![7; MAX]));
        let over = raw(kind::MESSAGE, &[7; MAX + 1]);
        let mut stream = encoded(&at_max);
        stream.extend_from_slice(&over);
        stream.extend_from_slice(&encoded(&Frame::Pong(3)));
        let mut dec = Decoder::new(MAX);
        let mut buf = BytesMut::from(&stream[..]);
        let expected = vec![
            Decoded::Frame(at_max),
            Decoded::Rejected(Reject::Oversize {
                len: MAX as u64 + 1,
                max: MAX,
            }),
            Decoded::Frame(Frame::Pong(3)),
        ];
        assert_eq!(drain(&mut dec, &mut buf), expected);
        assert!(!dec.is_skipping());
    }

    #[test]
    fn oversize_is_reported_at_once_and_skipped_in_chunks() {
        const DECLARED: usize = 1 << 30;
        const CHUNK: usize = 65_537;
        let after = Frame::Gossip {
            id: [9; 16],
            hops: 1,
            payload: b(b"after"),
        };
        let trailer = encoded(&after);
        let header = (DECLARED as u32).to_be_bytes();
        let total = LEN_FIELD + DECLARED + trailer.len();

        let mut dec = Decoder::new(MAX);
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(dec.frame_need(&buf), None);
        let oversize = Reject::Oversize {
            len: DECLARED as u64 - 1,
            max: MAX,
        };
        assert_eq!(dec.decode(&mut buf), Some(Decoded::Rejected(oversize)));
        assert!(buf.is_empty() && dec.is_skipping());

        let mut got = Vec::new();
        let mut pos = LEN_FIELD;
        while pos < total {
            let end = (pos + CHUNK).min(total);
            // The virtual stream: DECLARED filler bytes after the header, then the trailer.
            let filler_end = LEN_FIELD + DECLARED;
            if pos < filler_end {
                buf.resize(buf.len() + filler_end.min(end) - pos, 0xAB);
            }
            if end > filler_end {
                buf.extend_from_slice(&trailer[pos.max(filler_end) - filler_end..end - filler_end]);
            }
            pos = end;
            got.extend(drain(&mut dec, &mut buf));
            assert!(buf.len() <= CHUNK, "buffer grew to {}", buf.len());
            if pos < LEN_FIELD + DECLARED {
                assert!(buf.is_empty() && dec.is_skipping() && dec.frame_need(&buf).is_none());
            }
        }
        assert_eq!(got, vec![Decoded::Frame(after)]);
        assert!(buf.is_empty() && !dec.is_skipping());
    }

    #[test]
    fn frame_need_reports_total_size() {
        let dec = Decoder::new(MAX);
        assert_eq!(dec.frame_need(&[0, 0, 0]), None);
        assert_eq!(dec.frame_need(&encoded(&Frame::Ping(1))[..4]), Some(13));
        assert_eq!(
            dec.frame_need(&raw(kind::MESSAGE, &[0; MAX])),
            Some(LEN_FIELD + 1 + MAX)
        );
        assert_eq!(dec.frame_need(&((MAX + 2) as u32).to_be_bytes()), None);
    }

    #[test]
    fn huge_limit_does_not_overflow() {
        let mut dec = Decoder::new(usize::MAX);
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert_eq!(dec.frame_need(&buf), Some(LEN_FIELD + u32::MAX as usize));
        assert_eq!(dec.decode(&mut buf), None);
        assert_eq!(buf.len(), LEN_FIELD);
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let payload = || proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        prop_oneof![
            any::<u64>().prop_map(Frame::Ping),
            any::<u64>().prop_map(Frame::Pong),
            payload().prop_map(Frame::Message),
            (any::<GossipIdBytes>(), any::<u8>(), payload())
                .prop_map(|(id, hops, payload)| Frame::Gossip { id, hops, payload }),
            (any::<u64>(), payload()).prop_map(|(id, payload)| Frame::Request { id, payload }),
            (any::<u64>(), payload()).prop_map(|(id, payload)| Frame::Response { id, payload }),
            any::<u8>().prop_map(|b| Frame::Goodbye(GoodbyeReason::from_byte(b))),
        ]
    }

    /// Random bytes, mixed with headers of small lengths and kinds so that every decoder path is hit.
    fn arb_garbage() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..32),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..24))
                .prop_map(|(k, b)| raw(k, &b)),
            (0u32..300).prop_map(|len| len.to_be_bytes().to_vec()),
        ];
        proptest::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn frames_survive_any_split(
            frames in proptest::collection::vec(arb_frame(), 0..20),
            splits in proptest::collection::vec(1usize..40, 1..10),
        ) {
            let mut stream = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut stream);
            }
            let mut dec = Decoder::new(MAX);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for size in splits.iter().cycle() {
                if stream.is_empty() {
                    break;
                }
                buf.extend_from_slice(&stream.split_to((*size).min(stream.len())));
                got.extend(drain(&mut dec, &mut buf));
            }
            let expected: Vec<Decoded> = frames.into_iter().map(Decoded::Frame).collect();
            prop_assert_eq!(got, expected);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn garbage_never_panics_nor_piles_up(
            bytes in arb_garbage(),
            chunk in 1usize..64,
            max_body in 0usize..128,
        ) {
            let mut dec = Decoder::new(max_body);
            let mut buf = BytesMut::new();
            for piece in bytes.chunks(chunk) {
                buf.extend_from_slice(piece);
                for decoded in drain(&mut dec, &mut buf) {
                    if let Decoded::Frame(frame) = decoded {
                        prop_assert!(frame.wire_len() <= LEN_FIELD + 1 + max_body);
                    }
                }
                // At most one incomplete frame within the limit is left: tighter than the
                // `max_body + LEN_FIELD + chunk` the reader budgets for.
                prop_assert!(buf.len() <= max_body + LEN_FIELD);
            }
        }

        /// The receive loop's fast path (`small_message`, then `decode` for what it
        /// leaves) takes the same frames and rejections as `decode` alone, in the same
        /// order, from any bytes split anywhere, and leaves the same bytes.
        #[test]
        fn the_fast_path_and_decode_take_the_same_from_any_bytes(
            bytes in arb_garbage(),
            chunk in 1usize..64,
            max_body in prop_oneof![0usize..128, Just(usize::MAX)],
        ) {
            let (mut fast, mut slow) = (Decoder::new(max_body), Decoder::new(max_body));
            let (mut fast_buf, mut slow_buf) = (BytesMut::new(), BytesMut::new());
            let (mut fast_got, mut slow_got) = (Vec::new(), Vec::new());
            for piece in bytes.chunks(chunk) {
                fast_buf.extend_from_slice(piece);
                slow_buf.extend_from_slice(piece);
                loop {
                    if let Some(n) = fast.small_message(&fast_buf) {
                        let payload = &fast_buf[MESSAGE_PAYLOAD_AT..MESSAGE_PAYLOAD_AT + n];
                        fast_got.push(Decoded::Frame(Frame::Message(Bytes::copy_from_slice(payload))));
                        fast_buf.advance(MESSAGE_PAYLOAD_AT + n);
                        continue;
                    }
                    match fast.decode(&mut fast_buf) {
                        Some(decoded) => fast_got.push(decoded),
                        None => break,
                    }
                }
                slow_got.extend(drain(&mut slow, &mut slow_buf));
                prop_assert_eq!(&fast_got, &slow_got);
                prop_assert_eq!(&fast_buf, &slow_buf);
                prop_assert_eq!(fast.is_skipping(), slow.is_skipping());
            }
        }
    }
}
