//! The handshake and record layer after the preamble, behind one sans-IO interface:
//! plaintext (PROTOCOL.md §2.1) and noise-xx (§2.2, §3).

use bytes::{Buf, BytesMut};

use crate::peer::PeerId;
use crate::queue::OutQueue;
use crate::rng::Rng;
use crate::secret::SecretKey;
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
/// The bytes one record adds to the frames it carries: a length field and a tag (zero
/// without noise, where nothing is sealed).
#[cfg(feature = "noise")]
pub(crate) const RECORD_OVERHEAD: usize = 2 + TAG_LEN;
/// Without noise, nothing is sealed.
#[cfg(not(feature = "noise"))]
pub(crate) const RECORD_OVERHEAD: usize = 0;
/// The largest sealed record, length field included: what a receiver holds before it
/// can open one.
#[cfg(feature = "noise")]
pub(crate) const MAX_SEALED_RECORD: usize = 2 + MAX_RECORD;
/// Without noise no record is held.
#[cfg(not(feature = "noise"))]
pub(crate) const MAX_SEALED_RECORD: usize = 0;
/// The most plaintext one record opens to.
#[cfg(feature = "noise")]
pub(crate) const MAX_OPENED_RECORD: usize = MAX_RECORD_PLAINTEXT;
/// Without noise nothing is opened.
#[cfg(not(feature = "noise"))]
pub(crate) const MAX_OPENED_RECORD: usize = 0;

/// The bytes records add to `plain` bytes of frames sealed into them: a length field
/// and a tag each. [`Transport::seal`] fills every record but the one that empties the
/// staged frames, so frames staged now take at most this many records, whenever they
/// are sealed and in however many calls.
#[cfg(feature = "noise")]
pub(crate) fn record_overhead(plain: usize) -> usize {
    plain.div_ceil(MAX_RECORD_PLAINTEXT) * RECORD_OVERHEAD
}

/// Without noise, nothing is sealed.
#[cfg(not(feature = "noise"))]
pub(crate) fn record_overhead(_plain: usize) -> usize {
    0
}

/// How much ciphertext is sealed ahead of the socket: enough for one large write, so
/// queued payloads stay shared until shortly before they leave.
#[cfg_attr(not(feature = "noise"), allow(dead_code))]
pub(crate) const SEAL_AHEAD: usize = 256 * 1024;

/// The id of the static `secret` under noise-xx (its X25519 public key); `None` in a
/// build without noise, where no node has one.
pub(crate) fn public_id(secret: &[u8; 32]) -> Option<PeerId> {
    #[cfg(feature = "noise")]
    return Some(PeerId::from_bytes(crate::resolver::public_key(secret)));
    #[cfg(not(feature = "noise"))]
    {
        let _ = secret;
        None
    }
}

