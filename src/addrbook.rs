//! The address book: addresses the node has learned, bounded, and kept so that no
//! single source or network group can fill it.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Who told us an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// The application (or a book it loaded): never limited by source or group.
    Application,
    /// Peers connecting from one public network group, in ADDRS and PEERS frames.
    /// Counted by their network, not their id: ids cost nothing to make, addresses in
    /// many networks do.
    Peers(Group),
    /// Peers connecting from addresses that are not public (the operator's own
    /// network, loopback): one source for the book's share, which discovery does not
    /// spread over, as it does not spread over such groups.
    Local,
}

impl Source {
    /// The word a saved book holds for it: `app`, `local`, or `p` and the group's
    /// ten hex digits.
    fn to_word(self) -> String {
        match self {
            Source::Application => "app".into(),
            Source::Local => "local".into(),
            Source::Peers(Group(g)) => {
                let hex: String = g.iter().map(|b| format!("{b:02x}")).collect();
                format!("p{hex}")
            }
        }
    }

    /// The source a saved book's word names.
    fn from_word(word: &str) -> Option<Source> {
        match word {
            "app" => Some(Source::Application),
            "local" => Some(Source::Local),
            _ => {
                let hex = word.strip_prefix('p').filter(|h| h.len() == 10)?;
                let mut g = [0u8; 5];
                for (i, byte) in g.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some(Source::Peers(Group(g)))
            }
        }
    }

    /// The source of what a peer connected from `addr` tells.
    pub(crate) fn peer_at(addr: &SocketAddr) -> Source {
        // A 6to4 or NAT64 teller came over the network: grouped, never local.
        if is_remote(addr.ip().to_canonical()) {
            Source::Peers(group(addr))
        } else {
            Source::Local
        }
    }
}

/// The network an address is in, as an eclipse attacker would have to own many of:
/// its /16 for IPv4, its /32 for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Group([u8; 5]);

/// The network group of `addr`. An IPv6 address that carries an IPv4 one (6to4,
/// `2002:a.b.c.d::/48`; NAT64, `64:ff9b::a.b.c.d`) is in the IPv4 address's group:
/// one /16 must not count as three.
pub(crate) fn group(addr: &SocketAddr) -> Group {
    match embedded_v4(addr.ip().to_canonical()) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Group([4, o[0], o[1], 0, 0])
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Group([6, o[0], o[1], o[2], o[3]])
        }
    }
}

/// The IPv4 address a 6to4 (`2002::/16`) or NAT64 well-known-prefix
/// (`64:ff9b::/96`) IPv6 address carries, else `ip` itself.
fn embedded_v4(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    let o = v6.octets();
    let s = v6.segments();
    if s[0] == 0x2002 {
        IpAddr::from([o[2], o[3], o[4], o[5]])
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        IpAddr::from([o[12], o[13], o[14], o[15]])
    } else {
        ip
    }
}

/// What the book knows of one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    pub(crate) source: Source,
    /// Dials that failed in a row.
    pub(crate) failures: u32,
    /// When a dial to it last reached the end of a handshake.
    pub(crate) last_success: Option<Instant>,
    /// When the node last dialled it by itself (discovery).
    pub(crate) last_try: Option<Instant>,
    /// A dial of ours ever reached a node there (kept across a saved book, unlike
    /// `last_success`).
    pub(crate) reached: bool,
    /// A node was reached there (a dial of ours finished its handshake), or a peer
    /// connected from its IP told it as its own: only such addresses are told on
    /// (PEERS), so that junk one peer tells does not spread from node to node.
    pub(crate) vouched: bool,
}

/// The book's bounds, from `Config::address_book_size`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Addresses held.
    pub(crate) size: usize,
    /// Addresses held from one network group (peers' only).
    pub(crate) per_group: usize,
    /// Addresses held from what the peers of one network group told.
    pub(crate) per_source: usize,
    /// Failed dials in a row after which an address is forgotten.
    pub(crate) max_failures: u32,
}

