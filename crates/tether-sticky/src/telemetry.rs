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

/// The metric handles of one backend, registered once when it joins the router, so a routed
/// request costs atomic adds, not a lookup of its labels (install the recorder before building
/// the router). Without the feature it holds nothing.
#[derive(Debug)]
pub(crate) struct BackendMetrics {
    #[cfg(feature = "metrics")]
    requests: [metrics::Counter; 4],
    #[cfg(feature = "metrics")]
    in_flight: metrics::Gauge,
    #[cfg(feature = "metrics")]
    upstream_duration: metrics::Histogram,
    #[cfg(feature = "metrics")]
    failures: metrics::Counter,
    #[cfg(feature = "metrics")]
    ejections: metrics::Counter,
    #[cfg(feature = "metrics")]
    ejected: metrics::Gauge,
    #[cfg(feature = "metrics")]
    check_down: metrics::Gauge,
}

impl BackendMetrics {
    /// Registers the handles of `backend`, and shows it in rotation.
    pub(crate) fn new(backend: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let backend = backend.to_owned();
            let requests = [
                Reason::Pinned,
                Reason::New,
                Reason::BySession,
                Reason::Redispatched,
            ]
            .map(|reason| {
                metrics::counter!(
                    "tether_sticky_requests_total",
                    "backend" => backend.clone(),
                    "reason" => reason_label(reason)
                )
            });
            let metrics = Self {
                requests,
                in_flight: metrics::gauge!("tether_sticky_in_flight", "backend" => backend.clone()),
                upstream_duration: metrics::histogram!(
                    "tether_sticky_upstream_duration_seconds",
                    "backend" => backend.clone()
                ),
                failures: metrics::counter!(
                    "tether_sticky_backend_failures_total",
                    "backend" => backend.clone()
                ),
                ejections: metrics::counter!(
                    "tether_sticky_ejections_total",
                    "backend" => backend.clone()
                ),
                ejected: metrics::gauge!("tether_sticky_backend_ejected", "backend" => backend.clone()),
                check_down: metrics::gauge!("tether_sticky_backend_check_down", "backend" => backend),
            };
            metrics.ejection(false);
            metrics
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = backend;
            Self {}
        }
    }

    /// A request sent to the backend, and why there.
    pub(crate) fn routed(&self, reason: Reason) {
        #[cfg(feature = "metrics")]
        {
            let index = match reason {
                Reason::Pinned => 0,
                Reason::New => 1,
                Reason::BySession => 2,
                Reason::Redispatched => 3,
            };
            if let Some(counter) = self.requests.get(index) {
                counter.increment(1);
            }
            self.in_flight.increment(1.0);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }

    /// A request sent at `sent` ended; `failed`: with no response.
    pub(crate) fn answered(&self, sent: Sent, failed: bool) {
        #[cfg(feature = "metrics")]
        {
            self.upstream_duration
                .record(sent.0.elapsed().as_secs_f64());
            if failed {
                self.failures.increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (sent, failed);
    }

    /// A request is no longer in flight.
    pub(crate) fn left(&self) {
        #[cfg(feature = "metrics")]
        self.in_flight.decrement(1.0);
    }

    /// Passive health ejected the backend.
    pub(crate) fn ejected(&self) {
        #[cfg(feature = "metrics")]
        self.ejections.increment(1);
        self.ejection(true);
    }

    /// The backend is now ejected by passive health, or back in rotation.
    pub(crate) fn ejection(&self, ejected: bool) {
        #[cfg(feature = "metrics")]
        self.ejected.set(if ejected { 1.0 } else { 0.0 });
        #[cfg(not(feature = "metrics"))]
        let _ = ejected;
    }

    /// Active health checks took the backend down (`down`) or brought it back.
    pub(crate) fn checked(&self, down: bool) {
        #[cfg(feature = "metrics")]
        self.check_down.set(if down { 1.0 } else { 0.0 });
        #[cfg(not(feature = "metrics"))]
        let _ = down;
    }
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
