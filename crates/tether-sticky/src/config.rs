//! Routing settings.

use std::time::Duration;

use cookie::SameSite;
use http::HeaderName;

use tether_core::cookie::KeyRing;

use crate::affinity::AffinityCookie;

/// What pins a session to a backend. Reads and prints itself as `cookie`, `session-id` or
/// `source` (and, with the `serde` feature, serializes as those words).
///
/// ```
/// use tether_sticky::Pinning;
///
/// assert_eq!("session-id".parse::<Pinning>()?, Pinning::SessionId);
/// assert_eq!(Pinning::Source.to_string(), "source");
/// # Ok::<(), tether_sticky::ParseError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pinning {
    /// L7: a sealed affinity cookie, then the application's session id (if configured), then
    /// power of two choices; the cookie is set when a client is placed.
    #[default]
    Cookie,
    /// L7: the application's session id first (rendezvous order, as `tether-replicated` places
    /// the session, so requests land on a node holding it), then the cookie, then power of two
    /// choices.
    SessionId,
    /// L4 style: the client's address, by consistent hashing with bounded loads. No cookie.
    Source,
}

crate::parse::words!(Pinning, "pinning", {
    Cookie => "cookie",
    SessionId => "session-id",
    Source => "source",
});

/// What happens to a request whose pinned backend is down, ejected or in maintenance. Reads and
/// prints itself as `redistribute`, `strict` or `persist` (and, with the `serde` feature,
/// serializes as those words).
///
/// ```
/// use tether_sticky::Failover;
///
/// assert_eq!("strict".parse::<Failover>()?, Failover::Strict);
/// assert_eq!(Failover::default().to_string(), "redistribute");
/// # Ok::<(), tether_sticky::ParseError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failover {
    /// Send it to the next candidate (its session's next rendezvous holder if it carries a
    /// session id, else the least loaded) and re-pin the client there.
    #[default]
    Redistribute,
    /// Answer 503: the session lives on that backend only.
    Strict,
    /// Try the pinned backend anyway (unless in maintenance); if that fails, redistribute.
    Persist,
}

crate::parse::words!(Failover, "failover policy", {
    Redistribute => "redistribute",
    Strict => "strict",
    Persist => "persist",
});

#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The affinity cookie's name on the wire, prefix included (set by [`Config::finish`]).
    pub(crate) cookie_name: String,
    pub(crate) cookie: AffinityCookie,
    pub(crate) header: Option<HeaderName>,
    pub(crate) session_cookie: Option<String>,
    pub(crate) pinning: Pinning,
    pub(crate) failover: Failover,
    pub(crate) epsilon: f64,
    pub(crate) trusted_hops: usize,
    pub(crate) retries: usize,
    pub(crate) failure_threshold: usize,
    pub(crate) cooldown: Duration,
    pub(crate) slow_start: Duration,
}

impl Config {
    /// The settings as the router uses them, with values derived once.
    pub(crate) fn finish(mut self) -> Self {
        self.cookie_name = self.cookie.settings.wire_name().to_owned();
        self
    }

    pub(crate) fn new() -> Self {
        Self {
            cookie_name: String::new(),
            cookie: AffinityCookie::default(),
            header: None,
            session_cookie: None,
            pinning: Pinning::default(),
            failover: Failover::default(),
            epsilon: 0.25,
            trusted_hops: 0,
            retries: 2,
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
            slow_start: Duration::ZERO,
        }
    }
}

/// Settings of a [`Sticky`](crate::Sticky) router. Defaults: cookie pinning, `Redistribute`,
/// cookie `tether-route` (`Secure`, `HttpOnly`, `SameSite=Lax`, one day), epsilon 0.25, two
/// retries of idempotent bodiless requests, ejection after 3 failures in a row for 10 s.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_sticky::{Failover, KeyRing, Pinning, StickyConfig, cookie::Key};
///
/// let layer = StickyConfig::new(KeyRing::new(Key::generate()))
///     .with_pinning(Pinning::SessionId)
///     .with_session_cookie("sid")
///     .with_failover(Failover::Redistribute)
///     .with_slow_start(Duration::from_secs(30));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct StickyConfig {
    pub(crate) config: Config,
    /// The affinity keys the router starts with ([`StickyHandle::set_keys`](crate::StickyHandle::set_keys)
    /// replaces them while it runs).
    pub(crate) keys: KeyRing,
}

