//! The handshake after the preamble, behind one sans-IO interface (plaintext now, noise next).

use bytes::{Buf, BytesMut};

use crate::peer::PeerId;
use crate::wire::{PREAMBLE_LEN, Security};

/// A handshake in progress. It reads the bytes that follow the peer's preamble and
/// writes what this side must send; it never touches a socket.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// PROTOCOL.md §2.1: each side sends its 32-byte id, claimed, not proven.
    Plaintext {
        /// Our id, sent at start.
        local: PeerId,
    },
}

/// What a finished handshake yields.
#[derive(Debug)]
pub(crate) struct Established {
    /// The remote peer's id.
    pub remote: PeerId,
}

/// Why a handshake failed. Plaintext cannot fail once the preamble passed; noise can.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HandshakeError {}

impl Handshake {
    /// A handshake for `security`, this side being the initiator when `initiator`.
    pub(crate) fn new(security: Security, local: PeerId, _initiator: bool) -> Self {
        match security {
            // `Config::validate` refuses noise-xx until it exists, so no node announces
            // security 1 and then speaks plaintext.
            Security::Plaintext | Security::NoiseXx => Handshake::Plaintext { local },
        }
    }

    /// Bytes to send right after our own preamble, before hearing the peer.
    pub(crate) fn start(&mut self, tx: &mut BytesMut) {
        match self {
            Handshake::Plaintext { local } => tx.extend_from_slice(local.as_bytes()),
        }
    }

    /// The peer's preamble arrived and passed; both preambles as they crossed the wire.
    pub(crate) fn preamble_checked(
        &mut self,
        _ours: &[u8; PREAMBLE_LEN],
        _theirs: &[u8; PREAMBLE_LEN],
        _tx: &mut BytesMut,
    ) {
        match self {
            Handshake::Plaintext { .. } => {}
        }
    }

    /// Consumes handshake bytes from `rx`, writing replies to `tx`. `Some` once done;
    /// whatever follows in `rx` is already transport data.
    pub(crate) fn read(
        &mut self,
        rx: &mut BytesMut,
        _tx: &mut BytesMut,
    ) -> Result<Option<Established>, HandshakeError> {
        match self {
            Handshake::Plaintext { .. } => {
                if rx.len() < 32 {
                    return Ok(None);
                }
                let mut id = [0u8; 32];
                id.copy_from_slice(&rx[..32]);
                rx.advance(32);
                Ok(Some(Established {
                    remote: PeerId::from_bytes(id),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_sends_and_reads_the_id_byte_by_byte() {
        let local = PeerId::from_bytes([1; 32]);
        let remote = PeerId::from_bytes([2; 32]);
        let mut hs = Handshake::new(Security::Plaintext, local, true);
        let mut tx = BytesMut::new();
        hs.start(&mut tx);
        assert_eq!(&tx[..], local.as_bytes());

        let mut rx = BytesMut::new();
        for (i, b) in remote.as_bytes().iter().enumerate() {
            rx.extend_from_slice(&[*b]);
            let done = hs.read(&mut rx, &mut tx).unwrap();
            assert_eq!(done.is_some(), i == 31);
            if let Some(est) = done {
                assert_eq!(est.remote, remote);
            }
        }
        assert!(rx.is_empty());
    }
}
