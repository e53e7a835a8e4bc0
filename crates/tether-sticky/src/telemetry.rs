//! What the router counts, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`); without the feature every function here is empty and compiles away. The names
//! are listed in docs/operations.md.

use crate::backend::Reason;

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn reason_label(reason: Reason) -> &'static str {
    match reason {
        Reason::Pinned => "pinned",
        Reason::New => "new",
        Reason::BySession => "by_session",
        Reason::Redispatched => "redispatched",
    }
}

/// A request sent to `backend`, and why there.
pub(crate) fn routed(backend: &str, reason: Reason) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(
            "tether_sticky_requests_total",
            "backend" => backend.to_owned(),
            "reason" => reason_label(reason)
        )
        .increment(1);
        metrics::gauge!("tether_sticky_in_flight", "backend" => backend.to_owned()).increment(1.0);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, reason);
}

/// When a request was sent to a backend. Without the feature it holds nothing, so that a
/// request pays no clock reading for metrics nobody records.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sent(#[cfg(feature = "metrics")] std::time::Instant);

impl Sent {
    pub(crate) fn now() -> Self {
        Self(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }
}

/// A request to `backend`, sent at `sent`, ended; `failed`: with no response.
pub(crate) fn answered(backend: &str, sent: Sent, failed: bool) {
    #[cfg(feature = "metrics")]
    {
        metrics::histogram!("tether_sticky_upstream_duration_seconds", "backend" => backend.to_owned())
            .record(sent.0.elapsed().as_secs_f64());
        if failed {
            metrics::counter!("tether_sticky_backend_failures_total", "backend" => backend.to_owned())
                .increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, sent, failed);
}

/// A request to `backend` is no longer in flight.
pub(crate) fn left(backend: &str) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("tether_sticky_in_flight", "backend" => backend.to_owned()).decrement(1.0);
    #[cfg(not(feature = "metrics"))]
    let _ = backend;
}

/// Passive health ejected `backend`.
pub(crate) fn ejected(backend: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tether_sticky_ejections_total", "backend" => backend.to_owned())
        .increment(1);
    ejection(backend, true);
}

/// `backend` is now ejected by passive health, or back in rotation (its cooldown ran out; also
/// its state when it joins).
pub(crate) fn ejection(backend: &str, ejected: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("tether_sticky_backend_ejected", "backend" => backend.to_owned())
        .set(if ejected { 1.0 } else { 0.0 });
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, ejected);
}

/// Active health checks took `backend` down (`down`) or brought it back.
pub(crate) fn checked(backend: &str, down: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("tether_sticky_backend_check_down", "backend" => backend.to_owned())
        .set(if down { 1.0 } else { 0.0 });
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, down);
}

/// The router answered `status` itself: `503` (no backend may take the request), `502` (the
/// backends tried failed), `400` (the client's body broke).
pub(crate) fn refused(status: http::StatusCode) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tether_sticky_refused_total", "status" => status.as_str().to_owned())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = status;
}

/// An affinity pin was present but did not open (forged, corrupt, stale, another key).
pub(crate) fn invalid_pin() {
    #[cfg(feature = "metrics")]
    metrics::counter!("tether_sticky_invalid_pins_total").increment(1);
}
