//! `Config`: every limit and timer of a node, with documented defaults and `validate()`.

use std::time::Duration;

use crate::peer::PeerId;
use crate::wire::{LEN_FIELD, Security};

/// Everything a node can be tuned with. Start from [`Config::default`] and change
/// what you need; [`Network::new`](crate::Network::new) calls [`Config::validate`].
///
/// ```
/// use std::time::Duration;
/// let config = p2p::Config {
///     network_id: 42,
///     ping_interval: Duration::from_secs(5),
///     idle_timeout: Duration::from_secs(15),
///     ..p2p::Config::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// The operator's network id, sent in the preamble; peers on another id are refused. Default 1.
    pub network_id: u32,
    /// The handshake. Default [`Security::NoiseXx`] (with the `noise` feature, on by
    /// default): peer ids are static keys proven by the handshake and traffic is
    /// encrypted. [`Security::Plaintext`] must be chosen explicitly: ids are claimed,
    /// not proven, so use it on trusted networks, in tests and benchmarks only.
    pub security: Security,
    /// This node's id in plaintext mode, where it is only claimed. `None` (the
    /// default) takes the keypair's public key, or a random id. Must be `None` in
    /// noise-xx mode, where the id is the static public key.
    pub peer_id: Option<PeerId>,
    /// The static noise key; its public half is this node's id. `None` (the default)
    /// generates one at start: load one with [`Keypair::load_or_generate`](crate::Keypair::load_or_generate)
    /// to keep the id across restarts.
    #[cfg(feature = "noise")]
    pub keypair: Option<crate::Keypair>,
    /// A permissioned set: when `Some`, a peer whose id is not in it is closed right
    /// after the handshake (`CloseReason::NotAllowed`), in either direction. Default `None`.
    pub allowlist: Option<std::collections::HashSet<PeerId>>,
    /// Largest frame body (`len - 1`) accepted; larger frames are skipped and counted. Default 8 MiB.
    ///
    /// Other fields must hold one frame of this size, and [`Config::validate`] says
    /// which to raise and to what: `max_write_buffer` ([`Config::min_write_buffer`]),
    /// `max_read_buffer_total` ([`Config::min_read_buffer_total`]) and so
    /// `max_write_buffer_total`. [`Config::with_max_frame_size`] sets it and raises
    /// them. The GOSSIP bytes bucket ([`Config::max_gossip_bytes_rate`]) grows to hold
    /// one such frame by itself.
    pub max_frame_size: usize,
    /// Rejected frames ([`crate::protocol`] §4) that close a connection with GOODBYE 3
    /// when they all arrive within one [`Config::rejected_frames_window`]: a sliding
    /// window, counted exactly, so a peer is closed exactly when some window of that
    /// length held this many of its rejected frames, and a long-lived peer whose rare
    /// faults never bunch up that much is never closed. A connection remembers the
    /// instant of each rejection still inside the window, at most this many (16 bytes
    /// each). Late responses are not rejected frames (`PeerStats::late_responses`).
    /// Default 100; at most [`MAX_PER_PEER_TABLE`].
    pub max_rejected_frames: u32,
    /// The length of the sliding window over which [`Config::max_rejected_frames`]
    /// counts. Default 60 s.
    pub rejected_frames_window: Duration,
    /// Inbound connections (handshaking or open; one whose close was reported no
    /// longer counts). Default 128.
    pub max_inbound: usize,
    /// Inbound connections from one remote address (an IPv4 address, or an IPv6
    /// prefix of [`Config::ipv6_prefix_len`] bits), so one host cannot take every
    /// inbound slot. Default 32: many honest peers behind one NAT still connect.
    pub max_inbound_per_ip: usize,
    /// Outbound connections (dialling, handshaking or open; one whose close was
    /// reported no longer counts). Default 128.
    pub max_outbound: usize,
    /// Inbound connections still in preamble or handshake at once. When the table is
    /// full, a connection from an address with fewer pending ones evicts the pending
    /// one that made the least progress (`CloseReason::Evicted`). Our own dials have
    /// their own budget, [`Config::max_pending_dials`]. Default 64.
    pub max_pending_handshakes: usize,
    /// Inbound connections in preamble or handshake at once from one remote address.
    /// Default 8.
    pub max_pending_handshakes_per_ip: usize,
    /// Our own dials still connecting or handshaking at once; inbound pressure never
    /// takes from it. Default 64.
    pub max_pending_dials: usize,
    /// How many leading bits of an IPv6 address count as one remote address for the
    /// per-address limits (a host usually holds a whole /64). Default 64.
    pub ipv6_prefix_len: u8,
    /// Handshakes one remote address may start per second (a token bucket holding
    /// this many, refilled at this rate): accepts beyond it are refused at once,
    /// before any byte, and counted in `Stats::rate_limited_accepts`. Connections
    /// refused by the other limits take no token. The node keeps buckets for at most
    /// `max_inbound + max_pending_handshakes` addresses; when more want one, full
    /// buckets are forgotten first, then the fullest. Default 16.
    pub handshake_rate_per_ip: u32,
    /// Inbound connections accepted per turn of the loop (refused ones count), so a
    /// flood of connections costs at most a share of each turn; the rest are
    /// accepted in the next turns. Default 64.
    pub max_accepts_per_turn: usize,
    /// Connections the kernel completes and holds for a listener until the node
    /// accepts them (the `listen(2)` backlog; Linux caps it at `net.core.somaxconn`,
    /// 4096 by default). A burst of dials beyond it, between two turns or while
    /// `max_accepts_per_turn` spreads the accepts over several, is not refused but
    /// dropped by the kernel and counted nowhere: the dialler's TCP resends after
    /// 1 s, 3 s, 7 s ..., so those connections wait seconds, or hit their
    /// handshake deadline. Keep it above the largest burst expected. Default 1024.
    pub listen_backlog: u32,
    /// Deadline for the peer's 12-byte preamble after the TCP connection is up,
    /// shorter than the whole handshake's (`CloseReason::PreambleTimeout`); one not
    /// shorter than `handshake_timeout` never fires first. Default 1 s.
    pub preamble_timeout: Duration,
    /// Deadline for the preamble and handshake after the TCP connection is up. Default 5 s.
    pub handshake_timeout: Duration,
    /// Deadline for a TCP dial to connect. Default 5 s.
    pub connect_timeout: Duration,
    /// The first wait before a persistent peer ([`Network::add_peer`]) is dialled
    /// again after its session ended; each failed dial in a row doubles it, up to
    /// `redial_max`, and a session that lasts `redial_max` starts it over (a
    /// shorter one counts as a failed dial: a peer that takes the handshake and closes
    /// at once is backed off too). Default 1 s.
    ///
    /// [`Network::add_peer`]: crate::Network::add_peer
    pub redial_base: Duration,
    /// The longest wait between two dials of a persistent peer. Default 60 s.
    pub redial_max: Duration,
    /// The most of each redial wait taken off at random, as a fraction (0.0 to 1.0):
    /// each wait is drawn uniformly from `[(1 - redial_jitter) * w, w]`, so that the
    /// nodes that lost one peer at the same moment do not all dial it at the same
    /// moment again. Drawn from the node's random source (the seeded one in the
    /// simulator). Default 0.25.
    pub redial_jitter: f64,
    /// Receive silence after which a PING is sent; must be shorter than
    /// `idle_timeout`, by a round trip at least, for the PONG to arrive in time.
    /// Default 15 s.
    pub ping_interval: Duration,
    /// Receive silence after which the peer is closed with GOODBYE 4. Default 45 s.
    pub idle_timeout: Duration,
    /// How long a REQUEST waits for its RESPONSE. Default 10 s.
    pub request_timeout: Duration,
    /// Outstanding requests to one peer; also the requests from one peer, per
    /// connection, that the node remembers unanswered so that `respond` can check
    /// its id: a REQUEST over it makes the node forget the oldest unanswered one
    /// (counted in `PeerStats::forgotten_requests`; responding to it fails with
    /// `SendError::UnknownRequest`), so a peer flooding requests or an application
    /// ignoring some takes no more memory and wedges nothing. Default 1024; at most
    /// [`MAX_PER_PEER_TABLE`].
    pub max_pending_requests: usize,
    /// How long a graceful close may take to flush and hear the peer close. Default 5 s.
    pub close_timeout: Duration,
    /// Bytes queued for one peer, which its queue never passes: `send` refuses with
    /// `Full` once a frame (with its records' overhead under noise) would leave less
    /// than 256 bytes, kept for keepalives and the GOODBYE. At least
    /// [`Config::min_write_buffer`] (one largest frame and those 256 bytes), at most
    /// `max_write_buffer_total`: [`Config::with_max_write_buffer`] raises the total with
    /// it. Default 16 MiB.
    pub max_write_buffer: usize,
    /// Bytes queued for all peers together, which the queues never pass: sends are
    /// refused with `GlobalFull` once they would leave less than 256 bytes per
    /// connection for control frames. The budget is shared fairly: a queue that is not
    /// empty grows (by any frame, PONGs and relays too) only while its length after the
    /// frame is no more than the room left after it: N peers that never read and fill
    /// their queues together hold at most 1/(N+1) of it each and as much stays free
    /// for the others; in any order, a full queue leaves at least its own length free.
    /// An empty queue may always take one frame that fits. At least `max_write_buffer`.
    /// Default 256 MiB.
    pub max_write_buffer_total: usize,
    /// Bytes held for frames still arriving, over all connections. Each connection may
    /// hold one read chunk (64 KiB; under noise also one record still sealed and one
    /// opened) of its own; a frame larger than that is read into a buffer of its own
    /// that grows as its bytes arrive, and that growth is taken from this budget. When
    /// it is spent, connections that need more stop being read until room returns
    /// (backpressure, `Stats::read_paused`); all but one leave one largest frame's
    /// worth free, so that one can always finish, and when it does the paused
    /// connection holding the most goes next. Must hold one frame of
    /// `max_frame_size` with its header ([`Config::min_read_buffer_total`]). Default 64 MiB.
    pub max_read_buffer_total: usize,
    /// An unfinished frame that gains less than 64 KiB (or does not finish) within
    /// this time closes its connection gracefully with GOODBYE 4 (timeout),
    /// `CloseReason::FrameTimeout`: a peer cannot keep a large frame's buffer alive by
    /// trickling. Time spent paused by the receive budget does not count. Default 30 s.
    pub frame_timeout: Duration,
    /// A connection whose write queue is not empty and has not had `min(its length,
    /// 1 MiB)` written within this time is closed at once, its queue dropped
    /// (`CloseReason::WriteTimeout`): the peer stopped reading (or reads a trickle to
    /// look alive), and the idle timeout, which looks at received bytes only, would
    /// keep a peer that sends but never reads. Default 45 s.
    pub write_timeout: Duration,
    /// Bytes read from one socket per turn of the loop, so one busy peer cannot
    /// starve the others; each event those bytes produce counts its size too, so tiny
    /// frames cannot make a turn's events many times larger. Default 1 MiB.
    pub read_budget: usize,
    /// Bytes read from all sockets together per turn of the loop: what one turn's
    /// events can hold however many peers send at once (each may send `read_budget`).
    /// Connections left unread when it runs out are read first next turn. Default
    /// 16 MiB.
    pub read_budget_total: usize,
    /// Hops given to a new broadcast. Default 16.
    pub gossip_hops: u8,
    /// GOSSIP frames accepted from one peer per second (a token bucket holding this
    /// many, full when the connection opens); excess frames are dropped and counted
    /// (`PeerStats::rate_limited`), neither delivered nor relayed, nor remembered as
    /// seen. Honest neighbours relay every broadcast once, so this also bounds the
    /// broadcasts per second a network carries without loss: set it above the
    /// network's peak. Default 1000.
    pub max_gossip_rate: u32,
    /// GOSSIP bytes (frame bodies) accepted from one peer per second (a token bucket
    /// holding this many, or one frame of `max_frame_size` if more: below it, a peer
    /// may still send one largest broadcast, then waits for the bucket to refill at
    /// this rate). Default 32 MiB.
    pub max_gossip_bytes_rate: usize,
    /// Gossip ids remembered to drop duplicates. Each id is accounted to the neighbour
    /// it first came from (or to us); when full, the oldest id of the source holding
    /// the most goes first, so one peer cannot flush the others'. An id a second
    /// source sends too moves to the one of the two holding fewer. About 140 bytes an
    /// id (9 MiB at the default), at most 300 if every id came from a different
    /// source. Default 65536.
    pub gossip_cache_size: usize,
    /// How long a gossip id is remembered. Default 5 minutes.
    pub gossip_cache_age: Duration,
    /// The addresses this node tells its peers it listens on (an ADDRS frame right
    /// after the handshake, to peers whose preamble says they understand it;
    /// PROTOCOL.md §5.1), at most 8. Empty (the default): the addresses it listens
    /// on, a wildcard one (`0.0.0.0:port`) told as such, which a peer reads as "the
    /// address you see me at, this port". Set it behind a NAT or a proxy. More than 8,
    /// or one with port 0, fails [`Config::validate`].
    pub advertised_addrs: Vec<std::net::SocketAddr>,
    /// Addresses the address book holds (learned from peers' ADDRS and loaded with
    /// [`Network::load_address_book`]). The peers of one network group (/16 IPv4,
    /// /32 IPv6) may fill no more than a thirty-second of it, and the addresses of
    /// one network group no more than a sixteenth (but each share is at least 8, so
    /// below 256 one network fills more than a thirty-second, and below 9 all); a full
    /// book makes room only by forgetting an address whose dials failed, and one
    /// that failed 8 times in a row is forgotten. About 100 bytes an address.
    /// Default 4096; at most [`MAX_ADDRESS_BOOK`] (65,536).
    ///
    /// [`Network::load_address_book`]: crate::Network::load_address_book
    pub address_book_size: usize,
    /// Tell a peer on a public address our addresses that are not public (private,
    /// shared, loopback, link-local, documentation and other ranges the internet does
    /// not route) too. Default `false`: a public peer gets only our public ones (and
    /// wildcards); a peer on a private address gets all.
    pub advertise_private: bool,
    /// Outbound connections the node keeps by itself, dialling addresses from its
    /// address book (discovery): whenever it holds fewer (counting dials under way,
    /// persistent peers and the application's own dials), it dials addresses it knows,
    /// asks its outbound peers for more (GETADDRS, PROTOCOL.md §5.2), and tries again
    /// every 2 s while short. Against an eclipse, at most one of these dials goes to
    /// each public network group (/16 IPv4, /32 IPv6) and at most half of the target
    /// to addresses that the peers of one network group told; an address that failed
    /// waits [`redial_base`](Config::redial_base) doubled per failure (at most
    /// [`redial_max`](Config::redial_max)) before it is tried again. The book starts
    /// from [`Network::add_addr`] and [`Network::load_address_book`]. Default 0: no
    /// discovery dialling (the node still answers its peers' GETADDRS). At most
    /// `max_outbound`.
    ///
    /// [`Network::add_addr`]: crate::Network::add_addr
    /// [`Network::load_address_book`]: crate::Network::load_address_book
    pub target_outbound: usize,
    /// How often a node holding its `target_outbound` dials one more address from
    /// its book, chosen as discovery chooses; once that connection opens, it closes
    /// another one discovery made, at random (`CloseReason::Rotated`, GOODBYE 0).
    /// The overlay keeps mixing: two parts of a network that each filled their
    /// targets while split (a partition longer than `idle_timeout`) find each other
    /// again, and an attacker who got some outbound slots does not keep them.
    /// Default 2 minutes; zero: never.
    pub outbound_rotation: Duration,
    /// Relay a received broadcast only once the application judged it valid: each
    /// new `Event::Broadcast` waits for [`Network::validate`] with its id, and is
    /// relayed on `Accept`, dropped on `Ignore`, dropped and counted against the
    /// neighbour that sent it on `Reject`. One not judged within
    /// `validation_timeout`, or pushed out by newer ones past
    /// `max_pending_validations` or `max_pending_validation_bytes`, is ignored
    /// (`Stats::dropped_validations`). Default `false`: relayed at once.
    ///
    /// [`Network::validate`]: crate::Network::validate
    pub validate_gossip: bool,
    /// Broadcasts that may wait for a verdict at once; to make room, the neighbour
    /// holding the most gives up its oldest (ignored), so one flooding peer pushes out
    /// its own. Default 4096.
    pub max_pending_validations: usize,
    /// Payload bytes broadcasts waiting for a verdict may hold (each keeps its
    /// payload to relay it); to make room, the neighbour holding the most bytes gives
    /// up its oldest. Default 64 MiB.
    pub max_pending_validation_bytes: usize,
    /// How long a broadcast waits for its verdict before it is ignored. Default 10 s.
    pub validation_timeout: Duration,
    /// Commands a [`Handle`](crate::Handle) may queue before it refuses. Default 65536.
    pub command_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            network_id: 1,
            security: if cfg!(feature = "noise") {
                Security::NoiseXx
            } else {
                Security::Plaintext
            },
            peer_id: None,
            #[cfg(feature = "noise")]
            keypair: None,
            allowlist: None,
            max_frame_size: 8 * 1024 * 1024,
            max_rejected_frames: 100,
            rejected_frames_window: Duration::from_secs(60),
            max_inbound: 128,
            max_inbound_per_ip: 32,
            max_outbound: 128,
            max_pending_handshakes: 64,
            max_pending_handshakes_per_ip: 8,
            max_pending_dials: 64,
            ipv6_prefix_len: 64,
            handshake_rate_per_ip: 16,
            max_accepts_per_turn: 64,
            listen_backlog: 1024,
            preamble_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            redial_base: Duration::from_secs(1),
            redial_max: Duration::from_secs(60),
            redial_jitter: 0.25,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            request_timeout: Duration::from_secs(10),
            max_pending_requests: 1024,
            close_timeout: Duration::from_secs(5),
            max_write_buffer: 16 * 1024 * 1024,
            max_write_buffer_total: 256 * 1024 * 1024,
            max_read_buffer_total: 64 * 1024 * 1024,
            frame_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(45),
            read_budget: 1024 * 1024,
            read_budget_total: 16 * 1024 * 1024,
            gossip_hops: 16,
            max_gossip_rate: 1000,
            max_gossip_bytes_rate: 32 * 1024 * 1024,
            gossip_cache_size: 65536,
            gossip_cache_age: Duration::from_secs(300),
            advertised_addrs: Vec::new(),
            address_book_size: 4096,
            advertise_private: false,
            target_outbound: 0,
            outbound_rotation: Duration::from_secs(120),
            validate_gossip: false,
            max_pending_validations: 4096,
            max_pending_validation_bytes: 64 * 1024 * 1024,
            validation_timeout: Duration::from_secs(10),
            command_queue: 65536,
        }
    }
}

