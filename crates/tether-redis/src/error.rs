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
    #[error("invalid Redis configuration for {target}")]
    Config {
        /// The URL, or the URLs of the cluster nodes or sentinels, passwords redacted.
        target: String,
        /// What redis-rs reported.
        #[source]
        source: RedisError,
    },
    /// Redis could not be reached or refused the connection (wrong password, say).
    #[error("could not connect to Redis ({topology}) at {target}")]
    Connect {
        /// `standalone`, `cluster` or `sentinel`.
        topology: &'static str,
        /// The URL, or the URLs of the cluster nodes or sentinels, passwords redacted.
        target: String,
        /// What redis-rs reported.
        #[source]
        source: RedisError,
    },
    /// Connecting took longer than the connect timeout.
    #[error("connecting to Redis ({topology}) at {target} took longer than {timeout:?}")]
    ConnectTimeout {
        /// `standalone`, `cluster` or `sentinel`.
        topology: &'static str,
        /// The URL, or the URLs of the cluster nodes or sentinels, passwords redacted.
        target: String,
        /// The connect timeout.
        timeout: Duration,
    },
}

/// `url` fit for a log or an error message: the password of `user:password@` and the `pass` or
/// `password` query parameters (Unix socket URLs) become `***`. Works on text and not on a
/// parsed URL, so that an invalid URL can be named too. The authority ends at the first `/`,
/// `?` or `#`, as URL parsers read it; an `@` after that (an unencoded `/` in a password, or an
/// `@` in a query value) leaves it unclear what is secret, and then all but the scheme is hidden.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if tail.contains('@') {
        return format!("{scheme}***");
    }
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key == "pass" || key == "password" => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

/// Several URLs, each redacted, separated by commas.
#[cfg(any(feature = "cluster", feature = "sentinel", test))]
pub(crate) fn redact_all<'a>(urls: impl IntoIterator<Item = &'a String>) -> String {
    urls.into_iter()
        .map(|url| redact(url))
        .collect::<Vec<_>>()
        .join(", ")
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

    #[test]
    fn redacts_passwords() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://app:s3cret@127.0.0.1:6379/2",
                "redis://app:***@127.0.0.1:6379/2",
            ),
            ("rediss://:s3cret@cache:6380", "rediss://:***@cache:6380"),
            ("redis://app@cache", "redis://app@cache"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "unix:///run/redis.sock?password=s3cret",
                "unix:///run/redis.sock?password=***",
            ),
            // Not a URL a parser accepts: still nothing of the password shows.
            ("redis://:s3/cret@cache", "redis://***"),
            ("unix:///s.sock?pass=s3@cret", "unix://***"),
            ("redis://u:s3?cret@cache", "redis://***"),
            ("app:s3cret@cache:6379", "app:***@cache:6379"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        let nodes = [
            "redis://:a@n1:7000".to_owned(),
            "redis://n2:7001".to_owned(),
        ];
        assert_eq!(redact_all(&nodes), "redis://:***@n1:7000, redis://n2:7001");
    }
}
