//! The response future: runs the inner service, then saves the session before the response
//! head is returned.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tether_core::{Timestamp, error_chain};

use crate::deadline::Deadline;
use crate::error::ErrorResponse;
use crate::save::Failed;
use crate::session::Session;
use crate::transport::Delivery;

type SaveFuture = Pin<Box<dyn Future<Output = Result<Delivery, Failed>> + Send>>;

pin_project! {
    /// Response future of [`SessionService`](crate::SessionService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        session: Session,
        deadline: Option<Deadline>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        /// The inner service is producing the response.
        Inner { #[pin] future: F },
        /// The response is ready; the session is being written.
        Saving { save: SaveFuture, response: Option<Response<B>> },
        /// The request came after its deadline: it is answered `503` without running.
        Late,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, session: Session, deadline: Option<Deadline>) -> Self {
        Self {
            state: State::Inner { future },
            session,
            deadline,
        }
    }

    /// Answers `503` at once: the request's deadline had passed when it arrived.
    pub(crate) fn late(session: Session) -> Self {
        Self {
            state: State::Late,
            session,
            deadline: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    let failed = response.status().is_server_error()
                        || response.extensions().get::<ErrorResponse>().is_some();
                    let plan = this.session.finish(failed);
                    let Some(plan) = plan.filter(|plan| !plan.is_nothing()) else {
                        return Poll::Ready(Ok(response));
                    };
                    if this.deadline.is_some_and(|d| d.passed(Timestamp::now())) {
                        tracing::warn!(
                            "the request's deadline passed before its session was saved; its changes were dropped, answering 503"
                        );
                        return Poll::Ready(Ok(unavailable()));
                    }
                    let store = std::sync::Arc::clone(this.session.store());
                    let save = Box::pin(async move { plan.execute(&*store).await });
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
                            response = unavailable();
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
                StateProj::Late => return Poll::Ready(Ok(unavailable())),
            }
        }
    }
}

fn unavailable<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
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
