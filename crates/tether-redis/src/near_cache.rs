//! The near cache: recently read sessions kept in this process, coherent with Redis through
//! server-assisted client-side caching (RESP3 `CLIENT TRACKING`, invalidation pushes).
//!
//! The rules, and how each is kept:
//!
//! - **Another server's write drops this server's copy.** Every connection of the near cache
//!   runs `CLIENT TRACKING ON NOLOOP` before it is used (a reconnected one included, before
//!   its first read); Redis then pushes the key of every other client's write to a session
//!   this connection read, and the push handler drops the copy in the connection's reader
//!   task, as the push is read.
//! - **Read-your-writes.** This store drops its own copy itself when a write returns, whatever
//!   its outcome, before the response goes out. Tracking runs with `NOLOOP`: Redis does not push
//!   the invalidation of this connection's own writes, which would come after the write's reply
//!   and refuse the fill of the next read for nothing. Every write of this store that can end
//!   or change a session drops the copies it touched (or all of them, when it cannot name
//!   them). A session that expires in Redis (its deadline, or deleted on expiry when one of
//!   this connection's own commands touches it, which `NOLOOP` keeps quiet) expires in its
//!   copy at the same deadline: a copy past its deadline is never served.
//!   A write drops the copy rather than updating it: Redis stops tracking a key at its first
//!   write, this connection's included, so only a read that tracks the key again may fill it.
//! - **No stale fill.** A miss notes the key's stripe counter before it asks Redis, and keeps
//!   the answer only if no invalidation of that stripe (and no flush) came meanwhile; the check
//!   and the insert happen under the stripe's lock, which invalidations take too. Without it,
//!   a read racing a write could store the old value after the push for the new one was
//!   handled, and keep it: Redis stops tracking a key once it has pushed its invalidation.
//! - **No gap.** A lost connection (redis-rs reports it as a `Disconnection` push), a flush
//!   of the database and a failed heartbeat drop every copy; copies are served only while
//!   the last heartbeat through the connection is recent, so a silently dead connection,
//!   which delivers no pushes, stops serving within two heartbeat intervals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use redis::{PushInfo, PushKind, Value};
use tether_core::{Id, Record, Timestamp};

use crate::telemetry;

/// Stripes of invalidation counters; a power of two.
const STRIPES: usize = 1024;

/// Default time between two heartbeats (`PING`) of a store with a near cache. Copies are
/// served only within twice this of the last answered one.
pub const DEFAULT_NEAR_CACHE_HEARTBEAT: Duration = Duration::from_millis(500);

/// What the near cache did so far (see [`RedisStore::near_cache_stats`](crate::RedisStore::near_cache_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheStats {
    /// Loads answered from the cache, without a round trip.
    pub hits: u64,
    /// Loads that went to Redis.
    pub misses: u64,
    /// Copies dropped by an invalidation from Redis or by a write of this store.
    pub invalidations: u64,
    /// Copies brought up to date by a write of this store, which Redis tracks again for this
    /// connection: the next read is still a hit.
    pub refreshes: u64,
    /// Times every copy was dropped: a lost connection, a flushed database, a failed heartbeat.
    pub flushes: u64,
    /// Sessions held now (approximately).
    pub entries: u64,
}

/// The copies, and what keeps them coherent.
pub(crate) struct NearCache {
    entries: Cache<Id, Arc<Record>, foldhash::fast::RandomState>,
    /// Invalidations per stripe of ids, and flushes in the epoch: a fill checks both. A fill
    /// checks and inserts under the epoch's read lock, and a flush counts and empties the cache
    /// under its write lock: a fill that passed its check cannot insert after the flush.
    stripes: Box<[Mutex<u64>]>,
    epoch: RwLock<u64>,
    /// Copies may be served until this instant, in milliseconds since `started` (a monotonic
    /// clock, which a step of the wall clock cannot move): the last heartbeat plus two
    /// intervals. 0 before the first heartbeat and after a flush.
    serve_until: AtomicU64,
    started: Instant,
    heartbeat: Duration,
    prefix: String,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    refreshes: AtomicU64,
    flushes: AtomicU64,
}

/// What a miss noted before asking Redis.
#[derive(Clone, Copy)]
pub(crate) struct FillTicket {
    stripe: usize,
    count: u64,
    epoch: u64,
}