impl Limits {
    /// The bounds for a book of `size`: a sixteenth of it per network group, a
    /// thirty-second per peer (at least 8 each), forgotten after 8 failed dials.
    pub(crate) fn for_size(size: usize) -> Limits {
        Limits {
            size,
            per_group: (size / 16).max(8),
            per_source: (size / 32).max(8),
            max_failures: 8,
        }
    }
}

/// The known addresses. Keys come from peers: the addresses are in a `BTreeMap` (no
/// hash to aim at, and the same order on every run, which the simulator and the
/// random choices drawn over it need); the counts use the standard library's keyed
/// hash.
#[derive(Debug)]
pub(crate) struct Book {
    entries: BTreeMap<SocketAddr, Known>,
    per_group: HashMap<Group, usize>,
    per_source: HashMap<Source, usize>,
    limits: Limits,
}

/// Failed dials in a row after which an address a peer told, and no dial of ours
/// ever reached, is forgotten.
pub(crate) const UNPROVEN_FAILURES: u32 = 3;

/// The first line of a saved book.
const HEADER: &str = "p2p-address-book-v1";

impl Book {
    pub(crate) fn new(limits: Limits) -> Book {
        Book {
            entries: BTreeMap::new(),
            per_group: HashMap::new(),
            per_source: HashMap::new(),
            limits,
        }
    }

    /// How many addresses it holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// What the book knows of `addr`.
    pub(crate) fn get(&self, addr: &SocketAddr) -> Option<&Known> {
        self.entries.get(addr)
    }

