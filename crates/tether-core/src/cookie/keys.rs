//! Keys that seal or sign cookie values, with rotation.

use ::cookie::{Cookie, CookieJar, Key};

/// The keys that protect cookie values: the newest seals (encrypts) or signs, and every key in
/// the ring still opens or verifies.
///
/// To rotate: put a new key in front and keep the old one as retired for as long as its
/// cookies may be out there (a session's idle timeout, a pin's lifetime). Clients keep their
/// cookies working throughout. Then drop the retired key: values made with it no longer open.
///
/// Keys are [`Key`]s: 64 bytes of randomness (HMAC-SHA256 for signing, AES-256-GCM for
/// sealing). Load them from a secret store; [`Key::generate`] is only right for a single
/// process that may invalidate every cookie when it restarts. Every server or proxy replica
/// that reads the cookies needs the same keys.
///
/// # Example
///
/// ```
/// use tether_core::cookie::{Key, KeyRing};
///
/// # let (new_secret, old_secret) = ([1u8; 64], [2u8; 64]);
/// let old = KeyRing::new(Key::try_from(&old_secret[..])?);
/// let sealed = old.seal("sid", "value");
///
/// let ring = KeyRing::new(Key::try_from(&new_secret[..])?)
///     .with_retired(Key::try_from(&old_secret[..])?);
/// assert_eq!(ring.len(), 2);
/// assert_eq!(ring.open("sid", &sealed).as_deref(), Some("value"), "retired keys still open");
/// assert_eq!(ring.open("other", &sealed), None, "bound to its cookie name");
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

    /// Adds an older key that still opens or verifies but no longer seals or signs. Retired
    /// keys are tried in the order they were added.
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

    /// `value` encrypted and authenticated (AES-256-GCM) with the current key, bound to the
    /// cookie `name`: base64 of a nonce, the ciphertext and its tag.
    pub fn seal(&self, name: &str, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.current).add(cookie(name, value));
        value_of(&jar, name)
    }

    /// The value inside `sealed`, if a key of the ring sealed it under `name`. Anything else,
    /// whatever its content or length, is `None`.
    pub fn open(&self, name: &str, sealed: &str) -> Option<String> {
        let jar = CookieJar::new();
        self.all()
            .find_map(|key| jar.private(key).decrypt(cookie(name, sealed)))
            .map(|opened| opened.value().to_owned())
    }

    /// `value` with an HMAC-SHA256 tag of the current key: the base64 tag followed by `value`,
    /// which stays readable. The tag covers the value only (the `cookie` crate's signed jar),
    /// so unlike a sealed value a signed one verifies under any cookie `name`.
    pub fn sign(&self, name: &str, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.current).add(cookie(name, value));
        value_of(&jar, name)
    }

    /// The value inside `signed`, if a key of the ring signed it. Anything else, whatever its
    /// content or length, is `None`.
    pub fn verify(&self, name: &str, signed: &str) -> Option<String> {
        let jar = CookieJar::new();
        self.all()
            .find_map(|key| jar.signed(key).verify(cookie(name, signed)))
            .map(|verified| verified.value().to_owned())
    }

    /// Every key, newest first.
    fn all(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(&self.retired)
    }
}

fn cookie(name: &str, value: &str) -> Cookie<'static> {
    Cookie::new(name.to_owned(), value.to_owned())
}

