//! Naming a session without its id.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::{Id, InvalidId};

/// Domain separation for the derivation: a handle is no other digest of an id.
const DERIVATION: &[u8] = b"tether session handle v1\0";

/// A name for a session that may be shown and logged: derived from the session's [`Id`] by a
/// one-way function, so it names the session without being able to open it.
///
/// The id is a bearer credential: whoever holds it is logged in. A "your devices" page or an
/// audit log must never show it, so they show the handle; a revoke request carries the handle
/// back, and the store finds the session by it. The handle is the first 128 bits of SHA-256 over
/// the id (with a fixed prefix); finding an id from its handle means guessing 128 random bits.
///
/// Printed as 22 characters of unpadded base64url, like an id. A session that gets a new id
/// ([`cycle`](crate::SessionStore::cycle)) gets a new handle.
///
/// # Example
///
/// ```
/// use tether_core::{Id, SessionHandle};
///
/// let id = Id::random()?;
/// let handle = SessionHandle::of(&id);
/// assert_eq!(handle, SessionHandle::of(&id), "the same id always has the same handle");
/// assert_ne!(handle.to_string(), id.to_string());
/// assert_eq!(handle.to_string().parse::<SessionHandle>()?, handle);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle([u8; 16]);

impl SessionHandle {
    /// The handle of the session with this id.
    pub fn of(id: &Id) -> Self {
        let digest = Sha256::new()
            .chain_update(DERIVATION)
            .chain_update(id.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        for (byte, digest) in bytes.iter_mut().zip(digest) {
            *byte = digest;
        }
        Self(bytes)
    }

    /// The handle's 16 bytes, as stores keep it.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A handle from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same printed shape as an id; the bytes are a digest, not an id.
        fmt::Display::fmt(&Id::from_bytes(self.0), f)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({self})")
    }
}

/// The text was not a session handle: not 22 characters of canonical unpadded base64url.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a session handle: expected 22 characters of unpadded base64url")]
pub struct InvalidHandle;

impl From<InvalidId> for InvalidHandle {
    fn from(_: InvalidId) -> Self {
        Self
    }
}

impl FromStr for SessionHandle {
    type Err = InvalidHandle;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let id: Id = text.parse()?;
        Ok(Self(*id.as_bytes()))
    }
}

impl serde::Serialize for SessionHandle {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Id::from_bytes(self.0).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for SessionHandle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Id::deserialize(deserializer).map(|id| Self(*id.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_fixed_digest_of_the_id() {
        // The first 16 bytes of SHA-256("tether session handle v1\0" || 16 zero bytes), as
        // coreutils computes it: `printf 'tether session handle v1\0' > f;
        // head -c16 /dev/zero >> f; sha256sum f`. Stores and servers of every version must
        // derive the same handle.
        let handle = SessionHandle::of(&Id::from_bytes([0; 16]));
        let hex: String = handle
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "a3dcf3ebcbdc95bbe72b0f3a62e99ca5");
        assert_ne!(SessionHandle::of(&Id::from_bytes([1; 16])), handle);
    }

    #[test]
    fn never_prints_the_id() {
        for _ in 0..100 {
            let id = Id::random().unwrap();
            let handle = SessionHandle::of(&id);
            assert_ne!(handle.as_bytes(), id.as_bytes());
            assert!(!format!("{handle:?}").contains(&id.to_string()));
            assert_eq!(handle.to_string().parse::<SessionHandle>(), Ok(handle));
        }
        assert_eq!("nope".parse::<SessionHandle>(), Err(InvalidHandle));
    }
}
