//! The sessions a node holds, as state that merges: per-key last-writer-wins registers stamped
//! with hybrid logical clocks, a clear marker, and a deletion tombstone.
//!
//! Merging is commutative, associative and idempotent, so it does not matter in which order or
//! how often a node receives a delta or a whole copy: every node that saw the same writes holds
//! the same session. Each session also remembers the ids of its latest writes
//! ([`RecentWrites`]), so a write that comes again is recognised instead of stamped and applied
//! a second time.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tether_core::{Expiry, Id, Record, Timestamp};

use crate::hlc::Hlc;
use crate::write_id::{RecentWrites, WriteId};

const SHARDS: usize = 16;

/// One value with the time it was written; `None` when the key was removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Field {
    pub(crate) at: Hlc,
    pub(crate) value: Option<Bytes>,
}

/// A session's replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) created_at: Timestamp,
    pub(crate) expiry: Expiry,
    pub(crate) expiry_at: Hlc,
    pub(crate) fields: HashMap<String, Field>,
    /// Keys written before this were cleared.
    pub(crate) cleared_at: Option<Hlc>,
    /// Set once the session was deleted; it never lives again.
    pub(crate) deleted_at: Option<Hlc>,
    /// The ids of the latest writes applied to it (its creation, deltas, deletion).
    pub(crate) writes: RecentWrites,
    /// When this node first swept the entry deleted, by its own wall clock: the tombstone
    /// retention counts from here. Not from `deleted_at`, which is a peer's hybrid clock and
    /// may run ahead of the wall clock (up to the max drift). Local: never sent.
    #[serde(skip)]
    pub(crate) deleted_seen: Option<Timestamp>,
}

/// One request's changes, stamped by the session's primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Delta {
    /// The store call it comes from.
    pub(crate) write: WriteId,
    pub(crate) at: Hlc,
    pub(crate) clear: bool,
    pub(crate) removed: Vec<String>,
    pub(crate) set: Vec<(String, Bytes)>,
    pub(crate) expiry: Expiry,
}

impl Delta {
    #[cfg(test)]
    pub(crate) fn new(at: Hlc, changes: &tether_core::Changes, expiry: Expiry) -> Self {
        Self {
            write: WriteId::random().unwrap(),
            at,
            clear: changes.is_clear(),
            removed: changes.removed().map(str::to_owned).collect(),
            set: changes
                .inserted()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
            expiry,
        }
    }
}

impl Entry {
    /// A new session, created by the store call `write`.
    pub(crate) fn from_record(record: &Record, at: Hlc, write: WriteId) -> Self {
        let fields = record
            .data
            .iter()
            .map(|(k, v)| {
                let field = Field {
                    at,
                    value: Some(v.clone()),
                };
                (k.clone(), field)
            })
            .collect();
        Self {
            created_at: record.created_at,
            expiry: record.expiry,
            expiry_at: at,
            fields,
            cleared_at: None,
            deleted_at: None,
            writes: RecentWrites::one(write, at),
            deleted_seen: None,
        }
    }

    fn tombstone(at: Hlc, write: WriteId) -> Self {
        let now = Timestamp::now();
        Self {
            created_at: now,
            expiry: Expiry::from_parts(now, Duration::ZERO, None),
            expiry_at: at,
            fields: HashMap::new(),
            cleared_at: None,
            deleted_at: Some(at),
            writes: RecentWrites::one(write, at),
            deleted_seen: None,
        }
    }

    pub(crate) fn is_live(&self, now: Timestamp) -> bool {
        self.deleted_at.is_none() && !self.expiry.is_expired(now)
    }

    fn visible(&self, field: &Field) -> bool {
        self.cleared_at.is_none_or(|cleared| field.at >= cleared)
    }

    pub(crate) fn record(&self, id: Id) -> Record {
        let data = self
            .fields
            .iter()
            .filter(|(_, field)| self.visible(field))
            .filter_map(|(key, field)| field.value.clone().map(|v| (key.clone(), v)))
            .collect();
        Record::new(id, self.expiry, self.created_at).with_data(data)
    }

    fn put(&mut self, key: &str, field: Field) {
        match self.fields.get_mut(key) {
            Some(current) if current.at >= field.at => {}
            Some(current) => *current = field,
            None => {
                self.fields.insert(key.to_owned(), field);
            }
        }
    }

