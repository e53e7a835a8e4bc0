//! Errors of session operations.

/// Why a session operation failed.
///
/// # Example
///
/// ```
/// use tether_sessions::Error;
///
/// let err = Error::TooLarge { size: 70_000, limit: 65_536 };
/// assert!(!err.is_transient());
/// assert_eq!(
///     err.to_string(),
///     "the session would grow to 70000 bytes, past its limit of 65536",
/// );
/// ```
///
/// With the `axum` feature it is a response: `413 Payload Too Large` for [`TooLarge`] and
/// [`TooManyKeys`] (the client sent more than a session holds), `503 Service Unavailable` for a
/// transient store error, `409 Conflict` for a [`Conflict`](Error::Conflict) (another request
/// wrote the key first), `500 Internal Server Error` for the rest, each with a short plain-text
/// body; the cause is logged, not sent. Such a response discards the request's session
/// changes, as a `5xx` from the handler does.
///
/// [`TooLarge`]: Error::TooLarge
/// [`TooManyKeys`]: Error::TooManyKeys
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed, or a value could not be encoded or decoded.
    #[error(transparent)]
    Core(#[from] tether_core::Error),
    /// The insert would make the session larger than the configured limit; the session is
    /// unchanged. The size counts every key's name and encoded value plus
    /// [`KEY_OVERHEAD`](crate::KEY_OVERHEAD).
    #[error("the session would grow to {size} bytes, past its limit of {limit}")]
    TooLarge {
        /// Size the session would have had.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The insert would give the session more keys than the configured limit; the session is
    /// unchanged.
    #[error("the session would hold {keys} keys, past its limit of {limit}")]
    TooManyKeys {
        /// Number of keys the session would have had.
        keys: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The change came after the response was produced, when the session had been saved
    /// already; it was not applied.
    #[error("the response was already produced; a session change now would be lost")]
    Finished,
    /// Another request changed the key first: a write of a key under
    /// [`WritePolicy::RejectOnConflict`](crate::WritePolicy::RejectOnConflict) found another
    /// value than this request had read (the session now shows the new one), or
    /// [`Session::update`](crate::Session::update) lost every attempt. Nothing was written.
    /// Returned from an axum handler, it answers `409 Conflict`.
    #[error("session key {key:?} was changed by another request")]
    Conflict {
        /// The session key.
        key: String,
    },
    /// A text given as a principal is not one (see [`Principal`](crate::Principal)).
    #[error(transparent)]
    InvalidPrincipal(#[from] tether_core::InvalidPrincipal),
}

impl Error {
    /// Whether retrying later may succeed: the store was unreachable or slow.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_transient())
    }

    /// Whether another request's write of the same key won ([`Conflict`](Self::Conflict), or
    /// a store's [`ErrorKind::Conflict`](tether_core::ErrorKind::Conflict)): retrying the
    /// request can succeed.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Conflict { .. } => true,
            Self::Core(e) => e.kind() == tether_core::ErrorKind::Conflict,
            _ => false,
        }
    }

    /// Whether the client asked for more than a session holds ([`TooLarge`](Self::TooLarge),
    /// [`TooManyKeys`](Self::TooManyKeys)): its fault, not the server's.
    pub fn is_over_limit(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::TooManyKeys { .. })
    }
}

/// Mark in the extensions of a response made from an [`Error`]: the handler failed on its
/// session, so the layer discards the request's changes as for a `5xx`.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) struct ErrorResponse;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
