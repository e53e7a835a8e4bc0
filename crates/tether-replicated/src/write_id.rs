//! Write ids: each store call that changes a session carries one, kept across every retry and
//! forward of that call, and each session remembers the ids of its latest writes, so that a
//! write delivered twice (retried after a lost answer, forwarded again after a failover,
//! replayed by a peer) is applied once.
//!
//! The ids a session remembers are part of its replicated state: they travel with the
//! session's deltas and copies and merge like the rest of it, so the node that becomes a
//! session's primary after a failover recognises the writes its old primary applied and
//! replicated.

use bytes::Bytes;
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
/// [`RECENT_WRITES`], newest first, each id once. For the key updates among them
/// ([`SessionStore::update_key`](tether_core::SessionStore::update_key)), also the value each
/// left under its key: the answer to give again when the update comes again.
///
/// Merging two lists keeps the newest ids of both, so it is commutative, associative and
/// idempotent like the rest of a session's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecentWrites {
    writes: Vec<(Hlc, WriteId)>,
    /// The value each remembered key update left under its key (`None`: it removed the key),
    /// in id order. Kept apart from `writes` because few writes are key updates: the others
    /// pay nothing for it.
    updated: Vec<(WriteId, Option<Bytes>)>,
}

impl RecentWrites {
    /// One write: `write`, applied at `at`.
    pub(crate) fn one(write: WriteId, at: Hlc) -> Self {
        Self {
            writes: vec![(at, write)],
            updated: Vec::new(),
        }
    }

    /// Whether `write` is among the remembered writes.
    pub(crate) fn contains(&self, write: &WriteId) -> bool {
        self.writes.iter().any(|(_, id)| id == write)
    }

    /// Remembers `write`, applied at `at`, forgetting the oldest beyond the bound.
    pub(crate) fn record(&mut self, write: WriteId, at: Hlc) {
        self.writes.push((at, write));
        self.normalize();
    }

    /// Remembers the key update `write`, applied at `at`, which left `value` under its key.
    pub(crate) fn record_update(&mut self, write: WriteId, at: Hlc, value: Option<Bytes>) {
        self.writes.push((at, write));
        self.updated.push((write, value));
        self.normalize();
    }

    /// What the remembered key update `write` left under its key: `None` when `write` is not
    /// remembered as a key update, `Some(None)` when it removed the key.
    pub(crate) fn updated(&self, write: &WriteId) -> Option<Option<&Bytes>> {
        self.updated
            .iter()
            .find(|(id, _)| id == write)
            .map(|(_, value)| value.as_ref())
    }

    /// Keeps the newest writes of both lists.
    pub(crate) fn merge(&mut self, other: Self) {
        if other.writes.is_empty() || other == *self {
            return;
        }
        self.writes.extend(other.writes);
        self.updated.extend(other.updated);
        self.normalize();
    }

    /// Newest first, each id once (at its newest stamp), at most [`RECENT_WRITES`]; the values
    /// of the key updates among them, each once, in id order: also what a list received from
    /// a peer is cut to.
    fn normalize(&mut self) {
        self.writes.sort_unstable_by(|a, b| b.cmp(a));
        let mut seen = Vec::with_capacity(self.writes.len());
        self.writes.retain(|(_, id)| {
            if seen.contains(id) {
                false
            } else {
                seen.push(*id);
                true
            }
        });
        self.writes.truncate(RECENT_WRITES);
        if !self.updated.is_empty() {
            // One write id names one delta, so copies agree on its value; sorted by value too,
            // the list comes out the same whatever order the copies merged in.
            self.updated.sort_unstable();
            self.updated.dedup_by(|later, first| later.0 == first.0);
            let writes = &self.writes;
            self.updated
                .retain(|(id, _)| writes.iter().any(|(_, kept)| kept == id));
        }
    }

    /// How many ids are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.writes.len()
    }

    /// About how many bytes they take on the wire, for paging.
    pub(crate) fn weight(&self) -> usize {
        self.writes.len() * 32
            + self
                .updated
                .iter()
                .map(|(_, value)| 24 + value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
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

    /// The values of key updates are remembered with their ids, merge order-free, and are
    /// forgotten with them.
    #[test]
    fn key_update_values_go_with_their_ids() {
        let (mut a, mut b) = (RecentWrites::default(), RecentWrites::default());
        a.record_update(id(1), Hlc::at_millis(1), Some(Bytes::from_static(b"one")));
        b.record_update(id(2), Hlc::at_millis(2), None);
        b.record(id(3), Hlc::at_millis(3));
        assert_eq!(a.updated(&id(1)), Some(Some(&Bytes::from_static(b"one"))));
        assert_eq!(b.updated(&id(2)), Some(None), "a removal");
        assert_eq!(b.updated(&id(3)), None, "not a key update");
        let mut ab = a.clone();
        ab.merge(b.clone());
        let mut ba = b.clone();
        ba.merge(a.clone());
        assert_eq!(ab, ba);
        let mut twice = ab.clone();
        twice.merge(a);
        twice.merge(b);
        assert_eq!(twice, ab);
        assert_eq!(ab.updated(&id(2)), Some(None));
        for n in 10..10 + RECENT_WRITES as u8 {
            ab.record(id(n), Hlc::at_millis(u64::from(n)));
        }
        assert_eq!(ab.updated(&id(1)), None, "forgotten with its id");
        assert_eq!(ab, {
            let mut fresh = RecentWrites::default();
            for n in 10..10 + RECENT_WRITES as u8 {
                fresh.record(id(n), Hlc::at_millis(u64::from(n)));
            }
            fresh
        });
    }
}
