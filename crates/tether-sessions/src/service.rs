//! The session middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tether_core::{SessionStore, Timestamp};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::config::Config;
use crate::deadline::Deadline;
use crate::future::ResponseFuture;
use crate::session::Session;

/// Middleware that gives every request a [`Session`] in its extensions and saves it before the
/// response is returned. Built by [`SessionLayer`](crate::SessionLayer).
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    store: Arc<dyn SessionStore>,
    config: Arc<Config>,
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, store: Arc<dyn SessionStore>, config: Arc<Config>) -> Self {
        Self {
            inner,
            store,
            config,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let deadline = Deadline::read(request.headers(), config.deadline_header.as_ref());
        let incoming = config.transport.read(request.headers(), &config.protection);
        let client = config
            .activity
            .as_ref()
            .map(|activity| activity.observe(&request));
        let session = Session::new(
            Arc::clone(&self.store),
            Arc::clone(config),
            incoming,
            client,
        );
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        if deadline.is_some_and(|d| d.passed(Timestamp::now())) {
            tracing::warn!(
                "the request arrived after its deadline; answering 503 without running it"
            );
            config.telemetry.request(crate::telemetry::Outcome::Late);
            return ResponseFuture::late(session, grpc);
        }
        request.extensions_mut().insert(session.clone());
        ResponseFuture::new(self.inner.call(request), session, deadline, grpc)
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}
