//! The axum extractor.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::error::ErrorResponse;
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

/// [`Error::TooLarge`] and [`Error::TooManyKeys`] are `413 Payload Too Large`, the client's
/// fault, logged at debug level; a transient store error is `503 Service Unavailable`; anything
/// else is `500 Internal Server Error`. The body is a short plain text; the cause is logged,
/// not sent. The layer discards the request's session changes, as for a `5xx`.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, text) = if self.is_over_limit() {
            (StatusCode::PAYLOAD_TOO_LARGE, "session too large")
        } else if self.is_conflict() {
            (
                StatusCode::CONFLICT,
                "session changed by another request; try again",
            )
        } else if self.is_transient() {
            (StatusCode::SERVICE_UNAVAILABLE, crate::UNAVAILABLE_MESSAGE)
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "session error")
        };
        if status.is_server_error() {
            tracing::error!(error = %tether_core::error_chain(&self), %status, "session error");
        } else {
            tracing::debug!(error = %self, %status, "session refused");
        }
        let mut response = (status, text).into_response();
        response.extensions_mut().insert(ErrorResponse);
        response
    }
}
