//! `Payload`: what `send`, `request`, `respond` and `broadcast` accept as the bytes to carry.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// The bytes of a MESSAGE, REQUEST, RESPONSE or broadcast, owned or borrowed.
///
/// Every payload ends up as one [`Bytes`], shared by every frame and every peer it is
/// queued for (a broadcast to 50 neighbours holds its bytes once). What that costs
/// depends on what you pass:
///
/// | you pass | it becomes |
/// |---|---|
/// | `Bytes` | itself, no copy: the way to avoid every copy |
/// | `&Bytes` | a clone of it, no copy of the bytes (a reference count) |
/// | `Vec<u8>`, `String`, `Box<[u8]>`, `BytesMut` | the same allocation, no copy; one with more than a quarter of its length spare is trimmed first (`shrink_to_fit`; a `BytesMut` is copied), since a queued payload holds its whole allocation and the write caps count its length |
/// | `&[u8]`, `&str`, `&[u8; N]`, `&Vec<u8>`, `&String`, `Cow<[u8]>`, `Cow<str>` | a copy of the borrowed bytes (owned `Cow`s move) |
///
/// A borrowed payload is copied once, when the call queues it, so it may be dropped
/// right after the call returns: `net.send(&peer, msg.as_bytes())` works with a
/// `msg` that lives only in the caller's loop. String literals are borrowed too, and
/// copied; for a large constant use `Bytes::from_static(..)`, which is not.
///
/// ```
/// use p2p::{Bytes, Payload};
///
/// let msg = format!("block {}", 7);
/// let copied: Bytes = msg.as_bytes().into_payload(); // copies
/// let moved: Bytes = msg.into_payload();             // takes the String's allocation
/// assert_eq!(copied, moved);
/// let shared = Bytes::from_static(b"vote");
/// assert_eq!((&shared).into_payload().as_ptr(), shared.as_ptr()); // no copy
/// ```
///
/// Implement it for a message type of your own to pass it directly:
///
/// ```
/// struct Vote { height: u64 }
///
/// impl p2p::Payload for &Vote {
///     fn into_payload(self) -> p2p::Bytes {
///         p2p::Bytes::copy_from_slice(&self.height.to_be_bytes())
///     }
/// }
/// # fn send(net: &mut p2p::Network, peer: &p2p::PeerId) -> Result<(), p2p::Error> {
/// net.send(peer, &Vote { height: 7 })?;
/// # Ok(())
/// # }
/// ```
pub trait Payload {
    /// The payload as one [`Bytes`], copying only what is borrowed. (Not `into_bytes`:
    /// `String` has an inherent method of that name, which would win.)
    fn into_payload(self) -> Bytes;
}

impl Payload for Bytes {
    fn into_payload(self) -> Bytes {
        self
    }
}

impl Payload for &Bytes {
    fn into_payload(self) -> Bytes {
        self.clone()
    }
}

/// Whether an owned buffer of `len` bytes in `capacity` holds too much spare room to
/// keep: the write caps count a payload's length, and a queued payload holds its whole
/// allocation, so a `Vec` of 4 KiB in 1 MiB would hold 256 times what they count.
/// Up to a quarter of its length spare is kept, not worth a reallocation.
fn too_roomy(len: usize, capacity: usize) -> bool {
    capacity - len > len / 4
}

impl Payload for BytesMut {
    fn into_payload(self) -> Bytes {
        if too_roomy(self.len(), self.capacity()) {
            return Bytes::copy_from_slice(&self);
        }
        self.freeze()
    }
}

impl Payload for Vec<u8> {
    fn into_payload(mut self) -> Bytes {
        if too_roomy(self.len(), self.capacity()) {
            self.shrink_to_fit();
        }
        Bytes::from(self)
    }
}

