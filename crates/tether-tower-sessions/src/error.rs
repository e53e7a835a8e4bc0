//! The crate's error, and how it becomes a tower-sessions store error.

use tower_sessions_core::session_store;

/// What went wrong between tower-sessions and a tether store.
///
/// tower-sessions' own error carries only a `String`, so the conversion into
/// [`session_store::Error`] keeps the whole chain of causes as text
/// ([`tether_core::error_chain`]): `Store` errors become `Backend` (or `Decode`/`Encode` when
/// the tether error is of that kind), `Encode` becomes `Encode`, `Decode` becomes `Decode`.
///
/// # Example
///
/// ```
/// use tower_sessions_core::session_store;
///
/// let err = tether_tower_sessions::Error::IdCollisions(8);
/// let tower: session_store::Error = err.into();
/// assert!(matches!(tower, session_store::Error::Backend(_)));
/// assert_eq!(tower.to_string(), "no free session id after 8 attempts");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tether store failed.
    #[error("session store failed")]
    Store(#[source] tether_core::Error),
    /// A session value could not be encoded as JSON.
    #[error("session value under key {key:?} could not be encoded")]
    Encode {
        /// The session key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored session value is not JSON (it was written by another codec, or is corrupt).
    #[error("stored session value under key {key:?} is not JSON")]
    Decode {
        /// The session key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Every id tried for a new session was taken by a live one.
    #[error("no free session id after {0} attempts")]
    IdCollisions(usize),
}

impl Error {
    /// Whether the same call may succeed later (the tether store was unreachable or slow).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_transient())
    }
}

impl From<tether_core::Error> for Error {
    fn from(error: tether_core::Error) -> Self {
        Self::Store(error)
    }
}

impl From<Error> for session_store::Error {
    fn from(error: Error) -> Self {
        let message = tether_core::error_chain(&error).to_string();
        match &error {
            Error::Encode { .. } => Self::Encode(message),
            Error::Decode { .. } => Self::Decode(message),
            Error::Store(e) => match e.kind() {
                tether_core::ErrorKind::Encode => Self::Encode(message),
                tether_core::ErrorKind::Decode | tether_core::ErrorKind::Corrupt => {
                    Self::Decode(message)
                }
                _ => Self::Backend(message),
            },
            Error::IdCollisions(_) => Self::Backend(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages_survive_the_conversion() {
        let backend = Error::Store(tether_core::Error::Backend("NOPERM no access".into()));
        assert!(!backend.is_transient());
        match session_store::Error::from(backend) {
            session_store::Error::Backend(m) => {
                // The chain says a cause its outer message repeats once.
                assert_eq!(m, "session store failed: NOPERM no access");
            }
            other => panic!("{other:?}"),
        }

        let unavailable = Error::Store(tether_core::Error::Unavailable(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        ));
        assert!(unavailable.is_transient());
        assert!(matches!(
            session_store::Error::from(unavailable),
            session_store::Error::Backend(m) if m.contains("unavailable")
        ));

        let corrupt = Error::Store(tether_core::Error::Corrupt("bad hash".into()));
        assert!(matches!(
            session_store::Error::from(corrupt),
            session_store::Error::Decode(m) if m.ends_with("bad hash")
        ));

        let source = serde_json::from_slice::<serde_json::Value>(b"\x93").unwrap_err();
        let decode = Error::Decode {
            key: "cart".into(),
            source,
        };
        assert!(matches!(
            session_store::Error::from(decode),
            session_store::Error::Decode(m) if m.starts_with("stored session value under key \"cart\" is not JSON: ")
        ));
    }
}
