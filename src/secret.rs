//! One shared, self-wiping copy of the node's static secret key.

use std::sync::Arc;

use zeroize::Zeroizing;

/// A 32-byte X25519 secret key, held once on the heap and wiped when the last holder
/// drops it.
///
/// Cloning shares the allocation, so the keypair, the node and every connection's
/// handshake point at the same bytes instead of each holding a copy that outlives it.
/// The wipe is `zeroize`'s volatile write, which the compiler may not elide as a dead
/// store. It is best effort as anything in Rust is: temporaries the curve arithmetic
/// puts on the stack are not wiped.
#[derive(Clone)]
pub(crate) struct SecretKey(Arc<Zeroizing<[u8; 32]>>);

impl SecretKey {
    /// A key filled in place by `fill`, so the bytes never exist outside the wiped
    /// allocation (a `[u8; 32]` passed by value would leave its copy behind).
    #[cfg_attr(not(feature = "noise"), allow(dead_code))]
    pub(crate) fn filled_by<E>(
        fill: impl FnOnce(&mut [u8; 32]) -> Result<(), E>,
    ) -> Result<SecretKey, E> {
        let mut shared = Arc::new(Zeroizing::new([0u8; 32]));
        // The Arc was just made, so this borrows it in place rather than cloning.
        let bytes: &mut Zeroizing<[u8; 32]> = Arc::make_mut(&mut shared);
        fill(bytes)?;
        Ok(SecretKey(shared))
    }

    /// The key's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// How many hold the key (tests: who still shares it).
    #[cfg(all(test, feature = "noise"))]
    pub(crate) fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl std::ops::Deref for SecretKey {
    type Target = [u8; 32];

    fn deref(&self) -> &[u8; 32] {
        self.as_bytes()
    }
}

impl From<[u8; 32]> for SecretKey {
    /// Moves `bytes` into a shared key; the caller's own copy is the caller's to wipe.
    fn from(bytes: [u8; 32]) -> SecretKey {
        SecretKey(Arc::new(Zeroizing::new(bytes)))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_copy() {
        let key = SecretKey::from([7u8; 32]);
        let clone = key.clone();
        assert_eq!(clone.as_bytes(), &[7u8; 32]);
        assert!(std::ptr::eq(key.as_bytes(), clone.as_bytes()));
    }

    #[test]
    fn filled_in_place_and_debug_hides_the_bytes() {
        let key = SecretKey::filled_by(|k| {
            k[0] = 0xab;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(key.as_bytes()[0], 0xab);
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
        assert!(SecretKey::filled_by(|_| Err::<(), _>("no")).is_err());
    }
}