/// A field of [`Config`] that cannot work, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field that must be above zero is zero.
    #[error("config field `{0}` must be greater than zero")]
    Zero(&'static str),
    /// `max_frame_size` does not fit the u32 `len` field.
    #[error("max_frame_size {0} is over the protocol's limit of {max}", max = u32::MAX - 1)]
    FrameTooLarge(usize),
    /// The per-peer write buffer cannot hold one frame of the maximum size: raise
    /// `max_write_buffer` to `needed` ([`Config::min_write_buffer`]), or set the frame
    /// size with [`Config::with_max_frame_size`], which does.
    #[error(
        "max_write_buffer is {buffer}, below the {needed} bytes that one frame of max_frame_size ({frame}) takes with its header and records plus {room} bytes kept for control frames: raise max_write_buffer to {needed} (Config::with_max_frame_size raises it)",
        room = crate::budget::CONTROL_ROOM
    )]
    WriteBufferBelowFrame {
        /// The configured per-peer write buffer.
        buffer: usize,
        /// The configured maximum frame body.
        frame: usize,
        /// The least `max_write_buffer` that works with it.
        needed: usize,
    },
    /// The global write buffer is smaller than one peer's: raise
    /// `max_write_buffer_total` to `per_peer`, or set the per-peer buffer with
    /// [`Config::with_max_write_buffer`], which does.
    #[error(
        "max_write_buffer_total is {total}, below max_write_buffer ({per_peer}): raise max_write_buffer_total to {per_peer} (Config::with_max_write_buffer and with_max_frame_size raise it)"
    )]
    TotalBelowPerPeer {
        /// The configured global cap.
        total: usize,
        /// The configured per-peer cap, the least global cap that works with it.
        per_peer: usize,
    },
    /// The receive budget cannot hold one frame of the maximum size, so a large frame
    /// could never finish: raise `max_read_buffer_total` to `needed`
    /// ([`Config::min_read_buffer_total`]), or set the frame size with
    /// [`Config::with_max_frame_size`], which does.
    #[error(
        "max_read_buffer_total is {total}, below the {needed} bytes that one frame of max_frame_size ({frame}) takes with its header: raise max_read_buffer_total to {needed} (Config::with_max_frame_size raises it)"
    )]
    ReadBufferBelowFrame {
        /// The configured receive budget.
        total: usize,
        /// The configured maximum frame body.
        frame: usize,
        /// The least `max_read_buffer_total` that works with it.
        needed: usize,
    },
    /// A duration is longer than this crate's timers take.
    #[error("config field `{0}` is over the maximum of {max:?}", max = MAX_DURATION)]
    TooLong(&'static str),
    /// A count is larger than this crate's limits take.
    #[error("config field `{0}` is over the maximum of {max}", max = MAX_COUNT)]
    TooLarge(&'static str),
    /// The security mode is not built into this crate (the `noise` feature is off).
    #[error("security {0} is not available: build with the `noise` feature")]
    SecurityUnavailable(Security),
    /// A `peer_id` was set in noise-xx mode, where the id is the keypair's public key.
    #[error("peer_id cannot be chosen in noise-xx mode: the id is the keypair's public key")]
    PeerIdInNoiseMode,
    /// `ipv6_prefix_len` is over 128 bits.
    #[error("ipv6_prefix_len {0} is over 128")]
    PrefixTooLong(u8),
    /// Pings would never be sent before the idle timeout closes the peer: raise
    /// `idle_timeout` above `ping`, or lower `ping_interval` below `idle`.
    #[error(
        "ping_interval ({ping:?}) must be shorter than idle_timeout ({idle:?}): raise idle_timeout above {ping:?} or lower ping_interval below {idle:?}"
    )]
    PingNotBeforeIdle {
        /// The configured ping interval.
        ping: Duration,
        /// The configured idle timeout.
        idle: Duration,
    },
    /// The longest redial wait is shorter than the first: raise `redial_max` to
    /// `base` at least.
    #[error("redial_max ({max:?}) is below redial_base ({base:?}): raise redial_max to {base:?}")]
    RedialMaxBelowBase {
        /// The configured first wait.
        base: Duration,
        /// The configured longest wait.
        max: Duration,
    },
    /// `redial_jitter` is not a fraction from 0.0 to 1.0 (or is NaN).
    #[error("redial_jitter must be within 0.0..=1.0")]
    RedialJitter,
    /// `advertised_addrs` holds more addresses than one ADDRS frame carries
    /// ([`MAX_ADDRS`](crate::wire::MAX_ADDRS), PROTOCOL.md §5.1): the rest would never
    /// be told.
    #[error("advertised_addrs holds {0} addresses; an ADDRS frame carries at most {max}", max = crate::wire::MAX_ADDRS)]
    TooManyAdvertisedAddrs(usize),
    /// An address in `advertised_addrs` has port 0, where nobody can reach it.
    #[error("advertised address {0} has port 0")]
    AdvertisedPortZero(std::net::SocketAddr),
    /// `address_book_size` is over [`MAX_ADDRESS_BOOK`]: each GETADDRS a peer sends
    /// costs a pass over the book.
    #[error("address_book_size ({0}) is over the maximum of {max}", max = MAX_ADDRESS_BOOK)]
    AddressBookTooLarge(usize),
    /// `target_outbound` is above `max_outbound`: the node could never reach it.
    #[error("target_outbound ({target}) is above max_outbound ({max})")]
    TargetOverMaxOutbound {
        /// The configured target.
        target: usize,
        /// The configured limit.
        max: usize,
    },
}