    fn clear_before(&mut self, at: Hlc) {
        if self.cleared_at.is_some_and(|cleared| cleared >= at) {
            return;
        }
        self.cleared_at = Some(at);
        self.fields.retain(|_, field| field.at >= at);
    }

    fn set_expiry(&mut self, expiry: Expiry, at: Hlc) {
        if at > self.expiry_at {
            self.expiry = expiry;
            self.expiry_at = at;
        }
    }

    pub(crate) fn apply(&mut self, delta: &Delta) {
        if delta.clear {
            self.clear_before(delta.at);
        }
        for key in &delta.removed {
            self.put(
                key,
                Field {
                    at: delta.at,
                    value: None,
                },
            );
        }
        for (key, value) in &delta.set {
            let field = Field {
                at: delta.at,
                value: Some(value.clone()),
            };
            self.put(key, field);
        }
        self.set_expiry(delta.expiry, delta.at);
        self.writes.record(delta.write, delta.at);
    }

    fn delete(&mut self, at: Hlc) {
        if self.deleted_at.is_none_or(|deleted| at > deleted) {
            self.deleted_at = Some(at);
        }
        self.fields.clear();
    }

    /// Merges another copy of the same session into this one.
    pub(crate) fn merge(&mut self, other: Self) {
        self.writes.merge(other.writes);
        self.created_at = self.created_at.min(other.created_at);
        self.set_expiry(other.expiry, other.expiry_at);
        if let Some(cleared) = other.cleared_at {
            self.clear_before(cleared);
        }
        if let Some(deleted) = other.deleted_at {
            self.delete(deleted);
        }
        if self.deleted_at.is_some() {
            return;
        }
        for (key, field) in other.fields {
            if self.visible(&field) {
                self.put(&key, field);
            }
        }
    }

    /// When this entry may be forgotten, swept at `now`: a live session at its deadline, a
    /// deletion once no copy of the session could still be live anywhere, and not before
    /// `tombstone_min` after this node first swept it deleted (at `now` if this is the first).
    /// Only wall-clock times: the session's deadline and this node's own clock.
    fn forget_at(&mut self, now: Timestamp, tombstone_min: Duration) -> Timestamp {
        if self.deleted_at.is_none() {
            return self.expiry.expires_at();
        }
        let seen = *self.deleted_seen.get_or_insert(now);
        self.expiry.expires_at().max(seen + tombstone_min)
    }
}

/// What happened to a delta at one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ApplyOutcome {
    /// Applied to a live session.
    Applied,
    /// The session was deleted or has expired.
    Missing,
    /// This node has no copy of the session at all.
    Unknown,
    /// Not applied again: the session remembers the delta's write id, it was applied before.
    Repeated,
}

/// What happened to a new session at one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CreateOutcome {
    /// Stored.
    Created,
    /// The id is taken (live, or deleted: ids are never reused) by another write.
    Taken,
    /// Not stored again: the session remembers the write id, this very write created it.
    Repeated,
}

/// The sessions held by one node, in shards to keep lock contention low.
#[derive(Debug)]
pub(crate) struct LocalState {
    shards: Vec<Mutex<HashMap<Id, Entry>>>,
}

impl Default for LocalState {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl LocalState {
    #[allow(clippy::indexing_slicing)] // `shards` has SHARDS elements; the index is below that.
    fn shard(&self, id: &Id) -> MutexGuard<'_, HashMap<Id, Entry>> {
        let index = usize::from(id.as_bytes()[0]) % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn record(&self, id: &Id, now: Timestamp) -> Option<Record> {
        self.shard(id)
            .get(id)
            .filter(|entry| entry.is_live(now))
            .map(|entry| entry.record(*id))
    }

    pub(crate) fn entry(&self, id: &Id) -> Option<Entry> {
        self.shard(id).get(id).cloned()
    }

    /// Inserts a new session, created by the store call `write`, unless the id is known (live,
    /// or deleted: ids are never reused).
    pub(crate) fn create(&self, id: Id, entry: Entry, write: &WriteId) -> CreateOutcome {
        let mut shard = self.shard(&id);
        match shard.get(&id) {
            Some(existing) if existing.writes.contains(write) => CreateOutcome::Repeated,
            Some(existing)
                if existing.is_live(Timestamp::now()) || existing.deleted_at.is_some() =>
            {
                CreateOutcome::Taken
            }
            _ => {
                shard.insert(id, entry);
                CreateOutcome::Created
            }
        }
    }