    /// Every address, sorted.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.entries.keys().copied().collect()
    }

    /// Up to `n` addresses drawn at random among those `keep` keeps and whose last
    /// dial did not fail (an answer to a GETADDRS): what we tell is what we would
    /// dial ourselves. One pass over the book.
    pub(crate) fn sample(
        &self,
        n: usize,
        mut keep: impl FnMut(&SocketAddr) -> bool,
        rng: &mut Rng,
    ) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|(addr, known)| known.vouched && known.failures == 0 && keep(addr))
            .map(|(addr, _)| *addr)
            .collect();
        pick(&mut all, n, rng);
        all
    }

    /// The addresses the discovery dialler may try at `now`: never dialled by it,
    /// or last dialled at least a backoff ago (`base` doubled per failure in a row, at
    /// most `cap`), so a failing address is not hammered; in address order.
    pub(crate) fn dialable(
        &self,
        now: Instant,
        (base, cap): (Duration, Duration),
    ) -> impl Iterator<Item = (SocketAddr, Known)> + '_ {
        self.entries
            .iter()
            .filter(move |(_, known)| {
                known.last_try.is_none_or(|at| {
                    let wait = crate::persistent::backoff(known.failures, base, cap, 0.0, 0);
                    now.saturating_duration_since(at) >= wait
                })
            })
            .map(|(addr, known)| (*addr, *known))
    }

    /// The discovery dialler dials `addr` at `now`.
    pub(crate) fn tried(&mut self, addr: &SocketAddr, now: Instant) {
        if let Some(known) = self.entries.get_mut(addr) {
            known.last_try = Some(now);
        }
    }

    /// Forgets `addr` (it turned out to be this node's own).
    pub(crate) fn forget(&mut self, addr: &SocketAddr) {
        self.remove(addr);
    }

    /// Forgets `addr` unless the application gave it (a banned peer's address).
    pub(crate) fn forget_told(&mut self, addr: &SocketAddr) {
        if self
            .entries
            .get(addr)
            .is_some_and(|k| k.source != Source::Application)
        {
            self.remove(addr);
        }
    }

    /// Learns `addr` from `source`; false if it was known already or a bound refused
    /// it. Peers' addresses are refused past their network's share (`per_source`) and
    /// past the share of the network the address is in (`per_group`), so one peer, or
    /// many in one network, cannot fill the book; when the book is full, an address with failed dials makes room
    /// (the one with the most), else the new one is refused: what the book holds is
    /// not flushed by what arrives. The application's addresses pass every share.
    pub(crate) fn add(&mut self, addr: SocketAddr, source: Source) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() || self.entries.contains_key(&addr) {
            return false;
        }
        let group = group(&addr);
        if source != Source::Application {
            let from_source = self.per_source.get(&source).copied().unwrap_or(0);
            let in_group = self.per_group.get(&group).copied().unwrap_or(0);
            if from_source >= self.limits.per_source || in_group >= self.limits.per_group {
                return false;
            }
        }
        if self.entries.len() >= self.limits.size {
            let worst = self
                .entries
                .iter()
                .filter(|(_, k)| k.failures > 0)
                .max_by_key(|(a, k)| (k.failures, std::cmp::Reverse(**a)))
                .map(|(a, _)| *a);
            match worst {
                Some(worst) => self.remove(&worst),
                None => return false,
            }
        }
        self.entries.insert(
            addr,
            Known {
                source,
                failures: 0,
                last_success: None,
                last_try: None,
                reached: false,
                // The operator's own addresses need no one else's word.
                vouched: source == Source::Application,
            },
        );
        *self.per_group.entry(group).or_default() += 1;
        *self.per_source.entry(source).or_default() += 1;
        true
    }

    /// Learns `addr` from the peer connected from `seen` (its ADDRS). A peer on a
    /// public address may tell only public ones: private, loopback, multicast and the
    /// like would send our dials into our own network (or nowhere) and only take
    /// room. A peer on a private network may tell private ones too.
    pub(crate) fn add_told(&mut self, addr: SocketAddr, seen: &SocketAddr) -> bool {
        if !may_tell(seen.ip().to_canonical(), addr.ip().to_canonical()) {
            return false;
        }
        self.add(addr, Source::peer_at(seen))
    }

    /// A peer connected from `addr`'s IP told it as its own: it may be told on.
    pub(crate) fn vouch(&mut self, addr: &SocketAddr) {
        if let Some(known) = self.entries.get_mut(addr) {
            known.vouched = true;
        }
    }

    fn remove(&mut self, addr: &SocketAddr) {
        let Some(known) = self.entries.remove(addr) else {
            return;
        };
        for count in [
            self.per_group.get_mut(&group(addr)),
            self.per_source.get_mut(&known.source),
        ]
        .into_iter()
        .flatten()
        {
            *count -= 1;
        }
        self.per_group.retain(|_, n| *n > 0);
        self.per_source.retain(|_, n| *n > 0);
    }

    /// A dial to `addr` reached the end of its handshake: a node is there. Its
    /// failures stay until the session proves lasting ([`Book::lasted`]): a peer
    /// that takes the handshake and closes must not clear them each time.
    pub(crate) fn reached(&mut self, addr: &SocketAddr, now: Instant) {
        if let Some(known) = self.entries.get_mut(addr) {
            known.last_success = Some(now);
            known.reached = true;
            known.vouched = true;
        }
    }

    /// A session our dial to `addr` began lasted: its failures are forgotten.
    pub(crate) fn lasted(&mut self, addr: &SocketAddr) {
        if let Some(known) = self.entries.get_mut(addr) {
            known.failures = 0;
        }
    }

    /// A dial to `addr` failed; after `max_failures` in a row it is forgotten, or
    /// after [`UNPROVEN_FAILURES`] if a peer told it and no dial ever reached it:
    /// dead addresses a peer feeds us cost few dials each.
    pub(crate) fn failed(&mut self, addr: &SocketAddr) {
        let Some(known) = self.entries.get_mut(addr) else {
            return;
        };
        known.failures = known.failures.saturating_add(1);
        let unproven = !known.reached && known.source != Source::Application;
        let limit = if unproven {
            UNPROVEN_FAILURES.min(self.limits.max_failures)
        } else {
            self.limits.max_failures
        };
        if known.failures >= limit {
            self.remove(addr);
        }
    }

    /// Writes the book: a header line, then one address, its failures and its
    /// source per line.
    pub(crate) fn save(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "{HEADER}")?;
        for (addr, known) in &self.entries {
            let flags = match (known.reached, known.vouched) {
                (true, true) => "rv",
                (true, false) => "r",
                (false, true) => "v",
                (false, false) => "-",
            };
            writeln!(
                out,
                "{addr} {} {} {flags}",
                known.failures,
                known.source.to_word()
            )?;
        }
        Ok(())
    }

    /// Reads a saved book into this one, each address under its saved source (the
    /// application's if none); returns how many were added. A malformed line (or one
    /// longer than any address and count make) is an `InvalidData` error naming it, and
    /// nothing is added. At most the book's size in addresses are read, the rest of
    /// the file is not: a huge file costs no more memory or time than a full book.
    pub(crate) fn load(&mut self, mut input: impl BufRead) -> io::Result<usize> {
        /// "[v6%scope]:port failures p0123456789" is well under this.
        const MAX_LINE: usize = 128;
        let bad = |line: usize, why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("address book line {line}: {why}"),
            )
        };
        let mut line = String::new();
        let mut next_line = |input: &mut dyn BufRead, n: usize| -> io::Result<Option<String>> {
            line.clear();
            if io::Read::take(&mut *input, MAX_LINE as u64 + 1).read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if line.len() > MAX_LINE {
                return Err(bad(n, "too long"));
            }
            Ok(Some(line.trim_end_matches(['\n', '\r']).to_owned()))
        };
        match next_line(&mut input, 1)? {
            Some(header) if header.trim() == HEADER => {}
            _ => return Err(bad(1, &format!("expected the header {HEADER:?}"))),
        }
        let mut read = Vec::new();
        let mut n = 1;
        while read.len() < self.limits.size {
            n += 1;
            let Some(line) = next_line(&mut input, n)? else {
                break;
            };
            let mut words = line.split_whitespace();
            let (Some(addr), Some(failures), source, flags, None) = (
                words.next(),
                words.next(),
                words.next(),
                words.next(),
                words.next(),
            ) else {
                return Err(bad(
                    n,
                    "expected an address, a failure count, and perhaps a source and flags",
                ));
            };
            let (reached, vouched) = match flags {
                None | Some("-") => (false, false),
                Some("r") => (true, false),
                Some("v") => (false, true),
                Some("rv") => (true, true),
                Some(_) => return Err(bad(n, "flags are -, r, v or rv")),
            };
            let addr: SocketAddr = addr.parse().map_err(|_| bad(n, "not an address"))?;
            let failures: u32 = failures
                .parse()
                .map_err(|_| bad(n, "not a failure count"))?;
            let source = match source {
                None => Source::Application,
                Some(word) => Source::from_word(word).ok_or_else(|| bad(n, "not a source"))?,
            };
            read.push((addr, failures, source, reached, vouched));
        }
        let mut added = 0;
        for (addr, failures, source, reached, vouched) in read {
            // Under the shares of its source, as when it was told: a restart does not
            // turn what peers told into the application's word.
            if self.add(addr, source) {
                if let Some(known) = self.entries.get_mut(&addr) {
                    known.failures = failures.min(self.limits.max_failures.saturating_sub(1));
                    known.reached = reached;
                    known.vouched |= vouched;
                }
                added += 1;
            }
        }
        Ok(added)
    }
}