/// This node's identity as the handshake needs it.
#[derive(Clone)]
pub(crate) struct LocalKey {
    /// The id this node is known by (in noise mode, the static public key).
    pub id: PeerId,
    /// The static X25519 secret (unused in plaintext mode), shared with the keypair
    /// and every handshake rather than copied.
    #[cfg_attr(not(feature = "noise"), allow(dead_code))]
    pub secret: SecretKey,
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
    secret: SecretKey,
    /// The public half of `secret`: our id (`Config` refuses another id in noise mode).
    public: [u8; 32],
    /// Where the ephemeral key comes from: a generator forked from the node's own
    /// (secure in a real node, seeded in the simulator, whose runs must repeat).
    /// Taken when the handshake is built.
    ephemeral: Option<Rng>,
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
    /// A handshake for `security`, this side being the initiator when `initiator`,
    /// drawing its ephemeral key (noise) from `ephemeral`.
    pub(crate) fn new(security: Security, key: &LocalKey, initiator: bool, ephemeral: Rng) -> Self {
        match security {
            #[cfg(feature = "noise")]
            Security::NoiseXx => Handshake::Noise(Box::new(NoiseHandshake {
                initiator,
                secret: key.secret.clone(),
                public: *key.id.as_bytes(),
                ephemeral: Some(ephemeral),
                state: None,
            })),
            // Without the feature, `Config::validate` refuses noise-xx, so no node
            // announces security 1 and then speaks plaintext.
            _ => {
                let _ = (initiator, ephemeral);
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
                // Any 32 bytes: a claimed id proves no key, so it need not be one
                // (nor canonical) either.
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
        let resolver =
            crate::resolver::NoiseResolver::with_static(self.secret.clone(), self.public)
                .with_rng(self.ephemeral.take());
        let builder = snow::Builder::with_resolver(params, Box::new(resolver))
            .local_private_key(self.secret.as_bytes())
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
            // As soon as it is known, before our next message: the DHs it entered
            // refused a non-canonical or low-order key, not a real key plus torsion.
            if let Some(remote) = state.get_remote_static() {
                let remote: &[u8; 32] = remote
                    .try_into()
                    .map_err(|_| HandshakeError::Noise("remote static key not 32 bytes".into()))?;
                crate::resolver::check_static_key(remote)
                    .map_err(|bad| HandshakeError::Noise(format!("remote static key: {bad:?}")))?;
            }
            self.write_if_my_turn(tx)?;
        }
    }

    fn finish(&mut self) -> Result<Established, HandshakeError> {
        let mut state = self
            .state
            .take()
            .ok_or(HandshakeError::Noise("no handshake state".into()))?;
        let remote: [u8; 32] = state
            .get_remote_static()
            .and_then(|key| key.try_into().ok())
            .ok_or(HandshakeError::Noise("no remote static key".into()))?;
        // Canonical, of large order (the DH it entered, es or se, refuses any other
        // key) and in the prime-order subgroup (`read` checked): the key's only id.
        // Noise's Split: the initiator sends with the first key, the responder with the
        // second. The record layer seals with ring directly, in place (see
        // `Transport::seal`), so it takes the raw keys instead of snow's transport.
        let (first, second) = state.dangerously_get_raw_split();
        let (send, recv) = if self.initiator {
            (first, second)
        } else {
            (second, first)
        };
        let key = |bytes: &[u8; 32]| {
            RecordKey::new(bytes).ok_or(HandshakeError::Noise("bad transport key".into()))
        };
        Ok(Established {
            remote: PeerId::from_bytes(remote),
            transport: Transport::Noise(Box::new(NoiseTransport {
                send: key(&send)?,
                recv: key(&recv)?,
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

/// The two directions of a noise transport (PROTOCOL.md §3).
#[cfg(feature = "noise")]
pub(crate) struct NoiseTransport {
    send: RecordKey,
    recv: RecordKey,
}

#[cfg(feature = "noise")]
impl std::fmt::Debug for NoiseTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoiseTransport")
    }
}

/// One direction's ChaChaPoly key and nonce counter: Noise's CipherState with an empty
/// associated data, as `snow`'s transport mode keeps it, but sealing and opening in
/// place, which snow cannot (it copies every record once more).
#[cfg(feature = "noise")]
struct RecordKey {
    key: ring::aead::LessSafeKey,
    nonce: u64,
}

#[cfg(feature = "noise")]
impl RecordKey {
    fn new(bytes: &[u8; 32]) -> Option<RecordKey> {
        let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, bytes).ok()?;
        Some(RecordKey {
            key: ring::aead::LessSafeKey::new(key),
            nonce: 0,
        })
    }

    /// The next nonce: Noise's ChaChaPoly nonce is 32 zero bits and the counter in
    /// little-endian. 2^64 - 1 is reserved (Noise §5.1), so the counter stops there.
    fn next_nonce(&mut self) -> Option<ring::aead::Nonce> {
        if self.nonce == u64::MAX {
            return None;
        }
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&self.nonce.to_le_bytes());
        self.nonce += 1;
        Some(ring::aead::Nonce::assume_unique_for_key(bytes))
    }

    /// Encrypts `in_out` in place and returns its tag.
    fn seal(&mut self, in_out: &mut [u8]) -> Result<[u8; TAG_LEN], EncryptFailed> {
        let nonce = self.next_nonce().ok_or(EncryptFailed)?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), in_out)
            .map_err(|_| EncryptFailed)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts a record body (ciphertext and tag) in place; returns the plaintext length.
    fn open(&mut self, in_out: &mut [u8]) -> Result<usize, DecryptFailed> {
        let nonce = self.next_nonce().ok_or(DecryptFailed)?;
        self.key
            .open_in_place(nonce, ring::aead::Aad::empty(), in_out)
            .map(|plain| plain.len())
            .map_err(|_| DecryptFailed)
    }
}

/// A record that cannot be opened (PROTOCOL.md §3: fatal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecryptFailed;

/// A record that cannot be sealed (the cipher's nonces ran out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EncryptFailed;

impl Transport {
    /// A noise transport from raw keys, without a handshake: the record-layer fuzz
    /// target runs many inputs a second, a handshake each would dominate.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn noise_from_keys(send: &[u8; 32], recv: &[u8; 32]) -> Option<Transport> {
        Some(Transport::Noise(Box::new(NoiseTransport {
            send: RecordKey::new(send)?,
            recv: RecordKey::new(recv)?,
        })))
    }

    /// Whether frames must go through [`Transport::seal`] before the wire.
    pub(crate) fn encrypts(&self) -> bool {
        !matches!(self, Transport::Plaintext)
    }

    /// The plaintext size of the record at the front of `rx`, once the whole record has
    /// arrived (a record too short for its tag reports 0 and fails to open).
    pub(crate) fn next_record(&self, rx: &[u8]) -> Option<usize> {
        match self {
            Transport::Plaintext => {
                let _ = rx;
                None
            }
            #[cfg(feature = "noise")]
            Transport::Noise(_) => {
                let len = u16::from_be_bytes([*rx.first()?, *rx.get(1)?]) as usize;
                (rx.len() >= 2 + len).then(|| len.saturating_sub(TAG_LEN))
            }
        }
    }

    /// Opens the record at the front of `rx` onto the end of `plain`, if it has arrived
    /// whole; true if it did. The caller makes room in `plain` first
    /// ([`Transport::next_record`] tells how much), so the buffer is not reallocated.
    pub(crate) fn open_record(
        &mut self,
        rx: &mut BytesMut,
        plain: &mut BytesMut,
    ) -> Result<bool, DecryptFailed> {
        match self {
            Transport::Plaintext => {
                let _ = (rx, plain);
                Ok(false)
            }
            #[cfg(feature = "noise")]
            Transport::Noise(noise) => {
                if rx.len() < 2 {
                    return Ok(false);
                }
                let len = u16::from_be_bytes([rx[0], rx[1]]) as usize;
                if len < TAG_LEN {
                    return Err(DecryptFailed);
                }
                if rx.len() < 2 + len {
                    return Ok(false);
                }
                // One copy, then decryption in place.
                let start = plain.len();
                plain.extend_from_slice(&rx[2..2 + len]);
                match noise.recv.open(&mut plain[start..]) {
                    Ok(n) => plain.truncate(start + n),
                    Err(e) => {
                        plain.truncate(start);
                        return Err(e);
                    }
                }
                rx.advance(2 + len);
                Ok(true)
            }
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
                    // Frames are copied once, straight into the record, and encrypted
                    // where they landed.
                    let n = staged.len().min(MAX_RECORD_PLAINTEXT);
                    tx.push_slice(&((n + TAG_LEN) as u16).to_be_bytes());
                    let tag =
                        tx.push_copy_of_front(staged, n, |plaintext| noise.send.seal(plaintext))?;
                    tx.push_slice(&tag);
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
            secret: [n; 32].into(),
        }
    }

    #[cfg(feature = "noise")]
    #[test]
    fn handshakes_share_the_node_secret_rather_than_copy_it() {
        let local = key(1);
        let mut tx = BytesMut::new();
        let mut hs = Handshake::new(Security::NoiseXx, &local, true, Rng::from_seed(1));
        // The resolver built here keeps the secret for as long as the handshake runs.
        hs.preamble_checked(&[0; PREAMBLE_LEN], &[0; PREAMBLE_LEN], &mut tx)
            .unwrap();
        let Handshake::Noise(noise) = &hs else {
            panic!("expected a noise handshake");
        };
        let (ours, node): (&[u8; 32], &[u8; 32]) = (&noise.secret, &local.secret);
        assert!(std::ptr::eq(ours, node), "the handshake holds a copy");
    }

    #[test]
    fn plaintext_sends_and_reads_the_id_byte_by_byte() {
        let local = key(1);
        let remote = PeerId::from_bytes([2; 32]);
        let mut hs = Handshake::new(Security::Plaintext, &local, true, Rng::from_seed(1));
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

    #[cfg(feature = "noise")]
    #[test]
    fn record_keys_seal_in_place_open_in_place_and_stop_before_the_reserved_nonce() {
        let mut send = RecordKey::new(&[9; 32]).unwrap();
        let mut recv = RecordKey::new(&[9; 32]).unwrap();
        for round in 0..3u8 {
            let mut record = vec![round; 100];
            let tag = send.seal(&mut record).unwrap();
            assert_ne!(record, vec![round; 100], "encrypted in place");
            record.extend_from_slice(&tag);
            assert_eq!(recv.open(&mut record), Ok(100));
            assert_eq!(&record[..100], &[round; 100][..]);
        }
        // A flipped bit fails, as does a record replayed under the next nonce.
        let mut record = vec![1u8; 10];
        let tag = send.seal(&mut record).unwrap();
        record.extend_from_slice(&tag);
        let mut tampered = record.clone();
        tampered[3] ^= 1;
        let mut beside = RecordKey::new(&[9; 32]).unwrap();
        beside.nonce = recv.nonce;
        assert_eq!(beside.open(&mut tampered), Err(DecryptFailed));
        assert_eq!(recv.open(&mut record.clone()), Ok(10));
        assert_eq!(recv.open(&mut record), Err(DecryptFailed), "replayed");
        // The last usable nonce is 2^64 - 2; after it both directions refuse.
        send.nonce = u64::MAX - 1;
        recv.nonce = u64::MAX - 1;
        let mut last = vec![2u8; 5];
        let tag = send.seal(&mut last).unwrap();
        last.extend_from_slice(&tag);
        assert_eq!(recv.open(&mut last), Ok(5));
        assert_eq!(send.seal(&mut [0u8; 5]), Err(EncryptFailed));
        assert_eq!(recv.open(&mut [0u8; 21]), Err(DecryptFailed));
    }
}
