//! The handshake and record layer after the preamble, behind one sans-IO interface:
//! plaintext (PROTOCOL.md §2.1) and noise-xx (§2.2, §3).

use bytes::{Buf, BytesMut};

use crate::peer::PeerId;
use crate::queue::OutQueue;
use crate::wire::{PREAMBLE_LEN, Security};

/// The noise protocol name of PROTOCOL.md §2.2.
#[cfg(feature = "noise")]
pub(crate) const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// The AEAD tag every noise record carries.
#[cfg(feature = "noise")]
const TAG_LEN: usize = 16;
/// The largest record body (u16 length field).
#[cfg(feature = "noise")]
const MAX_RECORD: usize = u16::MAX as usize;
/// The most plaintext one record carries.
#[cfg(feature = "noise")]
pub(crate) const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;
/// How much ciphertext is sealed ahead of the socket: enough for one large write, so
/// queued payloads stay shared until shortly before they leave.
#[cfg_attr(not(feature = "noise"), allow(dead_code))]
pub(crate) const SEAL_AHEAD: usize = 256 * 1024;

/// This node's identity as the handshake needs it.
#[derive(Clone)]
pub(crate) struct LocalKey {
    /// The id this node is known by (in noise mode, the static public key).
    pub id: PeerId,
    /// The static X25519 secret (unused in plaintext mode).
    #[cfg_attr(not(feature = "noise"), allow(dead_code))]
    pub secret: [u8; 32],
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalKey({:?})", self.id)
    }
}

/// A handshake in progress. It reads the bytes that follow the peer's preamble and
/// writes what this side must send; it never touches a socket.
pub(crate) enum Handshake {
    /// PROTOCOL.md §2.1: each side sends its 32-byte id, claimed, not proven.
    Plaintext {
        /// Our id, sent at start.
        local: PeerId,
    },
    /// PROTOCOL.md §2.2: Noise XX; each static key is proven.
    #[cfg(feature = "noise")]
    Noise(Box<NoiseHandshake>),
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handshake::Plaintext { local } => write!(f, "Plaintext({local:?})"),
            #[cfg(feature = "noise")]
            Handshake::Noise(_) => f.write_str("Noise"),
        }
    }
}

/// A noise-xx handshake: built once both preambles are known (they are its prologue).
#[cfg(feature = "noise")]
pub(crate) struct NoiseHandshake {
    initiator: bool,
    secret: [u8; 32],
    /// The public half of `secret`: our id (`Config` refuses another id in noise mode).
    public: [u8; 32],
    state: Option<snow::HandshakeState>,
}

/// What a finished handshake yields.
#[derive(Debug)]
pub(crate) struct Established {
    /// The remote peer's id (proven in noise mode).
    pub remote: PeerId,
    /// The record layer from now on.
    pub transport: Transport,
}

/// Why a handshake failed (PROTOCOL.md §2.2: bad length, decryption failure).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(not(feature = "noise"), allow(dead_code))]
pub(crate) enum HandshakeError {
    /// A handshake message of length 0.
    #[error("empty handshake message")]
    EmptyMessage,
    /// The noise state machine refused a message.
    #[error("noise: {0}")]
    Noise(String),
}

impl Handshake {
    /// A handshake for `security`, this side being the initiator when `initiator`.
    pub(crate) fn new(security: Security, key: &LocalKey, initiator: bool) -> Self {
        match security {
            #[cfg(feature = "noise")]
            Security::NoiseXx => Handshake::Noise(Box::new(NoiseHandshake {
                initiator,
                secret: key.secret,
                public: *key.id.as_bytes(),
                state: None,
            })),
            // Without the feature, `Config::validate` refuses noise-xx, so no node
            // announces security 1 and then speaks plaintext.
            _ => {
                let _ = initiator;
                Handshake::Plaintext { local: key.id }
            }
        }
    }

    /// Bytes to send right after our own preamble, before hearing the peer.
    pub(crate) fn start(&mut self, tx: &mut BytesMut) {
        match self {
            Handshake::Plaintext { local } => tx.extend_from_slice(local.as_bytes()),
            // The prologue holds the responder's preamble, so noise waits for it.
            #[cfg(feature = "noise")]
            Handshake::Noise(_) => {}
        }
    }

    /// The peer's preamble arrived and passed; both preambles as they crossed the wire.
    pub(crate) fn preamble_checked(
        &mut self,
        ours: &[u8; PREAMBLE_LEN],
        theirs: &[u8; PREAMBLE_LEN],
        tx: &mut BytesMut,
    ) -> Result<(), HandshakeError> {
        match self {
            Handshake::Plaintext { .. } => {
                let _ = (ours, theirs, tx);
                Ok(())
            }
            #[cfg(feature = "noise")]
            Handshake::Noise(noise) => noise.begin(ours, theirs, tx),
        }
    }

