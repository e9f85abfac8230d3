//! Connection slots: what each direction and each remote address holds, kept as
//! counts updated on phase changes (so a limit check costs a map lookup, not a scan of
//! every socket), and the per-address handshake rate.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::bucket::TokenBucket;

use crate::event::Direction;
use crate::socket::Phase;

/// The remote address as the per-address limits see it: an IPv4 address, or an IPv6
/// address cut to its first `ipv6_prefix_len` bits (a host usually holds a whole
/// prefix). An IPv4-mapped IPv6 address is its IPv4 address.
pub(crate) fn addr_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix_len.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        },
    }
}

/// What one connection holds against the limits in its phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// A connection slot (`max_inbound` or `max_outbound`, and per address): any phase
    /// before the node reported it gone, so not closing or closed.
    pub slot: bool,
    /// A handshake slot (`max_pending_handshakes` or `max_pending_dials`, and per
    /// address): dialling or handshaking.
    pub pending: bool,
    /// Neither, but it still holds a socket: in a graceful close, bounded on its own
    /// (`Node::shed_closing`).
    pub closing: bool,
}

impl Held {
    /// What a connection in `phase` holds.
    pub(crate) fn of(phase: Phase) -> Held {
        Held {
            slot: matches!(phase, Phase::Opening | Phase::Authenticating | Phase::Open),
            pending: matches!(phase, Phase::Opening | Phase::Authenticating),
            closing: phase == Phase::Closing,
        }
    }
}

/// What the inbound connections of one remote address hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AddrCount {
    /// Inbound connections holding a slot.
    pub inbound: usize,
    /// Of those, still handshaking.
    pub pending: usize,
}

/// The slots held now, by direction and, for inbound connections, by remote address.
/// The map has an entry per address with a live inbound connection, so it is bounded
/// by `max_inbound`; a `BTreeMap`, so no hash a peer could aim at and the same order
/// on every run (the simulator repeats).
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// Inbound connections holding a slot.
    pub inbound: usize,
    /// Outbound connections holding a slot.
    pub outbound: usize,
    /// Inbound connections handshaking.
    pub pending_inbound: usize,
    /// Our dials connecting or handshaking.
    pub pending_dials: usize,
    /// Connections of either direction in a graceful close.
    pub closing: usize,
    per_addr: BTreeMap<IpAddr, AddrCount>,
}

impl Slots {
    /// Counts what a connection from `key` in `direction` holds.
    pub(crate) fn add(&mut self, direction: Direction, key: IpAddr, held: Held) {
        self.change(direction, key, held, true);
    }

    /// Stops counting what a connection held.
    pub(crate) fn remove(&mut self, direction: Direction, key: IpAddr, held: Held) {
        self.change(direction, key, held, false);
    }

    /// What the inbound connections from `key` hold.
    pub(crate) fn at(&self, key: IpAddr) -> AddrCount {
        self.per_addr.get(&key).copied().unwrap_or_default()
    }

    fn change(&mut self, direction: Direction, key: IpAddr, held: Held, add: bool) {
        let step = |n: &mut usize, on: bool| {
            if on {
                *n = if add { *n + 1 } else { n.saturating_sub(1) };
            }
        };
        step(&mut self.closing, held.closing);
        match direction {
            Direction::Outbound => {
                step(&mut self.outbound, held.slot);
                step(&mut self.pending_dials, held.pending);
            }
            Direction::Inbound => {
                step(&mut self.inbound, held.slot);
                step(&mut self.pending_inbound, held.pending);
                if !held.slot && !held.pending {
                    return;
                }
                let count = self.per_addr.entry(key).or_default();
                step(&mut count.inbound, held.slot);
                step(&mut count.pending, held.pending);
                if *count == AddrCount::default() {
                    self.per_addr.remove(&key);
                }
            }
        }
    }

    /// Remote addresses with a live inbound connection now.
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.per_addr.len()
    }
}

/// Per-address token buckets for handshake starts (`handshake_rate_per_ip`).
///
/// A full bucket is the same as no bucket (a bucket is full again at most one second
/// after its address last started a handshake), so the table is capped
/// (`max_inbound + max_pending_handshakes`, the most addresses that can hold a slot
/// at once): at the cap the full buckets are forgotten, and if none is, the one
/// holding the most tokens, which gives back the least to its address. So an attacker
/// spreading over many addresses (IPv6 prefixes) to grow the table only forgets its
/// own nearly full buckets, never the drained one of an address it flooded from.
#[derive(Debug)]
pub(crate) struct HandshakeRate {
    rate: usize,
    cap: usize,
    buckets: BTreeMap<IpAddr, TokenBucket>,
}

