//! An in-process session store for [tether], built on [moka]'s concurrent cache.
//!
//! Use it for a single server and for tests. Sessions live in this process only: a second
//! server does not see them (use `tether-redis` or `tether-replicated` for that), and a restart
//! forgets them.
//!
//! - Each session expires at its own [`Expiry::expires_at`](tether_core::Expiry::expires_at)
//!   (moka's per-entry expiry), and a session past its deadline is never returned.
//! - **The number of sessions is bounded: 100,000 by default** ([`DEFAULT_MAX_SESSIONS`]).
//!   When full, the least recently used session is evicted, and its user starts a new one. A
//!   site with more live sessions than the bound loses sessions without an error: size it with
//!   [`MemoryStore::with_max_sessions`]. Each eviction is logged at debug level and, with the
//!   feature `metrics`, counted in `tether_memory_evictions_total`.
//! - [`create`](SessionStore::create) and [`apply`](SessionStore::apply) are atomic per session,
//!   and `apply` changes only the keys in the delta, so concurrent requests lose nothing.
//!
//! Each session lives in its own cell behind a mutex inside the cache: a write locks that one
//! session only and changes it in place, instead of replacing the cache entry (moka's
//! `and_compute_with` costs several times more per write). A deleted cell is marked dead under
//! its lock, so a write that raced with the delete can never bring the session back.
//!
//! # Memory
//!
//! A session with one small key costs about 580 bytes of this process's memory: a million of
//! them grew the resident set by 579 MB (`tether-bench memory`), the cache's own bookkeeping
//! for LRU order and per-session expiry (about 300 bytes) included. Each further key adds its
//! name and value and 8 bytes: a session's keys and values are packed into one block instead
//! of a map, whose smallest table alone takes about 250 bytes. A write keeps the bytes of the
//! entries it replaced as spare room in the block until the next write (a one-key session
//! written once takes 595 bytes instead of 579). So the default bound of 100,000 sessions of a
//! few small keys takes about 60 MB; sessions near the layer's size limit (64 KiB by default)
//! cost that much each.
//!
//! The cache is moka's synchronous one: nothing in it waits for I/O, so an async wrapper only
//! added its own state machines (a write cost about 1,100 instructions more through it). Its
//! housekeeping (expiry, eviction) runs inline, a bounded batch at a time, in whichever call
//! finds it due.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tether_core::{Changes, Codec, Created, Expiry, Id, Record, SessionStore, Timestamp};
//! use tether_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tether_core::Error> {
//! let store = MemoryStore::new();
//! let now = Timestamp::now();
//! let record = Record::new(Id::random()?, Expiry::new(now, Duration::from_secs(1800), None), now);
//! assert_eq!(store.create(&record).await?, Created::Created);
//!
//! let mut changes = Changes::new();
//! changes.insert("visits", Codec::default().encode(&1u32)?);
//! let _ = store.apply(&record.id, &changes, &record.expiry).await?;
//! assert_eq!(store.load(&record.id).await?.unwrap().data.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! With the session layer of `tether-sessions`: `SessionLayer::new(MemoryStore::new())`.
//!
//! [tether]: https://github.com/tether-rs/tether
//! [moka]: https://docs.rs/moka
#![cfg_attr(not(test), forbid(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod events;
mod index;
mod stored;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, EventKind, EventStream, Expiry, Id, KeyUpdate,
    KeyUpdated, Loaded, Principal, Record, Renewal, Revoked, SessionHandle, SessionInfo,
    SessionStore, Timestamp,
};

use crate::events::Events;
use crate::index::{Entry, PrincipalIndex};
use crate::stored::Stored;

/// Default bound on the number of sessions a [`MemoryStore`] holds: past it, the least
/// recently used session is evicted. About 60 MB of sessions of a few small keys.
pub const DEFAULT_MAX_SESSIONS: u64 = 100_000;

/// An in-process [`SessionStore`] on a moka cache.
///
/// Cloning is cheap and every clone shares the same sessions.
///
/// # Example
///
/// ```
/// use tether_memory::MemoryStore;
///
/// // Room for one million sessions; the least recently used one is evicted past that.
/// let store = MemoryStore::with_max_sessions(1_000_000);
/// assert_eq!(store.max_sessions(), 1_000_000);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<Id, Arc<Cell>, IdHasher>,
    max_sessions: u64,
    index: Arc<PrincipalIndex>,
    max_per_principal: Option<NonZeroUsize>,
    events: Arc<Events>,
}

