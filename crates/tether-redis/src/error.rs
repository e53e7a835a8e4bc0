//! Errors: building the store, and sorting redis-rs errors into transient and permanent.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why a [`RedisStore`](crate::RedisStore) could not be built.
///
/// Errors of session operations are [`tether_core::Error`]s; see [`RedisStore`](crate::RedisStore)
/// for how Redis failures map onto them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL or client settings are invalid.
    #[error("invalid Redis configuration")]
    Config(#[source] RedisError),
    /// Redis could not be reached or refused the connection (wrong password, say).
    #[error("could not connect to Redis ({topology})")]
    Connect {
        /// `standalone`, `cluster` or `sentinel`.
        topology: &'static str,
        /// What redis-rs reported.
        #[source]
        source: RedisError,
    },
    /// Connecting took longer than the connect timeout.
    #[error("connecting to Redis ({topology}) took longer than {timeout:?}")]
    ConnectTimeout {
        /// `standalone`, `cluster` or `sentinel`.
        topology: &'static str,
        /// The connect timeout.
        timeout: Duration,
    },
}

/// Sorts a redis-rs error into tether's kinds: what a retry can fix is transient.
pub(crate) fn from_redis(error: RedisError, timeout: Duration) -> tether_core::Error {
    if error.is_timeout() {
        return tether_core::Error::Timeout(timeout);
    }
    if error.code() == Some("WRONGTYPE") {
        // The key holds something that is not a session hash.
        return tether_core::Error::Corrupt(Box::new(error));
    }
    let transient = error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            ) | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
        );
    if transient {
        tether_core::Error::Unavailable(Box::new(error))
    } else {
        tether_core::Error::Backend(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_errors() {
        let t = Duration::from_secs(1);
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(from_redis(refused, t).is_transient());
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(from_redis(timeout, t).is_transient());
        let config = RedisError::from((ErrorKind::InvalidClientConfig, "bad"));
        assert!(!from_redis(config, t).is_transient());
    }
}
