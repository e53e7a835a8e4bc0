//! An HTTP client to one backend, as a backend service for [`Sticky`](crate::Sticky).

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use tether_core::BoxError;

use crate::RequestBodyError;
use crate::progress::{Progress, Watched};

/// The body type [`Upstream`] takes and returns: boxed, so requests can be rebuilt empty for a
/// retry and responses can be made up (502, 503) by the router.
pub type UpstreamBody = BoxBody<Bytes, BodyError>;

/// An error reading or writing a body on its way through the proxy.
///
/// A named type rather than `Box<dyn Error>` in [`UpstreamBody`]: a trait object there makes
/// the compiler unable to prove connection futures `Send` (its lifetime is higher-ranked).
#[derive(Debug)]
pub struct BodyError(BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Boxes any body into an [`UpstreamBody`].
pub fn box_body<B>(body: B) -> UpstreamBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(|e| BodyError(e.into())).boxed()
}

/// An HTTP client to one backend: keep-alive connection pool, HTTP/1.1 or h2c (HTTP/2 without
/// TLS, prior knowledge). Rewrites each request's URI to the backend's scheme and authority.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_sticky::Upstream;
///
/// let upstream = Upstream::new("http://127.0.0.1:3001".parse()?, false, Duration::from_secs(2))?;
/// # let _ = upstream;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Transport,
    scheme: Scheme,
    authority: Authority,
    /// What this backend speaks, whatever the client spoke to the proxy.
    version: Version,
    response_timeout: Duration,
}

/// The client of one backend, by how it reaches it: the plain one pays nothing for TLS.
#[derive(Clone, Debug)]
enum Transport {
    Plain(Client<HttpConnector, Watched>),
    #[cfg(feature = "client-tls")]
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Watched>),
}

impl Transport {
    fn request(&self, request: Request<Watched>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            Self::Plain(client) => client.request(request),
            #[cfg(feature = "client-tls")]
            Self::Tls(client) => client.request(request),
        }
    }
}

/// Default bound on waiting for a backend's response head.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request to a backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Connecting or talking to the backend failed.
    #[error("backend request failed")]
    Client(#[from] hyper_util::client::legacy::Error),
    /// The response head did not come in time after the request body was sent.
    #[error("backend did not answer within {0:?}")]
    Timeout(Duration),
    /// The client's request body failed (malformed, cut short): not the backend's fault.
    #[error("the request could not be sent")]
    RequestBody(#[source] RequestBodyError),
}

/// A backend URL that [`Upstream`] cannot use: [`Upstream::new`] takes `http://host:port`,
/// [`Upstream::https`] `https://host:port`.
#[derive(Debug, thiserror::Error)]
#[error("backend URL {0:?} must be http://host:port (https://host:port with TLS)")]
pub struct InvalidUpstream(String);

impl Upstream {
    /// A client to the backend at `uri` (`http://host:port`); `h2c` speaks HTTP/2 over plain TCP.
    /// Connecting is bounded by `connect_timeout`, the response head by
    /// [`DEFAULT_RESPONSE_TIMEOUT`] (see [`Upstream::with_response_timeout`]).
    ///
    /// # Errors
    ///
    /// When `uri` is not `http://` with an authority.
    pub fn new(uri: Uri, h2c: bool, connect_timeout: Duration) -> Result<Self, InvalidUpstream> {
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(InvalidUpstream(uri.to_string()));
        };
        if scheme != Scheme::HTTP {
            return Err(InvalidUpstream(uri.to_string()));
        }
        let client = Client::builder(TokioExecutor::new())
            .http2_only(h2c)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(tcp_connector(connect_timeout));
        Ok(Self {
            client: Transport::Plain(client),
            scheme,
            authority,
            version: if h2c {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        })
    }

    /// A client to the backend at `uri` (`https://host:port`) over TLS, HTTP/1.1 (so upgrades
    /// such as WebSockets pass): the backend's certificate must chain to a root of `tls` and
    /// name the URL's host (a DNS name or an IP address). Connecting is bounded by
    /// `connect_timeout`; a TLS handshake that stalls, like a backend that does not answer, by
    /// the response timeout ([`Upstream::with_response_timeout`]).
    ///
    /// # Errors
    ///
    /// When `uri` is not `https://` with an authority.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tether_sticky::Upstream;
    ///
    /// let mut roots = rustls::RootCertStore::empty();
    /// // roots.add(the backends' CA certificate)?;
    /// let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
    ///     rustls::crypto::ring::default_provider(),
    /// ))
    /// .with_safe_default_protocol_versions()?
    /// .with_root_certificates(roots)
    /// .with_no_client_auth();
    /// let upstream = Upstream::https(
    ///     "https://backend.internal:8443".parse()?,
    ///     Arc::new(tls),
    ///     Duration::from_secs(2),
    /// )?;
    /// # let _ = upstream;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "client-tls")]
    pub fn https(
        uri: Uri,
        tls: std::sync::Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Result<Self, InvalidUpstream> {
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(InvalidUpstream(uri.to_string()));
        };
        if scheme != Scheme::HTTPS {
            return Err(InvalidUpstream(uri.to_string()));
        }
        let mut tcp = tcp_connector(connect_timeout);
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self {
            client: Transport::Tls(client),
            scheme,
            authority,
            version: Version::HTTP_11,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        })
    }

    /// Bounds the wait for the backend's response head (default 30 s), counted from the moment
    /// the whole request body was sent: a slow upload is not cut short. A request past it fails
    /// like a dead backend (and counts toward ejection).
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}

/// How long an idle pooled connection to a backend is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// TCP connections to a backend: no Nagle delay, connecting bounded by `connect_timeout`.
fn tcp_connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector
}

impl tower_service::Service<Request<UpstreamBody>> for Upstream {
    type Response = Response<UpstreamBody>;
    type Error = UpstreamError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<UpstreamBody>) -> Self::Future {
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        // The client's HTTP version is of its own hop: an HTTP/2 client's request goes to an
        // HTTP/1.1 backend as HTTP/1.1 (the pool refuses a version the connection lacks).
        *request.version_mut() = self.version;
        let client = self.client.clone();
        let timeout = self.response_timeout;
        let (request, mut progress) = {
            let (parts, body) = request.into_parts();
            let (body, progress) = Watched::new(body);
            (Request::from_parts(parts, body), progress)
        };
        Box::pin(async move {
            let response = client.request(request);
            tokio::pin!(response);
            // The response timeout runs once the body is sent (or was dropped by the client
            // connection), never while the client is still uploading.
            let early = tokio::select! {
                biased;
                answered = &mut response => Some(answered),
                _ = progress.wait_for(|p| *p != Progress::Arriving) => None,
            };
            let answered = match early {
                Some(answered) => answered,
                None => tokio::time::timeout(timeout, response)
                    .await
                    .map_err(|_| UpstreamError::Timeout(timeout))?,
            };
            match answered {
                Ok(response) => Ok(response.map(box_body)),
                Err(error) if *progress.borrow() == Progress::Failed => {
                    Err(UpstreamError::RequestBody(RequestBodyError::new(error)))
                }
                Err(error) => Err(UpstreamError::Client(error)),
            }
        })
    }
}
