//! Session identifiers.

use std::fmt;
use std::str::FromStr;

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
        let (groups, last) = self.0.split_at(ID_BYTES - 1);
        let (group_chars, tail) = out.split_at_mut(GROUP_CHARS);
        for (bytes, chars) in groups.chunks_exact(3).zip(group_chars.chunks_exact_mut(4)) {
            let bits = bytes.iter().fold(0u32, |bits, &b| bits << 8 | u32::from(b));
            for (n, char) in chars.iter_mut().enumerate() {
                *char = letter(bits >> (18 - 6 * n));
            }
        }
        // The 16th byte fills one character and two bits of the next, whose four low bits are
        // zero.
        let last = u32::from(last.first().copied().unwrap_or_default());
        for (char, bits) in tail.iter_mut().zip([last >> 2, last << 4]) {
            *char = letter(bits);
        }
    }

    /// Reads the canonical 22-character printed form: only the base64url alphabet, and the four
    /// bits past the 128th zero, so every id has exactly one printed form.
    fn decode(text: &[u8]) -> Option<Self> {
        if text.len() != ID_LEN {
            return None;
        }
        let (group_chars, tail) = text.split_at(GROUP_CHARS);
        let mut bytes = [0u8; ID_BYTES];
        let (groups, last) = bytes.split_at_mut(ID_BYTES - 1);
        // Invalid characters decode to a value with the high bits set; any one spoils `seen`.
        let mut seen = 0u8;
        let mut value = |char: &u8| {
            let value = SEXTETS.get(usize::from(*char)).copied().unwrap_or(INVALID);
            seen |= value;
            u32::from(value)
        };
        for (chars, out) in group_chars.chunks_exact(4).zip(groups.chunks_exact_mut(3)) {
            let bits = chars
                .iter()
                .fold(0u32, |bits, char| bits << 6 | value(char));
            let [_, b0, b1, b2] = bits.to_be_bytes();
            out.copy_from_slice(&[b0, b1, b2]);
        }
        let bits = tail.iter().fold(0u32, |bits, char| bits << 6 | value(char));
        if seen >= 64 || bits & 0xf != 0 {
            return None;
        }
        let [_, _, _, b15] = (bits >> 4).to_be_bytes();
        last.copy_from_slice(&[b15]);
        Some(Self(bytes))
    }
}

/// The base64url alphabet (RFC 4648, section 5).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Characters holding the first 15 bytes: five groups of four characters for three bytes.
const GROUP_CHARS: usize = 20;

/// What [`SEXTETS`] holds for a byte outside the alphabet.
const INVALID: u8 = 0xff;

/// The value of each byte as a base64url character, [`INVALID`] for the others.
#[allow(clippy::indexing_slicing)] // Evaluated while compiling: an index out of range fails the build.
const SEXTETS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut value = 0;
    while value < ALPHABET.len() {
        table[ALPHABET[value] as usize] = value as u8;
        value += 1;
    }
    table
};

/// The character for the low six bits of `bits`.
fn letter(bits: u32) -> u8 {
    ALPHABET
        .get((bits & 0x3f) as usize)
        .copied()
        .unwrap_or(b'A')
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
        // The base64 crate's general engine cost about 700 instructions per id, on every
        // request; this fixed-width decoder about 180.
        Self::decode(s.as_bytes()).ok_or(InvalidId)
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
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

        /// The printed form is exactly unpadded base64url as the `base64` crate writes it.
        #[test]
        fn prints_as_the_base64_crate(bytes in any::<[u8; 16]>()) {
            prop_assert_eq!(Id::from_bytes(bytes).to_string(), URL_SAFE_NO_PAD.encode(bytes));
        }

        /// Any text parses to an id exactly when the `base64` crate decodes it, strictly, to
        /// 16 bytes, and then to the same bytes.
        #[test]
        fn parses_as_the_base64_crate(text in "[A-Za-z0-9_\\-+/=.]{20,24}|\\PC{0,30}") {
            let mut expected = [0u8; 16];
            let expected = match URL_SAFE_NO_PAD.decode_slice(&text, &mut expected) {
                Ok(16) if text.len() == ID_LEN => Ok(Id::from_bytes(expected)),
                _ => Err(InvalidId),
            };
            prop_assert_eq!(text.parse::<Id>(), expected);
        }
    }
}
