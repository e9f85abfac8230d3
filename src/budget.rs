//! The byte budgets every queue lives under: the room kept for control frames, and the fair share of a global cap.

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
