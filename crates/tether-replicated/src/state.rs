//! The sessions a node holds, as state that merges: per-key last-writer-wins registers stamped
//! with hybrid logical clocks, a clear marker, and a deletion tombstone.
//!
//! Merging is commutative, associative and idempotent, so it does not matter in which order or
//! how often a node receives a delta or a whole copy: every node that saw the same writes holds
//! the same session. Each session also remembers the ids of its latest writes
//! ([`RecentWrites`]), so a write that comes again is recognised instead of stamped and applied
//! a second time.
//!
//! A session's principal and its last use are registers of their own, last writer wins like a
//! key. The node's [`PrincipalIndex`] follows the principal register of every entry it holds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tether_core::{Expiry, Id, KeyUpdate, KeyUpdated, Principal, Record, Seen, Timestamp};

use crate::hlc::Hlc;
use crate::index::PrincipalIndex;
use crate::write_id::{RecentWrites, WriteId};

const SHARDS: usize = 16;

/// One value with the time it was written; `None` when the key was removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Field {
    pub(crate) at: Hlc,
    pub(crate) value: Option<Bytes>,
}

/// A last-writer-wins register: a value and the time it was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Register<T> {
    pub(crate) at: Hlc,
    pub(crate) value: T,
}

impl<T> Register<T> {
    /// Puts `value`, written at `at`, into `slot` unless the slot holds a write as new or newer
    /// (the same stamp is the same write: a primary stamps each write once).
    fn put(slot: &mut Option<Self>, at: Hlc, value: T) {
        if slot.as_ref().is_none_or(|current| at > current.at) {
            *slot = Some(Self { at, value });
        }
    }

    /// Merges another copy's register into `slot`.
    fn merge(slot: &mut Option<Self>, other: Option<Self>) {
        if let Some(other) = other {
            Self::put(slot, other.at, other.value);
        }
    }
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
    /// Who the session is bound to. Kept by a deletion, so a tombstone still says whose
    /// session it was (an index answer reports it deleted).
    pub(crate) principal: Option<Register<Principal>>,
    /// Its last use. Dropped by a deletion, like the data. Boxed, as in a `Record`: most
    /// sessions carry none, and every entry would pay for the field.
    pub(crate) seen: Option<Register<Box<Seen>>>,
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
    /// The session's expiry from now on; `None` leaves it alone (a key update).
    pub(crate) expiry: Option<Expiry>,
    /// The principal the session is bound to from now on, if this write binds it.
    pub(crate) principal: Option<Principal>,
    /// The session's last use, if this write records it.
    pub(crate) seen: Option<Seen>,
    /// The write is a key update ([`LocalState::update_key`]): it sets or removes one key,
    /// and every holder remembers the value it left with its write id, so that the update,
    /// if it comes again, is answered as the first time.
    pub(crate) key_update: bool,
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
            expiry: Some(expiry),
            principal: changes.principal().cloned(),
            seen: changes.seen().cloned(),
            key_update: false,
        }
    }

    /// The delta of a key update by the store call `write`, stamped `at`: `key` set to
    /// `value`, or removed when `None`. Nothing else.
    pub(crate) fn key_update(write: WriteId, at: Hlc, key: &str, value: Option<Bytes>) -> Self {
        let (removed, set) = match value {
            Some(value) => (Vec::new(), vec![(key.to_owned(), value)]),
            None => (vec![key.to_owned()], Vec::new()),
        };
        Self {
            write,
            at,
            clear: false,
            removed,
            set,
            expiry: None,
            principal: None,
            seen: None,
            key_update: true,
        }
    }

    /// What a key update's delta left under its key.
    pub(crate) fn updated_value(&self) -> Option<Bytes> {
        self.set.first().map(|(_, value)| value.clone())
    }
}

/// One session of a principal as a node that holds it reports it: what a listing shows, and
/// whether the node holds it deleted (a tombstone overrules another holder's live copy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Listed {
    pub(crate) id: Id,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) seen: Option<Seen>,
    pub(crate) deleted: bool,
}