/// How the cache hashes ids: foldhash, seeded per process. moka's default, SipHash, is made to
/// resist keys chosen to collide, at several times the cost per lookup; no client chooses the
/// ids held here (the layer draws them from a CSPRNG), and an id a client presents is only
/// looked up.
type IdHasher = foldhash::fast::RandomState;

/// One session: its record behind a lock, and its deadline mirrored for the expiry policy.
struct Cell {
    slot: Mutex<Slot>,
    /// `session.expiry.expires_at()` in Unix milliseconds, readable without the lock.
    expires_at: AtomicU64,
    /// Set when a write moved the deadline and moka's timer must follow on the next read.
    deadline_moved: AtomicBool,
}

struct Slot {
    session: Stored,
    /// Deleted or moved away: no write may touch it any more.
    dead: bool,
}

impl Cell {
    fn new(session: Stored) -> Arc<Self> {
        Arc::new(Self {
            expires_at: AtomicU64::new(session.expires_at().as_millis()),
            deadline_moved: AtomicBool::new(false),
            slot: Mutex::new(Slot {
                session,
                dead: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Nothing panics while holding the lock; recover the data if something ever did.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Time until the deadline, as moka's per-entry expiry wants it.
    fn remaining(&self) -> Duration {
        Timestamp::from_millis(self.expires_at.load(Ordering::Acquire))
            .duration_since(Timestamp::now())
    }

    fn set_expiry(&self, slot: &mut Slot, expiry: Expiry) {
        slot.session.set_expiry(expiry);
        self.expires_at
            .store(expiry.expires_at().as_millis(), Ordering::Release);
        self.deadline_moved.store(true, Ordering::Release);
    }
}

impl Slot {
    fn is_live(&self, now: Timestamp) -> bool {
        !self.dead && !self.session.is_expired(now)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.cache.entry_count())
            .field("max_sessions", &self.max_sessions)
            .field("max_per_principal", &self.max_per_principal)
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store holding at most [`DEFAULT_MAX_SESSIONS`] sessions.
    pub fn new() -> Self {
        Self::with_max_sessions(DEFAULT_MAX_SESSIONS)
    }

    /// A store holding at most `max_sessions` sessions. Past that bound, the least recently used
    /// session is evicted (and its user starts a new one).
    pub fn with_max_sessions(max_sessions: u64) -> Self {
        let index = Arc::new(PrincipalIndex::default());
        let listener_index = Arc::clone(&index);
        let events = Events::new();
        let listener_events = Arc::clone(&events);
        let cache = Cache::builder()
            .max_capacity(max_sessions)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(ExpireAtDeadline)
            .eviction_listener(move |id: Arc<Id>, cell: Arc<Cell>, cause| {
                if cause == RemovalCause::Size {
                    tracing::debug!(
                        session = ?id,
                        max_sessions,
                        "session evicted: the memory store is full (MemoryStore::with_max_sessions raises the bound)"
                    );
                    #[cfg(feature = "metrics")]
                    metrics::counter!("tether_memory_evictions_total").increment(1);
                }
                // Explicit removals (delete, cycle, revoke) update the index themselves.
                if cause != RemovalCause::Explicit {
                    let slot = cell.lock();
                    let principal = slot.session.principal.as_ref();
                    if let Some(principal) = principal {
                        listener_index.remove(principal, &id);
                    }
                    let kind = match cause {
                        RemovalCause::Expired => Some(EventKind::Expired),
                        RemovalCause::Size => Some(EventKind::Evicted),
                        _ => None,
                    };
                    if let Some(kind) = kind.filter(|_| !slot.dead) {
                        listener_events.emit(kind, &id, principal);
                    }
                }
            })
            .build_with_hasher(IdHasher::default());
        Self {
            cache,
            max_sessions,
            index,
            max_per_principal: None,
            events,
        }
    }

    /// Bounds the sessions of one principal: binding one more revokes the oldest (by creation)
    /// of the others. No bound by default.
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use tether_memory::MemoryStore;
    ///
    /// let store = MemoryStore::new().with_max_sessions_per_principal(NonZeroUsize::new(5));
    /// # let _ = store;
    /// ```
    #[must_use]
    pub fn with_max_sessions_per_principal(mut self, max: Option<NonZeroUsize>) -> Self {
        self.max_per_principal = max;
        self
    }

    /// Entries in the principal index, counting sessions that ended but whose entry the
    /// cache's maintenance has not removed yet ([`run_pending_tasks`](Self::run_pending_tasks)
    /// removes them). For tests and leak checks.
    pub fn indexed_sessions(&self) -> usize {
        self.index.len()
    }

    /// The bound on the number of sessions.
    pub fn max_sessions(&self) -> u64 {
        self.max_sessions
    }

    /// The number of sessions held, approximately: expired and evicted sessions leave the count
    /// in the cache's next maintenance run.
    pub fn session_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs the cache's pending maintenance (expiry, eviction, counts) now instead of lazily.
    /// It is short CPU work; the store's calls do it as they go, a batch at a time.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// Changes the live session under `id` in place with `update`, which may move its deadline
    /// and says which sessions a new binding pushed past the principal's cap.
    fn update_live(&self, id: &Id, update: impl FnOnce(&Cell, &mut Slot) -> Vec<Id>) -> Applied {
        let Some(cell) = self.cache.get(id) else {
            return Applied::Missing;
        };
        let excess = {
            let mut slot = cell.lock();
            if !slot.is_live(Timestamp::now()) {
                return Applied::Missing;
            }
            let excess = update(&cell, &mut slot);
            slot.session
                .principal
                .clone()
                .map(|principal| (principal, excess))
        };
        // A read lets the expiry policy move moka's timer to the new deadline.
        let _ = self.cache.get(id);
        if let Some((principal, excess)) = excess {
            self.revoke_excess(&principal, excess);
        }
        Applied::Applied
    }

    /// Lists session `id`, created at `created_at` and just bound to `principal`, in the index
    /// (taking it off the `previous` principal's list), and returns the sessions past the cap.
    /// Called under the cell lock.
    fn index_binding(
        &self,
        id: Id,
        created_at: Timestamp,
        previous: Option<&Principal>,
        principal: &Principal,
    ) -> Vec<Id> {
        if let Some(previous) = previous.filter(|previous| *previous != principal) {
            self.index.remove(previous, &id);
        }
        let entry = Entry { created_at, id };
        self.index.add(principal, entry, self.max_per_principal)
    }

    /// Deletes the sessions of `principal` that a binding pushed past the cap.
    fn revoke_excess(&self, principal: &Principal, excess: Vec<Id>) {
        for id in excess {
            if self.revoke_if_bound(principal, &id) {
                tracing::debug!(session = ?id, "session revoked: its principal reached the session cap");
            }
        }
    }

    /// Ends the session under `id` if it is live and bound to `principal`; true when it did.
    /// The check and the end happen under the session's lock, so a session rebound to another
    /// principal meanwhile is left alone.
    fn revoke_if_bound(&self, principal: &Principal, id: &Id) -> bool {
        let Some(cell) = self.cache.get(id) else {
            return false;
        };
        {
            let mut slot = cell.lock();
            if !slot.is_live(Timestamp::now()) || slot.session.principal.as_ref() != Some(principal)
            {
                return false;
            }
            slot.dead = true;
            self.index.remove(principal, id);
            self.events.emit(EventKind::Revoked, id, Some(principal));
        }
        // Dead already: nothing reads or writes it; this only frees the entry.
        self.cache.invalidate(id);
        true
    }

    /// Removes the session under `id` and its index entry.
    fn remove_session(&self, id: &Id) {
        if let Some(cell) = self.cache.remove(id) {
            let mut slot = cell.lock();
            let was_live = slot.is_live(Timestamp::now());
            slot.dead = true;
            if let Some(principal) = &slot.session.principal {
                self.index.remove(principal, id);
            }
            if was_live {
                self.events
                    .emit(EventKind::Deleted, id, slot.session.principal.as_ref());
            }
        }
    }

    /// The live session under `id` if it is bound to `principal`, read under its lock.
    fn live_of<T>(
        &self,
        principal: &Principal,
        id: &Id,
        read: impl FnOnce(&Stored) -> T,
    ) -> Option<T> {
        let cell = self.cache.get(id)?;
        let slot = cell.lock();
        (slot.is_live(Timestamp::now()) && slot.session.principal.as_ref() == Some(principal))
            .then(|| read(&slot.session))
    }

    /// Atomically inserts `record` if no live session holds its id.
    fn insert_if_absent(&self, cell: Arc<Cell>, id: Id) -> Created {
        // One compute, atomic per key: moka's `or_insert` is a lookup then an insert, so
        // concurrent creates of one id could each find it absent and each win. A cell that holds
        // the id but is dead or past its wall-clock deadline (moka has not noticed yet) is
        // replaced.
        let result = self
            .cache
            .entry(id)
            .and_compute_with(|current| match current {
                Some(current) if current.value().lock().is_live(Timestamp::now()) => Op::Nop,
                _ => Op::Put(cell),
            });
        match result {
            CompResult::Inserted(_) | CompResult::ReplacedWith(_) => Created::Created,
            _ => Created::IdTaken,
        }
    }
}

impl MemoryStore {
    /// The live session `id` names, if any.
    fn read(&self, id: &Id) -> Option<Record> {
        // moka's per-entry expiry hides an entry from `get` from its deadline on, so no clock
        // read is needed here.
        let cell = self.cache.get(id)?;
        let slot = cell.lock();
        (!slot.dead).then(|| slot.session.to_record(*id))
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        Ok(self.read(id))
    }

    /// `load` in one boxed call (the default makes two); renewal is left to the caller, whose
    /// `touch` costs no round trip here.
    async fn load_renewing(&self, id: &Id, renewal: &Renewal) -> Result<Option<Loaded>, Error> {
        Ok(renewal.unrenewed(self.read(id)))
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        let Some(principal) = &record.principal else {
            let created = self.insert_if_absent(Cell::new(Stored::from_record(record)), record.id);
            if created == Created::Created {
                self.events.emit(EventKind::Created, &record.id, None);
            }
            return Ok(created);
        };
        // Listed before it is stored, so a delete right after the insert finds the entry.
        let entry = Entry {
            created_at: record.created_at,
            id: record.id,
        };
        let excess = self.index.add(principal, entry, self.max_per_principal);
        let created = self.insert_if_absent(Cell::new(Stored::from_record(record)), record.id);
        match created {
            Created::Created => {
                self.events
                    .emit(EventKind::Created, &record.id, Some(principal));
                self.revoke_excess(principal, excess);
            }
            Created::IdTaken => self.index.remove(principal, &record.id),
        }
        Ok(created)
    }

    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        Ok(self.update_live(id, |cell, slot| {
            let previous = changes
                .principal()
                .and_then(|_| slot.session.principal.clone());
            slot.session.apply(changes);
            cell.set_expiry(slot, *expiry);
            match changes.principal() {
                Some(principal) => {
                    self.events
                        .emit(EventKind::PrincipalSet, id, Some(principal));
                    let created_at = slot.session.created_at;
                    self.index_binding(*id, created_at, previous.as_ref(), principal)
                }
                None => Vec::new(),
            }
        }))
    }

    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, Error> {
        Ok(self.update_live(id, |cell, slot| {
            cell.set_expiry(slot, *expiry);
            Vec::new()
        }))
    }

    /// Both kinds of update run under the session's lock, so an increment is one step too.
    async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        let Some(cell) = self.cache.get(id) else {
            return Ok(KeyUpdated::Missing);
        };
        let mut slot = cell.lock();
        if !slot.is_live(Timestamp::now()) {
            return Ok(KeyUpdated::Missing);
        }
        let current = slot.session.data.get(key);
        let outcome = update.evaluate(key, current.as_ref())?;
        if let KeyUpdated::Updated(new) = &outcome {
            slot.session.data = slot.session.data.with_key(key, new.as_deref());
        }
        Ok(outcome)
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.remove_session(id);
        Ok(())
    }

    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        let Some(cell) = self.cache.remove(old) else {
            return Ok(Cycled::Missing);
        };
        let moved = {
            let mut slot = cell.lock();
            if !slot.is_live(Timestamp::now()) {
                slot.dead = true;
                return Ok(Cycled::Missing);
            }
            slot.dead = true;
            let moved = slot.session.clone();
            if let Some(principal) = &moved.principal {
                // Listed under the new id before it is stored there: never unlisted while live.
                let entry = Entry {
                    created_at: moved.created_at,
                    id: *new,
                };
                let _no_cap_for_a_move = self.index.add(principal, entry, None);
            }
            moved
        };
        let principal = moved.principal.clone();
        match self.insert_if_absent(Cell::new(moved), *new) {
            Created::Created => {
                if let Some(principal) = &principal {
                    self.index.remove(principal, old);
                }
                let from = SessionHandle::of(old);
                self.events
                    .emit(EventKind::Cycled { from }, new, principal.as_ref());
                Ok(Cycled::Moved)
            }
            Created::IdTaken => {
                if let Some(principal) = &principal {
                    self.index.remove(principal, new);
                }
                // Put the old session back untouched. Only a 2^-128 id collision gets here.
                cell.lock().dead = false;
                let _ = self.insert_if_absent(cell, *old);
                Ok(Cycled::IdTaken)
            }
        }
    }

    /// Events of this process's sessions, from now on, to a subscriber that keeps up: a
    /// subscriber more than 4,096 events behind gets [`Error::EventsMissed`] and goes on from
    /// the next event. Nothing survives a restart (neither do the sessions). A session that
    /// passes its deadline is reported [`EventKind::Expired`] within about 2.5 seconds while
    /// someone subscribes (the cache's maintenance runs every second then, and its timer
    /// looks at deadlines in slots of about a second); one dropped for room at the session
    /// bound is [`EventKind::Evicted`].
    async fn events(&self) -> Result<EventStream, Error> {
        let stream = self.events.subscribe();
        if self.events.start_ticking() {
            let cache = self.cache.clone();
            let events = Arc::clone(&self.events);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(events::MAINTENANCE_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while events.wanted() {
                    tick.tick().await;
                    cache.run_pending_tasks();
                }
                events.stop_ticking();
            });
        }
        Ok(stream)
    }

    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>, Error> {
        // Every way a session ends takes it off the index (the eviction listener for expiry and
        // eviction), so the entries need no pruning here; a session that ended a moment ago is
        // only skipped.
        let mut sessions: Vec<SessionInfo> = self
            .index
            .listed(principal)
            .iter()
            .filter_map(|entry| self.live_of(principal, &entry.id, |s| s.info(&entry.id)))
            .collect();
        sessions.sort_by_key(|info| (info.created_at, info.handle));
        Ok(sessions)
    }

    async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        let Some(id) = self.index.find(principal, handle) else {
            return Ok(Revoked::NotFound);
        };
        Ok(if self.revoke_if_bound(principal, &id) {
            Revoked::Revoked
        } else {
            Revoked::NotFound
        })
    }

