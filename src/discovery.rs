//! Discovery: which known addresses to dial to keep `target_outbound` outbound
//! connections, spread so that no one network group or teller holds them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::addrbook::{Group, Source, group, is_public, pick};
use crate::rng::Rng;

/// How often a node short of its target tries again (dials addresses whose backoff
/// ended, asks its outbound peers for more).
pub(crate) const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// Dials a second discovery may make once its burst (`target_outbound`) is spent:
/// whatever addresses peers tell, the node dials no faster, so it is no cannon to
/// aim at third parties.
pub(crate) const DISCOVERY_DIAL_RATE: usize = 1;

/// What the outbound connections hold now: by public network group and by the
/// source the book had their address from.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    count: usize,
    groups: HashMap<Group, usize>,
    sources: HashMap<Source, usize>,
}

impl Outbound {
    /// Counts an outbound connection to `addr`, whose address the book had from
    /// `source` (`None`: not from the book).
    pub(crate) fn add(&mut self, addr: SocketAddr, source: Option<Source>) {
        self.count += 1;
        if is_public(addr.ip().to_canonical()) {
            *self.groups.entry(group(&addr)).or_default() += 1;
        }
        if let Some(source @ Source::Peers(_)) = source {
            *self.sources.entry(source).or_default() += 1;
        }
    }

    /// Whether a dial to `addr`, told by `source`, keeps the spread: no second
    /// outbound connection into one public network group (a private or loopback
    /// address has no group that means anything: it is the operator's network), and
    /// no more than `per_source` to addresses the peers of one network group told.
    /// The application's addresses pass.
    fn admits(&self, addr: &SocketAddr, source: Source, per_source: usize) -> bool {
        let group_free = !is_public(addr.ip().to_canonical())
            || self.groups.get(&group(addr)).copied().unwrap_or(0) == 0;
        let source_free = match source {
            Source::Application | Source::Local => true,
            Source::Peers(_) => self.sources.get(&source).copied().unwrap_or(0) < per_source,
        };
        group_free && source_free
    }
}

