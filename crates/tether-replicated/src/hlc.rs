//! Hybrid logical clocks: timestamps that order writes across nodes.
//!
//! A node's clock moves past every timestamp it observes from a peer, so a write that follows
//! another (on any node) orders after it even when wall clocks disagree a little. It follows a
//! peer only so far: a timestamp further ahead of this node's wall clock than the max drift is
//! refused, or one peer with a clock set far ahead would drag every node's clock along, for
//! good (a clock never goes back), and its writes would win over every later one.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_core::Timestamp;

/// A hybrid logical timestamp: wall-clock milliseconds, a counter for events within the same
/// millisecond (or while the wall clock lags a timestamp seen from a peer), and the writing
/// node's tag to break ties. Ordered field by field, so every node orders writes the same way.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub(crate) struct Hlc {
    millis: u64,
    counter: u32,
    node: u32,
}

impl Hlc {
    #[cfg(test)]
    pub(crate) fn at_millis(millis: u64) -> Self {
        Self {
            millis,
            counter: 0,
            node: 0,
        }
    }
}

/// A peer's timestamp further ahead of this node's wall clock than the max drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooFarAhead {
    /// How far ahead of this node's wall clock it is.
    pub(crate) ahead: Duration,
}

/// A node's clock: never goes backwards, and moves past every timestamp it observes within the
/// max drift.
#[derive(Debug)]
pub(crate) struct Clock {
    node: u32,
    max_drift_millis: u64,
    last: Mutex<(u64, u32)>,
}

fn wall_millis() -> u64 {
    Timestamp::now().as_millis()
}

impl Clock {
    pub(crate) fn new(node: u32, max_drift: Duration) -> Self {
        Self {
            node,
            max_drift_millis: u64::try_from(max_drift.as_millis()).unwrap_or(u64::MAX),
            last: Mutex::new((0, 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u32)> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stamp(&self, (millis, counter): (u64, u32)) -> Hlc {
        Hlc {
            millis,
            counter,
            node: self.node,
        }
    }

    /// A timestamp later than every one this clock produced or observed.
    pub(crate) fn now(&self) -> Hlc {
        self.now_at(wall_millis())
    }

    /// As [`Clock::now`], with the wall clock reading `wall`. Saturates at the end of time: past
    /// it, the clock stays put instead of wrapping to zero (which drift bounds keep out of
    /// reach: the clock is at most the max drift ahead of the wall clock).
    fn now_at(&self, wall: u64) -> Hlc {
        let mut last = self.lock();
        if wall > last.0 {
            *last = (wall, 0);
        } else if let Some(counter) = last.1.checked_add(1) {
            last.1 = counter;
        } else if let Some(millis) = last.0.checked_add(1) {
            *last = (millis, 0);
        }
        self.stamp(*last)
    }

    /// The latest time this clock has produced or observed, without advancing it.
    pub(crate) fn peek(&self) -> Hlc {
        self.stamp(*self.lock())
    }

    /// Moves the clock past `remote`, so this node's next write orders after it; refuses (and
    /// does not move) when `remote` is further ahead of this node's wall clock than the max
    /// drift. A timestamp behind is always fine.
    pub(crate) fn observe(&self, remote: Hlc) -> Result<(), TooFarAhead> {
        self.observe_at(remote, wall_millis())
    }

    fn observe_at(&self, remote: Hlc, wall: u64) -> Result<(), TooFarAhead> {
        let ahead = remote.millis.saturating_sub(wall);
        if ahead > self.max_drift_millis {
            return Err(TooFarAhead {
                ahead: Duration::from_millis(ahead),
            });
        }
        let mut last = self.lock();
        if (remote.millis, remote.counter) > *last {
            *last = (remote.millis, remote.counter);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIFT: Duration = Duration::from_secs(5);

    #[test]
    fn monotonic_and_moves_past_observed_times() {
        let a = Clock::new(1, DRIFT);
        let b = Clock::new(2, DRIFT);
        let mut previous = a.now();
        for _ in 0..10_000 {
            let next = a.now();
            assert!(next > previous);
            previous = next;
        }
        let near = Hlc {
            millis: previous.millis + 3_000,
            counter: 7,
            node: 1,
        };
        assert_eq!(b.observe(near), Ok(()));
        assert!(b.now() > near);
    }

    #[test]
    fn timestamps_beyond_the_max_drift_are_refused_and_do_not_move_the_clock() {
        let clock = Clock::new(1, DRIFT);
        let wall = 1_000_000;
        let before = clock.now_at(wall);
        let at_bound = Hlc::at_millis(wall + 5_000);
        let beyond = Hlc::at_millis(wall + 5_001);
        assert_eq!(
            clock.observe_at(beyond, wall),
            Err(TooFarAhead {
                ahead: Duration::from_millis(5_001)
            })
        );
        assert_eq!(
            clock.peek(),
            before,
            "a refused timestamp leaves the clock alone"
        );
        assert!(clock.observe_at(Hlc::at_millis(u64::MAX), wall).is_err());
        assert_eq!(clock.peek(), before);
        assert_eq!(clock.observe_at(at_bound, wall), Ok(()));
        assert!(
            clock.now_at(wall) > at_bound,
            "within the bound, the clock follows"
        );
        // Far behind is fine: it just does not move the clock.
        assert_eq!(clock.observe_at(Hlc::at_millis(0), wall), Ok(()));
    }

    #[test]
    fn the_clock_saturates_at_the_end_of_time_instead_of_wrapping() {
        let clock = Clock::new(1, Duration::MAX);
        assert_eq!(clock.observe_at(Hlc::at_millis(u64::MAX), 0), Ok(()));
        let first = clock.now_at(0);
        assert_eq!((first.millis, first.counter), (u64::MAX, 1));
        *clock.lock() = (u64::MAX - 1, u32::MAX);
        let carried = clock.now_at(0);
        assert_eq!((carried.millis, carried.counter), (u64::MAX, 0));
        *clock.lock() = (u64::MAX, u32::MAX);
        let saturated = clock.now_at(0);
        assert_eq!((saturated.millis, saturated.counter), (u64::MAX, u32::MAX));
        assert_eq!(clock.now_at(u64::MAX), saturated, "no wrap, no panic");
    }
}
