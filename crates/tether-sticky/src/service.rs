//! The router service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use http::header::SET_COOKIE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use tower::ServiceExt as _;
use tower::discover::{Change, Discover};
use tower_service::Service;

use crate::affinity::{self, PinMemo, request_cookie, strip_cookie};
use crate::backend::{BackendCounters, BackendState, Health};
use crate::cache_control::keep_private;
use crate::check::Checked;
use crate::config::Config;
use crate::fault::is_client_fault;
use crate::roster::{Clues, Roster, Route};
use crate::{StickyConfig, Weight};
use tether_core::cookie::KeyRing;

use tether_core::{BoxError, error_chain};

/// The client's address, put into request extensions by the server (the `tether-proxy` binary
/// does). Source-address routing reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// A tower service that routes each request to one of a set of backends with session affinity.
///
/// Backends come from a [`Discover`] whose keys are stable backend names (they go into affinity
/// cookies and into rendezvous hashing, so they must be the same on every proxy replica and, for
/// failover onto replicas, equal to the `tether-replicated` node names). Each backend service
/// must be `Clone`: every request drives its own clone to readiness, so a slow or dead backend
/// never holds up requests for the others.
///
/// Answers `503` when no backend may take a request, `502` when the chosen backends failed, and
/// `400` when the request's own body broke on the way (a [`RequestBodyError`](crate::RequestBodyError)
/// in the backend's error: counted against no backend); never an error.
///
/// Cloning is cheap and every clone routes with the same state (one per connection, as a server
/// wants); whichever clone is polled applies the discovery changes for all.
pub struct Sticky<D: Discover> {
    discover: Arc<Mutex<D>>,
    pub(crate) services: Arc<RwLock<HashMap<String, D::Service>>>,
    pub(crate) shared: Arc<Shared>,
}

impl<D: Discover> Clone for Sticky<D> {
    fn clone(&self) -> Self {
        Self {
            discover: Arc::clone(&self.discover),
            services: Arc::clone(&self.services),
            shared: Arc::clone(&self.shared),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The affinity keys, replaced whole by [`StickyHandle::set_keys`].
    keys: RwLock<KeyRing>,
    /// How many times the keys were replaced: a [`PinMemo`] entry of other keys is stale.
    keys_generation: AtomicU64,
    pub(crate) roster: Roster,
    pub(crate) invalid_pins: AtomicU64,
}

impl<D: Discover> Sticky<D> {
    /// A router over `discover` with `layer`'s settings.
    pub fn new(layer: &StickyConfig, discover: D) -> Self {
        Self {
            discover: Arc::new(Mutex::new(discover)),
            services: Arc::default(),
            shared: Arc::new(Shared {
                config: layer.config.clone().finish(),
                keys: RwLock::new(layer.keys.clone()),
                keys_generation: AtomicU64::new(0),
                roster: Roster::default(),
                invalid_pins: AtomicU64::new(0),
            }),
        }
    }

    /// A handle to read counters and change backend states while the router runs.
    pub fn handle(&self) -> StickyHandle {
        StickyHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<D: Discover> std::fmt::Debug for Sticky<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sticky")
            .field("backends", &self.shared.roster.all().len())
            .finish_non_exhaustive()
    }
}

/// Reads counters and sets backend states of a running [`Sticky`] router (what the admin
/// listener of `tether-proxy` calls).
#[derive(Clone)]
pub struct StickyHandle {
    shared: Arc<Shared>,
}

/// One backend as a [`StickyHandle`] reports it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BackendReport {
    /// Its name.
    pub name: String,
    /// Its administrative state, as an operator set it.
    pub state: BackendState,
    /// Its weight, as an operator set it.
    pub weight: Weight,
    /// Its health, as passive health checks see it: healthy (with its failures in a row) or
    /// ejected until when.
    pub health: Health,
    /// What active health checks found ([`HealthCheck`](crate::HealthCheck)): up or down, with
    /// the checks in a row; `None` when it was never checked.
    pub checked: Option<Checked>,
    /// What the latest active check found (`status 200`, `timed out after 1s`, the connection
    /// error); `None` when it was never checked.
    pub last_check: Option<String>,
    /// Its counters.
    pub counters: BackendCounters,
}

impl StickyHandle {
    /// Sets a backend's state; false if there is no backend of that name.
    pub fn set_state(&self, backend: &str, state: BackendState) -> bool {
        match self.shared.roster.get(backend) {
            Some(b) => {
                tracing::info!(backend, %state, "backend state changed");
                b.set_state(state);
                true
            }
            None => false,
        }
    }

