//! The affinity cookie: which backend a client is pinned to, sealed so it can be neither read
//! nor forged.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use tether_core::cookie::{CookieSettings, KeyRing, cookie_values, without_cookie};

/// Longest affinity cookie value looked at; a sealed one is about 60 bytes plus the name.
const MAX_VALUE_LEN: usize = 512;

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

/// Seals a pin to `backend` issued now; the value is bound to the cookie `name`.
pub(crate) fn seal(keys: &KeyRing, name: &str, backend: &str) -> String {
    keys.seal(name, &format!("{backend}|{}", unix_now()))
}

/// Opens a sealed value; `None` for anything not sealed by `keys` under `name`, or older than
/// `max_age`.
pub(crate) fn open(
    keys: &KeyRing,
    name: &str,
    value: &str,
    max_age: Option<Duration>,
) -> Option<Pin> {
    if value.is_empty() || value.len() > MAX_VALUE_LEN {
        return None;
    }
    let opened = keys.open(name, value)?;
    let (backend, issued) = opened.rsplit_once('|')?;
    let issued: u64 = issued.parse().ok()?;
    if !young_enough(issued, max_age) {
        return None;
    }
    Some(Pin {
        backend: backend.to_owned(),
        issued,
    })
}

/// The last pin opened on one client connection, remembered so that the requests after the
/// first on a keep-alive connection do not decrypt the same cookie again (it is most of what
/// routing a pinned request costs). A server puts a clone of one per connection into each
/// request's extensions, as `tether-proxy` does; without it every pin is opened.
///
/// A remembered pin is used only for the very same cookie value, under the same keys (a key
/// rotation forgets it), and its age is checked again each time.
///
/// ```
/// use http::Request;
/// use tether_sticky::PinMemo;
///
/// // One per client connection, made when it is accepted...
/// let memo = PinMemo::new();
/// // ...and a clone into each request read from it, before the request goes to the router.
/// let mut request = Request::new(());
/// request.extensions_mut().insert(memo.clone());
/// ```
#[derive(Clone, Debug, Default)]
pub struct PinMemo(Arc<Mutex<Option<Remembered>>>);

#[derive(Debug)]
struct Remembered {
    value: Box<str>,
    keys: u64,
    pin: Pin,
}

impl PinMemo {
    /// A memo for one new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pin of `value` opened under the keys of generation `keys`, if it is the one
    /// remembered and still young enough.
    pub(crate) fn recall(&self, value: &str, keys: u64, max_age: Option<Duration>) -> Option<Pin> {
        let remembered = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let remembered = remembered
            .as_ref()
            .filter(|r| r.keys == keys && *r.value == *value)?;
        young_enough(remembered.pin.issued, max_age).then(|| remembered.pin.clone())
    }

    /// Remembers that `value` opened to `pin` under the keys of generation `keys`.
    pub(crate) fn remember(&self, value: &str, keys: u64, pin: &Pin) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Remembered {
            value: value.into(),
            keys,
            pin: pin.clone(),
        });
    }
}

fn young_enough(issued: u64, max_age: Option<Duration>) -> bool {
    max_age.is_none_or(|max_age| unix_now().saturating_sub(issued) <= max_age.as_secs())
}

/// Settings of the affinity cookie.
#[derive(Clone, Debug)]
pub(crate) struct AffinityCookie {
    /// Name and attributes; always `Path=/` and host-only.
    pub(crate) settings: CookieSettings,
    /// The cookie's `Max-Age`, and the age past which a pin is ignored.
    pub(crate) max_age: Option<Duration>,
}

