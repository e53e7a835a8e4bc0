//! A gRPC counter on tonic whose count lives in the caller's session.
//!
//! gRPC clients keep no cookies, so the [`SessionLayer`] carries the session id in the
//! `x-session-id` metadata ([`SessionLayer::with_header`]): a call without an id (or with one
//! the server does not know) starts a session, and the response carries the new id; the client
//! sends it back on every later call. Handlers find the [`Session`] in the request extensions.
//!
//! - [`serve`]: the tonic server, [`CounterService`] behind [`sessions`].
//! - [`SessionClient`]: a client that keeps its session id from one call to the next.
//!
//! The binaries: `cargo run -p example-grpc` serves on 127.0.0.1:50051 (or `--addr HOST:PORT`),
//! and `cargo run -p example-grpc --bin client` calls it.

use std::future::Future;

use tether_sessions::core::{SessionStore, error_chain};
use tether_sessions::{Session, SessionLayer, TypedKey};
use tokio::net::TcpListener;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

use crate::proto::counter_client::CounterClient;
use crate::proto::counter_server::{Counter, CounterServer};
use crate::proto::{IncrementReply, IncrementRequest, ResetReply, ResetRequest};

/// The code generated from `proto/counter.proto`.
pub mod proto {
    tonic::include_proto!("counter");
}

/// The metadata key that carries the session id, both ways.
pub const SESSION_HEADER: &str = "x-session-id";

/// The counter, in the session.
const COUNT: TypedKey<u64> = TypedKey::new("count");

/// The session layer for gRPC: sessions in `store`, the id in the [`SESSION_HEADER`] metadata.
pub fn sessions(store: impl SessionStore) -> SessionLayer {
    SessionLayer::new(store).with_header(http::HeaderName::from_static(SESSION_HEADER))
}

/// Serves [`CounterService`] behind `sessions` on `listener` until `shutdown` completes.
///
/// # Errors
///
/// When the server fails to accept connections.
pub async fn serve(
    listener: TcpListener,
    sessions: SessionLayer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(sessions)
        .add_service(CounterServer::new(CounterService))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

/// The `Counter` service: `Increment` counts the calls of a session, `Reset` ends it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterService;

#[tonic::async_trait]
impl Counter for CounterService {
    async fn increment(
        &self,
        request: Request<IncrementRequest>,
    ) -> Result<Response<IncrementReply>, Status> {
        let session = session(&request)?;
        let count = COUNT.get(&session).await.map_err(status)?.unwrap_or(0) + 1;
        COUNT.insert(&session, &count).await.map_err(status)?;
        Ok(Response::new(IncrementReply { count }))
    }

    async fn reset(&self, request: Request<ResetRequest>) -> Result<Response<ResetReply>, Status> {
        session(&request)?.flush().await.map_err(status)?;
        Ok(Response::new(ResetReply {}))
    }
}

/// The session the [`SessionLayer`] put into the request's extensions.
fn session<T>(request: &Request<T>) -> Result<Session, Status> {
    request
        .extensions()
        .get::<Session>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("no session: the service is not wrapped in SessionLayer");
            Status::internal("session layer missing")
        })
}

/// A session error as a gRPC status, as the layer's axum integration answers it over HTTP: the
/// client's fault when the session would grow past its limits, `Unavailable` (worth a retry)
/// when the store is, `Internal` otherwise. The cause is logged, not sent.
fn status(error: tether_sessions::Error) -> Status {
    if error.is_over_limit() {
        tracing::debug!(error = %error, "session refused");
        return Status::resource_exhausted("session too large");
    }
    tracing::error!(error = %error_chain(&error), "session error");
    if error.is_transient() {
        Status::unavailable("session store unavailable")
    } else {
        Status::internal("session error")
    }
}

/// A `Counter` client that keeps its session: it sends the id it holds in the
/// [`SESSION_HEADER`] metadata, adopts the new id a response carries, and forgets its id when a
/// response carries it empty (the session ended).
#[derive(Clone, Debug)]
pub struct SessionClient {
    inner: CounterClient<Channel>,
    session: Option<AsciiMetadataValue>,
}

impl SessionClient {
    /// A client without a session, over `client`.
    pub fn new(client: CounterClient<Channel>) -> Self {
        Self {
            inner: client,
            session: None,
        }
    }

    /// Connects to the server at `endpoint`, such as `http://127.0.0.1:50051`.
    ///
    /// # Errors
    ///
    /// When `endpoint` is not a URI or the server cannot be reached.
    pub async fn connect(endpoint: String) -> Result<Self, tonic::transport::Error> {
        Ok(Self::new(CounterClient::connect(endpoint).await?))
    }

    /// The session id this client sends, if it holds one.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().and_then(|id| id.to_str().ok())
    }

    /// Sends `id` from now on, as if a response had carried it (to resume a session).
    ///
    /// # Errors
    ///
    /// When `id` cannot be a metadata value (it is not visible ASCII).
    pub fn set_session_id(
        &mut self,
        id: &str,
    ) -> Result<(), tonic::metadata::errors::InvalidMetadataValue> {
        self.session = Some(id.parse()?);
        Ok(())
    }

    /// Calls `Increment` and answers the session's new count.
    ///
    /// # Errors
    ///
    /// The call's status: `Unavailable` when the server could not save the session.
    pub async fn increment(&mut self) -> Result<u64, Status> {
        let request = self.request(IncrementRequest {});
        let reply = self.inner.increment(request).await;
        self.adopt(&reply);
        Ok(reply?.into_inner().count)
    }

    /// Calls `Reset`, which ends the session; the client then holds no id.
    ///
    /// # Errors
    ///
    /// The call's status.
    pub async fn reset(&mut self) -> Result<(), Status> {
        let request = self.request(ResetRequest {});
        let reply = self.inner.reset(request).await;
        self.adopt(&reply);
        reply.map(drop)
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(id) = &self.session {
            request.metadata_mut().insert(SESSION_HEADER, id.clone());
        }
        request
    }

    /// Takes in what the response says about the session id. Error statuses carry response
    /// metadata too, so they are read as well.
    fn adopt<T>(&mut self, reply: &Result<Response<T>, Status>) {
        let metadata: &MetadataMap = match reply {
            Ok(response) => response.metadata(),
            Err(status) => status.metadata(),
        };
        match metadata.get(SESSION_HEADER) {
            Some(id) if id.is_empty() => self.session = None,
            Some(id) => self.session = Some(id.clone()),
            None => {}
        }
    }
}