    /// Sets a backend's weight: its share of new sessions from now on (the sessions pinned to
    /// it stay); false if there is no backend of that name.
    pub fn set_weight(&self, backend: &str, weight: Weight) -> bool {
        match self.shared.roster.get(backend) {
            Some(b) => {
                if b.configured_weight() != weight {
                    tracing::info!(backend, %weight, "backend weight changed");
                }
                b.set_weight(weight);
                true
            }
            None => false,
        }
    }

    /// Every backend with its state and counters.
    pub fn backends(&self) -> Vec<BackendReport> {
        self.shared
            .roster
            .all()
            .iter()
            .map(|b| {
                let (checked, last_check) = b.checked().unzip();
                BackendReport {
                    name: b.name.clone(),
                    state: b.state(),
                    weight: b.configured_weight(),
                    health: b.health(),
                    checked,
                    last_check,
                    counters: b.counters(),
                }
            })
            .collect()
    }

    /// Replaces the affinity keys: pins are sealed with the new ring's current key from now on,
    /// and opened with any of its keys. Keep the previous current key among the retired ones
    /// (`KeyRing::with_retired`) so clients pinned before the rotation stay pinned.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tether_sticky::{KeyRing, Sticky, StickyConfig, backends, cookie::Key};
    /// use tower::service_fn;
    ///
    /// let previous = Key::generate();
    /// let backend = service_fn(|_: Request<String>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let layer = StickyConfig::new(KeyRing::new(previous.clone()));
    /// let router = Sticky::new(&layer, backends([("a", backend)]));
    /// // Seal with a new key from now on; pins sealed with the previous one still open.
    /// router
    ///     .handle()
    ///     .set_keys(KeyRing::new(Key::generate()).with_retired(previous));
    /// ```
    pub fn set_keys(&self, keys: KeyRing) {
        *self.shared.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        self.shared.keys_generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!("affinity keys replaced");
    }

    /// Affinity cookies that were present but not valid (forged, corrupt, stale, other key).
    pub fn invalid_pins(&self) -> u64 {
        self.shared.invalid_pins.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for StickyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyHandle").finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Sticky`].
    pub struct ResponseFuture<RB> {
        inner: Pin<Box<dyn Future<Output = Response<RB>> + Send>>,
    }
}

impl<RB> Future for ResponseFuture<RB> {
    type Output = Result<Response<RB>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.as_mut().poll(cx).map(Ok)
    }
}

impl<RB> std::fmt::Debug for ResponseFuture<RB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<D, S, B, RB> Service<Request<B>> for Sticky<D>
where
    D: Discover<Service = S> + Unpin,
    D::Key: AsRef<str>,
    D::Error: std::fmt::Display,
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Default + Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = ResponseFuture<RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Wait for a clone that is applying changes right now: going ahead would route on the
        // roster as it stands half-way, empty before the first backends are in, which turns
        // requests into 503s or piles them onto the first backend added. Polling a discovery
        // never blocks, so the wait is short.
        let mut discover = self
            .discover
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            match Pin::new(&mut *discover).poll_discover(cx) {
                Poll::Ready(Some(Ok(Change::Insert(key, service)))) => {
                    let name = key.as_ref().to_owned();
                    self.shared.roster.insert(&name);
                    self.services
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, service);
                }
                Poll::Ready(Some(Ok(Change::Remove(key)))) => {
                    self.shared.roster.remove(key.as_ref());
                    self.services
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(key.as_ref());
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "backend discovery failed");
                    break;
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let services = Arc::clone(&self.services);
        ResponseFuture {
            inner: Box::pin(route_and_send(shared, services, request)),
        }
    }
}

