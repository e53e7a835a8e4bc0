//! The error type every store and the session layer share.

use std::time::Duration;

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a session store or while encoding a session value.
///
/// Store implementations sort their failures into these variants, keeping the original error as
/// the [`source`](std::error::Error::source). The layer answers transient errors
/// ([`Error::is_transient`]) with `503 Service Unavailable`, since retrying later can succeed.
///
/// # Example
///
/// ```
/// use std::io;
/// use tether_core::{Error, ErrorKind};
///
/// let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
/// let err = Error::Unavailable(Box::new(refused));
/// assert!(err.is_transient());
/// assert_eq!(err.kind(), ErrorKind::Unavailable);
/// assert!(std::error::Error::source(&err).is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store cannot be reached right now (connection refused or lost, failover in progress,
    /// server still loading). Transient.
    #[error("session store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store did not answer in time. Transient.
    #[error("session store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store answered with an error that retrying will not fix (wrong credentials, a
    /// misconfigured server, a script error).
    #[error("session store failed")]
    Backend(#[source] BoxError),
    /// Data found in the store is not a session this version can read. The session is treated as
    /// absent.
    #[error("stored session data is corrupt")]
    Corrupt(#[source] BoxError),
    /// A value could not be encoded.
    #[error("session value could not be encoded")]
    Encode(#[source] BoxError),
    /// A stored value could not be decoded as the requested type.
    #[error("session value could not be decoded")]
    Decode(#[source] BoxError),
    /// The operating system could not supply random bytes for a new session id.
    #[error("no randomness for a new session id")]
    Entropy(#[source] getrandom::Error),
}

/// The kind of an [`Error`], for matching without the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Timeout`].
    Timeout,
    /// See [`Error::Backend`].
    Backend,
    /// See [`Error::Corrupt`].
    Corrupt,
    /// See [`Error::Encode`].
    Encode,
    /// See [`Error::Decode`].
    Decode,
    /// See [`Error::Entropy`].
    Entropy,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Backend(_) => ErrorKind::Backend,
            Self::Corrupt(_) => ErrorKind::Corrupt,
            Self::Encode(_) => ErrorKind::Encode,
            Self::Decode(_) => ErrorKind::Decode,
            Self::Entropy(_) => ErrorKind::Entropy,
        }
    }

    /// Whether the same operation may succeed if tried again later: the store was unreachable
    /// or slow, not wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_))
    }
}

/// Displays an error followed by its chain of causes, `outer: inner: root`, for log lines.
///
/// ```
/// use tether_core::{Error, error_chain};
///
/// let err = Error::Backend("NOPERM this user has no permissions".into());
/// assert_eq!(
///     error_chain(&err).to_string(),
///     "session store failed: NOPERM this user has no permissions",
/// );
/// ```
pub fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl std::fmt::Display + 'a {
    struct Chain<'a>(&'a (dyn std::error::Error + 'static));
    impl std::fmt::Display for Chain<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)?;
            let mut source = self.0.source();
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
            Ok(())
        }
    }
    Chain(error)
}
