//! What the layer counts, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`). Without the feature [`Telemetry`] is empty and every call compiles away; with
//! it, the handles come from the recorder installed when the layer was built.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tether_session_requests_total` | counter | `outcome` | requests through the layer, by what became of their session |
//! | `tether_session_store_duration_seconds` | histogram | `operation` | time of each store call |
//! | `tether_session_store_errors_total` | counter | `operation`, `kind` | failed store calls |
//! | `tether_session_size_bytes` | histogram | | size of the session data a request saved |

use std::future::Future;

/// The span of one store call, `debug_span!` arguments: the span when debug spans are recorded,
/// otherwise none at all. Without a subscriber, tracing hands every span to its `log` bridge
/// when its feature `log` is on (tower-sessions and sqlx turn it on), which costs a read about
/// 300 instructions for a span nobody reads.
macro_rules! store_span {
    ($($span:tt)*) => {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!($($span)*)
        } else {
            tracing::Span::none()
        }
    };
}

pub(crate) use store_span;

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
    const COUNT: usize = 10;
    /// Every outcome, in declaration order: `outcome as usize` indexes it.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    const ALL: [Self; Self::COUNT] = [
        Self::NoSession,
        Self::Loaded,
        Self::Created,
        Self::Changed,
        Self::Touched,
        Self::Cycled,
        Self::Revoked,
        Self::Discarded,
        Self::SaveFailed,
        Self::Late,
    ];

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

/// A store call the layer makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Load,
    Create,
    Apply,
    Touch,
    Cycle,
    Delete,
    UpdateKey,
}

impl Operation {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    const COUNT: usize = 7;
    /// Every operation, in declaration order: `operation as usize` indexes it.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    const ALL: [Self; Self::COUNT] = [
        Self::Load,
        Self::Create,
        Self::Apply,
        Self::Touch,
        Self::Cycle,
        Self::Delete,
        Self::UpdateKey,
    ];

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Create => "create",
            Self::Apply => "apply",
            Self::Touch => "touch",
            Self::Cycle => "cycle",
            Self::Delete => "delete",
            Self::UpdateKey => "update_key",
        }
    }
}

/// The kind label of a store error.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn kind(error: &Error) -> &'static str {
    match error.kind() {
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Encode | ErrorKind::Decode | ErrorKind::NotACounter => "codec",
        ErrorKind::Conflict => "conflict",
        _ => "backend",
    }
}

/// The layer's metric handles, registered once when the layer is built: a request then costs
/// an atomic add per counter and a push per histogram sample, with no key hashing or
/// registry lookup. So the recorder must be installed before the layer is built; handles
/// registered without one record nothing.
#[derive(Clone)]
pub(crate) struct Telemetry {
    #[cfg(feature = "metrics")]
    requests: [metrics::Counter; Outcome::COUNT],
    #[cfg(feature = "metrics")]
    durations: [metrics::Histogram; Operation::COUNT],
    #[cfg(feature = "metrics")]
    size: metrics::Histogram,
}

impl Telemetry {
    /// Registers the handles with the recorder installed now.
    pub(crate) fn register() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            requests: Outcome::ALL.map(|outcome| {
                metrics::counter!("tether_session_requests_total", "outcome" => outcome.label())
            }),
            #[cfg(feature = "metrics")]
            durations: Operation::ALL.map(|operation| {
                metrics::histogram!(
                    "tether_session_store_duration_seconds",
                    "operation" => operation.label()
                )
            }),
            #[cfg(feature = "metrics")]
            size: metrics::histogram!("tether_session_size_bytes"),
        }
    }

    /// Counts a request by its session's outcome.
    pub(crate) fn request(&self, outcome: Outcome) {
        #[cfg(feature = "metrics")]
        if let Some(counter) = self.requests.get(outcome as usize) {
            counter.increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = outcome;
    }

    /// Records the size of the session data a request saved.
    pub(crate) fn session_size(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.size.record(bytes as f64);
        #[cfg(not(feature = "metrics"))]
        let _ = bytes;
    }

    /// Runs the store call `operation`, timing it and counting its failure.
    pub(crate) async fn store_call<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        #[cfg(feature = "metrics")]
        {
            let started = std::time::Instant::now();
            let result = call.await;
            if let Some(histogram) = self.durations.get(operation as usize) {
                histogram.record(started.elapsed().as_secs_f64());
            }
            if let Err(error) = &result {
                // Rare: the key is built on the spot.
                metrics::counter!(
                    "tether_session_store_errors_total",
                    "operation" => operation.label(),
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
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}
