//! Peer identity: the 32-byte `PeerId` a node is known by.

use std::fmt;
use std::str::FromStr;

/// A node's 32-byte identity. Shown and parsed as 64 lowercase hex digits.
///
/// In plaintext mode the id is claimed by the peer, not proven.
///
/// ```
/// use p2p::PeerId;
/// let id = PeerId::from_bytes([0xab; 32]);
/// let text = id.to_string();
/// assert_eq!(text.len(), 64);
/// assert_eq!(text.parse::<PeerId>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PeerId(bytes)
    }

    /// The raw bytes, in the order they cross the wire.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A fresh id from the operating system's random source.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(PeerId(bytes))
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    write_hex(&mut s, bytes);
    s
}

/// Appends `bytes` to `out` in lowercase hex, within `out`'s capacity if it has room
/// (the key file's text, which must not leave copies behind, relies on it).
pub(crate) fn write_hex(out: &mut String, bytes: &[u8]) {
    use fmt::Write;
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// Why a string is not a [`PeerId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParsePeerIdError {
    /// The string is not 64 bytes long.
    #[error("a peer id is 64 hex digits, got {0} bytes")]
    Length(usize),
    /// A character is not a hex digit.
    #[error("a peer id is hex, found {0:?}")]
    NotHex(char),
}

impl FromStr for PeerId {
    type Err = ParsePeerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(ParsePeerIdError::Length(s.len()));
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(ParsePeerIdError::NotHex(c));
        }
        let digits = s.as_bytes();
        let mut bytes = [0u8; 32];
        for (i, out) in bytes.iter_mut().enumerate() {
            let hi = nibble(digits[2 * i])?;
            let lo = nibble(digits[2 * i + 1])?;
            *out = hi << 4 | lo;
        }
        Ok(PeerId(bytes))
    }
}

/// The value of one hex digit, either case.
pub(crate) fn nibble(c: u8) -> Result<u8, ParsePeerIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParsePeerIdError::NotHex(c as char)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        let mut raw = [0u8; 32];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i * 37) as u8;
        }
        let id = PeerId::from_bytes(raw);
        let text = id.to_string();
        assert_eq!(&text[..6], "00254a");
        assert_eq!(text.parse::<PeerId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<PeerId>(), Ok(id));
    }

    #[test]
    fn parse_errors() {
        assert_eq!("abc".parse::<PeerId>(), Err(ParsePeerIdError::Length(3)));
        let bad = "g".repeat(64);
        assert_eq!(bad.parse::<PeerId>(), Err(ParsePeerIdError::NotHex('g')));
        // Multi-byte characters must not slice inside a char.
        let wide = format!("{}é{}", "0".repeat(31), "0".repeat(31));
        assert_eq!(wide.parse::<PeerId>(), Err(ParsePeerIdError::NotHex('é')));
    }

    #[test]
    fn ordering_is_bytewise() {
        let a = PeerId::from_bytes([0; 32]);
        let mut b = [0; 32];
        b[0] = 1;
        assert!(a < PeerId::from_bytes(b));
    }
}
