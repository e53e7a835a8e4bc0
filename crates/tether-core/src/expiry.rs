//! When a session ends: idle timeout and absolute lifetime together.

use std::time::Duration;

use crate::Timestamp;

/// When a session expires.
///
/// A session ends at the earlier of two deadlines:
/// - the **idle deadline**: `idle_timeout` after it was last renewed, and
/// - the **absolute deadline**: a fixed instant set when the session was created, which no amount
///   of activity extends.
///
/// [`Expiry::expires_at`] is the earlier of the two: the instant a store may forget the session.
/// The idle timeout and the absolute deadline are stored with the session, so every server
/// renews it the same way.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_core::{Expiry, Timestamp};
///
/// let created = Timestamp::from_millis(1_000_000);
/// let expiry = Expiry::new(
///     created,
///     Duration::from_secs(30 * 60),
///     Some(created + Duration::from_secs(8 * 3600)),
/// );
/// assert_eq!(expiry.expires_at(), created + Duration::from_secs(30 * 60));
///
/// // Seven and three quarter hours later, renewing cannot pass the absolute deadline.
/// let late = created + Duration::from_secs(7 * 3600 + 45 * 60);
/// assert_eq!(expiry.renewed(late).expires_at(), created + Duration::from_secs(8 * 3600));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Expiry {
    expires_at: Timestamp,
    idle_timeout: Duration,
    absolute_deadline: Option<Timestamp>,
}

impl Expiry {
    /// An expiry renewed at `now`: it ends `idle_timeout` from now, or at `absolute_deadline`
    /// if that comes first.
    pub fn new(
        now: Timestamp,
        idle_timeout: Duration,
        absolute_deadline: Option<Timestamp>,
    ) -> Self {
        let idle_deadline = now + idle_timeout;
        let expires_at = absolute_deadline.map_or(idle_deadline, |abs| abs.min(idle_deadline));
        Self {
            expires_at,
            idle_timeout,
            absolute_deadline,
        }
    }

    /// Rebuilds an expiry from its stored parts, exactly as they were, for stores that decode one.
    pub const fn from_parts(
        expires_at: Timestamp,
        idle_timeout: Duration,
        absolute_deadline: Option<Timestamp>,
    ) -> Self {
        Self {
            expires_at,
            idle_timeout,
            absolute_deadline,
        }
    }

    /// The same timeouts, renewed at `now`.
    #[must_use]
    pub fn renewed(&self, now: Timestamp) -> Self {
        Self::new(now, self.idle_timeout, self.absolute_deadline)
    }

    /// The instant the session ends: the earlier of the idle and the absolute deadline.
    pub const fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// How long the session may stay unused before it ends.
    pub const fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The instant after which the session ends however active it is, if there is one.
    pub const fn absolute_deadline(&self) -> Option<Timestamp> {
        self.absolute_deadline
    }

    /// Whether the session has ended at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Time left at `now`, zero once expired.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        self.expires_at.duration_since(now)
    }

    /// Whether renewing at `now` is worth a store write: true once more than `threshold` (a
    /// fraction between 0 and 1) of the idle timeout has passed since the last renewal, and
    /// renewing would actually move the deadline.
    ///
    /// This is what keeps read-only requests free of writes: with a threshold of 0.25 and an idle
    /// timeout of one hour, a session used every second is renewed once every 15 minutes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tether_core::{Expiry, Timestamp};
    ///
    /// let start = Timestamp::from_millis(0);
    /// let expiry = Expiry::new(start, Duration::from_secs(3600), None);
    /// assert!(!expiry.needs_renewal(start + Duration::from_secs(60), 0.25));
    /// assert!(expiry.needs_renewal(start + Duration::from_secs(16 * 60), 0.25));
    /// ```
    pub fn needs_renewal(&self, now: Timestamp, threshold: f64) -> bool {
        let renewed = self.renewed(now);
        if renewed.expires_at <= self.expires_at {
            return false;
        }
        let elapsed = self.idle_timeout.saturating_sub(self.remaining(now));
        elapsed.as_secs_f64() > self.idle_timeout.as_secs_f64() * threshold.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn idle_deadline_without_absolute() {
        let now = Timestamp::from_millis(10);
        let e = Expiry::new(now, HOUR, None);
        assert_eq!(e.expires_at(), now + HOUR);
        assert!(!e.is_expired(now + (HOUR - Duration::from_millis(1))));
        assert!(e.is_expired(now + HOUR));
    }

    #[test]
    fn absolute_deadline_caps_renewal() {
        let now = Timestamp::from_millis(0);
        let abs = now + Duration::from_secs(90 * 60);
        let e = Expiry::new(now, HOUR, Some(abs));
        assert_eq!(e.expires_at(), now + HOUR);
        let later = e.renewed(now + (HOUR - Duration::from_secs(1)));
        assert_eq!(later.expires_at(), abs);
    }

    #[test]
    fn renewal_threshold() {
        let start = Timestamp::from_millis(0);
        let e = Expiry::new(start, HOUR, None);
        assert!(!e.needs_renewal(start, 0.0));
        assert!(e.needs_renewal(start + Duration::from_millis(1), 0.0));
        assert!(!e.needs_renewal(start + HOUR / 2, 0.5));
        assert!(e.needs_renewal(start + HOUR / 2 + Duration::from_millis(1), 0.5));
        // Nothing to gain once the absolute deadline is the binding one.
        let capped = Expiry::new(start, HOUR, Some(start + HOUR));
        assert!(!capped.needs_renewal(start + HOUR / 2, 0.1));
    }
}