/// The longest timer a config may set (one year): deadlines are `now + duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The largest count a config may set for queues and caches.
pub const MAX_COUNT: usize = 1 << 40;
/// The largest [`Config::address_book_size`]: answering a peer's GETADDRS, and each
/// discovery round, is a pass over the book (about 1 ms at this size).
pub const MAX_ADDRESS_BOOK: usize = 1 << 16;
/// The largest [`Config::max_rejected_frames`] and [`Config::max_pending_requests`]:
/// each sizes a table every connection holds and its peer fills at will (an instant
/// per rejected frame in the window, 16 bytes; an entry per unanswered REQUEST, about
/// 50 bytes), so at most about 1 MiB and 3 MiB per connection.
pub const MAX_PER_PEER_TABLE: usize = 1 << 16;

impl Config {
    /// The smallest `max_write_buffer` [`Config::validate`] accepts with this
    /// `max_frame_size`: one largest frame with its 5-byte header, the overhead of the
    /// noise records it may be sealed into (counted in either security mode when the
    /// `noise` feature is built), and the 256 bytes kept for control frames.
    ///
    /// [`Config::with_max_frame_size`] raises `max_write_buffer` to it:
    ///
    /// ```
    /// let mut config = p2p::Config { max_frame_size: 16 << 20, ..p2p::Config::default() };
    /// config.max_write_buffer = config.max_write_buffer.max(config.min_write_buffer());
    /// config.max_write_buffer_total = config.max_write_buffer_total.max(config.max_write_buffer);
    /// assert_eq!(config.validate(), Ok(()));
    /// let same = p2p::Config::default().with_max_frame_size(16 << 20);
    /// assert_eq!(same.max_write_buffer, config.max_write_buffer);
    /// ```
    pub fn min_write_buffer(&self) -> usize {
        let frame = self.max_frame_size.saturating_add(LEN_FIELD + 1);
        frame
            .saturating_add(crate::secure::record_overhead(frame))
            .saturating_add(crate::budget::CONTROL_ROOM)
    }