    /// Consumes handshake bytes from `rx`, writing replies to `tx`. `Some` once done;
    /// whatever follows in `rx` is already transport data.
    pub(crate) fn read(
        &mut self,
        rx: &mut BytesMut,
        tx: &mut BytesMut,
    ) -> Result<Option<Established>, HandshakeError> {
        match self {
            Handshake::Plaintext { .. } => {
                let _ = tx;
                if rx.len() < 32 {
                    return Ok(None);
                }
                let mut id = [0u8; 32];
                id.copy_from_slice(&rx[..32]);
                rx.advance(32);
                Ok(Some(Established {
                    remote: PeerId::from_bytes(id),
                    transport: Transport::Plaintext,
                }))
            }
            #[cfg(feature = "noise")]
            Handshake::Noise(noise) => noise.read(rx, tx),
        }
    }
}

#[cfg(feature = "noise")]
fn noise_error(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

#[cfg(feature = "noise")]
impl NoiseHandshake {
    fn begin(
        &mut self,
        ours: &[u8; PREAMBLE_LEN],
        theirs: &[u8; PREAMBLE_LEN],
        tx: &mut BytesMut,
    ) -> Result<(), HandshakeError> {
        let mut prologue = [0u8; 2 * PREAMBLE_LEN];
        let (first, second) = if self.initiator {
            (ours, theirs)
        } else {
            (theirs, ours)
        };
        prologue[..PREAMBLE_LEN].copy_from_slice(first);
        prologue[PREAMBLE_LEN..].copy_from_slice(second);
        let params = NOISE_PARAMS
            .parse()
            .map_err(|e: snow::Error| noise_error(e))?;
        let resolver = crate::resolver::NoiseResolver::with_static(self.secret, self.public);
        let builder = snow::Builder::with_resolver(params, Box::new(resolver))
            .local_private_key(&self.secret)
            .map_err(noise_error)?
            .prologue(&prologue)
            .map_err(noise_error)?;
        let state = if self.initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(noise_error)?;
        self.state = Some(state);
        self.write_if_my_turn(tx)?;
        Ok(())
    }

    /// Writes the next handshake message, as a u16 length and the message, if it is ours.
    fn write_if_my_turn(&mut self, tx: &mut BytesMut) -> Result<(), HandshakeError> {
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        if state.is_handshake_finished() || !state.is_my_turn() {
            return Ok(());
        }
        let mut message = [0u8; 256];
        // Payloads are empty in version 1.
        let n = state
            .write_message(&[], &mut message)
            .map_err(noise_error)?;
        tx.extend_from_slice(&(n as u16).to_be_bytes());
        tx.extend_from_slice(&message[..n]);
        Ok(())
    }

    fn read(
        &mut self,
        rx: &mut BytesMut,
        tx: &mut BytesMut,
    ) -> Result<Option<Established>, HandshakeError> {
        loop {
            let Some(state) = self.state.as_mut() else {
                return Ok(None);
            };
            if state.is_handshake_finished() {
                return self.finish().map(Some);
            }
            if rx.len() < 2 {
                return Ok(None);
            }
            let len = u16::from_be_bytes([rx[0], rx[1]]) as usize;
            if len == 0 {
                return Err(HandshakeError::EmptyMessage);
            }
            if rx.len() < 2 + len {
                return Ok(None);
            }
            rx.advance(2);
            let message = rx.split_to(len);
            // A receiver ignores payload bytes; they only need room to land in.
            let mut payload = vec![0u8; len];
            state
                .read_message(&message, &mut payload)
                .map_err(noise_error)?;
            self.write_if_my_turn(tx)?;
        }
    }

    fn finish(&mut self) -> Result<Established, HandshakeError> {
        let state = self
            .state
            .take()
            .ok_or(HandshakeError::Noise("no handshake state".into()))?;
        let remote: [u8; 32] = state
            .get_remote_static()
            .and_then(|key| key.try_into().ok())
            .ok_or(HandshakeError::Noise("no remote static key".into()))?;
        let transport = state.into_transport_mode().map_err(noise_error)?;
        Ok(Established {
            remote: PeerId::from_bytes(remote),
            transport: Transport::Noise(Box::new(NoiseTransport {
                state: transport,
                scratch: vec![0u8; MAX_RECORD_PLAINTEXT],
            })),
        })
    }
}

/// The record layer of an open connection.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Frames cross the wire as they are.
    Plaintext,
    /// Frames cross in noise records (PROTOCOL.md §3).
    #[cfg(feature = "noise")]
    Noise(Box<NoiseTransport>),
}

