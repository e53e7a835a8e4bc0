//! The client-facing server: each connection's requests go through the sticky router.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HOST, HeaderValue, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tether_sticky::{ClientAddr, PinMemo, Sticky, UpstreamBody, box_body};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::access_log::{AccessLog, Entry, ServedBy};
use crate::backend_updates::BackendUpdates;
use crate::connection_slot::ConnectionSlot;
use crate::forwarded::{ClientForwarding, strip_hop_by_hop};
use crate::limits::Limits;
use crate::proxy_protocol::{Rewound, TrustedSources, read_header};
use crate::reload::BackendService;
use crate::stall::StallBound;
use crate::tunnel;

/// The router the proxy runs.
pub(crate) type Router = Sticky<BackendUpdates<BackendService>>;

/// How long in-flight requests get to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

/// Why a request is refused before routing (RFC 9112 3.2: a request with no `Host`, or more
/// than one, gets 400).
fn malformed(parts: &http::request::Parts) -> Option<&'static str> {
    let hosts = parts.headers.get_all(HOST).iter().count();
    if hosts > 1 {
        return Some("more than one Host header\n");
    }
    if hosts == 0 && parts.version == Version::HTTP_11 {
        return Some("no Host header\n");
    }
    None
}

/// A short plain-text answer the proxy makes itself.
fn answer(status: StatusCode, reason: &'static str) -> Response<UpstreamBody> {
    let mut response = Response::new(box_body(Full::new(Bytes::from_static(reason.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// One client connection, as each of its requests sees it.
#[derive(Clone, Debug)]
struct Connection {
    router: Router,
    client: SocketAddr,
    limits: Limits,
    /// The connection's place under the connection cap: an upgraded connection outlives the
    /// HTTP connection it came from and keeps it.
    slot: Arc<ConnectionSlot>,
    access_log: Option<Arc<AccessLog>>,
    /// The client's forwarding header entries, made once.
    forwarding: ClientForwarding,
    /// The last affinity pin opened on this connection.
    pins: PinMemo,
}

async fn handle(
    connection: Connection,
    request: Request<Incoming>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let Some(log) = connection.access_log.as_ref().map(Arc::clone) else {
        return Ok(route(connection, request).await);
    };
    let time = SystemTime::now();
    let started = Instant::now();
    let (method, uri, version) = (
        request.method().clone(),
        request.uri().clone(),
        request.version(),
    );
    let client = connection.client;
    let response = route(connection, request).await;
    log.record(&Entry {
        time,
        client,
        method,
        uri,
        version,
        status: response.status(),
        backend: response.extensions().get::<ServedBy>().cloned(),
        duration: started.elapsed(),
    });
    Ok(response)
}

/// What the proxy answers `request`: refused as malformed, or what the router answers, with a
/// `101` joined into a tunnel.
async fn route(connection: Connection, request: Request<Incoming>) -> Response<UpstreamBody> {
    let client = connection.client;
    let (mut parts, body) = request.into_parts();
    if let Some(reason) = malformed(&parts) {
        tracing::debug!(%client, reason = reason.trim_end(), "request refused");
        return answer(StatusCode::BAD_REQUEST, reason);
    }
    let extended = tunnel::extended_connect(&parts);
    let upgrade = extended
        .clone()
        .or_else(|| tunnel::requested(parts.version, &parts.headers));
    let client_upgrade = parts.extensions.remove::<OnUpgrade>();
    if let Some(protocol) = &extended {
        tunnel::into_http11_upgrade(&mut parts, protocol);
    }
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = &upgrade {
        tunnel::restore(&mut parts.headers, protocol.clone());
    }
    parts.extensions.insert(ClientAddr(client));
    parts.extensions.insert(connection.forwarding.clone());
    parts.extensions.insert(connection.pins.clone());
    let body = if body.is_end_stream() {
        box_body(body)
    } else {
        box_body(StallBound::new(body, connection.limits.body_idle_timeout))
    };
    let request = Request::from_parts(parts, body);
    let Ok(mut response) = connection.router.oneshot(request).await;
    let backend_upgrade = response.extensions_mut().remove::<OnUpgrade>();
    let agreed = response.headers().get(UPGRADE).cloned();
    strip_hop_by_hop(response.headers_mut());
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    // A backend may switch protocols only when asked to, and only to one it was asked for.
    match (upgrade.zip(client_upgrade), backend_upgrade, agreed) {
        (Some((_, client_upgrade)), Some(backend_upgrade), Some(protocol)) => {
            if extended.is_some() {
                tunnel::into_connect_success(&mut response);
            } else {
                tunnel::restore(response.headers_mut(), protocol);
            }
            tokio::spawn(tunnel::run(
                client_upgrade,
                backend_upgrade,
                connection.limits.tunnel,
                client,
                Arc::clone(&connection.slot),
            ));
            response
        }
        _ => {
            tracing::warn!(%client, "a backend switched protocols without an upgrade to switch to");
            answer(
                StatusCode::BAD_GATEWAY,
                "the backend switched protocols unasked\n",
            )
        }
    }
}

/// Logs a recurring failure at most once a second, with how many were not logged in between:
/// a full descriptor table fails every accept, and one line each would flood the log.
#[derive(Debug)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    const EVERY: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            last: None,
            suppressed: 0,
        }
    }

    fn accept_failed(&mut self, error: &std::io::Error) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < Self::EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(%error, suppressed = self.suppressed, "accept failed");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Serves one client connection (plain or TLS) until it ends; closes it when no complete
/// request head arrived by `deadline`.
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: TokioIo<I>,
    this: Connection,
    deadline: tokio::time::Instant,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = this.client;
    let first_request = Arc::new(Notify::new());
    let requests = Arc::clone(&first_request);
    let service = hyper::service::service_fn(move |request| {
        requests.notify_one();
        handle(this.clone(), request)
    });
    let connection = watcher.watch(
        builder
            .serve_connection_with_upgrades(io, service)
            .into_owned(),
    );
    tokio::pin!(connection);
    // hyper's own head timeout starts only once it knows the protocol, which takes the first
    // bytes: until a first request arrives, the whole connection is on the clock.
    let ended = tokio::select! {
        ended = &mut connection => Some(ended),
        () = first_request.notified() => None,
        () = tokio::time::sleep_until(deadline) => {
            tracing::debug!(%client, "no complete request head in time: connection closed");
            return;
        }
    };
    let ended = match ended {
        Some(ended) => ended,
        None => connection.await,
    };
    if let Err(e) = ended {
        tracing::debug!(%client, error = %e, "client connection ended with an error");
    }
}

/// How client connections are taken: their bounds, TLS, and the sources that announce their
/// clients with a PROXY header.
pub(crate) struct Frontend {
    pub(crate) limits: Limits,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) proxy_protocol: TrustedSources,
    pub(crate) access_log: Option<Arc<AccessLog>>,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .field("proxy_protocol", &self.proxy_protocol)
            .field("access_log", &self.access_log.is_some())
            .finish()
    }
}

