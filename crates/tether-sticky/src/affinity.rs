//! The affinity cookie: which backend a client is pinned to, sealed so it can be neither read
//! nor forged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::HeaderMap;
use http::header::COOKIE;

/// Longest affinity cookie value looked at; a sealed one is about 60 bytes plus the name.
const MAX_VALUE_LEN: usize = 512;

/// The keys that seal affinity cookies (AES-256-GCM): the current one seals, retired ones still
/// open, so keys rotate without re-pinning everybody. Every proxy replica needs the same keys.
///
/// # Example
///
/// ```
/// use tether_sticky::{AffinityKeys, cookie::Key};
///
/// let keys = AffinityKeys::new(Key::generate()).with_retired(Key::generate());
/// assert_eq!(keys.len(), 2);
/// ```
#[derive(Clone)]
pub struct AffinityKeys {
    current: Key,
    retired: Vec<Key>,
}

impl AffinityKeys {
    /// Keys whose only member is `current`.
    pub fn new(current: Key) -> Self {
        Self {
            current,
            retired: Vec::new(),
        }
    }

    /// Adds an older key that still opens cookies but no longer seals them.
    #[must_use]
    pub fn with_retired(mut self, key: Key) -> Self {
        self.retired.push(key);
        self
    }

    /// The number of keys, the current one included.
    pub fn len(&self) -> usize {
        1 + self.retired.len()
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn all(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(&self.retired)
    }
}

impl std::fmt::Debug for AffinityKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AffinityKeys")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

/// A pin read from a cookie: the backend and when the pin was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pin {
    pub(crate) backend: String,
    pub(crate) issued: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AffinityKeys {
    /// Seals a pin to `backend` issued now; the value is bound to the cookie `name`.
    pub(crate) fn seal(&self, name: &str, backend: &str) -> String {
        let payload = format!("{backend}|{}", unix_now());
        let mut jar = CookieJar::new();
        jar.private_mut(&self.current)
            .add(Cookie::new(name.to_owned(), payload));
        jar.get(name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// Opens a sealed value; `None` for anything not sealed by these keys under `name`, or older
    /// than `max_age`.
    pub(crate) fn open(&self, name: &str, value: &str, max_age: Option<Duration>) -> Option<Pin> {
        if value.is_empty() || value.len() > MAX_VALUE_LEN {
            return None;
        }
        let jar = CookieJar::new();
        let sealed = || Cookie::new(name.to_owned(), value.to_owned());
        let opened = self
            .all()
            .find_map(|key| jar.private(key).decrypt(sealed()))?;
        let (backend, issued) = opened.value().rsplit_once('|')?;
        let issued: u64 = issued.parse().ok()?;
        if let Some(max_age) = max_age
            && unix_now().saturating_sub(issued) > max_age.as_secs()
        {
            return None;
        }
        Some(Pin {
            backend: backend.to_owned(),
            issued,
        })
    }
}

/// Settings of the affinity cookie.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) host_prefix: bool,
    pub(crate) max_age: Option<Duration>,
}

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            name: "tether-route".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            host_prefix: false,
            max_age: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

impl CookieSettings {
    pub(crate) fn wire_name(&self) -> String {
        if self.host_prefix {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// The `Set-Cookie` value for a sealed pin.
    pub(crate) fn set_cookie(&self, sealed: String) -> String {
        let mut cookie = Cookie::new(self.wire_name(), sealed);
        cookie.set_http_only(self.http_only);
        cookie.set_same_site(self.same_site);
        cookie.set_secure(self.secure || self.host_prefix);
        cookie.set_path("/");
        if let Some(max_age) = self.max_age {
            let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            cookie.set_max_age(cookie::time::Duration::seconds(seconds));
        }
        cookie.to_string()
    }
}

/// Request cookies as `name=value` pairs (RFC 6265 request syntax: no attributes).
pub(crate) fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

/// Removes the cookie `name` from the request's `Cookie` headers, so the backend never sees it.
pub(crate) fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|pair| pair.split_once('=').map_or(pair.trim(), |(n, _)| n.trim()) != name)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        if let Ok(value) = http::HeaderValue::try_from(value) {
            headers.append(COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seed: u8) -> AffinityKeys {
        AffinityKeys::new(Key::from(&[seed; 64]))
    }

    #[test]
    fn sealed_pins_open_only_with_their_keys_and_name() {
        let sealed = keys(1).seal("route", "backend-a");
        assert!(
            !sealed.contains("backend-a"),
            "the backend name is not visible"
        );
        assert_eq!(
            keys(1).open("route", &sealed, None).unwrap().backend,
            "backend-a"
        );
        assert!(keys(2).open("route", &sealed, None).is_none());
        assert!(keys(1).open("other", &sealed, None).is_none());
        let rotated = keys(2).with_retired(Key::from(&[1; 64]));
        assert!(rotated.open("route", &sealed, None).is_some());
        for junk in [
            "",
            "x",
            "backend-a|1",
            &"A".repeat(10_000),
            &sealed[..sealed.len() - 2],
        ] {
            assert!(keys(1).open("route", junk, None).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn strips_only_the_affinity_cookie() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; tether-route=xyz; b=2".parse().unwrap());
        headers.append(COOKIE, "tether-route=again".parse().unwrap());
        strip_cookie(&mut headers, "tether-route");
        let left: Vec<_> = headers.get_all(COOKIE).iter().collect();
        assert_eq!(left, ["a=1; b=2"]);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// No value an attacker can write opens without the key: not one naming a backend in
        /// clear, not a base64 blob, nothing.
        #[test]
        fn crafted_pins_never_open(value in "\\PC{0,200}", blob in proptest::collection::vec(any::<u8>(), 0..120)) {
            let keys = AffinityKeys::new(Key::from(&[4; 64]));
            prop_assert!(keys.open("tether-route", &value, None).is_none());
            let crafted = [
                format!("target|{}", 1_700_000_000u64),
                format!("{value}|0"),
                base64_like(&blob),
            ];
            for candidate in crafted {
                prop_assert!(keys.open("tether-route", &candidate, None).is_none());
            }
        }
    }

    /// Standard base64 of arbitrary bytes, as a forger would send.
    fn base64_like(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b % 64)]))
            .collect()
    }
}
