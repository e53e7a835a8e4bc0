//! When the sessions a store read recently fall due for renewal: the hint that lets
//! [`SessionStore::load_renewing`](crate::SessionStore::load_renewing) choose between a plain
//! read and the dearer command that reads and renews.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Expiry, Id, Renewal};

/// Slots in the table: 512 KiB, fixed.
const SLOTS: usize = 1 << 16;
/// A slot's value for a session whose renewal never falls due (its absolute deadline is its
/// deadline already).
const NEVER: u64 = u32::MAX as u64;

/// When the sessions a store read recently fall due for renewal, for a remote store whose
/// read that renews costs its server more than a plain read.
///
/// Almost every read finds its session not due, so such a store sends its renewing read only
/// when [`due`](Self::due) says so, and [`note`](Self::note)s what each read returned. (On
/// Redis 7.0 a script costs the server 6.3 µs per call against 0.37 µs for an `HGETALL`; on
/// PostgreSQL 15 an `UPDATE` in the read adds about a third to the server's CPU per read.)
///
/// The table is a hint, never a source of truth: a slot may hold another session (ids share
/// slots), or a deadline another server has moved since. A wrong "due" costs one renewing read
/// that renews nothing; a wrong "not due" costs the renewal a second round trip after the
/// read (the session layer's `touch`). Neither changes what the store answers. A session this
/// table has not seen is never due, so its first read past the threshold takes two round trips.
///
/// It is a fixed table of 65,536 words (512 KiB), each `(fingerprint of an id, second its
/// renewal falls due)`, written and read without locks.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_core::{Expiry, Id, Renewal, RenewalHints, Timestamp};
///
/// let hints = RenewalHints::new();
/// let id = Id::random().unwrap();
/// let start = Timestamp::now();
/// let expiry = Expiry::new(start, Duration::from_secs(3600), None);
///
/// let early = Renewal::new(start, 0.25);
/// assert!(!hints.due(&id, &early), "an id the table has not seen is never due");
/// hints.note(&id, &expiry, &early);
/// assert!(!hints.due(&id, &early));
/// let later = Renewal::new(start + Duration::from_secs(20 * 60), 0.25);
/// assert!(hints.due(&id, &later));
/// ```
pub struct RenewalHints {
    slots: Box<[AtomicU64]>,
}

impl RenewalHints {
    /// An empty table: no session is due.
    pub fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether the table says `id` is due for `renewal` (at its instant). `false` for a
    /// session it does not know.
    pub fn due(&self, id: &Id, renewal: &Renewal) -> bool {
        let (slot, fingerprint) = place(id);
        let word = self
            .slots
            .get(slot)
            .map_or(0, |word| word.load(Ordering::Relaxed));
        word >> 32 == fingerprint && (renewal.now().as_millis() / 1000) >= word & NEVER
    }

    /// Notes `expiry`, just read or written for `id`, and when a read with `renewal`'s
    /// threshold renews it.
    pub fn note(&self, id: &Id, expiry: &Expiry, renewal: &Renewal) {
        let (slot, fingerprint) = place(id);
        if let Some(word) = self.slots.get(slot) {
            word.store(
                fingerprint << 32 | due_second(expiry, renewal.threshold()),
                Ordering::Relaxed,
            );
        }
    }
}

impl Default for RenewalHints {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RenewalHints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewalHints")
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// The slot of `id` and the fingerprint that tells it from other ids of that slot. Ids are
/// random, so their bytes spread evenly.
fn place(id: &Id) -> (usize, u64) {
    let bytes = id.as_bytes();
    let slot = usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % SLOTS;
    let fingerprint = u64::from(u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]));
    (slot, fingerprint)
}

/// The second from which [`Expiry::needs_renewal`] holds at `threshold` (rounded down, so a
/// hint is early rather than late), or [`NEVER`].
fn due_second(expiry: &Expiry, threshold: f64) -> u64 {
    if expiry
        .absolute_deadline()
        .is_some_and(|absolute| absolute <= expiry.expires_at())
    {
        return NEVER;
    }
    let idle = expiry.idle_timeout().as_millis() as f64;
    let early = (idle * (1.0 - threshold.clamp(0.0, 1.0))) as u64;
    (expiry.expires_at().as_millis().saturating_sub(early) / 1000).min(NEVER - 1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Timestamp;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(now: Timestamp, threshold: f64) -> Renewal {
        Renewal::new(now, threshold)
    }

    fn renewal(now: Timestamp) -> Renewal {
        at(now, 0.25)
    }

    #[test]
    fn a_known_session_is_due_when_its_expiry_says_so() {
        let hints = RenewalHints::new();
        let id = Id::random().unwrap();
        let start = Timestamp::from_millis(1_800_000_000_000);
        let expiry = Expiry::new(start, HOUR, None);
        assert!(
            !hints.due(&id, &at(start + HOUR, 0.25)),
            "unknown ids are never due"
        );
        hints.note(&id, &expiry, &at(start, 0.25));
        for minutes in [0, 5, 14] {
            let at = start + Duration::from_secs(minutes * 60);
            assert!(!hints.due(&id, &renewal(at)), "{minutes} min");
            assert!(!expiry.needs_renewal(at, 0.25));
        }
        for minutes in [16, 30, 59] {
            let at = start + Duration::from_secs(minutes * 60);
            assert!(hints.due(&id, &renewal(at)), "{minutes} min");
            assert!(expiry.needs_renewal(at, 0.25));
        }
    }

    #[test]
    fn a_session_at_its_absolute_deadline_is_never_due() {
        let hints = RenewalHints::new();
        let id = Id::random().unwrap();
        let start = Timestamp::from_millis(1_800_000_000_000);
        let expiry = Expiry::new(start, HOUR, Some(start + Duration::from_secs(600)));
        hints.note(&id, &expiry, &at(start, 0.25));
        assert!(!hints.due(&id, &at(start + Duration::from_secs(599), 0.25)));
    }

    #[test]
    fn another_id_in_the_same_slot_is_not_taken_for_it() {
        let hints = RenewalHints::new();
        let start = Timestamp::from_millis(1_800_000_000_000);
        let noted = Id::random().unwrap();
        hints.note(&noted, &Expiry::new(start, HOUR, None), &at(start, 0.0));
        let mut other = *noted.as_bytes();
        other[3] ^= 0xff;
        let other = Id::from_bytes(other);
        assert!(!hints.due(&other, &at(start + HOUR, 0.0)));
    }
}