    /// Applies `delta` to a live session, unless the session remembers its write id.
    pub(crate) fn apply(&self, id: &Id, delta: &Delta, now: Timestamp) -> ApplyOutcome {
        let mut shard = self.shard(id);
        match shard.get_mut(id) {
            None => ApplyOutcome::Unknown,
            Some(entry) if entry.writes.contains(&delta.write) => ApplyOutcome::Repeated,
            Some(entry) if !entry.is_live(now) => ApplyOutcome::Missing,
            Some(entry) => {
                entry.apply(delta);
                ApplyOutcome::Applied
            }
        }
    }

    /// Deletes a session by the store call `write`, stamped `at`; false, doing nothing, when
    /// the session remembers `write` (this deletion happened already).
    pub(crate) fn delete(&self, id: Id, at: Hlc, write: WriteId) -> bool {
        let mut shard = self.shard(&id);
        match shard.get_mut(&id) {
            Some(entry) if entry.writes.contains(&write) => false,
            Some(entry) => {
                entry.delete(at);
                entry.writes.record(write, at);
                true
            }
            None => {
                shard.insert(id, Entry::tombstone(at, write));
                true
            }
        }
    }

    pub(crate) fn merge(&self, id: Id, entry: Entry) {
        let mut shard = self.shard(&id);
        match shard.get_mut(&id) {
            Some(current) => current.merge(entry),
            None => {
                shard.insert(id, entry);
            }
        }
    }

    pub(crate) fn remove(&self, id: &Id) {
        self.shard(id).remove(id);
    }