impl Listed {
    /// About how many bytes it takes on the wire, for paging.
    pub(crate) fn weight(&self) -> usize {
        48 + self
            .seen
            .as_ref()
            .map_or(0, |seen| 32 + seen.device().map_or(0, str::len))
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
            principal: record.principal.clone().map(|value| Register { at, value }),
            seen: record.seen.clone().map(|value| Register { at, value }),
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
            principal: None,
            seen: None,
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
        Record::new(id, self.expiry, self.created_at)
            .with_data(data)
            .with_principal(self.principal().cloned())
            .with_seen(self.seen.as_ref().map(|seen| Seen::clone(&seen.value)))
    }

    /// The principal the session is bound to, if any (a deleted one's too).
    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref().map(|principal| &principal.value)
    }

    /// How a node lists it under its principal: `None` when it is past its deadline (by
    /// `now`) and not deleted, as it ended by itself and no copy can be live.
    pub(crate) fn listed(&self, id: Id, now: Timestamp) -> Option<Listed> {
        let deleted = self.deleted_at.is_some();
        if !deleted && self.expiry.is_expired(now) {
            return None;
        }
        Some(Listed {
            id,
            created_at: self.created_at,
            expires_at: self.expiry.expires_at(),
            seen: self.seen.as_ref().map(|seen| Seen::clone(&seen.value)),
            deleted,
        })
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
        if let Some(expiry) = delta.expiry {
            self.set_expiry(expiry, delta.at);
        }
        if let Some(principal) = &delta.principal {
            Register::put(&mut self.principal, delta.at, principal.clone());
        }
        if let Some(seen) = &delta.seen {
            Register::put(&mut self.seen, delta.at, Box::new(seen.clone()));
        }
        if delta.key_update {
            self.writes
                .record_update(delta.write, delta.at, delta.updated_value());
        } else {
            self.writes.record(delta.write, delta.at);
        }
    }

    fn delete(&mut self, at: Hlc) {
        if self.deleted_at.is_none_or(|deleted| at > deleted) {
            self.deleted_at = Some(at);
        }
        self.fields.clear();
        self.seen = None;
    }

    /// Merges another copy of the same session into this one.
    pub(crate) fn merge(&mut self, other: Self) {
        self.writes.merge(other.writes);
        self.created_at = self.created_at.min(other.created_at);
        self.set_expiry(other.expiry, other.expiry_at);
        Register::merge(&mut self.principal, other.principal);
        if let Some(cleared) = other.cleared_at {
            self.clear_before(cleared);
        }
        if let Some(deleted) = other.deleted_at {
            self.delete(deleted);
        }
        if self.deleted_at.is_some() {
            return;
        }
        Register::merge(&mut self.seen, other.seen);
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

/// What happened to a key update at the session's primary ([`LocalState::update_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyUpdateOutcome {
    /// Written as this delta, for the backups; the key holds its value now.
    Written(Delta),
    /// Nothing written, and this is the answer: a conflict, or the session is missing
    /// (unknown here, deleted, or past its deadline).
    Answered(KeyUpdated),
    /// Not written again: the session remembers the write id. The value the update left.
    Repeated(Option<Bytes>),
    /// Nothing written: the key, or a clear of the session, carries a stamp at or after the
    /// update's (a write stamped after it got to the lock first). Stamp it anew and run it
    /// again.
    Stale,
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

/// What happened to a deletion at one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeleteOutcome {
    /// It ended a live session, bound to this principal if any.
    Ended(Option<Principal>),
    /// It was recorded, but ended nothing: the session was unknown here, past its deadline,
    /// or deleted already.
    NotLive,
    /// Not done again: the session remembers the write id, this very deletion happened
    /// already.
    Repeated,
}

/// A session a sweep found past its deadline: its id, principal and deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expired {
    pub(crate) id: Id,
    pub(crate) principal: Option<Principal>,
    pub(crate) deadline: Timestamp,
}

/// What happened to a conditional deletion (a revoke) at a session's primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RevokeOutcome {
    /// The session was live and bound to the principal: it is deleted now.
    Revoked,
    /// Nothing was deleted: no such live session, or it is bound to another principal.
    NotBound,
    /// Not done again: the session remembers the write id, this very revoke deleted it.
    Repeated,
}

/// The sessions held by one node, in shards to keep lock contention low, and its principal
/// index, kept in step with them.
#[derive(Debug)]
pub(crate) struct LocalState {
    shards: Vec<Mutex<HashMap<Id, Entry>>>,
    index: PrincipalIndex,
}

