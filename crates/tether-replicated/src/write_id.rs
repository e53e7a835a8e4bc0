//! Write ids: each store call that changes a session carries one, kept across every retry and
//! forward of that call, and each session remembers the ids of its latest writes, so that a
//! write delivered twice (retried after a lost answer, forwarded again after a failover,
//! replayed by a peer) is applied once.
//!
//! The ids a session remembers are part of its replicated state: they travel with the
//! session's deltas and copies and merge like the rest of it, so the node that becomes a
//! session's primary after a failover recognises the writes its old primary applied and
//! replicated.

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;

/// How many write ids a session remembers: those of its latest writes, by their stamps. A
/// write whose id a session has forgotten (32 later writes of the same session came in
/// between) is applied again if it comes back.
pub(crate) const RECENT_WRITES: usize = 32;

/// The id of one store call that changes a session: 128 random bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct WriteId([u8; 16]);

/// Hex, in the spans of every node the write passes through: one write can be followed from
/// the node that took the call to its primary and backups. A write id names no session and
/// grants nothing, unlike a session id.
impl std::fmt::Display for WriteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl WriteId {
    /// A new, random write id.
    pub(crate) fn random() -> Result<Self, tether_core::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(tether_core::Error::Entropy)?;
        Ok(Self(bytes))
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

/// The ids of a session's latest writes, with the stamps they were applied at: at most
/// [`RECENT_WRITES`], newest first, each id once.
///
/// Merging two lists keeps the newest ids of both, so it is commutative, associative and
/// idempotent like the rest of a session's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecentWrites(Vec<(Hlc, WriteId)>);

impl RecentWrites {
    /// One write: `write`, applied at `at`.
    pub(crate) fn one(write: WriteId, at: Hlc) -> Self {
        Self(vec![(at, write)])
    }

    /// Whether `write` is among the remembered writes.
    pub(crate) fn contains(&self, write: &WriteId) -> bool {
        self.0.iter().any(|(_, id)| id == write)
    }

    /// Remembers `write`, applied at `at`, forgetting the oldest beyond the bound.
    pub(crate) fn record(&mut self, write: WriteId, at: Hlc) {
        self.0.push((at, write));
        self.normalize();
    }

    /// Keeps the newest writes of both lists.
    pub(crate) fn merge(&mut self, other: Self) {
        if other.0.is_empty() || other == *self {
            return;
        }
        self.0.extend(other.0);
        self.normalize();
    }

    /// Newest first, each id once (at its newest stamp), at most [`RECENT_WRITES`]: also what
    /// a list received from a peer is cut to.
    fn normalize(&mut self) {
        self.0.sort_unstable_by(|a, b| b.cmp(a));
        let mut seen = Vec::with_capacity(self.0.len());
        self.0.retain(|(_, id)| {
            if seen.contains(id) {
                false
            } else {
                seen.push(*id);
                true
            }
        });
        self.0.truncate(RECENT_WRITES);
    }

    /// How many ids are remembered.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> WriteId {
        WriteId::from_bytes([n; 16])
    }

    #[test]
    fn keeps_the_newest_ids_once_each() {
        let mut writes = RecentWrites::default();
        for n in 0..40u8 {
            writes.record(id(n), Hlc::at_millis(u64::from(n)));
        }
        assert_eq!(writes.len(), RECENT_WRITES);
        assert!(writes.contains(&id(39)) && writes.contains(&id(8)));
        assert!(!writes.contains(&id(7)), "the oldest are forgotten");
        writes.record(id(39), Hlc::at_millis(100));
        assert_eq!(writes.len(), RECENT_WRITES, "an id is remembered once");
    }

    #[test]
    fn merging_is_order_free_and_idempotent() {
        let (mut a, mut b) = (RecentWrites::default(), RecentWrites::default());
        for n in 0..30u8 {
            let target = if n % 3 == 0 { &mut a } else { &mut b };
            target.record(id(n), Hlc::at_millis(u64::from(n)));
        }
        b.record(id(0), Hlc::at_millis(0));
        let mut ab = a.clone();
        ab.merge(b.clone());
        let mut ba = b.clone();
        ba.merge(a.clone());
        assert_eq!(ab, ba);
        let mut twice = ab.clone();
        twice.merge(a);
        twice.merge(b);
        assert_eq!(twice, ab);
        assert_eq!(ab.len(), 30);
    }
}