impl Payload for Box<[u8]> {
    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl Payload for String {
    fn into_payload(self) -> Bytes {
        self.into_bytes().into_payload()
    }
}

// One impl for every borrowed slice, `'static` or not: a `'static` one could be
// referenced without a copy, but Rust cannot choose an impl by lifetime, and a copy of
// a literal is cheap. `Bytes::from_static` is there for large constants.
impl Payload for &[u8] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> Payload for &[u8; N] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl Payload for &str {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl Payload for &Vec<u8> {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl Payload for &String {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl Payload for Cow<'_, [u8]> {
    fn into_payload(self) -> Bytes {
        match self {
            Cow::Borrowed(b) => b.into_payload(),
            Cow::Owned(v) => v.into_payload(),
        }
    }
}

impl Payload for Cow<'_, str> {
    fn into_payload(self) -> Bytes {
        match self {
            Cow::Borrowed(s) => s.into_payload(),
            Cow::Owned(s) => s.into_payload(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_payloads_keep_their_allocation() {
        let v = vec![1u8, 2, 3];
        let ptr = v.as_ptr();
        assert_eq!(v.into_payload().as_ptr(), ptr);
        let s = String::from("abc");
        let ptr = s.as_ptr();
        assert_eq!(s.into_payload().as_ptr(), ptr);
        let b = Bytes::from_static(b"xyz");
        assert_eq!((&b).into_payload().as_ptr(), b.as_ptr());
        assert_eq!(b.clone().into_payload().as_ptr(), b.as_ptr());
        let owned: Cow<'_, [u8]> = Cow::Owned(vec![4, 5]);
        let ptr = owned.as_ptr();
        assert_eq!(owned.into_payload().as_ptr(), ptr);
    }

    /// The write caps count a payload's length; a payload that kept its owner's spare
    /// capacity would hold memory they do not see (a `Vec` of 4 KiB in an allocation
    /// of 1 MiB, queued for a peer that does not read, 256 times the count).
    #[test]
    fn an_owned_payload_keeps_little_spare_capacity() {
        let spare = |held: usize, len: usize| held - len;
        let mut v = Vec::with_capacity(1 << 20);
        v.extend_from_slice(&[7u8; 4096]);
        let held = BytesMut::from(v.into_payload()).capacity();
        assert!(
            spare(held, 4096) <= 1024,
            "a Vec kept {held} bytes for 4096"
        );
        let mut s = String::with_capacity(1 << 20);
        s.push_str(&"x".repeat(4096));
        let held = BytesMut::from(s.into_payload()).capacity();
        assert!(
            spare(held, 4096) <= 1024,
            "a String kept {held} bytes for 4096"
        );
        let mut b = BytesMut::with_capacity(1 << 20);
        b.extend_from_slice(&[7u8; 4096]);
        let held = BytesMut::from(b.into_payload()).capacity();
        assert!(
            spare(held, 4096) <= 1024,
            "a BytesMut kept {held} bytes for 4096"
        );
        let owned: Cow<'_, [u8]> = Cow::Owned({
            let mut v = Vec::with_capacity(1 << 20);
            v.push(1u8);
            v
        });
        assert!(BytesMut::from(owned.into_payload()).capacity() <= 1024);
    }

    #[test]
    fn borrowed_payloads_are_copied_and_outlive_their_source() {
        let bytes = {
            let msg = String::from("short-lived");
            let copied = msg.as_bytes().into_payload();
            assert_ne!(copied.as_ptr(), msg.as_ptr());
            copied
        };
        assert_eq!(bytes, "short-lived");
        let v = vec![9u8; 4];
        assert_eq!((&v).into_payload(), v);
        let s = String::from("s");
        assert_eq!((&s).into_payload(), "s");
        assert_eq!("lit".into_payload(), "lit");
        assert_eq!(b"arr".into_payload(), "arr");
        assert_eq!(Cow::Borrowed("cow").into_payload(), "cow");
        assert_eq!(BytesMut::from(&b"mut"[..]).into_payload(), "mut");
        assert_eq!(Box::<[u8]>::from(&b"box"[..]).into_payload(), "box");
    }
}