/// Keeps `n` elements of `all` drawn uniformly at random (a partial Fisher-Yates
/// shuffle), in the order drawn.
pub(crate) fn pick<T>(all: &mut Vec<T>, n: usize, rng: &mut Rng) {
    let n = n.min(all.len());
    for i in 0..n {
        let left = (all.len() - i) as u64;
        let j = i + (rng.next_u64() % left) as usize;
        all.swap(i, j);
    }
    all.truncate(n);
}

/// Whether a peer connected from `teller` may put `addr` in the book. A public peer
/// tells only public addresses (others would send our dials into our own network);
/// a peer on the operator's network may tell private ones too, but loopback only
/// from loopback and link-local only from link-local (else a peer behind a NAT or
/// a proxy, which every internet peer looks like there, could aim our dials at this
/// host's services or the link's), and never an address that reaches no one host:
/// unspecified, "this network" (0/8), multicast, broadcast or reserved (240/4).
fn may_tell(teller: IpAddr, addr: IpAddr) -> bool {
    // A told 6to4 or NAT64 address is judged as the IPv4 one it reaches. A teller
    // at one came over the network, whatever IPv4 address it carries: it is no
    // more local than a public one.
    let addr = embedded_v4(addr);
    if is_remote(teller) {
        return is_public(addr);
    }
    let (loopback, link_local, unusable) = match addr {
        IpAddr::V4(v4) => {
            let [a, ..] = v4.octets();
            (v4.is_loopback(), v4.is_link_local(), a == 0 || a >= 224)
        }
        IpAddr::V6(v6) => (
            v6.is_loopback(),
            v6.is_unicast_link_local(),
            v6.is_unspecified() || v6.is_multicast(),
        ),
    };
    let teller_link_local = match teller {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    !unusable && (!loopback || teller.is_loopback()) && (!link_local || teller_link_local)
}

/// Whether a peer at `ip` is beyond the operator's network: a public address, or a
/// 6to4 or NAT64 one (it came over the network, whatever IPv4 address it carries).
/// Such a peer hears only public addresses from us.
pub(crate) fn is_remote(ip: IpAddr) -> bool {
    is_public(ip) || embedded_v4(ip) != ip
}

/// Whether `ip` is reachable from the internet at large: not unspecified ("this
/// network", 0/8), loopback, private, shared (100.64/10), link-local, IETF protocol
/// assignments (192.0.0/24), documentation, benchmarking (198.18/15), multicast or
/// reserved (240/4, broadcast included); for IPv6 not unspecified, loopback,
/// IPv4-compatible (::/96), discard-only (100::/64), local-use NAT64 (64:ff9b:1::/48),
/// documentation (2001:db8::/32, 3fff::/20), unique-local, link-local, site-local
/// (fec0::/10) or multicast, and an IPv4-mapped address as its IPv4 address. (The
/// list of `Ipv4Addr::is_global`, unstable in std.)
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            let shared = a == 100 && (b & 0xC0) == 64;
            let protocol_assignments = a == 192 && b == 0 && c == 0;
            let benchmarking = a == 198 && (b & 0xFE) == 18;
            !(a == 0
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || shared
                || protocol_assignments
                || v4.is_documentation()
                || benchmarking
                || v4.is_multicast()
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            // 6to4 and NAT64 reach the IPv4 address they carry.
            if let v4 @ IpAddr::V4(_) = embedded_v4(ip) {
                return is_public(v4);
            }
            let s = v6.segments();
            let compatible = s[..6] == [0; 6];
            let discard = s[..4] == [0x100, 0, 0, 0];
            let local_nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1;
            let documentation =
                (s[0] == 0x2001 && s[1] == 0xdb8) || (s[0] == 0x3fff && s[1] < 0x1000);
            let site_local = (s[0] & 0xFFC0) == 0xFEC0;
            !(compatible
                || discard
                || local_nat64
                || documentation
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || site_local
                || v6.is_multicast())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peers connecting from network 9.n/16 (public).
    fn peer(n: u8) -> Source {
        Source::peer_at(&SocketAddr::from(([9, n, 0, 9], 5)))
    }

    fn addr(a: u8, b: u8, c: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([a, b, c, 1], port))
    }

    fn limits() -> Limits {
        Limits {
            size: 8,
            per_group: 3,
            per_source: 4,
            max_failures: 2,
        }
    }

    #[test]
    fn the_peers_of_one_network_cannot_fill_the_book() {
        let mut book = Book::new(limits());
        let added = (0..10)
            .filter(|&i| book.add(addr(10, i, 0, 1), peer(1)))
            .count();
        assert_eq!(added, 4, "the per-source share");
        assert!(
            book.add(addr(10, 20, 0, 1), peer(2)),
            "another peer still can"
        );
    }

    #[test]
    fn one_network_group_cannot_fill_the_book() {
        let mut book = Book::new(limits());
        // Many peers, one /16.
        let added = (0..10)
            .filter(|&i| book.add(addr(10, 1, i, 1), peer(i)))
            .count();
        assert_eq!(added, 3, "the per-group share");
        assert!(
            book.add(addr(10, 2, 0, 1), peer(50)),
            "another /16 still can"
        );
        // IPv6 groups by /32.
        let v6 = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(book.add(v6("[2001:db8:1::1]:1"), peer(60)));
        assert!(book.add(v6("[2001:db8:2::1]:1"), peer(61)));
        assert!(book.add(v6("[2001:db8:3::1]:1"), peer(62)));
        assert!(!book.add(v6("[2001:db8:4::1]:1"), peer(63)), "same /32");
        // The application's addresses pass every share.
        assert!(book.add(addr(10, 1, 99, 1), Source::Application));
    }

    #[test]
    fn a_full_book_is_not_flushed_only_failing_addresses_make_room() {
        let mut book = Book::new(limits());
        for i in 0..8 {
            assert!(book.add(addr(10, i, 0, 1), peer(i)));
        }
        assert!(
            !book.add(addr(11, 0, 0, 1), peer(90)),
            "full of good addresses"
        );
        book.failed(&addr(10, 3, 0, 1));
        assert!(
            book.add(addr(11, 0, 0, 1), peer(90)),
            "a failing one made room"
        );
        assert!(book.get(&addr(10, 3, 0, 1)).is_none());
        assert_eq!(book.len(), 8);
    }

    #[test]
    fn addresses_that_keep_failing_age_out_and_a_success_clears_the_count() {
        let mut book = Book::new(limits());
        let (a, b) = (addr(10, 0, 0, 1), addr(10, 1, 0, 1));
        book.add(a, peer(1));
        book.add(b, peer(1));
        book.failed(&a);
        book.reached(&a, Instant::now());
        book.lasted(&a);
        book.failed(&a);
        assert!(book.get(&a).is_some(), "one failure since its success");
        book.failed(&b);
        book.failed(&b);
        assert!(book.get(&b).is_none(), "two in a row: forgotten");
        // Its share is given back.
        assert_eq!(book.per_source.get(&peer(1)), Some(&1));
    }

    #[test]
    fn a_told_address_never_reached_is_forgotten_sooner() {
        let mut book = Book::new(Limits::for_size(64));
        let (told, reached, seed) = (addr(10, 0, 0, 1), addr(10, 1, 0, 1), addr(10, 2, 0, 1));
        book.add(told, peer(1));
        book.add(reached, peer(1));
        book.add(seed, Source::Application);
        book.reached(&reached, Instant::now());
        for _ in 0..UNPROVEN_FAILURES {
            book.failed(&told);
            book.failed(&reached);
            book.failed(&seed);
        }
        assert!(book.get(&told).is_none(), "told, never reached: gone");
        assert!(book.get(&reached).is_some(), "reached once: 8 failures");
        assert!(book.get(&seed).is_some(), "the application's: 8 failures");
    }

    #[test]
    fn unreachable_addresses_are_not_kept() {
        let mut book = Book::new(limits());
        assert!(!book.add("0.0.0.0:1".parse().unwrap(), peer(1)));
        assert!(!book.add(addr(10, 0, 0, 0), peer(1)));
        assert!(book.add(addr(10, 0, 0, 1), peer(1)));
        assert!(!book.add(addr(10, 0, 0, 1), peer(2)), "known already");
    }

    #[test]
    fn a_public_peer_cannot_fill_the_book_with_private_addresses() {
        let mut book = Book::new(limits());
        let public_peer: SocketAddr = "8.8.4.4:7".parse().unwrap();
        for private in [
            "127.0.0.1:22",
            "192.168.1.1:80",
            "10.0.0.1:1",
            "224.0.0.1:1",
            "[::1]:1",
        ] {
            assert!(
                !book.add_told(private.parse().unwrap(), &public_peer),
                "{private}"
            );
        }
        assert!(book.add_told("9.9.9.9:1".parse().unwrap(), &public_peer));
        let lan_peer: SocketAddr = "192.168.1.2:7".parse().unwrap();
        assert!(book.add_told("192.168.1.3:1".parse().unwrap(), &lan_peer));
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn a_private_peer_cannot_aim_our_dials_at_this_host_or_no_host() {
        let mut book = Book::new(Limits::for_size(64));
        let lan: SocketAddr = "192.168.1.2:7".parse().unwrap();
        for bad in [
            "127.0.0.1:22",
            "169.254.169.254:80",
            "224.0.0.1:1",
            "255.255.255.255:1",
            "0.1.2.3:1",
            "240.0.0.1:1",
            "[::1]:1",
            "[fe80::1]:1",
            "[ff02::1]:1",
            "[64:ff9b::7f00:1]:22",
        ] {
            assert!(!book.add_told(bad.parse().unwrap(), &lan), "{bad}");
        }
        assert!(book.add_told("192.168.1.3:1".parse().unwrap(), &lan));
        assert!(book.add_told("10.0.0.1:1".parse().unwrap(), &lan));
        // A peer on loopback (a cluster on one host) may tell loopback addresses.
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert!(book.add_told("127.0.0.1:7001".parse().unwrap(), &local));
        // Link-local only from link-local.
        let link: SocketAddr = "169.254.3.4:5".parse().unwrap();
        assert!(book.add_told("169.254.3.5:1".parse().unwrap(), &link));
        // Peers on the operator's network are one source, whatever their /16.
        assert_eq!(Source::peer_at(&lan), Source::Local);
        assert_eq!(Source::peer_at(&local), Source::Local);
        assert_eq!(
            Source::peer_at(&"8.8.8.8:1".parse().unwrap()),
            Source::Peers(group(&"8.8.0.0:1".parse().unwrap()))
        );
    }

    #[test]
    fn an_ipv4_network_is_one_group_however_ipv6_carries_it() {
        let v4 = group(&"8.8.4.4:1".parse().unwrap());
        for carried in [
            "[2002:808:404::1]:1",
            "[64:ff9b::808:404]:1",
            "[::ffff:8.8.4.4]:1",
        ] {
            assert_eq!(group(&carried.parse().unwrap()), v4, "{carried}");
        }
        assert!(
            !is_public("64:ff9b::7f00:1".parse().unwrap()),
            "127.0.0.1 by NAT64"
        );
        // A teller at such an address came over the network: not loopback, not the
        // operator's network, whatever IPv4 address it carries.
        let carried_loopback: IpAddr = "2002:7f00:1::5".parse().unwrap();
        assert!(!may_tell(carried_loopback, "127.0.0.1".parse().unwrap()));
        assert!(!may_tell(carried_loopback, "10.0.0.5".parse().unwrap()));
        assert!(may_tell(carried_loopback, "8.8.8.8".parse().unwrap()));
        assert_ne!(
            Source::peer_at(&SocketAddr::new(carried_loopback, 1)),
            Source::Local
        );
        assert!(
            !is_public("2002:c0a8:101::1".parse().unwrap()),
            "192.168.1.1 by 6to4"
        );
        assert!(is_public("2002:808:404::1".parse().unwrap()));
    }

    #[test]
    fn only_vouched_addresses_are_told_on() {
        let mut book = Book::new(limits());
        let mut rng = Rng::from_seed(1);
        let (told, mine, reached, claimed) = (
            addr(10, 0, 0, 1),
            addr(10, 1, 0, 1),
            addr(10, 2, 0, 1),
            addr(10, 3, 0, 1),
        );
        book.add(told, peer(1));
        book.add(mine, Source::Application);
        book.add(reached, peer(1));
        book.add(claimed, peer(2));
        book.reached(&reached, Instant::now());
        book.vouch(&claimed);
        let mut told_on = book.sample(10, |_| true, &mut rng);
        told_on.sort();
        assert_eq!(told_on, vec![mine, reached, claimed]);
        // One whose last dial failed is not told on either.
        book.failed(&reached);
        assert_eq!(book.sample(10, |_| true, &mut rng).len(), 2);
    }

    #[test]
    fn a_saved_book_loads_back_and_a_malformed_one_adds_nothing() {
        let mut book = Book::new(limits());
        book.add(addr(10, 0, 0, 1), peer(1));
        book.add("[2001:db8::1]:9".parse().unwrap(), peer(2));
        book.failed(&addr(10, 0, 0, 1));
        let mut saved = Vec::new();
        book.save(&mut saved).unwrap();
        let text = String::from_utf8(saved.clone()).unwrap();
        assert_eq!(
            text,
            "p2p-address-book-v1\n10.0.0.1:1 1 p0409010000 -\n[2001:db8::1]:9 0 p0409020000 -\n"
        );
        let mut again = Book::new(limits());
        assert_eq!(again.load(&saved[..]).unwrap(), 2);
        assert_eq!(again.addrs(), book.addrs());
        assert_eq!(again.get(&addr(10, 0, 0, 1)).unwrap().failures, 1);
        // The tellers come back with their addresses: their shares still hold.
        assert_eq!(again.get(&addr(10, 0, 0, 1)).unwrap().source, peer(1));
        // A line without a source is the application's (a book written by hand).
        let mut by_hand = Book::new(limits());
        assert_eq!(
            by_hand
                .load(&b"p2p-address-book-v1\n10.0.0.1:1 0\n"[..])
                .unwrap(),
            1
        );
        assert_eq!(
            by_hand.get(&addr(10, 0, 0, 1)).unwrap().source,
            Source::Application
        );
        for bad in [
            "",
            "not-a-book\n",
            "p2p-address-book-v1\n10.0.0.1:1\n",
            "p2p-address-book-v1\n10.0.0.1 0\n",
            "p2p-address-book-v1\n10.0.0.2:1 0\n10.0.0.1:1 x\n",
            &format!("p2p-address-book-v1\n10.0.0.1:1 {}\n", "0".repeat(200)),
            "p2p-address-book-v1\n10.0.0.1:1 0 someone\n",
            "p2p-address-book-v1\n10.0.0.1:1 0 p04090100zz\n",
            "p2p-address-book-v1\n10.0.0.1:1 0 app x\n",
            "p2p-address-book-v1\n10.0.0.1:1 0 app rv extra\n",
        ] {
            let mut empty = Book::new(limits());
            let err = empty.load(bad.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            assert_eq!(empty.len(), 0, "{bad:?}");
        }
    }

    #[test]
    fn a_restart_remembers_which_addresses_were_reached_and_vouched() {
        let mut book = Book::new(Limits::for_size(64));
        let (told, reached) = (addr(10, 0, 0, 1), addr(10, 1, 0, 1));
        book.add(told, peer(1));
        book.add(reached, peer(1));
        book.reached(&reached, Instant::now());
        let mut saved = Vec::new();
        book.save(&mut saved).unwrap();
        let mut again = Book::new(Limits::for_size(64));
        again.load(&saved[..]).unwrap();
        let mut rng = Rng::from_seed(1);
        assert_eq!(
            again.sample(10, |_| true, &mut rng),
            vec![reached],
            "vouched"
        );
        for _ in 0..UNPROVEN_FAILURES {
            again.failed(&told);
            again.failed(&reached);
        }
        assert!(again.get(&told).is_none());
        assert!(again.get(&reached).is_some(), "reached before the restart");
    }

    #[test]
    fn a_restart_keeps_what_one_network_told_within_its_share() {
        // One teller network's 4 addresses (its share) saved; a book with room for
        // more takes them back under the same share, not as the application's.
        let mut book = Book::new(limits());
        for i in 0..4 {
            assert!(book.add(addr(10, i, 0, 1), peer(1)));
        }
        let mut saved = Vec::new();
        book.save(&mut saved).unwrap();
        let mut again = Book::new(limits());
        assert_eq!(again.load(&saved[..]).unwrap(), 4);
        assert!(!again.add(addr(10, 9, 0, 1), peer(1)), "the share is full");
    }

    #[test]
    fn loading_reads_no_more_than_a_full_book() {
        let mut text = String::from("p2p-address-book-v1\n");
        for i in 0..20u8 {
            text.push_str(&format!("10.{i}.0.1:1 1\n"));
        }
        text.push_str("garbage past the book's size is not read\n");
        let mut book = Book::new(limits());
        assert_eq!(book.load(text.as_bytes()).unwrap(), 8);
        assert_eq!(book.len(), 8);
    }
}