impl Default for AffinityCookie {
    fn default() -> Self {
        Self {
            settings: CookieSettings::new("tether-route"),
            max_age: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

impl AffinityCookie {
    /// Changes the attributes with one of [`CookieSettings`]' builders.
    pub(crate) fn update(&mut self, change: impl FnOnce(CookieSettings) -> CookieSettings) {
        self.settings = change(self.settings.clone());
    }

    /// The `Set-Cookie` value for a sealed pin.
    pub(crate) fn set_cookie(&self, sealed: String) -> String {
        self.settings.set_cookie(sealed, self.max_age)
    }
}

/// The raw values of the request's `Cookie` headers, in order.
pub(crate) fn cookie_headers(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes)
}

/// The values of the request cookies called `name`, in order, as text; a value that is not
/// UTF-8 is `None` (it cannot be ours), and hides none of the others.
pub(crate) fn request_cookie<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = Option<&'a str>> {
    cookie_values(cookie_headers(headers), name).map(|value| std::str::from_utf8(value).ok())
}

/// Removes the cookie `name` from the request's `Cookie` headers, so the backend never sees it.
/// Every other pair, and every header without it, reaches the backend byte for byte.
pub(crate) fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let mut changed = false;
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| match without_cookie(value.as_bytes(), name) {
            Cow::Borrowed(_) => Some(value.clone()),
            Cow::Owned(rest) => {
                changed = true;
                // The rest is bytes of a valid header value joined by `;`: always valid.
                let mut rest = HeaderValue::from_bytes(&rest)
                    .ok()
                    .filter(|rest| !rest.is_empty())?;
                rest.set_sensitive(value.is_sensitive());
                Some(rest)
            }
        })
        .collect();
    if !changed {
        return;
    }
    headers.remove(COOKIE);
    for value in kept {
        headers.append(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use tether_core::cookie::Key;

    use super::*;

    fn keys(seed: u8) -> KeyRing {
        KeyRing::new(Key::from(&[seed; 64]))
    }

    #[test]
    fn sealed_pins_open_only_with_their_keys_and_name() {
        let sealed = seal(&keys(1), "route", "backend-a");
        assert!(
            !sealed.contains("backend-a"),
            "the backend name is not visible"
        );
        assert_eq!(
            open(&keys(1), "route", &sealed, None).unwrap().backend,
            "backend-a"
        );
        assert!(open(&keys(2), "route", &sealed, None).is_none());
        assert!(open(&keys(1), "other", &sealed, None).is_none());
        let rotated = keys(2).with_retired(Key::from(&[1; 64]));
        assert!(open(&rotated, "route", &sealed, None).is_some());
        for junk in [
            "",
            "x",
            "backend-a|1",
            &"A".repeat(10_000),
            &sealed[..sealed.len() - 2],
        ] {
            assert!(open(&keys(1), "route", junk, None).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn stale_pins_do_not_open() {
        let stale = keys(1).seal("route", &format!("backend-a|{}", unix_now() - 120));
        let pin = open(&keys(1), "route", &stale, None).unwrap();
        assert_eq!(pin.backend, "backend-a");
        assert!(open(&keys(1), "route", &stale, Some(Duration::from_secs(600))).is_some());
        assert!(open(&keys(1), "route", &stale, Some(Duration::from_secs(60))).is_none());
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

    #[test]
    fn stripping_keeps_sensitive_marks() {
        let mut headers = HeaderMap::new();
        let mut value = HeaderValue::from_static("tether-route=xyz; a=1");
        value.set_sensitive(true);
        headers.append(COOKIE, value);
        strip_cookie(&mut headers, "tether-route");
        let left = &headers[COOKIE];
        assert_eq!(left, "a=1");
        assert!(left.is_sensitive());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use tether_core::cookie::Key;

    use super::*;

    proptest! {
        /// No value an attacker can write opens without the key: not one naming a backend in
        /// clear, not a base64 blob, nothing.
        #[test]
        fn crafted_pins_never_open(value in "\\PC{0,200}", blob in proptest::collection::vec(any::<u8>(), 0..120)) {
            let keys = KeyRing::new(Key::from(&[4; 64]));
            prop_assert!(open(&keys, "tether-route", &value, None).is_none());
            let crafted = [
                format!("target|{}", 1_700_000_000u64),
                format!("{value}|0"),
                base64_like(&blob),
            ];
            for candidate in crafted {
                prop_assert!(open(&keys, "tether-route", &candidate, None).is_none());
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
