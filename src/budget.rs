//! The node's byte budgets: what all queues hold against `max_write_buffer_total`, what all
//! connections hold against `max_read_buffer_total`, the room kept for control frames, and the
//! fair share of a global cap.

use crate::wire::LEN_FIELD;

/// What a GOODBYE may add to a queue: its frame, and a record of its own under noise.
pub(crate) const GOODBYE_ROOM: usize = LEN_FIELD + 2 + crate::secure::RECORD_OVERHEAD;

/// Room every queue keeps beside application frames, which are refused before they
/// would take it, so that no queue ever passes its cap: the handshake's last message
/// (it may still be leaving when the connection opens; at most 98 bytes and the
/// 12-byte preamble), one PING (sent once per silence), one PONG (one answered at a
/// time) and the GOODBYE, each in a record of its own under noise.
pub(crate) const CONTROL_ROOM: usize = 256;

const _: () = assert!(
    CONTROL_ROOM >= 110 + 2 * (LEN_FIELD + 1 + 8 + crate::secure::RECORD_OVERHEAD) + GOODBYE_ROOM
);

/// Whether a queue holding `queued` bytes may grow by `growth` when `room` bytes are
/// left under the global cap: the dynamic threshold of shared-buffer switches
/// (Choudhury & Hahne). A queue may grow only while its length after the frame is no
/// more than the room left after it, so with N queues that never drain each holds
/// at most 1/(N+1) of the budget and as much again stays free for the others; an
/// empty queue may always take one frame that fits, so every peer makes progress.
pub(crate) fn within_fair_share(queued: usize, growth: usize, room: usize) -> bool {
    growth <= room && (queued == 0 || queued + growth <= room - growth)
}

/// The node's two global byte counts, kept as its connections change; every update
/// goes through here.
#[derive(Debug, Default)]
pub(crate) struct Budgets {
    /// Bytes queued for all peers (under noise, frames not yet sealed count with the
    /// overhead of the records they may take).
    queued: usize,
    /// Receive budget held by all connections: the sum of their charges.
    charged: usize,
}

impl Budgets {
    /// Bytes queued for all peers.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// One connection's queue went from `before` to `after` bytes (a connection
    /// that comes counts from 0, one that goes counts to 0).
    pub(crate) fn requeue(&mut self, before: usize, after: usize) {
        self.queued = self.queued + after - before;
    }

    /// One connection's charge on the receive budget went from `before` to `after`.
    pub(crate) fn recharge(&mut self, before: usize, after: usize) {
        self.charged = self.charged + after - before;
    }

    /// What control frames (PING, PONG) may add now under `cap`: what is not queued,
    /// less a GOODBYE's room for each of `connections`, so every one can still say it.
    pub(crate) fn control_room(&self, cap: usize, connections: usize) -> usize {
        cap.saturating_sub(self.queued + GOODBYE_ROOM * connections)
    }

    /// What application frames may still add under `cap`: every one of `connections`
    /// keeps room for its control frames under it too.
    pub(crate) fn frame_room(&self, cap: usize, connections: usize) -> usize {
        cap.saturating_sub(self.queued + CONTROL_ROOM * connections)
    }

    /// The receive budget `cap` not held by any connection.
    pub(crate) fn read_free(&self, cap: usize) -> usize {
        cap.saturating_sub(self.charged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_each_change_and_rooms_keep_their_reserves() {
        let mut b = Budgets::default();
        b.requeue(0, 1000);
        b.requeue(1000, 400);
        b.requeue(0, 100);
        assert_eq!(b.queued(), 500);
        assert_eq!(b.control_room(10_000, 2), 10_000 - 500 - 2 * GOODBYE_ROOM);
        assert_eq!(b.frame_room(10_000, 2), 10_000 - 500 - 2 * CONTROL_ROOM);
        assert_eq!(b.frame_room(600, 2), 0, "never below zero");
        b.recharge(0, 300);
        b.recharge(300, 100);
        assert_eq!(b.read_free(1000), 900);
        b.recharge(100, 0);
        assert_eq!(b.read_free(1000), 1000);
    }

    #[test]
    fn an_empty_queue_may_take_one_frame_that_fits_a_full_one_only_its_share() {
        assert!(within_fair_share(0, 900, 1000));
        assert!(!within_fair_share(0, 1001, 1000));
        // With 1000 left, a queue of 400 may grow by 300: 700 queued, 700 left after.
        assert!(within_fair_share(400, 300, 1000));
        assert!(!within_fair_share(400, 301, 1000));
    }
}