/// Whether a failed request may be sent again to another backend: nothing was consumed that
/// cannot be rebuilt, and the method is idempotent.
fn retryable<B: Body>(method: &Method, body: &B) -> bool {
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    idempotent && body.size_hint().exact() == Some(0)
}

fn status<RB: Default>(status: StatusCode) -> Response<RB> {
    let mut response = Response::new(RB::default());
    *response.status_mut() = status;
    response
}

impl Shared {
    /// What the request tells about where it belongs.
    fn clues<B>(&self, request: &Request<B>) -> Clues {
        let config = &self.config;
        let cookie_name = config.cookie_name.as_str();
        // Every candidate value, in order; one that is not UTF-8 is `None`, a bad pin.
        let sealed: Vec<Option<&str>> = match &config.header {
            Some(header) => request
                .headers()
                .get(header)
                .map(|v| v.to_str().ok())
                .into_iter()
                .collect(),
            None => request_cookie(request.headers(), cookie_name).collect(),
        };
        let had_pin = !sealed.is_empty();
        // The first that opens: a stale or planted cookie of the same name does not hide ours.
        let memo = request.extensions().get::<PinMemo>();
        let max_age = config.cookie.max_age;
        let pinned = sealed.into_iter().flatten().find_map(|value| {
            let generation = self.keys_generation.load(Ordering::Acquire);
            if let Some(pin) = memo.and_then(|memo| memo.recall(value, generation, max_age)) {
                return Some(pin);
            }
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            let pin = affinity::open(&keys, cookie_name, value, max_age)?;
            if let Some(memo) = memo {
                memo.remember(value, generation, &pin);
            }
            Some(pin)
        });
        if had_pin && pinned.is_none() {
            self.invalid_pins.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::invalid_pin();
            tracing::debug!("invalid affinity pin ignored");
        }
        let pinned = pinned.map(|p| p.backend);
        let session = config.session_cookie.as_deref().and_then(|name| {
            request_cookie(request.headers(), name).find_map(|value| value?.parse().ok())
        });
        let client = self.client_ip(request);
        Clues {
            pinned,
            had_pin,
            session,
            client,
        }
    }

    fn client_ip<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        let hops = self.config.trusted_hops;
        if hops > 0
            && let Some(forwarded) = forwarded_client(request.headers(), hops)
        {
            return Some(forwarded);
        }
        request.extensions().get::<ClientAddr>().map(|a| a.0.ip())
    }

    fn pin_headers<RB>(&self, response: &mut Response<RB>, backend: &str) {
        let config = &self.config;
        let sealed = affinity::seal(
            &self.keys.read().unwrap_or_else(|p| p.into_inner()),
            &config.cookie_name,
            backend,
        );
        let headers = response.headers_mut();
        match &config.header {
            Some(header) => {
                if let Ok(value) = HeaderValue::try_from(sealed) {
                    headers.insert(header.clone(), value);
                }
            }
            None => {
                if let Ok(value) = HeaderValue::try_from(config.cookie.set_cookie(sealed)) {
                    headers.append(SET_COOKIE, value);
                    keep_private(headers);
                }
            }
        }
    }
}

/// The `hops`-th address from the right of all `X-Forwarded-For` entries, in header order:
/// the one the farthest trusted proxy saw. `None` when there are fewer entries, or that one is
/// not an address.
fn forwarded_client(headers: &http::HeaderMap, hops: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let index = entries.len().checked_sub(hops)?;
    entries.get(index)?.parse().ok()
}