    async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        let mut revoked = 0;
        for entry in self.index.listed(principal) {
            if keep == Some(&SessionHandle::of(&entry.id)) {
                continue;
            }
            if self.revoke_if_bound(principal, &entry.id) {
                revoked += 1;
            }
        }
        Ok(revoked)
    }
}

/// moka expiry policy: every entry lives until its session's own deadline, which writes move.
struct ExpireAtDeadline;

impl moka::Expiry<Id, Arc<Cell>> for ExpireAtDeadline {
    fn expire_after_create(&self, _: &Id, cell: &Arc<Cell>, _: Instant) -> Option<Duration> {
        Some(cell.remaining())
    }

    fn expire_after_read(
        &self,
        _: &Id,
        cell: &Arc<Cell>,
        _: Instant,
        current: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        if cell.deadline_moved.swap(false, Ordering::AcqRel) {
            Some(cell.remaining())
        } else {
            current
        }
    }

    fn expire_after_update(
        &self,
        _: &Id,
        cell: &Arc<Cell>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(cell.remaining())
    }
}

#[cfg(test)]
mod tests {
    /// A session's cell, with the two counts of its `Arc`, stays within one 144-byte block of
    /// the allocator (136 bytes and its 8-byte header): each byte more per session is a
    /// megabyte per million sessions.
    #[test]
    fn a_cell_fits_in_136_bytes() {
        let with_counts = std::mem::size_of::<super::Cell>() + 2 * std::mem::size_of::<usize>();
        assert!(with_counts <= 136, "a cell takes {with_counts} bytes");
    }
}
