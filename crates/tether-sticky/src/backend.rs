//! What the router knows about each backend: its administrative state, its health, its load.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Weight;
use crate::check::{CheckRecord, Checked, HealthCheck};
use crate::telemetry::{BackendMetrics, Sent};

/// A backend's administrative state, set by an operator (see [`Health`] for what passive health
/// checks decided). Reads and prints itself as `ready`, `drain` or `maintenance` (`maint` is read
/// too; with the `serde` feature, serializes as those words).
///
/// ```
/// use tether_sticky::BackendState;
///
/// assert_eq!("maint".parse::<BackendState>()?, BackendState::Maintenance);
/// assert_eq!(BackendState::Drain.to_string(), "drain");
/// # Ok::<(), tether_sticky::ParseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendState {
    /// Takes pinned and new sessions.
    Ready,
    /// Keeps serving the sessions pinned to it, takes no new ones: for taking it out of
    /// rotation without cutting anyone off.
    Drain,
    /// Takes nothing; its pinned sessions fail over.
    Maintenance,
}

crate::parse::words!(BackendState, "backend state", {
    Ready => "ready",
    Drain => "drain",
    Maintenance => "maintenance" | "maint",
});

/// A backend's health, as passive health checks see it. It is separate from the operator's
/// [`BackendState`]: a `Ready` backend whose requests fail is ejected all the same.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tether_sticky::Health;
///
/// assert!(!Health::Healthy { failures_in_a_row: 2 }.is_ejected());
/// let until = Instant::now() + Duration::from_secs(10);
/// assert!(Health::Ejected { until }.is_ejected());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Takes requests.
    Healthy {
        /// How many of its latest requests failed, one after the other; at the threshold of
        /// [`StickyConfig::with_passive_health`](crate::StickyConfig::with_passive_health) it is
        /// ejected.
        failures_in_a_row: usize,
    },
    /// Ejected after failures in a row: takes no request until then.
    Ejected {
        /// When it takes requests again.
        until: Instant,
    },
}

impl Health {
    /// Ejected by passive health checks right now.
    pub fn is_ejected(&self) -> bool {
        matches!(self, Self::Ejected { .. })
    }
}

/// Counters of one backend, as the admin listener shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendCounters {
    /// Requests routed here by a valid affinity cookie.
    pub pinned: u64,
    /// New sessions placed here (power of two choices or source hashing).
    pub new: u64,
    /// Requests placed by the application's session id (rendezvous order).
    pub by_session: u64,
    /// Requests that came here because their pinned backend could not take them.
    pub redispatched: u64,
    /// Requests that failed here (connection refused, reset, timeout).
    pub failures: u64,
    /// Requests in flight right now.
    pub in_flight: usize,
}

/// The live record of one backend.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) name: String,
    metrics: BackendMetrics,
    state: Mutex<BackendState>,
    /// The operator's weight ([`Weight`]).
    weight: AtomicU16,
    joined: Instant,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicUsize,
    ejected_until: Mutex<Option<Instant>>,
    /// What active health checks found; `None` until the first check.
    check: Mutex<Option<CheckRecord>>,
    /// Active health checks took it out of rotation: read on every routing decision, so kept
    /// apart from the record.
    checked_down: AtomicBool,
    pinned: AtomicU64,
    new: AtomicU64,
    by_session: AtomicU64,
    redispatched: AtomicU64,
    failures: AtomicU64,
}

/// Why a request is sent to a backend, for its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Pinned,
    New,
    BySession,
    Redispatched,
}

