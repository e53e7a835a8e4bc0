//! Keys that sign or encrypt the session cookie, with rotation.

use cookie::Key;

/// The keys that protect session ids in cookies (or headers): the newest signs or encrypts, and
/// every key in the ring still verifies or decrypts.
///
/// To rotate: put a new key in front and keep the old one as retired for as long as its
/// cookies may be out there (the idle timeout). Users keep their sessions throughout. Then
/// drop the retired key: cookies made with it count as no cookie.
///
/// Keys are [`cookie::Key`]s: 64 bytes of randomness (HMAC-SHA256 for signing, AES-256-GCM for
/// encryption). Load them from a secret store; [`Key::generate`] is only right for a single
/// process that may log everyone out when it restarts.
///
/// # Example
///
/// ```
/// use tether_sessions::KeyRing;
/// use tether_sessions::cookie::Key;
///
/// # let (new_secret, old_secret) = ([1u8; 64], [2u8; 64]);
/// let ring = KeyRing::new(Key::try_from(&new_secret[..])?)
///     .with_retired(Key::try_from(&old_secret[..])?);
/// assert_eq!(ring.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    current: Key,
    /// Older keys, in the order they were added.
    retired: Vec<Key>,
}

impl KeyRing {
    /// A ring whose only key is `current`.
    pub fn new(current: Key) -> Self {
        Self {
            current,
            retired: Vec::new(),
        }
    }

    /// Adds an older key that still verifies or decrypts but no longer signs. Retired keys are
    /// tried in the order they were added.
    #[must_use]
    pub fn with_retired(mut self, key: Key) -> Self {
        self.retired.push(key);
        self
    }

    /// The number of keys, the current one included.
    pub fn len(&self) -> usize {
        1 + self.retired.len()
    }

    /// Always false: a ring holds at least its current key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The key that signs and encrypts.
    pub(crate) fn current(&self) -> &Key {
        &self.current
    }

    /// Every key, newest first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(&self.retired)
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}
