//! The session layer and its settings.

use std::sync::Arc;
use std::time::Duration;

use cookie::SameSite;
use http::HeaderName;
use tether_core::{Codec, SessionStore};
use tower_layer::Layer;

use crate::config::Config;
use crate::transport::Protection;
use crate::{Activity, KeyRing, SessionIndex, SessionService, WritePolicy};

/// Adds sessions to a tower service: every request gets a [`Session`](crate::Session) in its
/// extensions, saved to `store` before the response is returned.
///
/// The defaults are safe: the id travels in a cookie named `sid` that is `Secure`, `HttpOnly`,
/// `SameSite=Lax`, `Path=/`, host-only and ends with the browser session; a session ends after
/// 24 hours unused or 7 days after it began; its deadline in the store is extended once a quarter
/// of the idle timeout has passed; it holds at most 64 KiB in at most 1,000 keys.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use tether_memory::MemoryStore;
/// use tether_sessions::{KeyRing, SessionLayer, cookie::Key};
///
/// # let secret = [7u8; 64];
/// let sessions = SessionLayer::new(MemoryStore::new())
///     .with_cookie_name("app")
///     .with_host_prefix(true)
///     .with_signed(KeyRing::new(Key::try_from(&secret[..])?))
///     .with_idle_timeout(Duration::from_secs(30 * 60))
///     .with_absolute_lifetime(Some(Duration::from_secs(12 * 3600)));
///
/// let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(sessions);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct SessionLayer {
    store: Arc<dyn SessionStore>,
    config: Arc<Config>,
}