impl Backend {
    pub(crate) fn new(name: String) -> Self {
        Self {
            metrics: BackendMetrics::new(&name),
            name,
            state: Mutex::new(BackendState::Ready),
            weight: AtomicU16::new(Weight::default().get()),
            joined: Instant::now(),
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicUsize::new(0),
            ejected_until: Mutex::new(None),
            check: Mutex::new(None),
            checked_down: AtomicBool::new(false),
            pinned: AtomicU64::new(0),
            new: AtomicU64::new(0),
            by_session: AtomicU64::new(0),
            redispatched: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self) -> BackendState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_state(&self, state: BackendState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Ejected by passive health checks right now.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected_until().is_some()
    }

    /// Until when it is ejected, if it is now; an ejection that ran out is forgotten.
    fn ejected_until(&self) -> Option<Instant> {
        let mut until = self.ejected_until.lock().unwrap_or_else(|p| p.into_inner());
        match *until {
            Some(at) if at > Instant::now() => Some(at),
            Some(_) => {
                *until = None;
                self.metrics.ejection(false);
                None
            }
            None => None,
        }
    }

    pub(crate) fn health(&self) -> Health {
        match self.ejected_until() {
            Some(until) => Health::Ejected { until },
            None => Health::Healthy {
                failures_in_a_row: self.consecutive_failures.load(Ordering::Relaxed),
            },
        }
    }

    /// Neither ejected by passive health nor taken down by active checks.
    pub(crate) fn is_healthy(&self) -> bool {
        !self.checked_down.load(Ordering::Relaxed) && !self.is_ejected()
    }

    /// Takes in the outcome of one active check (`outcome` says what it found), logging the
    /// backend going down or coming back.
    #[cfg_attr(
        not(feature = "active-health"),
        expect(dead_code, reason = "only the active-health feature runs checks")
    )]
    pub(crate) fn record_check(&self, passed: bool, outcome: String, check: &HealthCheck) {
        let mut record = self.check.lock().unwrap_or_else(|p| p.into_inner());
        let record = record.get_or_insert_with(CheckRecord::new);
        if record.record(passed, outcome, check) {
            let down = record.checked.is_down();
            self.checked_down.store(down, Ordering::Relaxed);
            if down {
                tracing::warn!(backend = %self.name, last = %record.last, "backend down: active health check failed");
            } else {
                tracing::info!(backend = %self.name, last = %record.last, "backend up again: active health checks pass");
            }
            self.metrics.checked(down);
        }
    }

    /// What active checks found, with the latest outcome; `None` before the first check.
    pub(crate) fn checked(&self) -> Option<(Checked, String)> {
        self.check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|record| (record.checked, record.last.clone()))
    }

    /// May serve a session pinned to it; `panic`: health is disregarded (every backend that
    /// could serve is unhealthy).
    pub(crate) fn takes_pinned(&self, panic: bool) -> bool {
        self.state() != BackendState::Maintenance && (panic || self.is_healthy())
    }

    /// May take a new session; `panic` as for [`Backend::takes_pinned`]. Weight 0 takes none.
    pub(crate) fn takes_new(&self, panic: bool) -> bool {
        self.state() == BackendState::Ready
            && self.configured_weight().get() > 0
            && (panic || self.is_healthy())
    }

    /// The operator's weight.
    pub(crate) fn configured_weight(&self) -> Weight {
        Weight::new(self.weight.load(Ordering::Relaxed)).unwrap_or_default()
    }

    pub(crate) fn set_weight(&self, weight: Weight) {
        self.weight.store(weight.get(), Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The operator's weight, times a ramp from 0.1 to 1 during slow start.
    pub(crate) fn weight(&self, slow_start: Duration) -> f64 {
        let configured = f64::from(self.configured_weight().get());
        if slow_start.is_zero() {
            return configured;
        }
        configured
            * (self.joined.elapsed().as_secs_f64() / slow_start.as_secs_f64()).clamp(0.1, 1.0)
    }

    /// Takes one unit of load if the backend is below `cap`, atomically, so concurrent routing
    /// decisions cannot push it past the cap together.
    pub(crate) fn try_reserve(&self, cap: usize) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    /// Counts a request that [`Backend::try_reserve`] already put in flight.
    pub(crate) fn begin_reserved(self: &Arc<Self>, reason: Reason) -> InFlight {
        self.count(reason);
        InFlight {
            backend: Arc::clone(self),
        }
    }

    fn count(&self, reason: Reason) {
        self.metrics.routed(reason);
        let counter = match reason {
            Reason::Pinned => &self.pinned,
            Reason::New => &self.new,
            Reason::BySession => &self.by_session,
            Reason::Redispatched => &self.redispatched,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn begin(self: &Arc<Self>, reason: Reason) -> InFlight {
        self.count(reason);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: Arc::clone(self),
        }
    }

    /// A request sent at `sent` ended; `failed`: with no response.
    pub(crate) fn answered(&self, sent: Sent, failed: bool) {
        self.metrics.answered(sent, failed);
    }

    pub(crate) fn succeeded(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure; after `threshold` in a row the backend is ejected for `cooldown`.
    pub(crate) fn failed(&self, threshold: usize, cooldown: Duration) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold > 0 && failures >= threshold {
            *self.ejected_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + cooldown);
            self.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::warn!(backend = %self.name, failures, ?cooldown, "backend ejected");
            self.metrics.ejected();
        }
    }

    pub(crate) fn counters(&self) -> BackendCounters {
        BackendCounters {
            pinned: self.pinned.load(Ordering::Relaxed),
            new: self.new.load(Ordering::Relaxed),
            by_session: self.by_session.load(Ordering::Relaxed),
            redispatched: self.redispatched.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
        }
    }
}

/// Counts a request as in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    backend: Arc<Backend>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.backend.metrics.left();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ejection gauge follows passive health: 1 from the ejection, 0 once the cooldown ran
    /// out. The backend registers its handles when it is made, with the recorder of then.
    #[cfg(feature = "metrics")]
    #[test]
    fn the_ejection_gauge_follows_the_cooldown() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let recorder = DebuggingRecorder::new();
        let gauge = || {
            recorder
                .snapshotter()
                .snapshot()
                .into_vec()
                .into_iter()
                .find_map(|(key, _, _, value)| {
                    (key.key().name() == "tether_sticky_backend_ejected").then_some(value)
                })
        };
        let backend = metrics::with_local_recorder(&recorder, || Backend::new("b".to_owned()));
        assert_eq!(
            gauge(),
            Some(DebugValue::Gauge(0.0.into())),
            "in rotation when it joins"
        );
        backend.failed(1, Duration::from_millis(20));
        assert_eq!(gauge(), Some(DebugValue::Gauge(1.0.into())));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!backend.is_ejected());
        assert_eq!(gauge(), Some(DebugValue::Gauge(0.0.into())));
    }

    #[test]
    fn health_counts_failures_in_a_row_then_ejects() {
        let backend = Backend::new("a".to_owned());
        let cooldown = Duration::from_secs(10);
        assert_eq!(
            backend.health(),
            Health::Healthy {
                failures_in_a_row: 0
            }
        );
        backend.failed(3, cooldown);
        backend.failed(3, cooldown);
        assert_eq!(
            backend.health(),
            Health::Healthy {
                failures_in_a_row: 2
            }
        );
        backend.succeeded();
        assert_eq!(
            backend.health(),
            Health::Healthy {
                failures_in_a_row: 0
            }
        );
        let before = Instant::now();
        for _ in 0..3 {
            backend.failed(3, cooldown);
        }
        match backend.health() {
            Health::Ejected { until } => assert!(until >= before + cooldown),
            healthy => panic!("three failures in a row eject: {healthy:?}"),
        }
        assert_eq!(
            backend.state(),
            BackendState::Ready,
            "state is the operator's"
        );
        backend.failed(3, Duration::ZERO);
        backend.failed(3, Duration::ZERO);
        backend.failed(3, Duration::ZERO);
        assert!(
            !backend.health().is_ejected(),
            "an ejection that ran out is over"
        );
    }
}
