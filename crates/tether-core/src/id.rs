//! Session identifiers.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;

/// Number of random bytes in an [`Id`].
const ID_BYTES: usize = 16;

/// Length of the printed form of an [`Id`]: 16 bytes as unpadded base64url.
pub const ID_LEN: usize = 22;

/// A session identifier: 128 bits from the operating system's CSPRNG.
///
/// Printed (and parsed) as 22 characters of unpadded base64url. Parsing accepts only that
/// exact, canonical shape, so a cookie value that was not produced by [`Id::random`] never
/// names a session.
///
/// `Debug` prints only a short prefix, so an id that ends up in a log line cannot be replayed.
///
/// # Example
///
/// ```
/// use tether_core::Id;
///
/// let id = Id::random()?;
/// let printed = id.to_string();
/// assert_eq!(printed.len(), 22);
/// assert_eq!(printed.parse::<Id>()?, id);
///
/// assert!("not-a-session-id".parse::<Id>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; ID_BYTES]);

impl Id {
    /// Draws a new id from the operating system's random number generator.
    ///
    /// # Errors
    ///
    /// [`Error::Entropy`] when the operating system cannot provide random bytes.
    pub fn random() -> Result<Self, Error> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(Error::Entropy)?;
        Ok(Self(bytes))
    }

    /// Builds an id from its 16 raw bytes, as stores and wire formats keep it.
    ///
    /// ```
    /// use tether_core::Id;
    ///
    /// let id = Id::random()?;
    /// assert_eq!(Id::from_bytes(*id.as_bytes()), id);
    /// # Ok::<(), tether_core::Error>(())
    /// ```
    pub const fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The 16 raw bytes of this id.
    pub const fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    /// Writes the 22-character printed form into `out` without allocating.
    fn encode_into(&self, out: &mut [u8; ID_LEN]) {
        // 16 bytes always encode to exactly 22 unpadded characters, so this cannot fail.
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.0, out)
            .unwrap_or_default();
        debug_assert_eq!(written, ID_LEN);
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_LEN];
        self.encode_into(&mut buf);
        // base64url output is ASCII.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_LEN];
        self.encode_into(&mut buf);
        let prefix =
            std::str::from_utf8(buf.get(..4).unwrap_or_default()).map_err(|_| fmt::Error)?;
        write!(f, "Id({prefix}…)")
    }
}

/// The text was not a session id: not 22 characters of canonical unpadded base64url.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a session id: expected 22 characters of unpadded base64url")]
pub struct InvalidId;

impl FromStr for Id {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != ID_LEN {
            return Err(InvalidId);
        }
        let mut bytes = [0u8; ID_BYTES];
        // The engine rejects padding, foreign alphabets and non-zero trailing bits, so only the
        // canonical form of an id parses.
        match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
            Ok(ID_BYTES) => Ok(Self(bytes)),
            _ => Err(InvalidId),
        }
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a session id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Id, E> {
                <[u8; ID_BYTES]>::try_from(v)
                    .map(Id)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Visitor)
        } else {
            deserializer.deserialize_bytes(Visitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for _ in 0..1000 {
            let id = Id::random().unwrap();
            let text = id.to_string();
            assert_eq!(text.len(), ID_LEN);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(text.parse::<Id>().unwrap(), id);
        }
    }

    #[test]
    fn ids_are_distinct() {
        let a = Id::random().unwrap();
        let b = Id::random().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_every_other_shape() {
        let good = Id::random().unwrap().to_string();
        let cases = [
            String::new(),
            "a".into(),
            good[..21].to_string(),
            format!("{good}A"),
            format!("{}==", &good[..20]),
            good.replace(|_: char| true, "+"),
            "AAAAAAAAAAAAAAAAAAAAA/".into(),
            "AAAAAAAAAAAAAAAAAAAAA=".into(),
            "ÄAAAAAAAAAAAAAAAAAAAA".into(),
            // 22 characters whose last one carries non-zero padding bits: not canonical.
            "AAAAAAAAAAAAAAAAAAAAAB".into(),
        ];
        for case in cases {
            assert_eq!(case.parse::<Id>(), Err(InvalidId), "{case:?}");
        }
    }

    #[test]
    fn debug_does_not_leak_the_id() {
        let id = Id::random().unwrap();
        let debug = format!("{id:?}");
        assert!(!debug.contains(&id.to_string()));
        assert!(debug.starts_with("Id("));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text either is not an id, or is exactly the printed form of the id it parses to.
        #[test]
        fn only_canonical_ids_parse(text in "\\PC{0,40}") {
            if let Ok(id) = text.parse::<Id>() {
                prop_assert_eq!(id.to_string(), text);
            }
        }

        /// 22 characters of the base64url alphabet parse only when canonical.
        #[test]
        fn alphabet_strings_parse_only_when_canonical(text in "[A-Za-z0-9_-]{22}") {
            if let Ok(id) = text.parse::<Id>() {
                prop_assert_eq!(id.to_string(), text);
            }
        }

        #[test]
        fn every_id_round_trips(bytes in any::<[u8; 16]>()) {
            let id = Id::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<Id>(), Ok(id));
        }
    }
}