/// Chooses, at random among `candidates` (dialable addresses not in use, with their
/// sources), the addresses to dial for the outbound connections to reach `target`,
/// each keeping the spread ([`Outbound::admits`]: one a public network group, at most
/// `per_source` from what one network group's peers told), the sources taking turns.
pub(crate) fn choose(
    mut candidates: Vec<(SocketAddr, Source)>,
    outbound: &mut Outbound,
    target: usize,
    per_source: usize,
    rng: &mut Rng,
) -> Vec<SocketAddr> {
    let n = candidates.len();
    pick(&mut candidates, n, rng);
    // Sources take turns: each one's first candidate, in the random order, then each
    // one's second, and so on. A teller that filled its share of the book with junk
    // gets its turn among the others, not the dials in proportion to its junk.
    let mut turn: HashMap<Source, usize> = HashMap::new();
    let mut ranked: Vec<(usize, (SocketAddr, Source))> = candidates
        .into_iter()
        .map(|c| {
            let rank = turn.entry(c.1).or_default();
            *rank += 1;
            (*rank, c)
        })
        .collect();
    ranked.sort_by_key(|&(rank, _)| rank);
    let candidates = ranked.into_iter().map(|(_, c)| c);
    let mut chosen = Vec::new();
    for (addr, source) in candidates {
        if outbound.count >= target {
            break;
        }
        if outbound.admits(&addr, source, per_source) {
            outbound.add(addr, Some(source));
            chosen.push(addr);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told_by(n: u8) -> Source {
        Source::peer_at(&SocketAddr::from(([9, n, 0, 1], 40000)))
    }

    fn public(a: u8, b: u8, c: u8) -> SocketAddr {
        SocketAddr::from(([a, b, c, 1], 30333))
    }

    #[test]
    fn one_network_group_gets_one_outbound_connection() {
        // Twenty addresses in 8.8/16 and three elsewhere, each from its own teller.
        let mut candidates: Vec<_> = (0..20).map(|i| (public(8, 8, i), told_by(i))).collect();
        candidates.extend((0..3).map(|i| (public(20 + i, 1, 1), told_by(100 + i))));
        let chosen = choose(
            candidates,
            &mut Outbound::default(),
            8,
            4,
            &mut Rng::from_seed(1),
        );
        assert_eq!(chosen.len(), 4, "{chosen:?}");
        let in_8_8 = chosen
            .iter()
            .filter(|a| a.ip().to_string().starts_with("8.8."))
            .count();
        assert_eq!(in_8_8, 1, "{chosen:?}");
    }

    #[test]
    fn a_group_already_connected_gets_no_more() {
        let mut outbound = Outbound::default();
        outbound.add(public(8, 8, 200), None);
        let chosen = choose(
            vec![(public(8, 8, 1), told_by(1)), (public(9, 9, 1), told_by(2))],
            &mut outbound,
            8,
            4,
            &mut Rng::from_seed(1),
        );
        assert_eq!(chosen, vec![public(9, 9, 1)]);
    }

    #[test]
    fn what_one_network_told_fills_at_most_half_the_target() {
        // Forty addresses in forty groups, all told by the peers of 9.1/16.
        let candidates: Vec<_> = (0..40)
            .map(|i| (public(30 + i, 0, 0), told_by(1)))
            .collect();
        let mut outbound = Outbound::default();
        let chosen = choose(
            candidates.clone(),
            &mut outbound,
            8,
            4,
            &mut Rng::from_seed(3),
        );
        assert_eq!(chosen.len(), 4, "half of 8");
        // That teller's share is spent; the application's addresses pass.
        let mut more: Vec<_> = (0..10)
            .map(|i| (public(120 + i, 0, 0), told_by(1)))
            .collect();
        more.push((public(100, 0, 0), Source::Application));
        more.push((public(101, 0, 0), Source::Application));
        let mut chosen = choose(more, &mut outbound, 8, 4, &mut Rng::from_seed(3));
        chosen.sort();
        assert_eq!(chosen, vec![public(100, 0, 0), public(101, 0, 0)]);
    }

    #[test]
    fn a_source_full_of_junk_takes_its_turn_not_the_dials() {
        // A hundred addresses from one source, two from another: with a target of
        // 4, each source's first two go first.
        let mut candidates: Vec<_> = (0..100)
            .map(|i| (SocketAddr::from(([10, 200, 0, i], 9)), Source::Local))
            .collect();
        let honest = [public(70, 0, 0), public(71, 0, 0)];
        candidates.extend(honest.iter().map(|&a| (a, Source::Application)));
        for seed in 0..20 {
            let chosen = choose(
                candidates.clone(),
                &mut Outbound::default(),
                4,
                2,
                &mut Rng::from_seed(seed),
            );
            assert_eq!(chosen.len(), 4);
            assert!(honest.iter().all(|h| chosen.contains(h)), "{chosen:?}");
        }
    }

    #[test]
    fn tellers_on_the_operators_network_are_not_held_to_half() {
        let candidates: Vec<_> = (0..10)
            .map(|i| (public(60 + i, 0, 0), Source::Local))
            .collect();
        let chosen = choose(
            candidates,
            &mut Outbound::default(),
            8,
            4,
            &mut Rng::from_seed(2),
        );
        assert_eq!(chosen.len(), 8);
    }

    #[test]
    fn private_addresses_are_not_grouped() {
        // A cluster on one host: every node at 127.0.0.1.
        let candidates: Vec<_> = (0..10)
            .map(|i| {
                (
                    SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
                    Source::Application,
                )
            })
            .collect();
        let chosen = choose(
            candidates,
            &mut Outbound::default(),
            8,
            4,
            &mut Rng::from_seed(1),
        );
        assert_eq!(chosen.len(), 8);
    }

    #[test]
    fn the_choice_is_random_but_follows_the_seed() {
        let candidates: Vec<_> = (0..50)
            .map(|i| (public(40 + i, 0, 0), Source::Application))
            .collect();
        let draw = |seed| {
            choose(
                candidates.clone(),
                &mut Outbound::default(),
                4,
                2,
                &mut Rng::from_seed(seed),
            )
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }
}
