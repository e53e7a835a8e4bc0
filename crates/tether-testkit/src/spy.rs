//! A store wrapper that counts calls and can be switched to fail, for layer tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, EventStream, Expiry, Id, KeyUpdate, KeyUpdated,
    Principal, Record, Revoked, SessionHandle, SessionInfo, SessionStore,
};

/// Calls made to a [`SpyStore`], by method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Calls {
    /// `load` calls.
    pub load: u64,
    /// `create` calls.
    pub create: u64,
    /// `apply` calls.
    pub apply: u64,
    /// `touch` calls.
    pub touch: u64,
    /// `delete` calls.
    pub delete: u64,
    /// `cycle` calls.
    pub cycle: u64,
    /// Calls to the principal index: `sessions_of`, `revoke`, `revoke_all`.
    pub index: u64,
    /// `update_key` calls.
    pub update_key: u64,
}

impl Calls {
    /// Calls that write: everything but `load`.
    pub fn writes(&self) -> u64 {
        self.create + self.apply + self.touch + self.delete + self.cycle + self.update_key
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.load + self.writes() + self.index
    }
}

/// What a switched-on [`SpyStore`] fails with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Every call fails with a transient [`Error::Unavailable`].
    Unavailable,
    /// `load` fails with [`Error::Corrupt`], as for undecodable stored data; the rest works.
    CorruptLoads,
    /// `apply` fails with a transient [`Error::Unavailable`]; the rest works (a store that
    /// goes away between two steps of one save).
    Applies,
}

#[derive(Debug, Default)]
struct Counters {
    load: AtomicU64,
    create: AtomicU64,
    apply: AtomicU64,
    touch: AtomicU64,
    delete: AtomicU64,
    cycle: AtomicU64,
    index: AtomicU64,
    update_key: AtomicU64,
    failure: Mutex<Option<Failure>>,
}

/// Wraps a store, counts its calls and can make them fail.
///
/// # Example
///
/// ```
/// use tether_memory::MemoryStore;
/// use tether_testkit::{Failure, SpyStore};
///
/// let spy = SpyStore::new(MemoryStore::new());
/// assert_eq!(spy.calls().total(), 0);
/// spy.fail_with(Some(Failure::Unavailable));
/// ```
#[derive(Clone, Debug)]
pub struct SpyStore<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S: SessionStore> SpyStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            counters: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Calls so far.
    pub fn calls(&self) -> Calls {
        let c = &self.counters;
        Calls {
            load: c.load.load(Ordering::SeqCst),
            create: c.create.load(Ordering::SeqCst),
            apply: c.apply.load(Ordering::SeqCst),
            touch: c.touch.load(Ordering::SeqCst),
            delete: c.delete.load(Ordering::SeqCst),
            cycle: c.cycle.load(Ordering::SeqCst),
            index: c.index.load(Ordering::SeqCst),
            update_key: c.update_key.load(Ordering::SeqCst),
        }
    }

    /// Makes later calls fail as `failure` says; `None` heals the store.
    pub fn fail_with(&self, failure: Option<Failure>) {
        *self
            .counters
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = failure;
    }

    fn failure(&self) -> Option<Failure> {
        *self
            .counters
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call; fails it when the switched-on failure covers `failing`.
    fn enter(&self, counter: &AtomicU64, failing: Option<Failure>) -> Result<(), Error> {
        counter.fetch_add(1, Ordering::SeqCst);
        let failure = self.failure();
        if failure == Some(Failure::Unavailable) || (failing.is_some() && failure == failing) {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(Error::Unavailable(Box::new(refused)));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for SpyStore<S> {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.enter(&self.counters.load, None)?;
        if self.failure() == Some(Failure::CorruptLoads) {
            return Err(Error::Corrupt("spy: stored bytes are not a session".into()));
        }
        self.inner.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.enter(&self.counters.create, None)?;
        self.inner.create(record).await
    }

    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        self.enter(&self.counters.apply, Some(Failure::Applies))?;
        self.inner.apply(id, changes, expiry).await
    }

    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, Error> {
        self.enter(&self.counters.touch, None)?;
        self.inner.touch(id, expiry).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.enter(&self.counters.delete, None)?;
        self.inner.delete(id).await
    }

    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        self.enter(&self.counters.cycle, None)?;
        self.inner.cycle(old, new).await
    }

    async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        self.enter(&self.counters.update_key, None)?;
        self.inner.update_key(id, key, update).await
    }

    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>, Error> {
        self.enter(&self.counters.index, None)?;
        self.inner.sessions_of(principal).await
    }

    async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        self.enter(&self.counters.index, None)?;
        self.inner.revoke(principal, handle).await
    }

    async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        self.enter(&self.counters.index, None)?;
        self.inner.revoke_all(principal, keep).await
    }

    async fn events(&self) -> Result<EventStream, Error> {
        self.inner.events().await
    }
}
