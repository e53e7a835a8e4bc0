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
    /// A subscriber to a store's events fell behind and this many events were dropped for it.
    /// Its stream goes on with the next event.
    #[error("{0} session events were missed by a subscriber that fell behind")]
    EventsMissed(u64),
    /// The store does not offer this capability (a third-party store that predates it). The
    /// text names the capability.
    #[error("this session store does not support {0}")]
    Unsupported(&'static str),
    /// An increment ([`KeyUpdate::Increment`](crate::KeyUpdate::Increment)) found a value that
    /// is not an integer under the key, or would take the counter past
    /// [`COUNTER_MAX`](crate::COUNTER_MAX) either way. Nothing was written.
    #[error("session key {key:?} does not hold a counter that can take {by:+}")]
    NotACounter {
        /// The session key.
        key: String,
        /// The amount that was to be added.
        by: i64,
    },
    /// A compare-and-set update of one key lost to concurrent writers of the same key this
    /// many times in a row and gave up; nothing was written. Rare under any realistic load;
    /// the session layer answers it with `409 Conflict`.
    #[error("session key {key:?} kept changing under {attempts} attempts to update it")]
    Conflict {
        /// The session key.
        key: String,
        /// The attempts made.
        attempts: u32,
    },
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
    /// See [`Error::EventsMissed`].
    EventsMissed,
    /// See [`Error::Unsupported`].
    Unsupported,
    /// See [`Error::NotACounter`].
    NotACounter,
    /// See [`Error::Conflict`].
    Conflict,
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
            Self::EventsMissed(_) => ErrorKind::EventsMissed,
            Self::Unsupported(_) => ErrorKind::Unsupported,
            Self::NotACounter { .. } => ErrorKind::NotACounter,
            Self::Conflict { .. } => ErrorKind::Conflict,
        }
    }

    /// Whether the same operation may succeed if tried again later: the store was unreachable
    /// or slow, not wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_))
    }
}

/// Displays an error followed by its chain of causes, `outer: inner: root`, for log lines and
/// a binary's last words. A cause whose text the line already ends with (an error that repeats
/// its source in its own message) is said once.
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
            let mut line = self.0.to_string();
            let mut source = self.0.source();
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !ends_with_words(&line, &cause_text) {
                    line.push_str(": ");
                    line.push_str(&cause_text);
                }
                source = cause.source();
            }
            f.write_str(&line)
        }
    }
    Chain(error)
}

/// Whether `line` ends with `tail` as whole words (not `"unfound"` for `"found"`).
fn ends_with_words(line: &str, tail: &str) -> bool {
    line.strip_suffix(tail)
        .is_some_and(|head| !tail.is_empty() && !head.ends_with(|c: char| c.is_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn a_cause_the_message_repeats_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("refused: {0}")]
        struct Repeats(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("connecting")]
        struct Connecting(#[source] Repeats);
        let error = Connecting(Repeats(std::io::Error::other("no")));
        assert_eq!(error_chain(&error).to_string(), "connecting: refused: no");

        let error = Connecting(Repeats(std::io::Error::other("fused: no")));
        assert_eq!(
            error_chain(&error).to_string(),
            "connecting: refused: fused: no"
        );

        #[derive(Debug, thiserror::Error)]
        #[error("unfound")]
        struct Unfound(#[source] std::io::Error);
        let error = Unfound(std::io::Error::other("found"));
        assert_eq!(error_chain(&error).to_string(), "unfound: found");
    }
}
