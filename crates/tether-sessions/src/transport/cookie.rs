//! The session cookie.

use ::cookie::{Cookie, SameSite};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use tether_core::{Id, Timestamp};

use super::{Delivery, Protection};

/// Prefix that makes browsers insist on `Secure`, `Path=/` and no `Domain`.
const HOST_PREFIX: &str = "__Host-";

/// Session cookie settings. Defaults are the safe ones: `Secure`, `HttpOnly`, `SameSite=Lax`,
/// `Path=/`, no `Domain`, a browser-session cookie.
#[derive(Clone, Debug)]
pub(crate) struct CookieConfig {
    /// The name as configured, without prefix.
    name: String,
    /// The name on the wire: `name`, with `__Host-` in front when `host_prefix` is on.
    wire_name: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) partitioned: bool,
    host_prefix: bool,
    pub(crate) persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "sid".to_owned(),
            wire_name: "sid".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            partitioned: false,
            host_prefix: false,
            persistent: false,
        }
    }
}

impl CookieConfig {
    pub(crate) fn set_name(&mut self, name: String) {
        self.name = name;
        self.update_wire_name();
    }

    pub(crate) fn set_host_prefix(&mut self, on: bool) {
        self.host_prefix = on;
        self.update_wire_name();
    }

    fn update_wire_name(&mut self) {
        self.wire_name = if self.host_prefix {
            format!("{HOST_PREFIX}{}", self.name)
        } else {
            self.name.clone()
        };
    }

    /// The first cookie of ours that opens to a valid id. Several cookies of the same name can
    /// arrive (one planted for a parent domain, say); a bad one does not hide a good one.
    pub(super) fn read(&self, headers: &HeaderMap, protection: &Protection) -> Option<Id> {
        let name = self.wire_name.as_bytes();
        headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|header| request_cookies(header.as_bytes()))
            .filter(|(cookie_name, _)| *cookie_name == name)
            .filter_map(|(_, value)| std::str::from_utf8(value).ok())
            .find_map(|value| protection.open(&self.wire_name, value))
    }

    pub(super) fn deliver(
        &self,
        headers: &mut HeaderMap,
        protection: &Protection,
        delivery: Delivery,
        now: Timestamp,
    ) {
        let name = self.wire_name.clone();
        let cookie = match delivery {
            Delivery::Nothing => return,
            Delivery::Renew(..) if !self.persistent => return,
            Delivery::Issue(id, expiry) | Delivery::Renew(id, expiry) => {
                let mut cookie = self.base(name.clone(), protection.seal(&name, id));
                if self.persistent {
                    // Rounded up: the deadline was computed a moment ago and is whole seconds.
                    let millis = expiry.remaining(now).as_millis().div_ceil(1000);
                    let seconds = i64::try_from(millis).unwrap_or(i64::MAX);
                    cookie.set_max_age(::cookie::time::Duration::seconds(seconds));
                }
                cookie
            }
            Delivery::Revoke => {
                let mut cookie = self.base(name, String::new());
                cookie.make_removal();
                cookie
            }
        };
        match HeaderValue::try_from(cookie.to_string()) {
            Ok(value) => {
                headers.append(SET_COOKIE, value);
            }
            Err(_) => tracing::error!(
                cookie = %self.name,
                "session cookie name, path or domain holds characters not allowed in a header; \
                 no cookie sent"
            ),
        }
    }

    fn base(&self, name: String, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(name, value);
        cookie.set_http_only(self.http_only);
        cookie.set_same_site(self.same_site);
        if self.partitioned {
            cookie.set_partitioned(true);
        }
        if self.host_prefix {
            // Browsers drop a __Host- cookie unless it is Secure, for "/" and host-only.
            cookie.set_secure(true);
            cookie.set_path("/");
        } else {
            cookie.set_secure(self.secure || self.partitioned);
            cookie.set_path(self.path.clone());
            if let Some(domain) = &self.domain {
                cookie.set_domain(domain.clone());
            }
        }
        cookie
    }
}

/// The `name=value` pairs of a request `Cookie` header (RFC 6265 section 4.2: pairs separated
/// by `;` and optional spaces, no attributes).
///
/// `cookie::Cookie::split_parse` does this too, but parses every pair as a full `Set-Cookie`
/// line with attributes: measured with callgrind at about 1,900 instructions per request for a
/// one-cookie header, the largest single cost of a session read. Request cookies have no
/// attributes, so a split is all that is needed. Values are compared as bytes and only ours is
/// decoded, so a non-UTF-8 neighbour costs nothing.
fn request_cookies(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = pair.split_at(eq);
        Some((name.trim_ascii(), value.get(1..)?.trim_ascii()))
    })
}

#[cfg(test)]
mod tests {
    use super::request_cookies;

    #[test]
    fn splits_request_cookie_headers() {
        let pairs: Vec<_> = request_cookies(b"a=1; b=2;c=3 ;  d = 4 ; flag; =x; e=; f=a=b")
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let expected = [
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("d", "4"),
            ("", "x"),
            ("e", ""),
            ("f", "a=b"),
        ];
        assert_eq!(pairs.len(), expected.len(), "{pairs:?}");
        for ((n, v), (en, ev)) in pairs.iter().zip(expected) {
            assert_eq!((n.as_str(), v.as_str()), (en, ev));
        }
        assert_eq!(request_cookies(b"").count(), 0);
        assert_eq!(request_cookies(b";;;").count(), 0);
    }
}
