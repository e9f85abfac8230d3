//! The duplicate-connection rule (PROTOCOL.md §2.3): which of two connections to one peer stays.

use crate::event::Direction;
use crate::peer::PeerId;

/// One of the two connections to a peer, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Who dialled it.
    pub direction: Direction,
    /// When it was created, in the node's creation order.
    pub created: u64,
}

/// The verdict on a new connection to a peer that an older one already serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The new connection loses: close it with GOODBYE 1.
    CloseNew,
    /// The old connection loses: the new one serves the peer from now on.
    CloseOld,
    /// The peer dialled both and decides; both serve it until it closes one.
    PeerDecides,
}

/// Decides between `new` and `old`, two connections between us (`local`) and `peer`.
///
/// Both ends reach the same verdict without talking: the connection whose initiator
/// has the bytewise smaller id stays. When one side dialled both, the order of its
/// handshakes may differ at the other end, so only its own dial order counts: it keeps
/// the one it dialled first, and the other end waits for its close.
pub(crate) fn rule(local: PeerId, peer: PeerId, new: Candidate, old: Candidate) -> Verdict {
    let initiator = |c: Candidate| match c.direction {
        Direction::Outbound => local,
        Direction::Inbound => peer,
    };
    let (new_initiator, old_initiator) = (initiator(new), initiator(old));
    if new_initiator != old_initiator {
        if new_initiator < old_initiator {
            Verdict::CloseOld
        } else {
            Verdict::CloseNew
        }
    } else if new_initiator == local {
        if new.created > old.created {
            Verdict::CloseNew
        } else {
            Verdict::CloseOld
        }
    } else {
        Verdict::PeerDecides
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Inbound, Outbound};

    const SMALL: PeerId = PeerId::from_bytes([1; 32]);
    const LARGE: PeerId = PeerId::from_bytes([2; 32]);

    fn c(direction: Direction, created: u64) -> Candidate {
        Candidate { direction, created }
    }

    #[test]
    fn different_initiators_keep_the_one_the_smaller_id_dialled() {
        // We are the smaller id: our dial stays, whichever connection is new.
        assert_eq!(
            rule(SMALL, LARGE, c(Outbound, 2), c(Inbound, 1)),
            Verdict::CloseOld
        );
        assert_eq!(
            rule(SMALL, LARGE, c(Inbound, 2), c(Outbound, 1)),
            Verdict::CloseNew
        );
        // We are the larger id: the peer's dial stays.
        assert_eq!(
            rule(LARGE, SMALL, c(Outbound, 2), c(Inbound, 1)),
            Verdict::CloseNew
        );
        assert_eq!(
            rule(LARGE, SMALL, c(Inbound, 2), c(Outbound, 1)),
            Verdict::CloseOld
        );
    }

    #[test]
    fn both_ends_reach_the_same_verdict() {
        // The connection A dialled is inbound at B, and the other way round; whichever
        // end finished which handshake first, both keep the same connection.
        for (a, b) in [(SMALL, LARGE), (LARGE, SMALL)] {
            // Each end may see either connection finish its handshake last.
            for (a_new, b_new) in [Outbound, Inbound]
                .map(|x| [Outbound, Inbound].map(|y| (x, y)))
                .concat()
            {
                let kept_at_a = kept(rule(a, b, c(a_new, 2), c(opposite(a_new), 1)), a_new);
                let kept_at_b = kept(rule(b, a, c(b_new, 2), c(opposite(b_new), 1)), b_new);
                // The kept connection's dialler, seen from each end, is the same node.
                let dialler_a = if kept_at_a == Outbound { a } else { b };
                let dialler_b = if kept_at_b == Outbound { b } else { a };
                assert_eq!(dialler_a, dialler_b, "a={a:?} new at a={a_new:?}");
                assert_eq!(dialler_a, SMALL);
            }
        }
    }

    #[test]
    fn we_dialled_both_so_our_later_dial_loses() {
        for (local, peer) in [(SMALL, LARGE), (LARGE, SMALL)] {
            assert_eq!(
                rule(local, peer, c(Outbound, 5), c(Outbound, 3)),
                Verdict::CloseNew
            );
            // The later dial finished its handshake first: the older one still wins.
            assert_eq!(
                rule(local, peer, c(Outbound, 3), c(Outbound, 5)),
                Verdict::CloseOld
            );
        }
    }

    #[test]
    fn the_peer_dialled_both_so_it_decides() {
        for (local, peer) in [(SMALL, LARGE), (LARGE, SMALL)] {
            for (new, old) in [(5, 3), (3, 5)] {
                assert_eq!(
                    rule(local, peer, c(Inbound, new), c(Inbound, old)),
                    Verdict::PeerDecides
                );
            }
        }
    }

    fn opposite(d: Direction) -> Direction {
        match d {
            Inbound => Outbound,
            Outbound => Inbound,
        }
    }

    /// The direction of the connection `verdict` keeps, where the new one is `new`.
    fn kept(verdict: Verdict, new: Direction) -> Direction {
        match verdict {
            Verdict::CloseOld => new,
            Verdict::CloseNew => opposite(new),
            Verdict::PeerDecides => panic!("different initiators always decide"),
        }
    }
}