impl StickyConfig {
    /// A router sealing affinity cookies with `keys`.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            config: Config::new(),
            keys,
        }
    }

    /// What pins a client to a backend (default [`Pinning::Cookie`]).
    pub fn with_pinning(mut self, pinning: Pinning) -> Self {
        self.config.pinning = pinning;
        self
    }

    /// The failover policy (default [`Failover::Redistribute`]).
    pub fn with_failover(mut self, failover: Failover) -> Self {
        self.config.failover = failover;
        self
    }

    /// The application's session cookie, whose value (a plain `tether_core::Id`) routes by
    /// rendezvous order. Signed or encrypted session cookies cannot be read here; use the
    /// affinity cookie for those.
    pub fn with_session_cookie(mut self, name: impl Into<String>) -> Self {
        self.config.session_cookie = Some(name.into());
        self
    }

    /// The affinity cookie's name (default `tether-route`).
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config.cookie.update(|c| c.with_name(name));
        self
    }

    /// Whether the affinity cookie is `Secure` (default `true`).
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.config.cookie.update(|c| c.with_secure(secure));
        self
    }

    /// Whether the affinity cookie is `HttpOnly` (default `true`).
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.config.cookie.update(|c| c.with_http_only(http_only));
        self
    }

    /// The affinity cookie's `SameSite` (default `Lax`).
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.config.cookie.update(|c| c.with_same_site(same_site));
        self
    }

    /// Whether the affinity cookie's name carries the `__Host-` prefix (default `false`).
    pub fn with_host_prefix(mut self, host_prefix: bool) -> Self {
        self.config
            .cookie
            .update(|c| c.with_host_prefix(host_prefix));
        self
    }

    /// How long a pin lasts (default one day): the cookie's `Max-Age`, and older pins are
    /// ignored even if a client keeps the cookie. `None`: a browser-session cookie, pins never
    /// go stale.
    pub fn with_cookie_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.config.cookie.max_age = max_age;
        self
    }

    /// Carries the pin in this request/response header instead of a cookie, for API clients.
    pub fn with_affinity_header(mut self, name: HeaderName) -> Self {
        self.config.header = Some(name);
        self
    }

    /// How far above the average load a backend may go in [`Pinning::Source`] (default 0.25).
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.config.epsilon = if epsilon.is_finite() {
            epsilon.max(0.0)
        } else {
            0.25
        };
        self
    }

    /// Reads the client address from `X-Forwarded-For` when `hops` trusted proxies stand in
    /// front of the router, each appending the address it saw: the client is the `hops`-th entry
    /// from the right (the rightmost for one proxy). Entries further left are written by the
    /// client and never used. A request with fewer entries than `hops` did not come through all
    /// of them: the [`ClientAddr`](crate::ClientAddr) extension counts instead. Default 0: only
    /// the extension, never the header.
    pub fn with_trusted_hops(mut self, hops: usize) -> Self {
        self.config.trusted_hops = hops;
        self
    }

    /// Further backends tried when one fails (default 2). Only requests without a body and with
    /// an idempotent method are retried.
    pub fn with_retries(mut self, retries: usize) -> Self {
        self.config.retries = retries;
        self
    }

    /// Passive health: `threshold` failures in a row eject a backend for `cooldown` (defaults 3
    /// and 10 s; threshold 0 never ejects). When every backend not in maintenance is ejected,
    /// ejection is disregarded until one recovers (a "panic mode", as in Envoy): requests are
    /// tried on the ejected backends rather than all answered `503`.
    pub fn with_passive_health(mut self, threshold: usize, cooldown: Duration) -> Self {
        self.config.failure_threshold = threshold;
        self.config.cooldown = cooldown;
        self
    }

    /// A backend that joins gets a share of new sessions that grows from 10% to 100% over
    /// `ramp` (default zero: full share at once).
    pub fn with_slow_start(mut self, ramp: Duration) -> Self {
        self.config.slow_start = ramp;
        self
    }
}
