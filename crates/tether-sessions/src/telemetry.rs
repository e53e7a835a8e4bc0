//! What the layer counts, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`). Without the feature every function here is empty and compiles away; with it and
//! no recorder installed, each is a check of the facade's global recorder.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tether_session_requests_total` | counter | `outcome` | requests through the layer, by what became of their session |
//! | `tether_session_store_duration_seconds` | histogram | `operation` | time of each store call |
//! | `tether_session_store_errors_total` | counter | `operation`, `kind` | failed store calls |
//! | `tether_session_size_bytes` | histogram | | size of the session data a request saved |

use std::future::Future;

use tether_core::{Error, ErrorKind};

/// What became of a request's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler did not use the session.
    NoSession,
    /// Read, nothing to write.
    Loaded,
    /// A new session was stored.
    Created,
    /// The request's changes were applied.
    Changed,
    /// Only the idle deadline was extended.
    Touched,
    /// Moved to a new id.
    Cycled,
    /// Ended: flushed, or the presented id named nothing.
    Revoked,
    /// The handler failed (5xx): its changes were dropped.
    Discarded,
    /// The store failed while saving: answered 503.
    SaveFailed,
    /// The request's deadline passed before it ran or before its save: answered 503.
    Late,
}

impl Outcome {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::NoSession => "no_session",
            Self::Loaded => "loaded",
            Self::Created => "created",
            Self::Changed => "changed",
            Self::Touched => "touched",
            Self::Cycled => "cycled",
            Self::Revoked => "revoked",
            Self::Discarded => "discarded",
            Self::SaveFailed => "save_failed",
            Self::Late => "late",
        }
    }
}

/// Counts a request by its session's outcome.
pub(crate) fn request(outcome: Outcome) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tether_session_requests_total", "outcome" => outcome.label()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// Records the size of the session data a request saved.
pub(crate) fn session_size(bytes: usize) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("tether_session_size_bytes").record(bytes as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = bytes;
}

/// The kind label of a store error.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn kind(error: &Error) -> &'static str {
    match error.kind() {
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Encode | ErrorKind::Decode => "codec",
        _ => "backend",
    }
}

/// Runs the store call `operation` (`load`, `create`, `apply`, `touch`, `cycle`, `delete`),
/// timing it and counting its failure.
pub(crate) async fn store_call<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    #[cfg(feature = "metrics")]
    {
        let started = std::time::Instant::now();
        let result = call.await;
        metrics::histogram!("tether_session_store_duration_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            metrics::counter!(
                "tether_session_store_errors_total",
                "operation" => operation,
                "kind" => kind(error)
            )
            .increment(1);
        }
        result
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = operation;
        call.await
    }
}
