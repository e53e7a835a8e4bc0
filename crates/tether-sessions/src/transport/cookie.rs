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
        let name = self.wire_name.as_str();
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|cookie| cookie.name() == name)
            .find_map(|cookie| protection.open(name, cookie.value()))
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
