//! Active health checks: a request to every backend at an interval, as HAProxy's
//! `check inter rise fall` with `option httpchk` and `http-check expect status`.

use std::num::NonZeroU32;
use std::time::Duration;

use http::StatusCode;
use http::uri::PathAndQuery;

/// What an active health check asks every backend and what it expects back: `GET` of a path,
/// at an interval, within a timeout; `fall` failed checks in a row take a backend out of
/// rotation and `rise` passed checks in a row bring it back.
///
/// A backend starts up, but until its first check passes a single failed check takes it down,
/// as in HAProxy: a backend broken from the start is out after one check, and the proxy runs
/// one round before it serves.
///
/// ```
/// use std::time::Duration;
/// use tether_sticky::HealthCheck;
///
/// let check = HealthCheck::new("/healthz".parse()?)
///     .with_interval(Duration::from_secs(5))
///     .with_expected_status(http::StatusCode::NO_CONTENT);
/// assert!(check.passes(http::StatusCode::NO_CONTENT));
/// assert!(!check.passes(http::StatusCode::OK));
/// assert!(HealthCheck::new("/".parse()?).passes(http::StatusCode::FOUND));
/// # Ok::<(), http::uri::InvalidUri>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub(crate) path: PathAndQuery,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) rise: NonZeroU32,
    pub(crate) fall: NonZeroU32,
    pub(crate) expected: Option<StatusCode>,
}

/// Default time between two checks of a backend (HAProxy's `inter`).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Default bound on one check.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

impl HealthCheck {
    /// `GET path` every 2 s within 1 s; 3 failures in a row take a backend down, 2 passes in a
    /// row bring it back; any `2xx` or `3xx` passes.
    pub fn new(path: PathAndQuery) -> Self {
        Self {
            path,
            interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
            rise: NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
            fall: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            expected: None,
        }
    }

    /// Time between two checks of a backend (default 2 s).
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Bound on one check, from sending it to the response head (default 1 s); a check past it
    /// fails.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Passed checks in a row that bring a down backend back (default 2).
    #[must_use]
    pub fn with_rise(mut self, rise: NonZeroU32) -> Self {
        self.rise = rise;
        self
    }

    /// Failed checks in a row that take an up backend down (default 3).
    #[must_use]
    pub fn with_fall(mut self, fall: NonZeroU32) -> Self {
        self.fall = fall;
        self
    }

    /// The one status a check must get to pass (default: any `2xx` or `3xx`).
    #[must_use]
    pub fn with_expected_status(mut self, status: StatusCode) -> Self {
        self.expected = Some(status);
        self
    }

    /// Whether a check answered with `status` passes.
    pub fn passes(&self, status: StatusCode) -> bool {
        match self.expected {
            Some(expected) => status == expected,
            None => status.is_success() || status.is_redirection(),
        }
    }
}

/// A backend as active health checks see it (see [`HealthCheck`]); apart from passive
/// [`Health`](crate::Health) and the operator's [`BackendState`](crate::BackendState).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checked {
    /// In rotation.
    Up {
        /// Its latest checks that failed, one after the other.
        failures_in_a_row: u32,
    },
    /// Out of rotation until enough checks in a row pass.
    Down {
        /// Its latest checks that passed, one after the other.
        passes_in_a_row: u32,
    },
}

impl Checked {
    /// Out of rotation right now.
    pub fn is_down(&self) -> bool {
        matches!(self, Self::Down { .. })
    }
}

/// The active-check record of one backend.
#[derive(Clone, Debug)]
pub(crate) struct CheckRecord {
    pub(crate) checked: Checked,
    /// A check has passed since the backend joined: until then one failure takes it down.
    confirmed: bool,
    /// What the latest check found: `status 200`, `timed out after 1s`, a connection error.
    pub(crate) last: String,
}

impl CheckRecord {
    pub(crate) fn new() -> Self {
        Self {
            checked: Checked::Up {
                failures_in_a_row: 0,
            },
            confirmed: false,
            last: String::new(),
        }
    }

    /// Takes in one check's outcome; true when it changed the backend from up to down or back.
    pub(crate) fn record(&mut self, passed: bool, outcome: String, check: &HealthCheck) -> bool {
        self.last = outcome;
        let before = self.checked.is_down();
        self.checked = match (self.checked, passed) {
            (Checked::Up { .. }, true) => {
                self.confirmed = true;
                Checked::Up {
                    failures_in_a_row: 0,
                }
            }
            (Checked::Up { failures_in_a_row }, false) => {
                let failures_in_a_row = failures_in_a_row.saturating_add(1);
                if !self.confirmed || failures_in_a_row >= check.fall.get() {
                    Checked::Down { passes_in_a_row: 0 }
                } else {
                    Checked::Up { failures_in_a_row }
                }
            }
            (Checked::Down { passes_in_a_row }, true) => {
                let passes_in_a_row = passes_in_a_row.saturating_add(1);
                if passes_in_a_row >= check.rise.get() {
                    self.confirmed = true;
                    Checked::Up {
                        failures_in_a_row: 0,
                    }
                } else {
                    Checked::Down { passes_in_a_row }
                }
            }
            (Checked::Down { .. }, false) => Checked::Down { passes_in_a_row: 0 },
        };
        before != self.checked.is_down()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck::new(PathAndQuery::from_static("/health"))
    }

    #[test]
    fn fall_and_rise_in_a_row_as_haproxy() {
        let check = check();
        let mut record = CheckRecord::new();
        assert!(!record.record(true, "status 200".into(), &check));
        // Confirmed up: three failures in a row take it down, a pass in between resets.
        assert!(!record.record(false, "status 500".into(), &check));
        assert!(!record.record(true, "status 200".into(), &check));
        assert!(!record.record(false, "status 500".into(), &check));
        assert!(!record.record(false, "status 500".into(), &check));
        assert_eq!(
            record.checked,
            Checked::Up {
                failures_in_a_row: 2
            }
        );
        assert!(record.record(false, "status 500".into(), &check));
        assert!(record.checked.is_down());
        assert_eq!(record.last, "status 500");
        // Two passes in a row bring it back; a failure in between starts over.
        assert!(!record.record(true, "status 200".into(), &check));
        assert!(!record.record(false, "refused".into(), &check));
        assert!(!record.record(true, "status 200".into(), &check));
        assert!(record.record(true, "status 200".into(), &check));
        assert!(!record.checked.is_down());
    }

    #[test]
    fn a_backend_never_seen_healthy_goes_down_at_its_first_failure() {
        let mut record = CheckRecord::new();
        assert!(record.record(false, "status 500".into(), &check()));
        assert!(record.checked.is_down());
    }
}
