//! Telling a client's fault from a backend's: a request whose own body broke says nothing
//! about the backend it was going to.

use std::error::Error;

use tether_core::BoxError;

/// The request's own body failed on its way to the backend: the client sent a malformed chunk,
/// closed before the announced length, or stalled.
///
/// A backend service tells [`Sticky`](crate::Sticky) that a failure is the client's by
/// returning an error with a `RequestBodyError` in its [`source`](Error::source) chain
/// ([`Upstream`](crate::Upstream) does). The router then answers `400 Bad Request`, does not
/// retry, and counts nothing against the backend: a client must not be able to eject a healthy
/// backend by sending broken bodies.
///
/// # Example
///
/// ```
/// use tether_sticky::RequestBodyError;
///
/// let error = RequestBodyError::new("chunk size is not hexadecimal");
/// assert_eq!(error.to_string(), "the request body from the client failed");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("the request body from the client failed")]
pub struct RequestBodyError(#[source] BoxError);

impl RequestBodyError {
    /// Wraps why the body failed.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self(source.into())
    }
}

/// Whether `error` or anything in its source chain is a [`RequestBodyError`].
pub(crate) fn is_client_fault(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<RequestBodyError>() {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] RequestBodyError);

    #[test]
    fn found_anywhere_in_the_chain() {
        let direct = RequestBodyError::new("bad chunk");
        assert!(is_client_fault(&direct));
        assert!(is_client_fault(&Outer(RequestBodyError::new("cut short"))));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_client_fault(&refused));
    }
}
