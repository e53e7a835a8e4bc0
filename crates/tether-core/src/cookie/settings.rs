//! The attributes of one cookie, and the `Set-Cookie` line that carries it.

use std::time::Duration;

use ::cookie::{Cookie, SameSite};

/// The name prefix that makes browsers insist on `Secure`, `Path=/` and no `Domain`, so no
/// sibling subdomain can plant or overwrite the cookie.
const HOST_PREFIX: &str = "__Host-";

/// The name and attributes of one cookie. Defaults are the safe ones: `Secure`, `HttpOnly`,
/// `SameSite=Lax`, `Path=/`, no `Domain` (host-only), not `Partitioned`, no `__Host-` prefix.
///
/// With the `__Host-` prefix the cookie is always `Secure`, for `Path=/` and without `Domain`,
/// whatever [`with_secure`](Self::with_secure), [`with_path`](Self::with_path) and
/// [`with_domain`](Self::with_domain) say: browsers drop it otherwise. `Partitioned` implies
/// `Secure` for the same reason.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_core::cookie::{CookieSettings, SameSite};
///
/// let settings = CookieSettings::new("sid")
///     .with_same_site(SameSite::Strict)
///     .with_path("/app")
///     .with_host_prefix(true);
/// assert_eq!(settings.wire_name(), "__Host-sid");
/// assert_eq!(
///     settings.set_cookie("v", Some(Duration::from_secs(60))),
///     "__Host-sid=v; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=60",
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSettings {
    /// The name as configured, without prefix.
    name: String,
    /// The name on the wire: `name`, with `__Host-` in front when `host_prefix` is on.
    wire_name: String,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
    partitioned: bool,
    host_prefix: bool,
}

impl CookieSettings {
    /// A cookie called `name`, with the safe defaults.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            wire_name: name.clone(),
            name,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            partitioned: false,
            host_prefix: false,
        }
    }

    /// The cookie's name, without the `__Host-` prefix. It must be an HTTP token (letters,
    /// digits and ``!#$%&'*+-.^_`|~``) for the `Set-Cookie` line to be a valid header.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.update_wire_name();
        self
    }

    /// Whether the cookie is `Secure`, sent over HTTPS only (default `true`).
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Whether the cookie is `HttpOnly`, out of reach of page scripts (default `true`).
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The cookie's `SameSite` attribute (default `Lax`).
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The cookie's `Path` (default `/`).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The cookie's `Domain` (default none: only the host that set it receives it).
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Whether the cookie is `Partitioned` (CHIPS), kept per top-level site (default `false`).
    /// Implies `Secure`.
    pub fn with_partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }

    /// Whether the name on the wire carries the `__Host-` prefix (default `false`).
    pub fn with_host_prefix(mut self, host_prefix: bool) -> Self {
        self.host_prefix = host_prefix;
        self.update_wire_name();
        self
    }

    /// The name as configured, without prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name on the wire, which requests carry and a sealed value is bound to: the name,
    /// with `__Host-` in front when the prefix is on.
    pub fn wire_name(&self) -> &str {
        &self.wire_name
    }

    /// The `Set-Cookie` header value that sets the cookie to `value`; with `max_age` (in whole
    /// seconds, rounded down) a persistent cookie, else one that ends with the browser session.
    ///
    /// The line is only a valid header if the name, path and domain are (visible ASCII, no
    /// `;` in path or domain); the caller turns it into a header value and handles the error.
    pub fn set_cookie(&self, value: impl Into<String>, max_age: Option<Duration>) -> String {
        let mut cookie = self.cookie(value.into());
        if let Some(max_age) = max_age {
            let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            cookie.set_max_age(::cookie::time::Duration::seconds(seconds));
        }
        cookie.to_string()
    }

    /// The `Set-Cookie` header value that tells the browser to forget the cookie: an empty
    /// value, `Max-Age=0` and an `Expires` in the past, with the same name, path and domain.
    pub fn removal(&self) -> String {
        let mut cookie = self.cookie(String::new());
        cookie.make_removal();
        cookie.to_string()
    }

    fn cookie(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.wire_name.clone(), value);
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

    fn update_wire_name(&mut self) {
        self.wire_name = if self.host_prefix {
            format!("{HOST_PREFIX}{}", self.name)
        } else {
            self.name.clone()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(line: &str) -> Vec<&str> {
        line.split("; ").skip(1).collect()
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let line = CookieSettings::new("sid").set_cookie("v", None);
        assert_eq!(line, "sid=v; HttpOnly; SameSite=Lax; Secure; Path=/");
    }

    #[test]
    fn every_attribute_can_be_set() {
        let settings = CookieSettings::new("sid")
            .with_secure(false)
            .with_http_only(false)
            .with_same_site(SameSite::None)
            .with_path("/app")
            .with_domain("example.com");
        assert_eq!(
            attributes(&settings.set_cookie("v", Some(Duration::from_millis(90_900)))),
            [
                "SameSite=None",
                "Path=/app",
                "Domain=example.com",
                "Max-Age=90"
            ],
            "no Secure, no HttpOnly; whole seconds, rounded down"
        );
        let partitioned = settings.with_partitioned(true).set_cookie("v", None);
        assert!(attributes(&partitioned).contains(&"Partitioned"));
        assert!(attributes(&partitioned).contains(&"Secure"), "implied");
    }

    #[test]
    fn the_host_prefix_forces_secure_root_path_and_no_domain() {
        let settings = CookieSettings::new("sid")
            .with_secure(false)
            .with_path("/app")
            .with_domain("example.com")
            .with_host_prefix(true);
        assert_eq!(settings.name(), "sid");
        assert_eq!(settings.wire_name(), "__Host-sid");
        assert_eq!(
            settings.set_cookie("v", None),
            "__Host-sid=v; HttpOnly; SameSite=Lax; Secure; Path=/"
        );
        // The prefix follows a later rename, and goes when turned off.
        let renamed = settings.with_name("app");
        assert_eq!(renamed.wire_name(), "__Host-app");
        let off = renamed.with_host_prefix(false);
        assert_eq!(off.wire_name(), "app");
        assert_eq!(
            attributes(&off.set_cookie("v", None)),
            [
                "HttpOnly",
                "SameSite=Lax",
                "Path=/app",
                "Domain=example.com"
            ]
        );
    }

    #[test]
    fn removal_expires_the_cookie_where_it_was_set() {
        let settings = CookieSettings::new("sid").with_path("/app");
        let removal = settings.removal();
        assert!(removal.starts_with("sid=; "), "{removal}");
        let attributes = attributes(&removal);
        assert!(attributes.contains(&"Max-Age=0"), "{removal}");
        assert!(attributes.contains(&"Path=/app"), "{removal}");
        assert!(
            attributes.iter().any(|a| a.starts_with("Expires=")),
            "{removal}"
        );
    }

    #[test]
    fn huge_max_ages_saturate() {
        let line = CookieSettings::new("sid").set_cookie("v", Some(Duration::MAX));
        assert!(line.contains(&format!("Max-Age={}", i64::MAX)), "{line}");
    }
}
