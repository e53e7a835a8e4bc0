//! The principal index of one node: for each principal, the ids of the sessions this node
//! holds that are bound to it.
//!
//! It is kept by [`LocalState`](crate::state::LocalState) under the lock of the session's
//! shard, in the same step as every change of the session's principal register: a creation, a
//! delta that binds, a merged copy, and the removal of an entry (swept at its deadline or past
//! its tombstone's retention, or forgotten by rebalancing). So it names exactly the entries the
//! node holds with a principal, tombstones and sessions past their deadline included until the
//! sweep forgets them; whoever reads it checks each entry. Lock order: a state shard may be
//! held while taking an index shard, never the reverse.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use tether_core::{Id, Principal};

const SHARDS: usize = 16;

/// Session ids by principal, in shards by the principal's hash.
#[derive(Debug)]
pub(crate) struct PrincipalIndex {
    shards: Vec<Mutex<HashMap<Principal, HashSet<Id>>>>,
}

impl Default for PrincipalIndex {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl PrincipalIndex {
    #[allow(clippy::indexing_slicing)] // `shards` has SHARDS elements; the index is below that.
    fn shard(&self, principal: &Principal) -> MutexGuard<'_, HashMap<Principal, HashSet<Id>>> {
        let hash = xxhash_rust::xxh3::xxh3_64(principal.as_str().as_bytes());
        let index = usize::try_from(hash % SHARDS as u64).unwrap_or(0);
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves session `id` from `before`'s list to `after`'s (either may be none).
    pub(crate) fn rebind(&self, id: Id, before: Option<&Principal>, after: Option<&Principal>) {
        if before == after {
            return;
        }
        if let Some(before) = before {
            self.remove(before, &id);
        }
        if let Some(after) = after {
            self.shard(after)
                .entry(after.clone())
                .or_default()
                .insert(id);
        }
    }

    /// Takes session `id` off `principal`'s list.
    pub(crate) fn remove(&self, principal: &Principal, id: &Id) {
        let mut shard = self.shard(principal);
        if let Some(ids) = shard.get_mut(principal) {
            ids.remove(id);
            if ids.is_empty() {
                shard.remove(principal);
            }
        }
    }

    /// The ids listed under `principal`, sorted.
    pub(crate) fn ids(&self, principal: &Principal) -> Vec<Id> {
        let mut ids: Vec<Id> = self
            .shard(principal)
            .get(principal)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Entries in the whole index, for tests that look for leaks.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .values()
                    .map(HashSet::len)
                    .sum::<usize>()
            })
            .sum()
    }

    /// Every (principal, id) pair, for tests that compare the index with the state.
    #[cfg(test)]
    pub(crate) fn pairs(&self) -> Vec<(Principal, Id)> {
        let mut pairs = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap();
            for (principal, ids) in shard.iter() {
                pairs.extend(ids.iter().map(|id| (principal.clone(), *id)));
            }
        }
        pairs.sort();
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebinding_moves_and_empty_lists_go() {
        let index = PrincipalIndex::default();
        let alice = Principal::new("alice").unwrap();
        let bob = Principal::new("bob").unwrap();
        let id = Id::from_bytes([1; 16]);
        index.rebind(id, None, Some(&alice));
        index.rebind(id, Some(&alice), Some(&alice));
        assert_eq!(index.ids(&alice), [id]);
        index.rebind(id, Some(&alice), Some(&bob));
        assert!(index.ids(&alice).is_empty());
        assert_eq!(index.ids(&bob), [id]);
        index.rebind(id, Some(&bob), None);
        assert_eq!(index.len(), 0);
        assert!(index.pairs().is_empty());
    }
}