/// Noise transport keys and a buffer to gather one record's plaintext.
#[cfg(feature = "noise")]
pub(crate) struct NoiseTransport {
    state: snow::TransportState,
    scratch: Vec<u8>,
}

#[cfg(feature = "noise")]
impl std::fmt::Debug for NoiseTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoiseTransport")
    }
}

/// A record that cannot be opened (PROTOCOL.md §3: fatal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecryptFailed;

/// A record that cannot be sealed (the cipher's nonces ran out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EncryptFailed;

impl Transport {
    /// Whether frames must go through [`Transport::seal`] before the wire.
    pub(crate) fn encrypts(&self) -> bool {
        !matches!(self, Transport::Plaintext)
    }

    /// Moves every whole record of `rx` into `plain` as plaintext.
    pub(crate) fn open(
        &mut self,
        rx: &mut BytesMut,
        plain: &mut BytesMut,
    ) -> Result<(), DecryptFailed> {
        match self {
            Transport::Plaintext => {
                let _ = (rx, plain);
                Ok(())
            }
            #[cfg(feature = "noise")]
            Transport::Noise(noise) => loop {
                if rx.len() < 2 {
                    return Ok(());
                }
                let len = u16::from_be_bytes([rx[0], rx[1]]) as usize;
                if len < TAG_LEN {
                    return Err(DecryptFailed);
                }
                if rx.len() < 2 + len {
                    return Ok(());
                }
                let start = plain.len();
                // Room for the tag too: snow then decrypts straight into `plain`
                // instead of copying the record aside first.
                plain.resize(start + len, 0);
                let opened = noise
                    .state
                    .read_message(&rx[2..2 + len], &mut plain[start..]);
                match opened {
                    Ok(n) => plain.truncate(start + n),
                    Err(_) => {
                        plain.truncate(start);
                        return Err(DecryptFailed);
                    }
                }
                rx.advance(2 + len);
            },
        }
    }

    /// Seals frames from `staged` into records at the end of `tx`, until `tx` holds
    /// enough for a large write or nothing is staged. Many small frames share a record
    /// and a large frame spans many.
    pub(crate) fn seal(
        &mut self,
        staged: &mut OutQueue,
        tx: &mut OutQueue,
    ) -> Result<(), EncryptFailed> {
        match self {
            Transport::Plaintext => {
                let _ = (staged, tx);
                Ok(())
            }
            #[cfg(feature = "noise")]
            Transport::Noise(noise) => {
                while !staged.is_empty() && tx.len() < SEAL_AHEAD {
                    // A large shared payload is encrypted where it lies; small frames
                    // are gathered into one record first.
                    let want = staged.len().min(MAX_RECORD_PLAINTEXT);
                    let front = staged.front_chunk();
                    let (plaintext, n) = if front.len() >= want {
                        (&front[..want], want)
                    } else {
                        let n = staged.copy_front(&mut noise.scratch);
                        (&noise.scratch[..n], n)
                    };
                    let state = &mut noise.state;
                    let mut failed = false;
                    tx.push_with(2 + n + TAG_LEN, |out| {
                        match state.write_message(plaintext, &mut out[2..]) {
                            Ok(len) => {
                                out[..2].copy_from_slice(&(len as u16).to_be_bytes());
                                2 + len
                            }
                            Err(_) => {
                                failed = true;
                                0
                            }
                        }
                    });
                    if failed {
                        return Err(EncryptFailed);
                    }
                    staged.advance(n);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> LocalKey {
        LocalKey {
            id: PeerId::from_bytes([n; 32]),
            secret: [n; 32],
        }
    }

    #[test]
    fn plaintext_sends_and_reads_the_id_byte_by_byte() {
        let local = key(1);
        let remote = PeerId::from_bytes([2; 32]);
        let mut hs = Handshake::new(Security::Plaintext, &local, true);
        let mut tx = BytesMut::new();
        hs.start(&mut tx);
        assert_eq!(&tx[..], local.id.as_bytes());

        let mut rx = BytesMut::new();
        for (i, b) in remote.as_bytes().iter().enumerate() {
            rx.extend_from_slice(&[*b]);
            let done = hs.read(&mut rx, &mut tx).unwrap();
            assert_eq!(done.is_some(), i == 31);
            if let Some(est) = done {
                assert_eq!(est.remote, remote);
                assert!(!est.transport.encrypts());
            }
        }
        assert!(rx.is_empty());
    }
}