impl SessionLayer {
    /// Sessions kept in `store`, with the default settings.
    ///
    /// With the `metrics` feature, the layer registers its metric handles here, with the
    /// recorder installed at this moment: install the recorder before building the layer.
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Sessions kept in a store that is shared already.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            config: Arc::new(Config::default()),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The cookie's name (default `sid`). It must be an HTTP token: letters, digits and
    /// ``!#$%&'*+-.^_`|~``; with another name no cookie can be sent, which is logged.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config().transport.cookie.update(|c| c.with_name(name));
        self
    }

    /// Whether the cookie is `Secure`, sent over HTTPS only (default `true`). Turn it off only
    /// for plain-HTTP development: browsers refuse a secure cookie set over `http://` except on
    /// `localhost`.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.config()
            .transport
            .cookie
            .update(|c| c.with_secure(secure));
        self
    }

    /// Whether the cookie is `HttpOnly`, out of reach of page scripts (default `true`).
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.config()
            .transport
            .cookie
            .update(|c| c.with_http_only(http_only));
        self
    }

    /// The cookie's `SameSite` attribute (default `Lax`).
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.config()
            .transport
            .cookie
            .update(|c| c.with_same_site(same_site));
        self
    }

    /// The cookie's `Path` (default `/`).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.config().transport.cookie.update(|c| c.with_path(path));
        self
    }

    /// The cookie's `Domain` (default none: only the host that set it receives it).
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.config()
            .transport
            .cookie
            .update(|c| c.with_domain(domain));
        self
    }

    /// Whether the cookie is `Partitioned` (CHIPS), kept per top-level site when the app is
    /// embedded in other sites (default `false`). Implies `Secure`.
    pub fn with_partitioned(mut self, partitioned: bool) -> Self {
        self.config()
            .transport
            .cookie
            .update(|c| c.with_partitioned(partitioned));
        self
    }

    /// Whether the cookie name carries the `__Host-` prefix (default `false`). Browsers then
    /// accept the cookie only if it is `Secure`, for `Path=/` and without `Domain`, so no
    /// sibling subdomain can plant or overwrite it; those attributes are set accordingly,
    /// overriding [`with_secure`](Self::with_secure), [`with_path`](Self::with_path) and
    /// [`with_domain`](Self::with_domain).
    pub fn with_host_prefix(mut self, host_prefix: bool) -> Self {
        self.config()
            .transport
            .cookie
            .update(|c| c.with_host_prefix(host_prefix));
        self
    }

    /// Whether the cookie outlives the browser session (default `false`). A persistent cookie
    /// carries `Max-Age` up to the session's deadline and is re-sent whenever the deadline is
    /// extended.
    pub fn with_persistent_cookie(mut self, persistent: bool) -> Self {
        self.config().transport.cookie.persistent = persistent;
        self
    }

    /// Signs the id with HMAC-SHA256 (the newest key of `keys` signs, all verify). An id needs
    /// no secrecy beyond its 128 random bits, but signing rejects forged values before they cost
    /// a store lookup and lets a key rotation end every session at once.
    pub fn with_signed(mut self, keys: KeyRing) -> Self {
        self.config().protection = Protection::Signed(keys);
        self
    }

    /// Encrypts the id with AES-256-GCM (the newest key of `keys` encrypts, all decrypt), so the
    /// cookie reveals nothing, not even the id the store uses.
    pub fn with_private(mut self, keys: KeyRing) -> Self {
        self.config().protection = Protection::Private(keys);
        self
    }

    /// Carries the id in the header `name` (such as `x-session-id`) instead of a cookie, for
    /// API clients: requests send it, and responses carry it when it is new. A response
    /// carries it empty when the session ended. This is how gRPC services keep sessions: see
    /// [gRPC (tonic)](crate#grpc-tonic).
    pub fn with_header(mut self, name: HeaderName) -> Self {
        self.config().transport.header = Some(name);
        self
    }

    /// How long a session may stay unused before it ends (default 24 hours).
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.config().idle_timeout = idle_timeout;
        self
    }

    /// How long a session may live at most, however active (default 7 days); `None` for no
    /// limit. Whichever of this and the idle timeout comes first ends the session.
    pub fn with_absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.config().absolute_lifetime = lifetime;
        self
    }

    /// The fraction of the idle timeout that must pass before a request extends the session's
    /// deadline in the store (default 0.25, clamped to `0.0..=1.0`): a request that changed
    /// nothing then writes a renewal (`touch`, or the read renews), and a request that changed
    /// keys moves the deadline with its `apply` (before that, its `apply` keeps the stored
    /// deadline). `0.0` renews on every request; higher values write less, at the price of
    /// sessions ending up to that fraction of the idle timeout early.
    pub fn with_touch_threshold(mut self, threshold: f64) -> Self {
        self.config().touch_threshold = if threshold.is_nan() {
            crate::config::DEFAULT_TOUCH_THRESHOLD
        } else {
            threshold.clamp(0.0, 1.0)
        };
        self
    }

    /// The largest a session may grow, in bytes of key names and encoded values plus
    /// [`KEY_OVERHEAD`](crate::KEY_OVERHEAD) per key (default 64 KiB). An insert past it fails
    /// with [`Error::TooLarge`](crate::Error::TooLarge).
    pub fn with_max_size(mut self, max_size: usize) -> Self {
        self.config().max_size = max_size;
        self
    }

    /// The most keys a session may hold (default 1,000). An insert of one more fails with
    /// [`Error::TooManyKeys`](crate::Error::TooManyKeys).
    ///
    /// Both limits count the whole session as the request sees it: as loaded, with the
    /// request's own changes. Concurrent requests that each stay within them can together
    /// pass them; the next request that loads the session then cannot grow it.
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.config().max_keys = max_keys;
        self
    }

    /// How values are encoded (default MessagePack). All servers of an app must agree.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.config().codec = codec;
        self
    }

    /// How plain writes of `key` meet concurrent writes of the same key (default
    /// [`WritePolicy::LastWriterWins`] for every key).
    pub fn with_write_policy(mut self, key: impl Into<String>, policy: WritePolicy) -> Self {
        self.config().write_policies.insert(key.into(), policy);
        self
    }

    /// Whether the session changes of a request whose response is a `5xx`, or made from a
    /// session [`Error`](crate::Error) (such as a `413` for a full session), are saved (default
    /// `false`: the handler failed half-way, so its writes are not committed).
    pub fn with_save_on_server_error(mut self, save: bool) -> Self {
        self.config().save_on_server_error = save;
        self
    }

    /// Reads each request's deadline from the header `name` (no header by default): the Unix
    /// time in milliseconds after which its sender no longer waits for the answer, as written
    /// by [`deadline_header_value`](crate::deadline_header_value).
    ///
    /// A request that arrives after its deadline is answered `503 Service Unavailable` without
    /// running the handler, and one whose deadline passes before its session is saved is
    /// answered `503` with its session changes dropped. So a request that the balancer gave
    /// up on (and reported as failed) does not change the session later, when a server that
    /// was frozen (a long stall, a VM migration) resumes and reads it from its socket. A
    /// missing or malformed header means no deadline.
    ///
    /// The deadline is wall-clock time: the servers' clocks must agree with the sender's to
    /// well within the timeout it stands for (NTP keeps them within milliseconds).
    pub fn with_deadline_header(mut self, name: HeaderName) -> Self {
        self.config().deadline_header = Some(name);
        self
    }

    /// Records with each session when it was last used, and optionally on what device and from
    /// which address, for a "your devices" page (off by default; see [`Activity`] for what is
    /// stored and when). It rides on writes the layer makes anyway: no request writes for it.
    pub fn with_activity(mut self, activity: Activity) -> Self {
        self.config().activity = Some(activity);
        self
    }

    /// The sessions of each principal, to list and revoke them outside a request (an admin
    /// task, say). In a handler, [`Session::index`](crate::Session::index) is the same.
    pub fn index(&self) -> SessionIndex {
        SessionIndex::new(Arc::clone(&self.store))
    }

    /// What happens to the store's sessions (created, cycled, bound, deleted, revoked,
    /// expired), as a stream: for an audit log or a "new sign-in" mail. Each store's docs say
    /// how reliably it delivers them.
    ///
    /// # Errors
    ///
    /// [`Error::Core`](crate::Error::Core) when the store cannot subscribe, or has no events
    /// ([`ErrorKind::Unsupported`](tether_core::ErrorKind::Unsupported)).
    ///
    /// ```
    /// use futures_util::StreamExt as _;
    /// use tether_memory::MemoryStore;
    /// use tether_sessions::SessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tether_sessions::Result<()> {
    /// let sessions = SessionLayer::new(MemoryStore::new());
    /// let mut events = sessions.events().await?;
    /// tokio::spawn(async move {
    ///     while let Some(event) = events.next().await {
    ///         match event {
    ///             Ok(event) => tracing::info!(kind = event.kind.name(), session = %event.handle, "session event"),
    ///             Err(error) => tracing::warn!(%error, "session events"),
    ///         }
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub async fn events(&self) -> crate::Result<tether_core::EventStream> {
        Ok(self.store.events().await?)
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, Arc::clone(&self.store), Arc::clone(&self.config))
    }
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}
