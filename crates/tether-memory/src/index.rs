//! The principal index: which sessions each principal has.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use tether_core::{Id, Principal, SessionHandle, Timestamp};

/// Sessions by principal, each with its creation time (oldest first is the order they are
/// listed and capped in).
///
/// It may name sessions that ended a moment ago (an entry is added before its session is
/// stored, and removed after it is deleted), never miss a live one: whoever reads it checks each
/// session. Lock order: a session's cell lock may be held while taking this one, never the
/// reverse.
#[derive(Default)]
pub(crate) struct PrincipalIndex {
    entries: Mutex<HashMap<Principal, Vec<Entry>>>,
}

#[derive(Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) created_at: Timestamp,
    pub(crate) id: Id,
}

impl PrincipalIndex {
    fn lock(&self) -> MutexGuard<'_, HashMap<Principal, Vec<Entry>>> {
        // Nothing panics while holding the lock; recover the map if something ever did.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lists session `id` under `principal`, and returns the sessions past `cap` that must be
    /// revoked for it: the oldest of the others.
    pub(crate) fn add(
        &self,
        principal: &Principal,
        entry: Entry,
        cap: Option<NonZeroUsize>,
    ) -> Vec<Id> {
        let mut entries = self.lock();
        let list = entries.entry(principal.clone()).or_default();
        if !list.iter().any(|listed| listed.id == entry.id) {
            list.push(entry);
        }
        let Some(cap) = cap else {
            return Vec::new();
        };
        let excess = list.len().saturating_sub(cap.get());
        if excess == 0 {
            return Vec::new();
        }
        let mut others: Vec<Entry> = list
            .iter()
            .copied()
            .filter(|listed| listed.id != entry.id)
            .collect();
        others.sort_by_key(|listed| (listed.created_at, listed.id));
        others.into_iter().take(excess).map(|old| old.id).collect()
    }

    /// Takes session `id` off `principal`'s list.
    pub(crate) fn remove(&self, principal: &Principal, id: &Id) {
        let mut entries = self.lock();
        if let Some(list) = entries.get_mut(principal) {
            list.retain(|listed| listed.id != *id);
            if list.is_empty() {
                entries.remove(principal);
            }
        }
    }

    /// The sessions listed under `principal`.
    pub(crate) fn listed(&self, principal: &Principal) -> Vec<Entry> {
        self.lock().get(principal).cloned().unwrap_or_default()
    }

    /// The id behind `handle` among `principal`'s sessions.
    pub(crate) fn find(&self, principal: &Principal, handle: &SessionHandle) -> Option<Id> {
        self.lock()
            .get(principal)?
            .iter()
            .find(|listed| SessionHandle::of(&listed.id) == *handle)
            .map(|listed| listed.id)
    }

    /// Entries in the whole index, for tests that look for leaks.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}
