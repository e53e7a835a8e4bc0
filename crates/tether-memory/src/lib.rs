//! An in-process session store for [tether], built on [moka]'s concurrent cache.
//!
//! Use it for a single server and for tests. Sessions live in this process only: a second
//! server does not see them (use `tether-redis` or `tether-replicated` for that), and a restart
//! forgets them.
//!
//! - Each session expires at its own [`Expiry::expires_at`](tether_core::Expiry::expires_at)
//!   (moka's per-entry expiry), and a session past its deadline is never returned.
//! - The number of sessions is bounded; when full, the least recently used session is evicted.
//! - [`create`](SessionStore::create) and [`apply`](SessionStore::apply) are atomic per session,
//!   and `apply` changes only the keys in the delta, so concurrent requests lose nothing.
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, Expiry, Id, Record, SessionStore, Timestamp,
};

/// Default bound on the number of sessions a [`MemoryStore`] holds.
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
    cache: Cache<Id, Arc<Record>>,
    max_sessions: u64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.cache.entry_count())
            .field("max_sessions", &self.max_sessions)
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
        let cache = Cache::builder()
            .max_capacity(max_sessions)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(ExpireAtDeadline)
            .build();
        Self {
            cache,
            max_sessions,
        }
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
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Atomically replaces the live record under `id` with `update(record)`.
    async fn update_live(&self, id: &Id, update: impl FnOnce(&Record) -> Record) -> Applied {
        let result = self
            .cache
            .entry(*id)
            .and_compute_with(|entry| {
                let op = match entry {
                    Some(entry) if !entry.value().expiry.is_expired(Timestamp::now()) => {
                        Op::Put(Arc::new(update(entry.value())))
                    }
                    // A record past its deadline is gone for good; drop it rather than renew it.
                    Some(_) => Op::Remove,
                    None => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        match result {
            CompResult::ReplacedWith(_) => Applied::Applied,
            _ => Applied::Missing,
        }
    }

    /// Atomically inserts `record` if no live session holds its id.
    async fn insert_if_absent(&self, record: Arc<Record>) -> Created {
        let result = self
            .cache
            .entry(record.id)
            .and_compute_with(|entry| {
                let op = match entry {
                    Some(entry) if !entry.value().expiry.is_expired(Timestamp::now()) => Op::Nop,
                    _ => Op::Put(record),
                };
                std::future::ready(op)
            })
            .await;
        match result {
            CompResult::Inserted(_) | CompResult::ReplacedWith(_) => Created::Created,
            _ => Created::IdTaken,
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        // moka's per-entry expiry hides an entry from `get` from its deadline on, so no clock
        // read is needed here.
        Ok(self
            .cache
            .get(id)
            .await
            .map(|record| Record::clone(&record)))
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        Ok(self.insert_if_absent(Arc::new(record.clone())).await)
    }

    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        Ok(self
            .update_live(id, |current| {
                let mut next = current.clone();
                changes.apply_to(&mut next.data);
                next.expiry = *expiry;
                next
            })
            .await)
    }

    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, Error> {
        Ok(self
            .update_live(id, |current| {
                let mut next = current.clone();
                next.expiry = *expiry;
                next
            })
            .await)
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.cache.invalidate(id).await;
        Ok(())
    }

    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        let Some(record) = self.cache.remove(old).await else {
            return Ok(Cycled::Missing);
        };
        if record.expiry.is_expired(Timestamp::now()) {
            return Ok(Cycled::Missing);
        }
        let mut moved = Record::clone(&record);
        moved.id = *new;
        match self.insert_if_absent(Arc::new(moved)).await {
            Created::Created => Ok(Cycled::Moved),
            Created::IdTaken => {
                // Put the old session back untouched. Only a 2^-128 id collision gets here.
                let _ = self.insert_if_absent(record).await;
                Ok(Cycled::IdTaken)
            }
        }
    }
}

/// moka expiry policy: every entry lives until its record's own deadline.
struct ExpireAtDeadline;

impl ExpireAtDeadline {
    fn until_deadline(record: &Record) -> Option<Duration> {
        Some(record.expiry.remaining(Timestamp::now()))
    }
}

impl moka::Expiry<Id, Arc<Record>> for ExpireAtDeadline {
    fn expire_after_create(&self, _: &Id, record: &Arc<Record>, _: Instant) -> Option<Duration> {
        Self::until_deadline(record)
    }

    fn expire_after_update(
        &self,
        _: &Id,
        record: &Arc<Record>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::until_deadline(record)
    }
}
