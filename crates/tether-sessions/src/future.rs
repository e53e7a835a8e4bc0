//! The response future: runs the inner service, then saves the session before the response
//! head is returned.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tether_core::{Timestamp, error_chain};

use crate::body::{ResponseBody, UNAVAILABLE_MESSAGE};
use crate::deadline::Deadline;
use crate::error::ErrorResponse;
use crate::save::{Failed, Plan};
use crate::session::Session;
use crate::telemetry::Outcome;
use crate::transport::Delivery;

type SaveFuture = Pin<Box<dyn Future<Output = Result<Delivery, Failed>> + Send>>;

pin_project! {
    /// Response future of [`SessionService`](crate::SessionService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        session: Session,
        deadline: Option<Deadline>,
        grpc: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        /// The inner service is producing the response.
        Inner { #[pin] future: F },
        /// The response is ready; the session is being written.
        Saving { save: SaveFuture, response: Option<Response<ResponseBody<B>>> },
        /// The request came after its deadline: it is answered `503` without running.
        Late,
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// `grpc`: the request is a gRPC call, whose client reads a body as gRPC messages.
    pub(crate) fn new(future: F, session: Session, deadline: Option<Deadline>, grpc: bool) -> Self {
        Self {
            state: State::Inner { future },
            session,
            deadline,
            grpc,
        }
    }

    /// Answers `503` at once: the request's deadline had passed when it arrived.
    pub(crate) fn late(session: Session, grpc: bool) -> Self {
        Self {
            state: State::Late,
            session,
            deadline: None,
            grpc,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let mut response = ready!(future.poll(cx))?.map(ResponseBody::inner);
                    let failed = response.status().is_server_error()
                        || response.extensions().get::<ErrorResponse>().is_some();
                    let plan = this.session.finish(failed);
                    let Some(plan) = plan.filter(|plan| !plan.is_nothing()) else {
                        return Poll::Ready(Ok(response));
                    };
                    if let Plan::Renewed { id, expiry } = plan {
                        // The read stored the renewal already: only the client is told.
                        let config = this.session.config();
                        config.transport.deliver(
                            response.headers_mut(),
                            &config.protection,
                            Delivery::Renew(id, expiry),
                            Timestamp::now(),
                        );
                        return Poll::Ready(Ok(response));
                    }
                    if this.deadline.is_some_and(|d| d.passed(Timestamp::now())) {
                        tracing::warn!(
                            "the request's deadline passed before its session was saved; its changes were dropped, answering 503"
                        );
                        this.session.config().telemetry.request(Outcome::Late);
                        return Poll::Ready(Ok(unavailable(*this.grpc)));
                    }
                    let store = std::sync::Arc::clone(this.session.store());
                    let config = std::sync::Arc::clone(this.session.config());
                    let outcome = plan.outcome();
                    let save = Box::pin(async move {
                        let saved = plan.execute(&*store, &config.telemetry).await;
                        config.telemetry.request(if saved.is_ok() {
                            outcome
                        } else {
                            Outcome::SaveFailed
                        });
                        saved
                    });
                    this.state.set(State::Saving {
                        save,
                        response: Some(response),
                    });
                }
                StateProj::Saving { save, response } => {
                    let saved = ready!(save.as_mut().poll(cx));
                    let Some(mut response) = response.take() else {
                        // Polled again after completion; there is nothing left to give.
                        return Poll::Pending;
                    };
                    let config = this.session.config();
                    match saved {
                        Ok(delivery) => config.transport.deliver(
                            response.headers_mut(),
                            &config.protection,
                            delivery,
                            Timestamp::now(),
                        ),
                        Err(failed) => {
                            tracing::error!(
                                error = %error_chain(&failed.error),
                                transient = failed.error.is_transient(),
                                "saving the session failed; answering 503"
                            );
                            response = unavailable(*this.grpc);
                            config.transport.deliver(
                                response.headers_mut(),
                                &config.protection,
                                failed.delivery,
                                Timestamp::now(),
                            );
                        }
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Late => return Poll::Ready(Ok(unavailable(*this.grpc))),
            }
        }
    }
}

/// The layer's own `503`: [`UNAVAILABLE_MESSAGE`] as plain text; to a gRPC call, with no body
/// (its client would read the text as a message) and the message as gRPC status `UNAVAILABLE`
/// (14) in the headers.
fn unavailable<B>(grpc: bool) -> Response<ResponseBody<B>> {
    let text = if grpc { "" } else { UNAVAILABLE_MESSAGE };
    let mut response = Response::new(ResponseBody::message(text));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    if grpc {
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        // Percent-encoded, as the gRPC protocol wants the message.
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("session%20store%20unavailable"),
        );
    } else {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Inner { .. } => "inner",
            State::Saving { .. } => "saving",
            State::Late => "late",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
