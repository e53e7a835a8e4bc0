//! How a session id travels: in a cookie, or in a header for API clients.

pub(crate) mod cookie;
pub(crate) mod header;

use http::HeaderMap;
use tether_core::cookie::KeyRing;
use tether_core::{Expiry, Id, Timestamp};

pub(crate) use self::cookie::CookieConfig;

/// Longest transported value we look at. A plain id is 22 bytes, a signed one 66, a private one
/// about 70: anything much longer is not ours and is skipped without any work.
pub(crate) const MAX_VALUE_LEN: usize = 256;

/// Where the session id is read from and written to: the cookie, unless a header is set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Transport {
    pub(crate) cookie: CookieConfig,
    pub(crate) header: Option<http::HeaderName>,
}

/// How the id is protected inside the cookie or header value.
#[derive(Clone, Debug)]
pub(crate) enum Protection {
    /// The bare id: 128 random bits are unguessable on their own.
    Plain,
    /// The id with an HMAC-SHA256 tag.
    Signed(KeyRing),
    /// The id encrypted and authenticated with AES-256-GCM.
    Private(KeyRing),
}

/// What the response must tell the client about its session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Nothing changed that the client must learn.
    Nothing,
    /// A new id (new session, or cycled): set it.
    Issue(Id, Expiry),
    /// Same id with a later deadline; only persistent cookies carry the deadline.
    Renew(Id, Expiry),
    /// The session is gone: tell the client to forget its id.
    Revoke,
}

impl Protection {
    /// The transported form of `id`. A private value is bound to the cookie or header `name`, so
    /// it cannot be moved to another one; a signed value's tag covers the id only.
    pub(crate) fn seal(&self, name: &str, id: Id) -> String {
        let id = id.to_string();
        match self {
            Self::Plain => id,
            Self::Signed(keys) => keys.sign(name, &id),
            Self::Private(keys) => keys.seal(name, &id),
        }
    }

    /// The id in a transported value, if the value is one this configuration produced with a key
    /// still in the ring. Anything else is `None`: garbage never becomes an error.
    pub(crate) fn open(&self, name: &str, value: &str) -> Option<Id> {
        if value.len() > MAX_VALUE_LEN {
            return None;
        }
        match self {
            Self::Plain => value.parse().ok(),
            Self::Signed(keys) => keys.verify(name, value)?.parse().ok(),
            Self::Private(keys) => keys.open(name, value)?.parse().ok(),
        }
    }
}

impl Transport {
    /// The session id the request carries, if it carries a valid one.
    pub(crate) fn read(&self, headers: &HeaderMap, protection: &Protection) -> Option<Id> {
        match &self.header {
            Some(name) => header::read(name, headers, protection),
            None => self.cookie.read(headers, protection),
        }
    }

    /// Adds to `headers` what the client must learn about its session id.
    pub(crate) fn deliver(
        &self,
        headers: &mut HeaderMap,
        protection: &Protection,
        delivery: Delivery,
        now: Timestamp,
    ) {
        match &self.header {
            Some(name) => header::deliver(name, headers, protection, delivery),
            None => self.cookie.deliver(headers, protection, delivery, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::cookie::Key;

    fn ring(seed: u8) -> KeyRing {
        KeyRing::new(Key::from(&[seed; 64]))
    }

    #[test]
    fn sealed_values_open_only_with_their_keys() {
        let id = Id::random().unwrap();
        for make in [Protection::Signed, Protection::Private] {
            let sealed = make(ring(1)).seal("sid", id);
            assert_ne!(sealed, id.to_string());
            assert_eq!(make(ring(1)).open("sid", &sealed), Some(id));
            assert_eq!(make(ring(2)).open("sid", &sealed), None, "foreign key");
            let rotated = make(ring(2).with_retired(Key::from(&[1; 64])));
            assert_eq!(
                rotated.open("sid", &sealed),
                Some(id),
                "retired keys still open"
            );
            assert_eq!(
                make(ring(1)).open("sid", &id.to_string()),
                None,
                "unsealed id"
            );
            assert_eq!(make(ring(1)).open("sid", ""), None);
        }
    }

    #[test]
    fn private_values_are_bound_to_their_cookie_name() {
        let id = Id::random().unwrap();
        let sealed = Protection::Private(ring(1)).seal("sid", id);
        assert_eq!(Protection::Private(ring(1)).open("other", &sealed), None);
    }

    #[test]
    fn signed_values_with_a_flipped_bit_are_rejected() {
        let id = Id::random().unwrap();
        let signed = Protection::Signed(ring(1));
        let sealed = signed.seal("sid", id);
        for i in 0..sealed.len() {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != sealed {
                assert_eq!(signed.open("sid", &tampered), None, "position {i}");
            }
        }
    }

    #[test]
    fn plain_accepts_only_ids() {
        let id = Id::random().unwrap();
        assert_eq!(Protection::Plain.seal("sid", id), id.to_string());
        assert_eq!(Protection::Plain.open("sid", &id.to_string()), Some(id));
        assert_eq!(Protection::Plain.open("sid", "x"), None);
        assert_eq!(Protection::Plain.open("sid", &"A".repeat(10_000)), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use tether_core::cookie::Key;

    use super::*;

    fn signed() -> Protection {
        Protection::Signed(KeyRing::new(Key::from(&[5; 64])))
    }

    fn private() -> Protection {
        Protection::Private(KeyRing::new(Key::from(&[5; 64])))
    }

    proptest! {
        /// A value the encoder did not produce with these keys never opens.
        #[test]
        fn arbitrary_values_never_open(value in "\\PC{0,300}") {
            prop_assert_eq!(signed().open("sid", &value), None);
            prop_assert_eq!(private().open("sid", &value), None);
            if let Some(id) = Protection::Plain.open("sid", &value) {
                prop_assert_eq!(id.to_string(), value);
            }
        }

        /// Sealed values with any byte changed never open.
        #[test]
        fn tampered_values_never_open(position in 0usize..200, byte in any::<u8>()) {
            let id = Id::from_bytes([9; 16]);
            for protection in [signed(), private()] {
                let sealed = protection.seal("sid", id);
                let mut bytes = sealed.clone().into_bytes();
                let Some(slot) = bytes.get_mut(position % sealed.len()) else { continue };
                if *slot == byte {
                    continue;
                }
                *slot = byte;
                if let Ok(tampered) = String::from_utf8(bytes) {
                    prop_assert_eq!(protection.open("sid", &tampered), None);
                }
            }
        }

        /// Cookie headers of any bytes never panic and never produce a session for unsealed input.
        #[test]
        fn arbitrary_cookie_headers(header in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_bytes(&header) {
                headers.insert(http::header::COOKIE, value);
            }
            let transport = Transport::default();
            prop_assert_eq!(transport.read(&headers, &signed()), None);
            prop_assert_eq!(transport.read(&headers, &private()), None);
        }
    }
}
