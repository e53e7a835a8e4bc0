//! The session cookie.

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use tether_core::cookie::{CookieSettings, cookie_values};
use tether_core::{Id, Timestamp};

use super::{Delivery, Protection};

/// Session cookie settings. Defaults are the safe ones: `sid`, `Secure`, `HttpOnly`,
/// `SameSite=Lax`, `Path=/`, no `Domain`, a browser-session cookie.
#[derive(Clone, Debug)]
pub(crate) struct CookieConfig {
    /// Name and attributes.
    pub(crate) settings: CookieSettings,
    /// Whether the cookie carries `Max-Age` up to the session's deadline.
    pub(crate) persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            settings: CookieSettings::new("sid"),
            persistent: false,
        }
    }
}

impl CookieConfig {
    /// Changes the attributes with one of [`CookieSettings`]' builders.
    pub(crate) fn update(&mut self, change: impl FnOnce(CookieSettings) -> CookieSettings) {
        self.settings = change(self.settings.clone());
    }

    /// The first cookie of ours that opens to a valid id. Several cookies of the same name can
    /// arrive (one planted for a parent domain, say); a bad one does not hide a good one.
    pub(super) fn read(&self, headers: &HeaderMap, protection: &Protection) -> Option<Id> {
        let name = self.settings.wire_name();
        let headers = headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes);
        cookie_values(headers, name)
            .filter_map(|value| std::str::from_utf8(value).ok())
            .find_map(|value| protection.open(name, value))
    }

    pub(super) fn deliver(
        &self,
        headers: &mut HeaderMap,
        protection: &Protection,
        delivery: Delivery,
        now: Timestamp,
    ) {
        let name = self.settings.wire_name();
        let line = match delivery {
            Delivery::Nothing => return,
            Delivery::Renew(..) if !self.persistent => return,
            Delivery::Issue(id, expiry) | Delivery::Renew(id, expiry) => {
                // Rounded up: the deadline was computed a moment ago and is whole seconds.
                let max_age = self.persistent.then(|| {
                    let seconds = expiry.remaining(now).as_millis().div_ceil(1000);
                    std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(u64::MAX))
                });
                self.settings.set_cookie(protection.seal(name, id), max_age)
            }
            Delivery::Revoke => self.settings.removal(),
        };
        match HeaderValue::try_from(line) {
            Ok(value) => {
                headers.append(SET_COOKIE, value);
            }
            Err(_) => tracing::error!(
                cookie = %self.settings.name(),
                "session cookie name, path or domain holds characters not allowed in a header; \
                 no cookie sent"
            ),
        }
    }
}