    /// Copies of the entries whose id passes `keep`.
    pub(crate) fn select(&self, mut keep: impl FnMut(&Id) -> bool) -> Vec<(Id, Entry)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            out.extend(
                shard
                    .iter()
                    .filter(|(id, _)| keep(id))
                    .map(|(id, e)| (*id, e.clone())),
            );
        }
        out
    }

    /// Forgets expired sessions, and tombstones first swept more than `tombstone_min` ago;
    /// returns how many.
    pub(crate) fn sweep(&self, now: Timestamp, tombstone_min: Duration) -> usize {
        let mut forgotten = 0;
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let before = shard.len();
            shard.retain(|_, entry| entry.forget_at(now, tombstone_min) > now);
            forgotten += before - shard.len();
        }
        forgotten
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Clock;

    fn bytes(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn entry(clock: &Clock) -> Entry {
        let now = Timestamp::now();
        let record = Record::new(
            Id::random().unwrap(),
            Expiry::new(now, Duration::from_secs(60), None),
            now,
        );
        Entry::from_record(&record, clock.now(), WriteId::random().unwrap())
    }

    fn delta(clock: &Clock, f: impl FnOnce(&mut tether_core::Changes)) -> Delta {
        let mut changes = tether_core::Changes::new();
        f(&mut changes);
        Delta::new(
            clock.now(),
            &changes,
            Expiry::new(Timestamp::now(), Duration::from_secs(60), None),
        )
    }

    #[test]
    fn deltas_commute() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let base = entry(&clock);
        let d1 = delta(&clock, |c| c.insert("a", bytes("1")));
        let d2 = delta(&clock, |c| c.insert("b", bytes("2")));
        let d3 = delta(&clock, |c| {
            c.insert("a", bytes("3"));
            c.remove("b");
        });
        let orders = [[&d1, &d2, &d3], [&d3, &d2, &d1], [&d2, &d3, &d1]];
        let mut results = orders.iter().map(|order| {
            let mut e = base.clone();
            for d in order {
                e.apply(d);
            }
            e.record(Id::from_bytes([0; 16])).data
        });
        let first = results.next().unwrap();
        assert_eq!(first.get("a"), Some(&bytes("3")));
        assert!(!first.contains_key("b"));
        assert!(results.all(|r| r == first));
    }

    #[test]
    fn merge_is_idempotent_and_order_free() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let base = entry(&clock);
        let mut left = base.clone();
        left.apply(&delta(&clock, |c| c.insert("x", bytes("left"))));
        let mut right = base;
        right.apply(&delta(&clock, |c| c.insert("y", bytes("right"))));
        right.apply(&delta(&clock, |c| c.clear()));
        right.apply(&delta(&clock, |c| c.insert("z", bytes("after clear"))));

        let mut lr = left.clone();
        lr.merge(right.clone());
        let mut rl = right.clone();
        rl.merge(left.clone());
        let mut twice = lr.clone();
        twice.merge(right.clone());
        twice.merge(left.clone());
        let id = Id::from_bytes([1; 16]);
        assert_eq!(lr.record(id), rl.record(id));
        assert_eq!(lr.record(id), twice.record(id));
        assert_eq!(lr.record(id).data.keys().collect::<Vec<_>>(), ["z"]);
    }

    #[test]
    fn deletion_wins_over_any_copy() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let state = LocalState::default();
        let id = Id::random().unwrap();
        let live = entry(&clock);
        state.merge(id, live.clone());
        assert!(state.delete(id, clock.now(), WriteId::random().unwrap()));
        let mut late = live;
        late.apply(&delta(&clock, |c| c.insert("late", bytes("x"))));
        state.merge(id, late);
        assert!(state.record(&id, Timestamp::now()).is_none());
        assert_eq!(
            state.apply(
                &id,
                &delta(&clock, |c| c.insert("k", bytes("v"))),
                Timestamp::now()
            ),
            ApplyOutcome::Missing
        );
        assert!(
            state.create(id, entry(&clock), &WriteId::random().unwrap()) == CreateOutcome::Taken,
            "a deleted id is never created again"
        );
    }

    /// A deletion stamped an hour ahead (by a clock dragged forward) is kept for the retention
    /// from when this node swept it first, not for an hour more.
    #[test]
    fn tombstone_retention_counts_from_this_nodes_clock() {
        let state = LocalState::default();
        let id = Id::random().unwrap();
        let now = Timestamp::now();
        state.delete(
            id,
            Hlc::at_millis(now.as_millis() + 3_600_000),
            WriteId::random().unwrap(),
        );
        let retention = Duration::from_secs(120);
        assert_eq!(state.sweep(now, retention), 0);
        let almost = now + (retention - Duration::from_millis(1));
        assert_eq!(state.sweep(almost, retention), 0, "kept for the retention");
        assert_eq!(state.sweep(now + retention, retention), 1, "and no longer");
    }

    /// A delta that comes again, stamped anew, is not applied again; nor a deletion or a
    /// creation, and the ids travel with whole copies.
    #[test]
    fn a_write_id_is_applied_once() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let state = LocalState::default();
        let id = Id::random().unwrap();
        let created = WriteId::random().unwrap();
        let now = Timestamp::now();
        let record = Record::new(id, Expiry::new(now, Duration::from_secs(60), None), now);
        let new = Entry::from_record(&record, clock.now(), created);
        assert_eq!(
            state.create(id, new.clone(), &created),
            CreateOutcome::Created
        );
        assert_eq!(state.create(id, new, &created), CreateOutcome::Repeated);
        let first = delta(&clock, |c| c.insert("n", bytes("1")));
        let second = delta(&clock, |c| c.insert("n", bytes("2")));
        assert_eq!(state.apply(&id, &first, now), ApplyOutcome::Applied);
        assert_eq!(state.apply(&id, &second, now), ApplyOutcome::Applied);
        let replayed = Delta {
            at: clock.now(),
            ..first
        };
        assert_eq!(state.apply(&id, &replayed, now), ApplyOutcome::Repeated);
        assert_eq!(state.record(&id, now).unwrap().data["n"], bytes("2"));

        let copy = LocalState::default();
        copy.merge(id, state.entry(&id).unwrap());
        assert_eq!(copy.apply(&id, &replayed, now), ApplyOutcome::Repeated);
        let deleted = WriteId::random().unwrap();
        assert!(copy.delete(id, clock.now(), deleted));
        assert!(!copy.delete(id, clock.now(), deleted));
    }

    #[test]
    fn sweep_forgets_expired_sessions() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let state = LocalState::default();
        let mut short = entry(&clock);
        short.expiry = Expiry::from_parts(Timestamp::from_millis(1), Duration::ZERO, None);
        state.merge(Id::random().unwrap(), short);
        state.merge(Id::random().unwrap(), entry(&clock));
        assert_eq!(state.sweep(Timestamp::now(), Duration::from_secs(120)), 1);
        assert_eq!(state.len(), 1);
    }
}