/// Serves clients on `listener` as `frontend` says until `shutdown` resolves, then lets
/// in-flight requests finish (at most ten seconds). At most `limits.max_connections`
/// connections are served at once; a connection is closed when its PROXY header, TLS handshake
/// and first request head are not complete within `limits.header_read_timeout` of being
/// accepted.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    frontend: Frontend,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = frontend.limits;
    let frontend = Arc::new(frontend);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    // Pings find HTTP/2 clients that vanished without closing (half-open connections).
    builder
        .http2()
        .enable_connect_protocol()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let open_connections = ConnectionSlot::gauge();
    let mut accept_errors = Throttled::new();
    tokio::pin!(shutdown);
    loop {
        // At the cap, accepting stops: clients wait in the backlog instead of taking
        // descriptors the process does not have.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_errors.accept_failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
        let slot = Arc::new(ConnectionSlot::new(permit, &open_connections));
        let router = router.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let frontend = Arc::clone(&frontend);
        tokio::spawn(async move {
            // The PROXY header and the TLS handshake are part of the first request head's time.
            let (client, stream) = if frontend.proxy_protocol.contains(peer.ip()) {
                match tokio::time::timeout_at(deadline, read_header(stream)).await {
                    Ok(Ok((named, stream))) => (named.unwrap_or(peer), stream),
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "connection from a PROXY protocol source refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "no PROXY header in time: connection closed");
                        return;
                    }
                }
            } else {
                (peer, Rewound::from(stream))
            };
            let this = Connection {
                router,
                client,
                limits,
                slot,
                access_log: frontend.access_log.clone(),
                forwarding: ClientForwarding::new(client),
                pins: PinMemo::new(),
            };
            let Some(acceptor) = &frontend.tls else {
                return serve_connection(&builder, watcher, TokioIo::new(stream), this, deadline)
                    .await;
            };
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(&builder, watcher, TokioIo::new(stream), this, deadline).await;
                }
                Ok(Err(error)) => tracing::debug!(%client, %error, "TLS handshake failed"),
                Err(_) => {
                    tracing::debug!(%client, "TLS handshake not complete in time: connection closed");
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(GRACE) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