impl Default for LocalState {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            index: PrincipalIndex::default(),
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
                let after = entry.principal().cloned();
                let before = shard.insert(id, entry);
                let before = before.as_ref().and_then(Entry::principal);
                self.index.rebind(id, before, after.as_ref());
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
                if delta.principal.is_some() {
                    let before = entry.principal().cloned();
                    entry.apply(delta);
                    self.index.rebind(*id, before.as_ref(), entry.principal());
                } else {
                    entry.apply(delta);
                }
                ApplyOutcome::Applied
            }
        }
    }

    /// Runs the key update `update` of `key` by the store call `write`, stamped `at`, as the
    /// session's primary: reads the key, evaluates the update and, if it writes, applies it as
    /// an ordinary delta, all under the session's lock, so no other write of the session comes
    /// in between. Never creates or revives a session.
    ///
    /// # Errors
    ///
    /// What [`KeyUpdate::evaluate`] fails with ([`Error::NotACounter`](tether_core::Error::NotACounter)); nothing is written.
    pub(crate) fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
        write: WriteId,
        at: Hlc,
        now: Timestamp,
    ) -> Result<KeyUpdateOutcome, tether_core::Error> {
        let mut shard = self.shard(id);
        let Some(entry) = shard.get_mut(id) else {
            return Ok(KeyUpdateOutcome::Answered(KeyUpdated::Missing));
        };
        let field = entry.fields.get(key);
        let current = field
            .filter(|field| entry.visible(field))
            .and_then(|field| field.value.clone());
        if entry.writes.contains(&write) {
            // Remembered with the value it left. A write id remembered from another kind of
            // write (never, unless 128 random bits collide) gets what the key holds.
            let value = match entry.writes.updated(&write) {
                Some(value) => value.cloned(),
                None => current,
            };
            return Ok(KeyUpdateOutcome::Repeated(value));
        }
        if !entry.is_live(now) {
            return Ok(KeyUpdateOutcome::Answered(KeyUpdated::Missing));
        }
        match update.evaluate(key, current.as_ref())? {
            KeyUpdated::Updated(value) => {
                // The write must order after the value it was computed from, on every holder:
                // a stamp not newer than the key's (or than a clear) would lose to it.
                let stale = field.is_some_and(|field| field.at >= at)
                    || entry.cleared_at.is_some_and(|cleared| cleared >= at);
                if stale {
                    return Ok(KeyUpdateOutcome::Stale);
                }
                let delta = Delta::key_update(write, at, key, value);
                entry.apply(&delta);
                Ok(KeyUpdateOutcome::Written(delta))
            }
            answer => Ok(KeyUpdateOutcome::Answered(answer)),
        }
    }

    /// Deletes a session by the store call `write`, stamped `at`; false, doing nothing, when
    /// the session remembers `write` (this deletion happened already). The principal stays
    /// on the tombstone, and so does its index entry, until the tombstone is forgotten.
    pub(crate) fn delete(&self, id: Id, at: Hlc, write: WriteId) -> bool {
        self.delete_reporting(id, at, write, Timestamp::now()) != DeleteOutcome::Repeated
    }

    /// As [`LocalState::delete`], saying whether the deletion ended a session live at `now`
    /// (checked under the session's lock, in the same step), and whose it was.
    pub(crate) fn delete_reporting(
        &self,
        id: Id,
        at: Hlc,
        write: WriteId,
        now: Timestamp,
    ) -> DeleteOutcome {
        let mut shard = self.shard(&id);
        match shard.get_mut(&id) {
            Some(entry) if entry.writes.contains(&write) => DeleteOutcome::Repeated,
            Some(entry) => {
                let ended = entry
                    .is_live(now)
                    .then(|| DeleteOutcome::Ended(entry.principal().cloned()));
                entry.delete(at);
                entry.writes.record(write, at);
                ended.unwrap_or(DeleteOutcome::NotLive)
            }
            None => {
                shard.insert(id, Entry::tombstone(at, write));
                DeleteOutcome::NotLive
            }
        }
    }

    /// Deletes the session by the store call `write`, stamped `at`, only if it is live and
    /// bound to `principal`: the check and the deletion under one lock, so a session rebound
    /// meanwhile is left alone.
    pub(crate) fn revoke(
        &self,
        id: Id,
        principal: &Principal,
        at: Hlc,
        write: WriteId,
        now: Timestamp,
    ) -> RevokeOutcome {
        let mut shard = self.shard(&id);
        match shard.get_mut(&id) {
            Some(entry) if entry.writes.contains(&write) => RevokeOutcome::Repeated,
            Some(entry) if entry.is_live(now) && entry.principal() == Some(principal) => {
                entry.delete(at);
                entry.writes.record(write, at);
                RevokeOutcome::Revoked
            }
            _ => RevokeOutcome::NotBound,
        }
    }

    pub(crate) fn merge(&self, id: Id, entry: Entry) {
        let mut shard = self.shard(&id);
        match shard.get_mut(&id) {
            Some(current) => {
                let before = current.principal().cloned();
                current.merge(entry);
                self.index.rebind(id, before.as_ref(), current.principal());
            }
            None => {
                self.index.rebind(id, None, entry.principal());
                shard.insert(id, entry);
            }
        }
    }

    pub(crate) fn remove(&self, id: &Id) {
        let removed = self.shard(id).remove(id);
        if let Some(principal) = removed.as_ref().and_then(Entry::principal) {
            self.index.remove(principal, id);
        }
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

    /// The sessions this node holds bound to `principal`, in id order after `after`, as
    /// [`Entry::listed`] reports them: live ones, and deleted ones whose tombstone it still
    /// keeps. At most `budget` bytes of them (at least one); the second value is the last id
    /// of the page when more follow.
    pub(crate) fn listed(
        &self,
        principal: &Principal,
        after: Option<Id>,
        now: Timestamp,
        budget: usize,
    ) -> (Vec<Listed>, Option<Id>) {
        let mut page = Vec::new();
        let mut size = 0;
        for id in self.index.ids(principal) {
            if after.is_some_and(|after| id <= after) {
                continue;
            }
            let listed = self
                .shard(&id)
                .get(&id)
                .filter(|entry| entry.principal() == Some(principal))
                .and_then(|entry| entry.listed(id, now));
            let Some(listed) = listed else { continue };
            let weight = listed.weight();
            if !page.is_empty() && size + weight > budget {
                let next = page.last().map(|listed: &Listed| listed.id);
                return (page, next);
            }
            size += weight;
            page.push(listed);
        }
        (page, None)
    }

    /// Forgets expired sessions, and tombstones first swept more than `tombstone_min` ago;
    /// returns how many.
    #[cfg(test)]
    pub(crate) fn sweep(&self, now: Timestamp, tombstone_min: Duration) -> usize {
        self.sweep_reporting(now, tombstone_min, None).0
    }

    /// As [`LocalState::sweep`]; with `since`, also the sessions it forgot that were live
    /// (not deleted) and whose deadline is after `since` and at or before `now`. The sweep
    /// before this one ran at `since`, so a deadline falls in the window of exactly one sweep
    /// of this node: a session past its deadline that comes again (a copy pushed by a holder
    /// that had not swept it yet) is forgotten again, not reported again.
    pub(crate) fn sweep_reporting(
        &self,
        now: Timestamp,
        tombstone_min: Duration,
        since: Option<Timestamp>,
    ) -> (usize, Vec<Expired>) {
        let mut forgotten = 0;
        let mut expired = Vec::new();
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let before = shard.len();
            shard.retain(|id, entry| {
                let keep = entry.forget_at(now, tombstone_min) > now;
                if keep {
                    return true;
                }
                if let Some(since) = since
                    && entry.deleted_at.is_none()
                    && entry.expiry.expires_at() > since
                {
                    expired.push(Expired {
                        id: *id,
                        principal: entry.principal().cloned(),
                        deadline: entry.expiry.expires_at(),
                    });
                }
                if let Some(principal) = entry.principal() {
                    self.index.remove(principal, id);
                }
                false
            });
            forgotten += before - shard.len();
        }
        (forgotten, expired)
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

    /// Entries in the principal index: one per held entry (live, expired or deleted) that has
    /// a principal.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn indexed(&self) -> usize {
        self.index.len()
    }

    /// Checks that the index names exactly the held entries that have a principal.
    #[cfg(test)]
    pub(crate) fn assert_index_in_step(&self) {
        let mut expected: Vec<(Principal, Id)> = self
            .select(|_| true)
            .into_iter()
            .filter_map(|(id, entry)| entry.principal().cloned().map(|p| (p, id)))
            .collect();
        expected.sort();
        assert_eq!(self.index.pairs(), expected, "the index is out of step");
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

    /// A key update at the primary: evaluated under the lock against the visible value,
    /// written as a delta of the one key that leaves the expiry alone, answered again (not
    /// applied again) when its write id comes back, refused as stale when a later stamp got
    /// to the key first, and never run on a session that is unknown, deleted or expired.
    #[test]
    fn key_updates_run_under_the_lock_once() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let state = LocalState::default();
        let id = Id::random().unwrap();
        let now = Timestamp::now();
        let expiry = Expiry::new(now, Duration::from_secs(60), None);
        let record =
            Record::new(id, expiry, now).with_data([("other".to_owned(), bytes("text"))].into());
        let created = WriteId::random().unwrap();
        let _ = state.create(
            id,
            Entry::from_record(&record, clock.now(), created),
            &created,
        );
        let codec = tether_core::Codec::default();
        let add = KeyUpdate::Increment { by: 2, codec };
        let two = codec.encode(&2).unwrap();

        let first = WriteId::random().unwrap();
        let Ok(KeyUpdateOutcome::Written(delta)) =
            state.update_key(&id, "n", &add, first, clock.now(), now)
        else {
            panic!("an increment of a live session writes");
        };
        assert_eq!(delta.set, [("n".to_owned(), two.clone())]);
        assert!(delta.removed.is_empty() && !delta.clear && delta.key_update);
        assert_eq!(delta.expiry, None, "the expiry is left alone");
        assert_eq!(
            state
                .update_key(&id, "n", &add, first, clock.now(), now)
                .unwrap(),
            KeyUpdateOutcome::Repeated(Some(two.clone())),
            "the same write again is answered with what it left"
        );
        let found = state.record(&id, now).unwrap();
        assert_eq!(found.data["n"], two, "and counted once");
        assert_eq!(found.data["other"], bytes("text"));
        assert_eq!(found.expiry, expiry);

        // A stamp older than the key's: some write stamped later got there first.
        let old = clock.now();
        let later = WriteId::random().unwrap();
        assert!(matches!(
            state
                .update_key(&id, "n", &add, later, clock.now(), now)
                .unwrap(),
            KeyUpdateOutcome::Written(_)
        ));
        assert_eq!(
            state
                .update_key(&id, "n", &add, WriteId::random().unwrap(), old, now)
                .unwrap(),
            KeyUpdateOutcome::Stale
        );
        // A swap that finds another value writes nothing, stale stamp or not.
        let swap = KeyUpdate::Swap {
            expected: None,
            new: Some(bytes("y")),
        };
        let four = codec.encode(&4).unwrap();
        assert_eq!(
            state
                .update_key(&id, "n", &swap, WriteId::random().unwrap(), old, now)
                .unwrap(),
            KeyUpdateOutcome::Answered(KeyUpdated::Conflict(Some(four.clone())))
        );
        assert!(matches!(
            state.update_key(
                &id,
                "other",
                &add,
                WriteId::random().unwrap(),
                clock.now(),
                now
            ),
            Err(tether_core::Error::NotACounter { by: 2, .. })
        ));
        assert_eq!(state.record(&id, now).unwrap().data["other"], bytes("text"));
        // A removal is remembered as such.
        let remove = KeyUpdate::Swap {
            expected: Some(four),
            new: None,
        };
        let removal = WriteId::random().unwrap();
        assert!(matches!(
            state
                .update_key(&id, "n", &remove, removal, clock.now(), now)
                .unwrap(),
            KeyUpdateOutcome::Written(_)
        ));
        assert!(!state.record(&id, now).unwrap().data.contains_key("n"));
        assert_eq!(
            state
                .update_key(&id, "n", &remove, removal, clock.now(), now)
                .unwrap(),
            KeyUpdateOutcome::Repeated(None)
        );

        let missing = KeyUpdateOutcome::Answered(KeyUpdated::Missing);
        let unknown = Id::random().unwrap();
        assert_eq!(
            state
                .update_key(
                    &unknown,
                    "n",
                    &add,
                    WriteId::random().unwrap(),
                    clock.now(),
                    now
                )
                .unwrap(),
            missing
        );
        assert!(state.entry(&unknown).is_none(), "nothing is created");
        let past = expiry.expires_at() + Duration::from_secs(1);
        assert_eq!(
            state
                .update_key(
                    &id,
                    "n",
                    &add,
                    WriteId::random().unwrap(),
                    clock.now(),
                    past
                )
                .unwrap(),
            missing
        );
        state.delete(id, clock.now(), WriteId::random().unwrap());
        assert_eq!(
            state
                .update_key(&id, "n", &add, WriteId::random().unwrap(), clock.now(), now)
                .unwrap(),
            missing
        );
        assert!(state.record(&id, now).is_none(), "nothing is revived");
    }

    /// A backup that applies a key update's delta remembers its answer, and so does a copy
    /// merged from it: a new primary after a failover answers the update again alike.
    #[test]
    fn a_key_updates_answer_travels_with_the_session() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let (primary, backup, later) = (
            LocalState::default(),
            LocalState::default(),
            LocalState::default(),
        );
        let id = Id::random().unwrap();
        let base = entry(&clock);
        primary.merge(id, base.clone());
        backup.merge(id, base);
        let codec = tether_core::Codec::default();
        let add = KeyUpdate::Increment { by: 1, codec };
        let write = WriteId::random().unwrap();
        let now = Timestamp::now();
        let Ok(KeyUpdateOutcome::Written(delta)) =
            primary.update_key(&id, "n", &add, write, clock.now(), now)
        else {
            panic!("written");
        };
        assert_eq!(backup.apply(&id, &delta, now), ApplyOutcome::Applied);
        assert_eq!(backup.entry(&id), primary.entry(&id), "the copies agree");
        later.merge(id, backup.entry(&id).unwrap());
        let one = codec.encode(&1).unwrap();
        for state in [&backup, &later] {
            assert_eq!(
                state
                    .update_key(&id, "n", &add, write, clock.now(), now)
                    .unwrap(),
                KeyUpdateOutcome::Repeated(Some(one.clone()))
            );
        }
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

    fn alice() -> Principal {
        Principal::new("alice").unwrap()
    }

    fn bob() -> Principal {
        Principal::new("bob").unwrap()
    }

    /// The principal and the last use are registers: the later write wins whatever order the
    /// copies merge in, a deletion drops the last use and keeps the principal, and merging is
    /// idempotent.
    #[test]
    fn principal_and_seen_merge_last_writer_wins() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let mut base = entry(&clock);
        base.apply(&delta(&clock, |c| c.bind(alice())));
        let mut left = base.clone();
        left.apply(&delta(&clock, |c| {
            c.bind(bob());
            c.set_seen(Seen::new(Timestamp::from_millis(1)).with_device("left"));
        }));
        let mut right = base.clone();
        right.apply(&delta(&clock, |c| {
            c.set_seen(Seen::new(Timestamp::from_millis(2)).with_device("right"));
        }));
        let id = Id::from_bytes([2; 16]);
        let mut lr = left.clone();
        lr.merge(right.clone());
        let mut rl = right.clone();
        rl.merge(left.clone());
        let mut twice = lr.clone();
        twice.merge(lr.clone());
        twice.merge(left);
        for merged in [&lr, &rl, &twice] {
            let record = merged.record(id);
            assert_eq!(record.principal, Some(bob()), "the later binding wins");
            assert_eq!(
                record.seen.as_deref().and_then(Seen::device),
                Some("right"),
                "the later use wins"
            );
        }
        assert_eq!(lr, rl);

        let mut deleted = lr.clone();
        deleted.delete(clock.now());
        assert_eq!(
            deleted.principal(),
            Some(&bob()),
            "a tombstone says whose it was"
        );
        assert!(deleted.seen.is_none(), "and not where it was used");
        let mut late = lr;
        late.merge(deleted.clone());
        let mut early = deleted;
        early.merge(right);
        assert!(late.seen.is_none() && early.seen.is_none());
        assert_eq!(late.principal(), early.principal());
    }

    /// The index follows every change of the state: creations, bindings, rebindings, merged
    /// copies, deletions (kept as tombstones), revokes, removals and sweeps.
    #[test]
    fn the_index_stays_in_step_with_the_state() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let state = LocalState::default();
        let now = Timestamp::now();
        let expiry = Expiry::new(now, Duration::from_secs(60), None);
        let bound = |principal: Principal| {
            let record =
                Record::new(Id::random().unwrap(), expiry, now).with_principal(Some(principal));
            let entry = Entry::from_record(&record, clock.now(), WriteId::random().unwrap());
            (record.id, entry)
        };
        let (a1, e1) = bound(alice());
        let (a2, e2) = bound(alice());
        let (b1, e3) = bound(bob());
        for (id, entry) in [(a1, e1.clone()), (a2, e2), (b1, e3)] {
            assert_eq!(
                state.create(id, entry, &WriteId::random().unwrap()),
                CreateOutcome::Created
            );
        }
        let anonymous = Id::random().unwrap();
        state.merge(anonymous, entry(&clock));
        state.assert_index_in_step();
        let listed = |p: &Principal| -> Vec<Id> {
            let (page, next) = state.listed(p, None, Timestamp::now(), usize::MAX);
            assert!(next.is_none());
            page.into_iter()
                .filter(|l| !l.deleted)
                .map(|l| l.id)
                .collect()
        };
        let mut alices = vec![a1, a2];
        alices.sort();
        assert_eq!(listed(&alice()), alices);

        // A binding moves a session from one list to the other.
        let rebind = delta(&clock, |c| c.bind(bob()));
        assert_eq!(state.apply(&a2, &rebind, now), ApplyOutcome::Applied);
        state.assert_index_in_step();
        assert_eq!(listed(&alice()), [a1]);
        let bind = delta(&clock, |c| c.bind(alice()));
        assert_eq!(state.apply(&anonymous, &bind, now), ApplyOutcome::Applied);
        state.assert_index_in_step();

        // A copy with an older binding does not move it back; a newer one does.
        let mut stale = e1.clone();
        stale.principal = Some(Register {
            at: Hlc::at_millis(0),
            value: bob(),
        });
        state.merge(a1, stale);
        assert_eq!(state.entry(&a1).unwrap().principal(), Some(&alice()));
        let mut newer = e1;
        newer.principal = Some(Register {
            at: clock.now(),
            value: bob(),
        });
        state.merge(a1, newer);
        state.assert_index_in_step();
        assert_eq!(state.entry(&a1).unwrap().principal(), Some(&bob()));

        // A revoke checks the principal under the lock: not alice's any more.
        let write = WriteId::random().unwrap();
        assert_eq!(
            state.revoke(a1, &alice(), clock.now(), write, Timestamp::now()),
            RevokeOutcome::NotBound
        );
        assert_eq!(
            state.revoke(a1, &bob(), clock.now(), write, Timestamp::now()),
            RevokeOutcome::Revoked
        );
        assert_eq!(
            state.revoke(a1, &bob(), clock.now(), write, Timestamp::now()),
            RevokeOutcome::Repeated
        );
        assert!(state.record(&a1, Timestamp::now()).is_none());
        let (page, _) = state.listed(&bob(), None, Timestamp::now(), usize::MAX);
        assert!(
            page.iter().any(|l| l.id == a1 && l.deleted),
            "the tombstone is listed as deleted"
        );
        assert!(state.delete(b1, clock.now(), WriteId::random().unwrap()));
        state.assert_index_in_step();

        // Forgotten entries leave the index: removed by rebalancing, or swept.
        state.remove(&a2);
        state.assert_index_in_step();
        let retention = Duration::from_secs(1);
        state.sweep(Timestamp::now(), retention);
        let later = Timestamp::now() + Duration::from_secs(3_600);
        state.sweep(later, retention);
        state.assert_index_in_step();
        assert_eq!(state.len(), 0);
        assert_eq!(state.indexed(), 0);
    }

    /// A page holds at most the budget (and at least one), in id order; the pages together
    /// list every session once.
    #[test]
    fn listing_pages_by_budget() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let state = LocalState::default();
        let now = Timestamp::now();
        let expiry = Expiry::new(now, Duration::from_secs(60), None);
        let mut ids = Vec::new();
        for _ in 0..50 {
            let record = Record::new(Id::random().unwrap(), expiry, now)
                .with_principal(Some(alice()))
                .with_seen(Some(Seen::new(now).with_device("a device label")));
            let write = WriteId::random().unwrap();
            let _ = state.create(
                record.id,
                Entry::from_record(&record, clock.now(), write),
                &write,
            );
            ids.push(record.id);
        }
        ids.sort();
        let mut after = None;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (page, next) = state.listed(&alice(), after, now, 500);
            pages += 1;
            assert!(!page.is_empty());
            assert!(page.iter().map(Listed::weight).sum::<usize>() <= 500);
            seen.extend(page.iter().map(|l| l.id));
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ids);
        assert!(pages > 5, "{pages} pages");
        let (one, next) = state.listed(&alice(), None, now, 1);
        assert_eq!(one.len(), 1, "a budget too small still lists one");
        assert_eq!(next, Some(ids[0]));
    }

    /// A deletion says whether it ended a live session, and whose: not for a session it does
    /// not know, one past its deadline, one deleted already, or a deletion that comes again.
    #[test]
    fn a_deletion_says_whether_it_ended_a_live_session() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let state = LocalState::default();
        let now = Timestamp::now();
        let expiry = Expiry::new(now, Duration::from_secs(60), None);
        let record = Record::new(Id::random().unwrap(), expiry, now).with_principal(Some(alice()));
        let write = WriteId::random().unwrap();
        let _ = state.create(
            record.id,
            Entry::from_record(&record, clock.now(), write),
            &write,
        );
        let delete = WriteId::random().unwrap();
        assert_eq!(
            state.delete_reporting(record.id, clock.now(), delete, now),
            DeleteOutcome::Ended(Some(alice()))
        );
        assert_eq!(
            state.delete_reporting(record.id, clock.now(), delete, now),
            DeleteOutcome::Repeated
        );
        assert_eq!(
            state.delete_reporting(record.id, clock.now(), WriteId::random().unwrap(), now),
            DeleteOutcome::NotLive,
            "deleted already"
        );
        assert_eq!(
            state.delete_reporting(
                Id::random().unwrap(),
                clock.now(),
                WriteId::random().unwrap(),
                now
            ),
            DeleteOutcome::NotLive,
            "unknown"
        );
        let mut past = entry(&clock);
        past.expiry = Expiry::from_parts(Timestamp::from_millis(1), Duration::ZERO, None);
        let past_id = Id::random().unwrap();
        state.merge(past_id, past);
        assert_eq!(
            state.delete_reporting(past_id, clock.now(), WriteId::random().unwrap(), now),
            DeleteOutcome::NotLive,
            "past its deadline"
        );
    }

    /// A sweep reports the live sessions it forgets whose deadline came since the sweep
    /// before: not deleted ones, and not a copy that came again after its deadline was swept.
    #[test]
    fn a_sweep_reports_each_deadline_in_its_window_once() {
        let clock = Clock::new(1, Duration::from_secs(5));
        let state = LocalState::default();
        let at = |millis: u64| {
            let mut e = entry(&clock);
            e.expiry = Expiry::from_parts(Timestamp::from_millis(millis), Duration::ZERO, None);
            e.principal = Some(Register {
                at: clock.now(),
                value: alice(),
            });
            e
        };
        let retention = Duration::from_secs(120);
        let (early, late, deleted) = (
            Id::from_bytes([1; 16]),
            Id::from_bytes([2; 16]),
            Id::from_bytes([3; 16]),
        );
        state.merge(early, at(1_500));
        state.merge(late, at(2_500));
        state.merge(deleted, at(1_600));
        state.delete(deleted, clock.now(), WriteId::random().unwrap());
        let since = Some(Timestamp::from_millis(1_000));
        let (_, expired) = state.sweep_reporting(Timestamp::from_millis(2_000), retention, since);
        assert_eq!(
            expired,
            [Expired {
                id: early,
                principal: Some(alice()),
                deadline: Timestamp::from_millis(1_500),
            }]
        );
        // The same session again, from a holder that had not swept it: forgotten, not
        // reported; the next deadline is.
        state.merge(early, at(1_500));
        let since = Some(Timestamp::from_millis(2_000));
        let (forgotten, expired) =
            state.sweep_reporting(Timestamp::from_millis(3_000), retention, since);
        assert_eq!(forgotten, 2);
        assert_eq!(expired.iter().map(|e| e.id).collect::<Vec<_>>(), [late]);
        // Without a window (nobody subscribes), nothing is built.
        state.merge(early, at(3_500));
        let (forgotten, expired) =
            state.sweep_reporting(Timestamp::from_millis(4_000), retention, None);
        assert_eq!((forgotten, expired.len()), (1, 0));
        state.assert_index_in_step();
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