/// The value the jar holds under `name`: the one just added, sealed or signed.
fn value_of(jar: &CookieJar, name: &str) -> String {
    jar.get(name)
        .map(|c| c.value().to_owned())
        .unwrap_or_default()
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(seed: u8) -> KeyRing {
        KeyRing::new(Key::from(&[seed; 64]))
    }

    type Seal = fn(&KeyRing, &str, &str) -> String;
    type Open = fn(&KeyRing, &str, &str) -> Option<String>;
    const MODES: [(&str, Seal, Open); 2] = [
        ("private", KeyRing::seal, KeyRing::open),
        ("signed", KeyRing::sign, KeyRing::verify),
    ];

    #[test]
    fn values_open_only_with_a_key_of_the_ring() {
        for (mode, seal, open) in MODES {
            let sealed = seal(&ring(1), "sid", "payload|42");
            assert_ne!(sealed, "payload|42", "{mode}");
            assert_eq!(
                open(&ring(1), "sid", &sealed).as_deref(),
                Some("payload|42")
            );
            assert_eq!(open(&ring(2), "sid", &sealed), None, "{mode}: foreign key");
            let rotated = ring(2).with_retired(Key::from(&[3; 64]));
            assert_eq!(
                open(&rotated, "sid", &sealed),
                None,
                "{mode}: key not in ring"
            );
            let rotated = rotated.with_retired(Key::from(&[1; 64]));
            assert_eq!(
                open(&rotated, "sid", &sealed).as_deref(),
                Some("payload|42"),
                "{mode}: retired keys still open"
            );
            let resealed = seal(&rotated, "sid", "payload|42");
            assert_eq!(
                open(&ring(1), "sid", &resealed),
                None,
                "{mode}: the newest seals"
            );
            assert_eq!(
                open(&ring(2), "sid", &resealed).as_deref(),
                Some("payload|42")
            );
        }
    }

    #[test]
    fn sealed_values_are_bound_to_their_name_and_signed_ones_are_not() {
        let sealed = ring(1).seal("sid", "value");
        assert_eq!(ring(1).open("other", &sealed), None);
        // The signed jar's tag covers the value only; this pins that format.
        let signed = ring(1).sign("sid", "value");
        assert_eq!(ring(1).verify("other", &signed).as_deref(), Some("value"));
    }

    #[test]
    fn sealed_values_hide_their_content_and_signed_ones_do_not() {
        assert!(!ring(1).seal("route", "backend-a").contains("backend-a"));
        assert!(ring(1).sign("route", "backend-a").ends_with("backend-a"));
    }

    #[test]
    fn garbage_and_tampered_values_never_open() {
        for (mode, seal, open) in MODES {
            let sealed = seal(&ring(1), "sid", "value");
            let mut junk = vec![
                String::new(),
                "x".to_owned(),
                "value".to_owned(),
                "A".repeat(10_000),
                "\u{1F36A}".repeat(40),
                sealed[..sealed.len() - 2].to_owned(),
                format!("{sealed}A"),
            ];
            for i in 0..sealed.len() {
                let mut bytes = sealed.clone().into_bytes();
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                junk.push(String::from_utf8(bytes).unwrap());
            }
            for value in &junk {
                assert_eq!(open(&ring(1), "sid", value), None, "{mode}: {value:?}");
            }
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let debug = format!("{:?}", ring(1).with_retired(Key::from(&[2; 64])));
        assert_eq!(debug, "KeyRing { keys: 2, .. }");
    }
}

#[cfg(test)]
mod properties {
    use ::cookie::Key;
    use proptest::prelude::*;

    use super::KeyRing;

    proptest! {
        /// A value the ring did not seal or sign never opens, whatever it holds.
        #[test]
        fn arbitrary_values_never_open(value in "\\PC{0,300}") {
            let ring = KeyRing::new(Key::from(&[5; 64]));
            prop_assert_eq!(ring.open("sid", &value), None);
            prop_assert_eq!(ring.verify("sid", &value), None);
        }

        /// Whatever goes in comes out, under the same name only.
        #[test]
        fn values_round_trip(value in "\\PC{0,100}") {
            let ring = KeyRing::new(Key::from(&[5; 64]));
            prop_assert_eq!(ring.open("sid", &ring.seal("sid", &value)), Some(value.clone()));
            prop_assert_eq!(ring.verify("sid", &ring.sign("sid", &value)), Some(value));
        }
    }
}