impl NearCache {
    /// A cache of at most `capacity` sessions whose keys are `<prefix>:<id>`.
    pub(crate) fn new(capacity: u64, prefix: &str, heartbeat: Duration) -> Arc<Self> {
        Arc::new(Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            epoch: RwLock::new(0),
            serve_until: AtomicU64::new(0),
            started: Instant::now(),
            heartbeat,
            prefix: format!("{prefix}:"),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        })
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// Ids are random: their first bytes spread them evenly.
    fn stripe_of(id: &Id) -> usize {
        let [first, second, ..] = *id.as_bytes();
        usize::from(u16::from_le_bytes([first, second])) % STRIPES
    }

    #[allow(clippy::indexing_slicing)] // `stripe_of` is below `STRIPES`, the slice's length.
    fn lock(&self, stripe: usize) -> std::sync::MutexGuard<'_, u64> {
        // Nothing panics under these locks; a poisoned one still holds a valid counter.
        self.stripes[stripe % STRIPES]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The copy of `id`, if one may be served now. Counts a hit or a miss.
    pub(crate) fn get(&self, id: &Id) -> Option<Record> {
        let now = Timestamp::now();
        let hit = (self.millis_since_start(Instant::now())
            < self.serve_until.load(Ordering::Acquire))
        .then(|| self.entries.get(id))
        .flatten()
        .filter(|record| !record.expiry.is_expired(now));
        let (counter, event) = if hit.is_some() {
            (&self.hits, "hit")
        } else {
            (&self.misses, "miss")
        };
        counter.fetch_add(1, Ordering::Relaxed);
        telemetry::near_cache(event);
        hit.map(|record| Record::clone(&record))
    }

    /// Notes the state a fill of `id` must still find.
    pub(crate) fn ticket(&self, id: &Id) -> FillTicket {
        let stripe = Self::stripe_of(id);
        let epoch = *self.epoch();
        let count = *self.lock(stripe);
        FillTicket {
            stripe,
            count,
            epoch,
        }
    }

    /// Keeps `record`, read from Redis after `ticket` was taken, unless an invalidation of its
    /// stripe or a flush came since.
    pub(crate) fn fill(&self, ticket: FillTicket, record: &Record) {
        let copy = Arc::new(record.clone());
        let count = self.lock(ticket.stripe);
        let epoch = self.epoch();
        if *count == ticket.count && *epoch == ticket.epoch {
            self.entries.insert(record.id, copy);
        }
    }

    fn epoch(&self) -> std::sync::RwLockReadGuard<'_, u64> {
        // Nothing panics under this lock; a poisoned one still holds a valid counter.
        self.epoch
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a new epoch and empties the cache, both under the epoch's write lock.
    fn next_epoch(&self) {
        let mut epoch = self
            .epoch
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *epoch = epoch.wrapping_add(1);
        self.entries.invalidate_all();
    }

    /// Drops the copy of `id`, and fails fills of its stripe under way.
    pub(crate) fn invalidate(&self, id: &Id) {
        let mut count = self.lock(Self::stripe_of(id));
        *count = count.wrapping_add(1);
        self.entries.invalidate(id);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        telemetry::near_cache("invalidation");
    }

