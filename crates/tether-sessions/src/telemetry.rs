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
//! | `tether_session_rejected_total` | counter | `reason` | session calls refused: too large, too many keys, conflict |
//! | `tether_session_update_retries_total` | counter | | `Session::update` attempts lost to another write and tried again |

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

/// What failed in a store call, as its `kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorClass {
    Unavailable,
    Timeout,
    Corrupt,
    Codec,
    Conflict,
    Backend,
}

impl ErrorClass {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    const COUNT: usize = 6;
    /// Every class, in declaration order: `class as usize` indexes it.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    const ALL: [Self; Self::COUNT] = [
        Self::Unavailable,
        Self::Timeout,
        Self::Corrupt,
        Self::Codec,
        Self::Conflict,
        Self::Backend,
    ];

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn of(error: &Error) -> Self {
        match error.kind() {
            ErrorKind::Unavailable => Self::Unavailable,
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::Corrupt => Self::Corrupt,
            ErrorKind::Encode | ErrorKind::Decode | ErrorKind::NotACounter => Self::Codec,
            ErrorKind::Conflict => Self::Conflict,
            _ => Self::Backend,
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Corrupt => "corrupt",
            Self::Codec => "codec",
            Self::Conflict => "conflict",
            Self::Backend => "backend",
        }
    }
}

/// A handler's session call the layer refused: the client's mistake or a lost race, answered
/// `413` or `409`, never a store failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Past the layer's size limit.
    TooLarge,
    /// Past the layer's key limit.
    TooManyKeys,
    /// Another request changed the key first: a write under
    /// [`WritePolicy::RejectOnConflict`](crate::WritePolicy::RejectOnConflict), or a
    /// [`Session::update`](crate::Session::update) that lost every attempt.
    Conflict,
}

impl Rejection {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    const COUNT: usize = 3;
    /// Every rejection, in declaration order: `rejection as usize` indexes it.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    const ALL: [Self; Self::COUNT] = [Self::TooLarge, Self::TooManyKeys, Self::Conflict];

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::TooManyKeys => "too_many_keys",
            Self::Conflict => "conflict",
        }
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
    #[cfg(feature = "metrics")]
    errors: [[metrics::Counter; ErrorClass::COUNT]; Operation::COUNT],
    #[cfg(feature = "metrics")]
    rejections: [metrics::Counter; Rejection::COUNT],
    #[cfg(feature = "metrics")]
    update_retries: metrics::Counter,
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
            #[cfg(feature = "metrics")]
            errors: Operation::ALL.map(|operation| {
                ErrorClass::ALL.map(|class| {
                    metrics::counter!(
                        "tether_session_store_errors_total",
                        "operation" => operation.label(),
                        "kind" => class.label()
                    )
                })
            }),
            #[cfg(feature = "metrics")]
            rejections: Rejection::ALL.map(|rejection| {
                metrics::counter!("tether_session_rejected_total", "reason" => rejection.label())
            }),
            #[cfg(feature = "metrics")]
            update_retries: metrics::counter!("tether_session_update_retries_total"),
        }
    }

    /// Counts a session call the layer refused.
    pub(crate) fn rejected(&self, rejection: Rejection) {
        #[cfg(feature = "metrics")]
        if let Some(counter) = self.rejections.get(rejection as usize) {
            counter.increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = rejection;
    }

    /// Counts an attempt of [`Session::update`](crate::Session::update) that lost to another
    /// request's write and is tried again.
    pub(crate) fn update_retried(&self) {
        #[cfg(feature = "metrics")]
        self.update_retries.increment(1);
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
            if let Err(error) = &result
                && let Some(counter) = self
                    .errors
                    .get(operation as usize)
                    .and_then(|by_class| by_class.get(ErrorClass::of(error) as usize))
            {
                counter.increment(1);
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