impl HandshakeRate {
    /// Buckets of `rate` tokens refilled at `rate` per second, at most `cap` of them.
    pub(crate) fn new(rate: u32, cap: usize) -> Self {
        HandshakeRate {
            rate: (rate as usize).max(1),
            cap: cap.max(1),
            buckets: BTreeMap::new(),
        }
    }

    /// Takes a token for a handshake from `key` at `now`; false if there is none.
    pub(crate) fn take(&mut self, key: IpAddr, now: Instant) -> bool {
        if let Some(bucket) = self.buckets.get_mut(&key) {
            bucket.refill(now);
            if !bucket.holds(1) {
                return false;
            }
            bucket.take(1);
            return true;
        }
        if self.buckets.len() >= self.cap {
            self.make_room(now);
        }
        let mut bucket = TokenBucket::new(self.rate, self.rate, now);
        bucket.take(1);
        self.buckets.insert(key, bucket);
        true
    }

    /// Forgets full buckets, and if none was, the one with the most tokens.
    fn make_room(&mut self, now: Instant) {
        for bucket in self.buckets.values_mut() {
            bucket.refill(now);
        }
        self.buckets.retain(|_, b| !b.is_full());
        if self.buckets.len() < self.cap {
            return;
        }
        let fullest = self
            .buckets
            .iter()
            .max_by_key(|(_, b)| b.level())
            .map(|(key, _)| *key);
        if let Some(key) = fullest {
            self.buckets.remove(&key);
        }
    }

    /// Buckets kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    #[test]
    fn addresses_are_keyed_by_ipv4_or_ipv6_prefix() {
        let v4: IpAddr = Ipv4Addr::new(10, 1, 2, 3).into();
        assert_eq!(addr_key(v4, 64), v4);
        let mapped: IpAddr = Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped().into();
        assert_eq!(addr_key(mapped, 64), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse::<Ipv6Addr>().unwrap().into();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse::<Ipv6Addr>().unwrap().into();
        let c: IpAddr = "2001:db8:1:3::1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(addr_key(a, 64), addr_key(b, 64));
        assert_ne!(addr_key(a, 64), addr_key(c, 64));
        assert_eq!(addr_key(a, 48), addr_key(c, 48));
        assert_eq!(addr_key(a, 128), a);
        assert_eq!(addr_key(a, 0), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn slots_count_by_direction_and_address_and_forget_empty_addresses() {
        let mut slots = Slots::default();
        let key: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let pending = Held::of(Phase::Authenticating);
        let open = Held::of(Phase::Open);
        slots.add(Direction::Inbound, key, pending);
        slots.add(Direction::Outbound, key, Held::of(Phase::Opening));
        assert_eq!(
            slots.at(key),
            AddrCount {
                inbound: 1,
                pending: 1
            }
        );
        assert_eq!((slots.pending_inbound, slots.pending_dials), (1, 1));
        slots.remove(Direction::Inbound, key, pending);
        slots.add(Direction::Inbound, key, open);
        assert_eq!(
            slots.at(key),
            AddrCount {
                inbound: 1,
                pending: 0
            }
        );
        slots.remove(Direction::Inbound, key, open);
        slots.add(Direction::Inbound, key, Held::of(Phase::Closing));
        assert_eq!(slots.at(key), AddrCount::default());
        assert_eq!(slots.addresses(), 0);
        assert_eq!((slots.inbound, slots.outbound), (0, 1));
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let key: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let mut rate = HandshakeRate::new(4, 16);
        let taken = (0..10).filter(|_| rate.take(key, t0)).count();
        assert_eq!(taken, 4);
        let t1 = t0 + Duration::from_millis(500);
        let taken = (0..10).filter(|_| rate.take(key, t1)).count();
        assert_eq!(taken, 2);
        let other: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
        assert!(rate.take(other, t1), "another address has its own bucket");
    }

    #[test]
    fn the_bucket_table_is_capped_and_keeps_drained_buckets() {
        let t0 = Instant::now();
        let mut rate = HandshakeRate::new(4, 8);
        let flooder: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        while rate.take(flooder, t0) {}
        for n in 0..100u32 {
            let key: IpAddr = Ipv4Addr::from(0x0b00_0000 + n).into();
            assert!(rate.take(key, t0));
            assert!(rate.len() <= 8);
        }
        assert!(!rate.take(flooder, t0), "the drained bucket was kept");
        // A second later every bucket is full again and is forgotten on the next insert.
        let later = t0 + Duration::from_secs(1);
        assert!(rate.take(Ipv4Addr::new(12, 0, 0, 1).into(), later));
        assert_eq!(rate.len(), 1, "the full buckets were forgotten");
        assert!(rate.take(flooder, later));
    }
}
