//! Wall-clock instants as stores keep them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A wall-clock instant in milliseconds since the Unix epoch.
///
/// Session deadlines must mean the same thing on every server and in every store (Redis
/// `PEXPIREAT` takes exactly this), so they are wall-clock time, not [`std::time::Instant`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_core::Timestamp;
///
/// let now = Timestamp::now();
/// let later = now + Duration::from_secs(60);
/// assert_eq!(later.as_millis() - now.as_millis(), 60_000);
/// assert_eq!(later.duration_since(now), Duration::from_secs(60));
/// assert_eq!(now.duration_since(later), Duration::ZERO);
/// ```
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The current wall-clock time. A clock set before 1970 reads as the epoch.
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    /// An instant given in milliseconds since the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn duration_since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Self;

    /// Saturates at the end of time instead of overflowing.
    fn add(self, rhs: Duration) -> Self {
        let millis = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis))
    }
}
