//! A read that renews the session it finds: [`SessionStore::load_renewing`](crate::SessionStore::load_renewing).

use crate::{Expiry, Record, Seen, Timestamp};

/// What [`SessionStore::load_renewing`](crate::SessionStore::load_renewing) needs to decide
/// whether the session it reads is due for renewal, and what it writes when it is.
///
/// A session is due when [`Expiry::needs_renewal`] says so at [`now`](Self::now) with
/// [`threshold`](Self::threshold); it is then renewed to [`Expiry::renewed`] at `now`, and
/// its last use, when there is one, is recorded with the renewal.
///
/// ```
/// use tether_core::{Renewal, Seen, Timestamp};
///
/// let now = Timestamp::now();
/// let renewal = Renewal::new(now, 0.25).with_seen(Seen::new(now));
/// assert_eq!(renewal.threshold(), 0.25);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Renewal {
    now: Timestamp,
    threshold: f64,
    seen: Option<Seen>,
}

impl Renewal {
    /// Renewal at `now` once more than `threshold` (a fraction between 0 and 1, clamped) of
    /// the idle timeout has passed since the last one.
    pub fn new(now: Timestamp, threshold: f64) -> Self {
        Self {
            now,
            threshold: threshold.clamp(0.0, 1.0),
            seen: None,
        }
    }

    /// Records `seen` as the session's last use when the session is renewed.
    #[must_use]
    pub fn with_seen(mut self, seen: Seen) -> Self {
        self.seen = Some(seen);
        self
    }

    /// The instant the session is renewed at.
    pub const fn now(&self) -> Timestamp {
        self.now
    }

    /// The fraction of the idle timeout that must have passed since the last renewal.
    pub const fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The last use recorded with a renewal, if any.
    pub const fn seen(&self) -> Option<&Seen> {
        self.seen.as_ref()
    }

    /// The last use this renewal would record, given back.
    pub fn into_seen(self) -> Option<Seen> {
        self.seen
    }

    /// What a read that renewed nothing answers for `record`: the session as read, `None` when
    /// there is none or it is past its deadline at [`now`](Self::now).
    pub fn unrenewed(&self, record: Option<Record>) -> Option<Loaded> {
        record
            .filter(|record| !record.expiry.is_expired(self.now))
            .map(|record| Loaded::new(record, false))
    }

    /// The expiry `current` is renewed to, or `None` when it is not due.
    pub fn renewed(&self, current: &Expiry) -> Option<Expiry> {
        current
            .needs_renewal(self.now, self.threshold)
            .then(|| current.renewed(self.now))
    }
}

/// A session read by [`SessionStore::load_renewing`](crate::SessionStore::load_renewing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The session as stored after the call: with the renewed expiry (and last use) when
    /// [`renewed`](Self::renewed) is true.
    pub record: Record,
    /// The call renewed the session's expiry.
    pub renewed: bool,
}

impl Loaded {
    /// `record`, read by a call that did (`renewed`) or did not renew it.
    pub const fn new(record: Record, renewed: bool) -> Self {
        Self { record, renewed }
    }
}
