//! Hybrid logical clocks: timestamps that order writes across nodes.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tether_core::Timestamp;

/// A hybrid logical timestamp: wall-clock milliseconds, a counter for events within the same
/// millisecond (or while the wall clock lags a timestamp seen from a peer), and the writing
/// node's tag to break ties. Ordered field by field, so every node orders writes the same way.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    millis: u64,
    counter: u32,
    node: u32,
}

impl Hlc {
    /// Wall-clock milliseconds of this timestamp.
    pub fn millis(&self) -> u64 {
        self.millis
    }
}

/// A node's clock: never goes backwards, and moves past every timestamp it observes.
#[derive(Debug)]
pub(crate) struct Clock {
    node: u32,
    last: Mutex<(u64, u32)>,
}

impl Clock {
    pub(crate) fn new(node: u32) -> Self {
        Self {
            node,
            last: Mutex::new((0, 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u32)> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A timestamp later than every one this clock produced or observed.
    pub(crate) fn now(&self) -> Hlc {
        let wall = Timestamp::now().as_millis();
        let mut last = self.lock();
        if wall > last.0 {
            *last = (wall, 0);
        } else if last.1 == u32::MAX {
            *last = (last.0 + 1, 0);
        } else {
            last.1 += 1;
        }
        Hlc {
            millis: last.0,
            counter: last.1,
            node: self.node,
        }
    }

    /// The latest time this clock has produced or observed, without advancing it.
    pub(crate) fn peek(&self) -> Hlc {
        let last = self.lock();
        Hlc {
            millis: last.0,
            counter: last.1,
            node: self.node,
        }
    }

    /// Moves the clock past `remote`, so this node's next write orders after it.
    pub(crate) fn observe(&self, remote: Hlc) {
        let mut last = self.lock();
        if (remote.millis, remote.counter) > *last {
            *last = (remote.millis, remote.counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_moves_past_observed_times() {
        let a = Clock::new(1);
        let b = Clock::new(2);
        let mut previous = a.now();
        for _ in 0..10_000 {
            let next = a.now();
            assert!(next > previous);
            previous = next;
        }
        let far = Hlc {
            millis: previous.millis + 60_000,
            counter: 7,
            node: 1,
        };
        b.observe(far);
        assert!(b.now() > far);
    }
}