    /// The smallest `max_read_buffer_total` [`Config::validate`] accepts with this
    /// `max_frame_size`: one largest frame with its header.
    ///
    /// [`Config::with_max_frame_size`] raises `max_read_buffer_total` to it:
    ///
    /// ```
    /// let mut config = p2p::Config { max_frame_size: 100 << 20, ..p2p::Config::default() };
    /// config.max_write_buffer = config.max_write_buffer.max(config.min_write_buffer());
    /// config.max_write_buffer_total = config.max_write_buffer_total.max(config.max_write_buffer);
    /// config.max_read_buffer_total = config.max_read_buffer_total.max(config.min_read_buffer_total());
    /// assert_eq!(config.validate(), Ok(()));
    /// let same = p2p::Config::default().with_max_frame_size(100 << 20);
    /// assert_eq!(same.max_read_buffer_total, config.max_read_buffer_total);
    /// ```
    pub fn min_read_buffer_total(&self) -> usize {
        self.max_frame_size.saturating_add(LEN_FIELD + 1)
    }

    /// The smallest `max_write_buffer_total` [`Config::validate`] accepts: one peer's
    /// `max_write_buffer`. A largest frame then fits only while few connections are
    /// open; see [`Config::write_buffer_total_at_capacity`].
    pub fn min_write_buffer_total(&self) -> usize {
        self.max_write_buffer
    }

