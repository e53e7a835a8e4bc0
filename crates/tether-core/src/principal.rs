//! Who a session belongs to.

use std::fmt;
use std::sync::Arc;

/// The longest [`Principal`], in bytes of UTF-8.
pub const MAX_PRINCIPAL_LEN: usize = 256;

/// The user (or other party) a session is bound to, typically the user's id in the
/// application's database. Sessions bound to one principal can be listed and revoked together
/// (see [`SessionStore::sessions_of`](crate::SessionStore::sessions_of)).
///
/// A principal is 1 to [`MAX_PRINCIPAL_LEN`] bytes of UTF-8 without control characters
/// (U+0000 to U+001F and U+007F to U+009F): stores use those as separators, and a principal
/// is written into their keys and rows as it is. Anything else is refused with
/// [`InvalidPrincipal`], so no principal can name another one's index entry.
///
/// Cloning is cheap (a reference count).
///
/// # Example
///
/// ```
/// use tether_core::{InvalidPrincipal, Principal};
///
/// let alice = Principal::new("user:1042")?;
/// assert_eq!(alice.as_str(), "user:1042");
///
/// assert_eq!(Principal::new(""), Err(InvalidPrincipal::Empty));
/// assert!(matches!(Principal::new("a\nb"), Err(InvalidPrincipal::ControlCharacter { at: 1 })));
/// assert!(matches!(Principal::new("x".repeat(257)), Err(InvalidPrincipal::TooLong { .. })));
/// assert_eq!(Principal::from_utf8(b"\xff"), Err(InvalidPrincipal::NotUtf8));
/// # Ok::<(), InvalidPrincipal>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal(Arc<str>);

/// Why a text is not a [`Principal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidPrincipal {
    /// The principal is empty.
    #[error("a principal cannot be empty")]
    Empty,
    /// The principal is longer than [`MAX_PRINCIPAL_LEN`].
    #[error("a principal is at most {limit} bytes; this one has {len}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_PRINCIPAL_LEN`].
        limit: usize,
    },
    /// The principal holds a control character, which stores use as a separator.
    #[error("a principal cannot hold control characters; one is at byte {at}")]
    ControlCharacter {
        /// Byte offset of the first one.
        at: usize,
    },
    /// The bytes are not UTF-8.
    #[error("a principal must be UTF-8")]
    NotUtf8,
}

impl Principal {
    /// A principal, if `text` is a valid one.
    ///
    /// # Errors
    ///
    /// [`InvalidPrincipal`] naming the first rule `text` breaks.
    pub fn new(text: impl AsRef<str>) -> Result<Self, InvalidPrincipal> {
        let text = text.as_ref();
        check(text)?;
        Ok(Self(Arc::from(text)))
    }

    /// A principal from bytes that must be UTF-8, as a store reads it back.
    ///
    /// # Errors
    ///
    /// [`InvalidPrincipal::NotUtf8`], or what [`Principal::new`] refuses.
    pub fn from_utf8(bytes: &[u8]) -> Result<Self, InvalidPrincipal> {
        let text = std::str::from_utf8(bytes).map_err(|_| InvalidPrincipal::NotUtf8)?;
        Self::new(text)
    }

    /// The principal as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(text: &str) -> Result<(), InvalidPrincipal> {
    if text.is_empty() {
        return Err(InvalidPrincipal::Empty);
    }
    if text.len() > MAX_PRINCIPAL_LEN {
        return Err(InvalidPrincipal::TooLong {
            len: text.len(),
            limit: MAX_PRINCIPAL_LEN,
        });
    }
    match text.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, _)) => Err(InvalidPrincipal::ControlCharacter { at }),
        None => Ok(()),
    }
}

impl TryFrom<&str> for Principal {
    type Error = InvalidPrincipal;

    fn try_from(text: &str) -> Result<Self, Self::Error> {
        Self::new(text)
    }
}

impl TryFrom<String> for Principal {
    type Error = InvalidPrincipal;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        check(&text)?;
        Ok(Self(Arc::from(text)))
    }
}

impl std::str::FromStr for Principal {
    type Err = InvalidPrincipal;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text)
    }
}

impl AsRef<str> for Principal {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Principal").field(&&*self.0).finish()
    }
}

impl serde::Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_user_ids() {
        for text in [
            "1",
            "alice@example.com",
            "auth0|5f1c",
            "google-oauth2:1093",
            "Zoë Ångström",
            "用户",
        ] {
            assert_eq!(Principal::new(text).unwrap().as_str(), text);
        }
        let longest = "é".repeat(MAX_PRINCIPAL_LEN / 2);
        assert!(Principal::new(&longest).is_ok());
    }

    #[test]
    fn refuses_what_stores_could_misread() {
        assert_eq!(Principal::new(""), Err(InvalidPrincipal::Empty));
        assert_eq!(
            Principal::new("x".repeat(MAX_PRINCIPAL_LEN + 1)),
            Err(InvalidPrincipal::TooLong {
                len: MAX_PRINCIPAL_LEN + 1,
                limit: MAX_PRINCIPAL_LEN
            })
        );
        for (text, at) in [
            ("\0", 0),
            ("a\nb", 1),
            ("ab\t", 2),
            ("a\u{7f}", 1),
            ("é\u{85}", 2),
        ] {
            assert_eq!(
                Principal::new(text),
                Err(InvalidPrincipal::ControlCharacter { at }),
                "{text:?}"
            );
        }
        assert_eq!(
            Principal::from_utf8(b"ab\xc3"),
            Err(InvalidPrincipal::NotUtf8)
        );
    }

    #[test]
    fn deserializing_checks_the_rules() {
        let ok: Principal = serde_json::from_str("\"bob\"").unwrap();
        assert_eq!(ok.as_str(), "bob");
        assert!(serde_json::from_str::<Principal>("\"\"").is_err());
        assert!(serde_json::from_str::<Principal>("\"a\\u0000b\"").is_err());
        let packed = rmp_serde::to_vec(&ok).unwrap();
        assert_eq!(rmp_serde::from_slice::<Principal>(&packed).unwrap(), ok);
    }
}