async fn route_and_send<S, B, RB>(
    shared: Arc<Shared>,
    services: Arc<RwLock<HashMap<String, S>>>,
    request: Request<B>,
) -> Response<RB>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Default + Send + 'static,
    RB: Default + Send + 'static,
{
    let clues = shared.clues(&request);
    let (mut parts, body) = request.into_parts();
    if shared.config.header.is_none() && clues.had_pin {
        strip_cookie(&mut parts.headers, &shared.config.cookie_name);
    }
    let retryable = retryable(&parts.method, &body);
    let mut body = Some(body);
    let mut excluded: Vec<String> = Vec::new();
    let config = &shared.config;
    for attempt in 0..=config.retries {
        let route = shared.roster.route(config, &clues, &excluded, attempt > 0);
        let Route::To {
            backend,
            reason,
            pin,
            reserved,
        } = route
        else {
            crate::telemetry::refused(StatusCode::SERVICE_UNAVAILABLE);
            return status(StatusCode::SERVICE_UNAVAILABLE);
        };
        let in_flight = if reserved {
            backend.begin_reserved(reason)
        } else {
            backend.begin(reason)
        };
        let service = services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&backend.name)
            .cloned();
        let Some(service) = service else {
            excluded.push(backend.name.clone());
            continue;
        };
        let body = body.take().unwrap_or_default();
        let last = !retryable || attempt == config.retries;
        let head = if last {
            std::mem::replace(&mut parts, Request::new(()).into_parts().0)
        } else {
            parts.clone()
        };
        let request = Request::from_parts(head, body);
        let sent = crate::telemetry::Sent::now();
        let result = service.oneshot(request).await;
        backend.answered(sent, result.is_err());
        drop(in_flight);
        match result {
            Ok(mut response) => {
                backend.succeeded();
                // Re-pinning also happens when the pinned backend was skipped (redispatch).
                let changed = clues.pinned.as_deref() != Some(backend.name.as_str());
                if pin && (changed || clues.pinned.is_none()) {
                    shared.pin_headers(&mut response, &backend.name);
                }
                return response;
            }
            Err(error) => {
                let error: BoxError = error.into();
                if is_client_fault(&*error) {
                    tracing::debug!(backend = %backend.name, error = %error_chain(&*error), "request body from the client failed");
                    crate::telemetry::refused(StatusCode::BAD_REQUEST);
                    return status(StatusCode::BAD_REQUEST);
                }
                backend.failed(config.failure_threshold, config.cooldown);
                tracing::warn!(backend = %backend.name, error = %error_chain(&*error), attempt, "backend request failed");
                if !retryable {
                    crate::telemetry::refused(StatusCode::BAD_GATEWAY);
                    return status(StatusCode::BAD_GATEWAY);
                }
                excluded.push(backend.name.clone());
            }
        }
    }
    crate::telemetry::refused(StatusCode::BAD_GATEWAY);
    status(StatusCode::BAD_GATEWAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn the_client_is_counted_from_the_right() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // The client wrote 6.6.6.6 itself; the one trusted proxy appended what it saw.
        let one = headers(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(forwarded_client(&one, 1), ip("203.0.113.7"));
        // Two trusted proxies, entries spread over two header lines.
        let two = headers(&["6.6.6.6, 198.51.100.2", "10.0.0.9"]);
        assert_eq!(forwarded_client(&two, 2), ip("198.51.100.2"));
        assert_eq!(forwarded_client(&two, 1), ip("10.0.0.9"));
        // Fewer entries than trusted hops: not through all of them, not used.
        assert_eq!(forwarded_client(&one, 3), None);
        assert_eq!(forwarded_client(&headers(&["not-an-ip"]), 1), None);
        assert_eq!(forwarded_client(&headers(&[]), 1), None);
        assert_eq!(forwarded_client(&headers(&["::1"]), 1), ip("::1"));
    }
}