    /// The `max_write_buffer_total` at which a largest frame still fits while every
    /// connection the limits allow exists: `max_write_buffer` plus the room for control
    /// frames (256 bytes) that every connection keeps under the total, for
    /// `max_inbound + max_outbound` connections, as many again closing, and
    /// `max_pending_dials` dials. Below it (down to [`Config::min_write_buffer_total`],
    /// which [`Config::validate`] accepts) a largest frame is refused with
    /// `SendError::GlobalFull` once enough connections are open.
    /// [`Config::with_max_frame_size`], [`Config::with_max_write_buffer`] and
    /// [`Config::fit_buffers`] raise the total to it.
    pub fn write_buffer_total_at_capacity(&self) -> usize {
        let connections = self
            .max_inbound
            .saturating_add(self.max_outbound)
            .saturating_mul(2)
            .saturating_add(self.max_pending_dials);
        self.max_write_buffer
            .saturating_add(crate::budget::CONTROL_ROOM.saturating_mul(connections))
    }

    /// This config with `max_frame_size` set to `size`, and every field that must hold
    /// a frame of that size raised to the least [`Config::validate`] accepts, if it is
    /// below it (a field above it, or a smaller `size`, changes nothing else):
    ///
    /// * `max_write_buffer` to [`Config::min_write_buffer`]: the frame with its 5-byte
    ///   header, the overhead of the noise records it may be sealed into, and 256
    ///   bytes kept for control frames;
    /// * `max_read_buffer_total` to [`Config::min_read_buffer_total`]: the frame with
    ///   its header;
    /// * `max_write_buffer_total` to [`Config::write_buffer_total_at_capacity`]: the
    ///   per-peer buffer, as raised, and the control room of every connection the
    ///   limits allow, so a largest frame fits however many are open.
    ///
    /// ```
    /// use p2p::Config;
    ///
    /// let config = Config::default().with_max_frame_size(64 << 20);
    /// assert_eq!(config.max_frame_size, 64 << 20);
    /// assert_eq!(config.max_write_buffer, config.min_write_buffer());
    /// assert_eq!(config.max_read_buffer_total, (64 << 20) + 5);
    /// assert_eq!(config.max_write_buffer_total, 256 << 20); // was above already
    /// assert_eq!(config.validate(), Ok(()));
    /// ```
    pub fn with_max_frame_size(mut self, size: usize) -> Config {
        self.max_frame_size = size;
        self.fit_buffers()
    }