    /// Starts a write of this store to `id`: takes the copy out, so no read is served from it
    /// while the write is under way, and fails the fills and the other writes of its stripe
    /// under way. Redis pushes nothing for this connection's writes (`NOLOOP`): the returned
    /// guard drops the copy when it goes, unless [`PendingWrite::applied`] brought it up to
    /// date; a write whose future is dropped half-way drops the copy too.
    pub(crate) fn begin_write(&self, id: &Id) -> PendingWrite<'_> {
        let stripe = Self::stripe_of(id);
        let mut count = self.lock(stripe);
        *count = count.wrapping_add(1);
        let copy = self.entries.remove(id);
        PendingWrite {
            near: self,
            id: *id,
            ticket: FillTicket {
                stripe,
                count: *count,
                epoch: *self.epoch(),
            },
            copy,
            done: false,
        }
    }

    /// Starts a write of this store that may end sessions it cannot name (a principal's
    /// sessions revoked, or its oldest ones past the cap): every copy is dropped when the
    /// returned guard goes, whatever came of the write.
    pub(crate) fn begin_wipe(&self) -> PendingWipe<'_> {
        PendingWipe { near: self }
    }

    fn drop_all(&self) {
        self.next_epoch();
    }

    /// Drops every copy and stops serving until the next heartbeat.
    pub(crate) fn flush(&self, why: &'static str) {
        self.serve_until.store(0, Ordering::Release);
        self.next_epoch();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        telemetry::near_cache("flush");
        tracing::debug!(why, "near cache flushed");
    }

    /// A heartbeat came back at `at`: copies may be served for two more intervals.
    pub(crate) fn alive(&self, at: Instant) {
        let until = self.millis_since_start(at + self.heartbeat * 2);
        self.serve_until.fetch_max(until, Ordering::AcqRel);
    }

    fn millis_since_start(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    /// Handles one push from the connection, in its reader task.
    pub(crate) fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.into_iter().next() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        self.invalidate_key(&key);
                    }
                }
                // A null list: the database was flushed.
                _ => self.flush("Redis flushed the database"),
            },
            PushKind::Disconnection => self.flush("the connection to Redis was lost"),
            _ => {}
        }
    }

    fn invalidate_key(&self, key: &Value) {
        let Value::BulkString(key) = key else {
            return;
        };
        // `<prefix>:<id>`, or `<prefix>:{<shard>}:<id>` with the event log. Another key this
        // connection read (an index) names no session: nothing is cached under it.
        let id = std::str::from_utf8(key)
            .ok()
            .filter(|key| key.starts_with(self.prefix.as_str()))
            .and_then(|key| key.rsplit_once(':'))
            .and_then(|(_, id)| id.parse::<Id>().ok());
        if let Some(id) = id {
            self.invalidate(&id);
        }
    }

    pub(crate) fn stats(&self) -> NearCacheStats {
        NearCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            entries: self.entries.entry_count(),
        }
    }
}

/// A write of this store to one session, under way ([`NearCache::begin_write`]).
pub(crate) struct PendingWrite<'a> {
    near: &'a NearCache,
    id: Id,
    ticket: FillTicket,
    /// The copy as it was when the write started, if there was one.
    copy: Option<Arc<Record>>,
    done: bool,
}

impl PendingWrite<'_> {
    /// The write was applied: keeps `applied(copy)`, what Redis now holds, if the copy was there
    /// when the write started and nothing else touched the session's stripe since (no push, no
    /// other write or fill of this store, no flush), so Redis applied this write to what the
    /// copy held. Otherwise the copy is dropped. The write's script must end with a read of the
    /// session's key, so that Redis tracks it again for this connection.
    pub(crate) fn applied(mut self, applied: impl FnOnce(&Record) -> Option<Record>) {
        if let Some(record) = self.copy.take().and_then(|copy| applied(&copy)) {
            self.keep(record);
        }
    }

    /// The write's own script read the session back after writing: keeps `record` if nothing
    /// else touched the session's stripe since the write started (see
    /// [`applied`](Self::applied)), whether or not there was a copy.
    pub(crate) fn read_back(self, record: Record) {
        self.keep(record);
    }

    fn keep(mut self, record: Record) {
        let near = self.near;
        let record = Arc::new(record);
        let mut count = near.lock(self.ticket.stripe);
        let epoch = near.epoch();
        if *count != self.ticket.count || *epoch != self.ticket.epoch {
            return;
        }
        // Fills that started before this write read what it replaced.
        *count = count.wrapping_add(1);
        near.entries.insert(self.id, record);
        near.refreshes.fetch_add(1, Ordering::Relaxed);
        telemetry::near_cache("refresh");
        self.done = true;
    }
}

impl Drop for PendingWrite<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.near.invalidate(&self.id);
        }
    }
}

/// A write of this store that may end sessions it cannot name ([`NearCache::begin_wipe`]).
pub(crate) struct PendingWipe<'a> {
    near: &'a NearCache,
}

impl Drop for PendingWipe<'_> {
    fn drop(&mut self) {
        self.near.drop_all();
    }
}

/// Sends the heartbeats of `near` through `store`'s connection, as long as a store holds the
/// near cache. Does not keep the store's connection alive past the last store.
pub(crate) fn keep_alive(store: &crate::RedisStore, near: &Arc<NearCache>) {
    let near = Arc::downgrade(near);
    let store = store.clone();
    tokio::spawn(async move {
        loop {
            let Some(cache) = near.upgrade() else {
                return;
            };
            let heartbeat = cache.heartbeat();
            let sent = Instant::now();
            match store.ping().await {
                Ok(()) => cache.alive(sent),
                Err(error) => {
                    tracing::debug!(error = %tether_core::error_chain(&error), "near cache heartbeat failed");
                    cache.flush("a heartbeat failed");
                }
            }
            drop(cache);
            tokio::time::sleep(heartbeat).await;
        }
    });
}
