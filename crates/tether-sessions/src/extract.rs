//! The axum extractor.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::{Error, Session};

/// Rejection of the [`Session`] extractor: the route is not wrapped in a
/// [`SessionLayer`](crate::SessionLayer). A server bug, answered with `500`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("no session: the route is not wrapped in tether_sessions::SessionLayer")]
#[non_exhaustive]
pub struct SessionLayerMissing;

impl IntoResponse for SessionLayerMissing {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionLayerMissing;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(SessionLayerMissing)
    }
}

/// A transient store error is `503 Service Unavailable`; anything else is
/// `500 Internal Server Error`. The cause is logged, not sent.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = if self.is_transient() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        tracing::error!(error = %tether_core::error_chain(&self), %status, "session error");
        status.into_response()
    }
}