    /// This config with `max_write_buffer` set to `size`, and `max_write_buffer_total`
    /// raised to [`Config::write_buffer_total_at_capacity`] if below. A `size` below
    /// [`Config::min_write_buffer`] is kept, and refused by [`Config::validate`]: lower
    /// `max_frame_size` first.
    ///
    /// ```
    /// let config = p2p::Config::default().with_max_write_buffer(512 << 20);
    /// assert_eq!(config.max_write_buffer_total, config.write_buffer_total_at_capacity());
    /// assert!(config.max_write_buffer_total > 512 << 20);
    /// assert_eq!(config.validate(), Ok(()));
    /// ```
    pub fn with_max_write_buffer(mut self, size: usize) -> Config {
        self.max_write_buffer = size;
        self.max_write_buffer_total = self
            .max_write_buffer_total
            .max(self.write_buffer_total_at_capacity());
        self
    }

    /// This config with each byte budget that is below the least [`Config::validate`]
    /// accepts given the other fields raised to it, and nothing else changed:
    /// `max_write_buffer` to [`Config::min_write_buffer`], `max_read_buffer_total` to
    /// [`Config::min_read_buffer_total`], then `max_write_buffer_total` to
    /// [`Config::write_buffer_total_at_capacity`]. For a config written with the struct
    /// update syntax:
    ///
    /// ```
    /// use p2p::{Config, Security};
    ///
    /// let config = Config {
    ///     security: Security::Plaintext,
    ///     max_frame_size: 32 << 20,
    ///     ..Config::default()
    /// }
    /// .fit_buffers();
    /// assert_eq!(config.validate(), Ok(()));
    /// ```
    pub fn fit_buffers(mut self) -> Config {
        self.max_write_buffer = self.max_write_buffer.max(self.min_write_buffer());
        self.max_read_buffer_total = self.max_read_buffer_total.max(self.min_read_buffer_total());
        self.max_write_buffer_total = self
            .max_write_buffer_total
            .max(self.write_buffer_total_at_capacity());
        self
    }

    /// Checks every field, returning the first one that cannot work. A field too small
    /// for another is named with the value it needs ([`ConfigError`]);
    /// [`Config::with_max_frame_size`], [`Config::with_max_write_buffer`] and
    /// [`Config::fit_buffers`] raise such fields for you.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.security == Security::NoiseXx {
            if !cfg!(feature = "noise") {
                return Err(ConfigError::SecurityUnavailable(self.security));
            }
            if self.peer_id.is_some() {
                return Err(ConfigError::PeerIdInNoiseMode);
            }
        }
        let nonzero_counts = [
            ("max_frame_size", self.max_frame_size),
            ("max_rejected_frames", self.max_rejected_frames as usize),
            ("max_pending_handshakes", self.max_pending_handshakes),
            (
                "max_pending_handshakes_per_ip",
                self.max_pending_handshakes_per_ip,
            ),
            ("max_pending_dials", self.max_pending_dials),
            ("max_inbound_per_ip", self.max_inbound_per_ip),
            ("handshake_rate_per_ip", self.handshake_rate_per_ip as usize),
            ("max_accepts_per_turn", self.max_accepts_per_turn),
            ("listen_backlog", self.listen_backlog as usize),
            ("max_read_buffer_total", self.max_read_buffer_total),
            ("max_gossip_rate", self.max_gossip_rate as usize),
            ("max_gossip_bytes_rate", self.max_gossip_bytes_rate),
            ("max_pending_requests", self.max_pending_requests),
            ("max_write_buffer", self.max_write_buffer),
            ("read_budget", self.read_budget),
            ("read_budget_total", self.read_budget_total),
            ("gossip_hops", self.gossip_hops as usize),
            ("gossip_cache_size", self.gossip_cache_size),
            ("command_queue", self.command_queue),
            ("max_pending_validations", self.max_pending_validations),
            (
                "max_pending_validation_bytes",
                self.max_pending_validation_bytes,
            ),
            ("address_book_size", self.address_book_size),
        ];
        for (name, value) in nonzero_counts {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
            if value > MAX_COUNT {
                return Err(ConfigError::TooLarge(name));
            }
        }
        for (name, value) in [
            ("max_rejected_frames", self.max_rejected_frames as usize),
            ("max_pending_requests", self.max_pending_requests),
        ] {
            if value > MAX_PER_PEER_TABLE {
                return Err(ConfigError::TooLarge(name));
            }
        }
        for (name, value) in [
            ("max_inbound", self.max_inbound),
            ("max_outbound", self.max_outbound),
            ("max_write_buffer_total", self.max_write_buffer_total),
            ("max_pending_validations", self.max_pending_validations),
            ("address_book_size", self.address_book_size),
        ] {
            if value > MAX_COUNT {
                return Err(ConfigError::TooLarge(name));
            }
        }
        let nonzero_times = [
            ("preamble_timeout", self.preamble_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("frame_timeout", self.frame_timeout),
            ("write_timeout", self.write_timeout),
            ("connect_timeout", self.connect_timeout),
            ("ping_interval", self.ping_interval),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("rejected_frames_window", self.rejected_frames_window),
            ("close_timeout", self.close_timeout),
            ("gossip_cache_age", self.gossip_cache_age),
            ("redial_base", self.redial_base),
            ("redial_max", self.redial_max),
            ("validation_timeout", self.validation_timeout),
        ];
        for (name, value) in nonzero_times {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
            if value > MAX_DURATION {
                return Err(ConfigError::TooLong(name));
            }
        }
        // Zero turns rotation off; a deadline `now + outbound_rotation` must exist.
        if self.outbound_rotation > MAX_DURATION {
            return Err(ConfigError::TooLong("outbound_rotation"));
        }
        if self.max_frame_size > (u32::MAX - 1) as usize {
            return Err(ConfigError::FrameTooLarge(self.max_frame_size));
        }
        if self.max_write_buffer < self.min_write_buffer() {
            return Err(ConfigError::WriteBufferBelowFrame {
                buffer: self.max_write_buffer,
                frame: self.max_frame_size,
                needed: self.min_write_buffer(),
            });
        }
        if self.max_read_buffer_total < self.min_read_buffer_total() {
            return Err(ConfigError::ReadBufferBelowFrame {
                total: self.max_read_buffer_total,
                frame: self.max_frame_size,
                needed: self.min_read_buffer_total(),
            });
        }
        if self.max_write_buffer_total < self.min_write_buffer_total() {
            return Err(ConfigError::TotalBelowPerPeer {
                total: self.max_write_buffer_total,
                per_peer: self.max_write_buffer,
            });
        }
        if self.ipv6_prefix_len > 128 {
            return Err(ConfigError::PrefixTooLong(self.ipv6_prefix_len));
        }
        if self.redial_max < self.redial_base {
            return Err(ConfigError::RedialMaxBelowBase {
                base: self.redial_base,
                max: self.redial_max,
            });
        }
        if !(0.0..=1.0).contains(&self.redial_jitter) {
            return Err(ConfigError::RedialJitter);
        }
        if self.advertised_addrs.len() > crate::wire::MAX_ADDRS {
            return Err(ConfigError::TooManyAdvertisedAddrs(
                self.advertised_addrs.len(),
            ));
        }
        if let Some(&addr) = self.advertised_addrs.iter().find(|a| a.port() == 0) {
            return Err(ConfigError::AdvertisedPortZero(addr));
        }
        if self.address_book_size > MAX_ADDRESS_BOOK {
            return Err(ConfigError::AddressBookTooLarge(self.address_book_size));
        }
        if self.target_outbound > self.max_outbound {
            return Err(ConfigError::TargetOverMaxOutbound {
                target: self.target_outbound,
                max: self.max_outbound,
            });
        }
        if self.ping_interval >= self.idle_timeout {
            return Err(ConfigError::PingNotBeforeIdle {
                ping: self.ping_interval,
                idle: self.idle_timeout,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_rotation_is_zero_or_a_time_the_clock_can_add() {
        let c = |d| Config {
            outbound_rotation: d,
            ..Config::default()
        };
        assert_eq!(c(Duration::ZERO).validate(), Ok(()));
        assert_eq!(
            c(Duration::MAX).validate(),
            Err(ConfigError::TooLong("outbound_rotation"))
        );
    }

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn with_max_frame_size_raises_each_buffer_that_must_hold_a_frame_to_its_minimum() {
        let size = 64 << 20;
        let c = Config::default().with_max_frame_size(size);
        assert_eq!(c.max_frame_size, size);
        assert_eq!(c.max_write_buffer, c.min_write_buffer());
        let frame = size + LEN_FIELD + 1 + crate::budget::CONTROL_ROOM;
        assert!(c.max_write_buffer >= frame);
        #[cfg(feature = "noise")]
        assert!(c.max_write_buffer > frame, "records add their overhead");
        assert_eq!(c.max_read_buffer_total, size + LEN_FIELD + 1);
        assert_eq!(
            c.max_write_buffer_total,
            Config::default().max_write_buffer_total
        );
        assert_eq!(c.validate(), Ok(()));
        // Past the global write buffer too, with the control room of every connection.
        let c = Config::default().with_max_frame_size(1 << 30);
        assert_eq!(
            c.max_write_buffer_total,
            c.max_write_buffer + crate::budget::CONTROL_ROOM * (2 * (128 + 128) + 64)
        );
        assert_eq!(c.validate(), Ok(()));
        let c = Config {
            security: Security::Plaintext,
            ..Config::default()
        }
        .with_max_frame_size(size);
        assert_eq!(c.max_write_buffer, c.min_write_buffer());
        assert_eq!(c.validate(), Ok(()));
        for size in [
            1,
            1000,
            64 << 10,
            8 << 20,
            100 << 20,
            (u32::MAX - 1) as usize,
        ] {
            let c = Config::default().with_max_frame_size(size);
            assert_eq!(c.validate(), Ok(()), "max_frame_size {size}");
        }
    }

    #[test]
    fn with_max_frame_size_never_lowers_a_field() {
        let d = Config::default();
        let c = Config::default().with_max_frame_size(1024);
        assert_eq!(c.max_frame_size, 1024);
        assert_eq!(c.max_write_buffer, d.max_write_buffer);
        assert_eq!(c.max_read_buffer_total, d.max_read_buffer_total);
        assert_eq!(c.max_write_buffer_total, d.max_write_buffer_total);
        let c = d.clone().fit_buffers();
        assert_eq!(
            (
                c.max_write_buffer,
                c.max_read_buffer_total,
                c.max_write_buffer_total
            ),
            (
                d.max_write_buffer,
                d.max_read_buffer_total,
                d.max_write_buffer_total
            )
        );
    }

    #[test]
    fn each_raised_field_is_needed_and_its_error_says_to_what() {
        let c = Config::default().with_max_frame_size(1 << 30);
        let needed = c.min_write_buffer();
        let short = Config {
            max_write_buffer: needed - 1,
            ..c.clone()
        };
        let err = short.validate().unwrap_err();
        assert_eq!(
            err,
            ConfigError::WriteBufferBelowFrame {
                buffer: needed - 1,
                frame: 1 << 30,
                needed
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("raise max_write_buffer to {needed}")),
            "{err}"
        );
        let needed = c.min_read_buffer_total();
        let short = Config {
            max_read_buffer_total: needed - 1,
            ..c.clone()
        };
        let err = short.validate().unwrap_err();
        assert_eq!(
            err,
            ConfigError::ReadBufferBelowFrame {
                total: needed - 1,
                frame: 1 << 30,
                needed
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("raise max_read_buffer_total to {needed}")),
            "{err}"
        );
        let needed = c.min_write_buffer_total();
        let short = Config {
            max_write_buffer_total: needed - 1,
            ..c
        };
        let err = short.validate().unwrap_err();
        assert_eq!(
            err,
            ConfigError::TotalBelowPerPeer {
                total: needed - 1,
                per_peer: needed
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("raise max_write_buffer_total to {needed}")),
            "{err}"
        );
    }

    #[test]
    fn with_max_write_buffer_raises_the_total_with_it() {
        let c = Config::default().with_max_write_buffer(1 << 30);
        assert_eq!(c.max_write_buffer, 1 << 30);
        assert_eq!(c.max_write_buffer_total, c.write_buffer_total_at_capacity());
        assert_eq!(c.validate(), Ok(()));
        let c = Config::default().with_max_write_buffer(32 << 20);
        assert_eq!(
            c.max_write_buffer_total,
            Config::default().max_write_buffer_total
        );
        // Below what a largest frame needs it is kept, and refused by name.
        let c = Config::default().with_max_write_buffer(1024);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::WriteBufferBelowFrame { buffer: 1024, .. })
        ));
    }

    #[test]
    fn fit_buffers_makes_a_struct_update_config_valid() {
        let c = Config {
            max_frame_size: 200 << 20,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::WriteBufferBelowFrame { .. })
        ));
        let c = c.fit_buffers();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.max_write_buffer, c.min_write_buffer());
        assert_eq!(c.max_read_buffer_total, c.min_read_buffer_total());
        assert_eq!(
            c.max_write_buffer_total,
            Config::default().max_write_buffer_total
        );
        let c = Config {
            max_frame_size: 300 << 20,
            ..Config::default()
        }
        .fit_buffers();
        assert_eq!(c.max_write_buffer_total, c.write_buffer_total_at_capacity());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn redial_waits_must_make_sense() {
        let with = |base: u64, max: u64, jitter: f64| Config {
            redial_base: Duration::from_millis(base),
            redial_max: Duration::from_millis(max),
            redial_jitter: jitter,
            ..Config::default()
        };
        assert_eq!(with(100, 100, 0.0).validate(), Ok(()));
        assert_eq!(with(100, 5000, 1.0).validate(), Ok(()));
        assert_eq!(
            with(200, 100, 0.5).validate(),
            Err(ConfigError::RedialMaxBelowBase {
                base: Duration::from_millis(200),
                max: Duration::from_millis(100)
            })
        );
        assert_eq!(
            with(0, 100, 0.5).validate(),
            Err(ConfigError::Zero("redial_base"))
        );
        // Nothing could ever wait for a verdict, so nothing would be relayed.
        let none_held = Config {
            max_pending_validations: 0,
            ..Config::default()
        };
        assert_eq!(
            none_held.validate(),
            Err(ConfigError::Zero("max_pending_validations"))
        );
        for jitter in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            assert_eq!(
                with(100, 200, jitter).validate(),
                Err(ConfigError::RedialJitter),
                "{jitter}"
            );
        }
    }

    #[test]
    fn advertised_addrs_fit_one_addrs_frame_and_have_a_port() {
        let with = |addrs: Vec<&str>| Config {
            advertised_addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ..Config::default()
        };
        let eight: Vec<&str> = vec!["192.0.2.1:1"; 8];
        assert_eq!(with(eight.clone()).validate(), Ok(()));
        // A ninth would be dropped without a word (an ADDRS frame carries eight).
        let nine: Vec<&str> = vec!["192.0.2.1:1"; 9];
        assert_eq!(
            with(nine).validate(),
            Err(ConfigError::TooManyAdvertisedAddrs(9))
        );
        assert_eq!(
            with(vec!["192.0.2.1:1", "0.0.0.0:0"]).validate(),
            Err(ConfigError::AdvertisedPortZero(
                "0.0.0.0:0".parse().unwrap()
            ))
        );
    }

    #[test]
    fn thresholds_that_size_a_table_a_peer_fills_are_capped() {
        // Each is the size of a per-connection table a peer fills at will (one
        // instant per rejected frame in the window; one entry per unanswered
        // REQUEST), so "never close" or "never limit my requests" must not read as
        // gigabytes per connection.
        let at_cap = Config {
            max_rejected_frames: MAX_PER_PEER_TABLE as u32,
            max_pending_requests: MAX_PER_PEER_TABLE,
            ..Config::default()
        };
        assert_eq!(at_cap.validate(), Ok(()));
        let c = Config {
            max_rejected_frames: u32::MAX,
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooLarge("max_rejected_frames"))
        );
        let c = Config {
            max_pending_requests: MAX_PER_PEER_TABLE + 1,
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooLarge("max_pending_requests"))
        );
    }

    #[test]
    fn each_bad_field_names_itself() {
        let c = Config {
            max_rejected_frames: 0,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Zero("max_rejected_frames")));
        let c = Config {
            request_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Zero("request_timeout")));
        let c = Config {
            rejected_frames_window: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::Zero("rejected_frames_window"))
        );
        let c = Config {
            rejected_frames_window: MAX_DURATION + Duration::from_secs(1),
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooLong("rejected_frames_window"))
        );
        let c = Config {
            max_write_buffer: 1024,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::WriteBufferBelowFrame { buffer: 1024, .. })
        ));
        let c = Config {
            max_write_buffer: Config::default().min_write_buffer() - 1,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::WriteBufferBelowFrame { .. })
        ));
        let c = Config {
            max_write_buffer_total: 1,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TotalBelowPerPeer { total: 1, .. })
        ));
        let c = Config {
            max_read_buffer_total: Config::default().max_frame_size,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ReadBufferBelowFrame { .. })
        ));
        let c = Config {
            ping_interval: Duration::from_secs(60),
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::PingNotBeforeIdle { .. })
        ));
        let c = Config {
            idle_timeout: Duration::MAX,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::TooLong("idle_timeout")));
        let c = Config {
            max_pending_requests: usize::MAX,
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooLarge("max_pending_requests"))
        );
        let c = Config {
            security: Security::NoiseXx,
            peer_id: Some(PeerId::from_bytes([1; 32])),
            ..Config::default()
        };
        let expected = if cfg!(feature = "noise") {
            ConfigError::PeerIdInNoiseMode
        } else {
            ConfigError::SecurityUnavailable(Security::NoiseXx)
        };
        assert_eq!(c.validate(), Err(expected));
        let c = Config {
            max_frame_size: usize::MAX,
            max_write_buffer: usize::MAX,
            max_write_buffer_total: usize::MAX,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::TooLarge("max_frame_size")));
        let c = Config {
            max_frame_size: u32::MAX as usize,
            max_write_buffer: usize::MAX >> 30,
            max_write_buffer_total: usize::MAX >> 30,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::FrameTooLarge(_))));
    }
}
