//! The suite through this crate's own paths: it passes on a correct store and fails, naming
//! the broken rule, on stores that break the contract.

use async_trait::async_trait;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, Expiry, Id, Record, SessionStore, Timestamp,
};
use tether_memory::MemoryStore;

tether_conformance::store_conformance!(async { MemoryStore::new() });

/// A memory store that breaks one rule of the contract.
#[derive(Clone, Debug)]
struct Broken {
    inner: MemoryStore,
    rule: Rule,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// `create` replaces a live session instead of answering `IdTaken`.
    InsertIfAbsent,
    /// `apply` on a missing session creates it.
    FinalDeletion,
}

impl Broken {
    fn breaking(rule: Rule) -> Self {
        Self {
            inner: MemoryStore::new(),
            rule,
        }
    }
}

#[async_trait]
impl SessionStore for Broken {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.inner.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        if self.rule == Rule::InsertIfAbsent {
            self.inner.delete(&record.id).await?;
        }
        self.inner.create(record).await
    }

    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        let applied = self.inner.apply(id, changes, expiry).await?;
        if applied == Applied::Missing && self.rule == Rule::FinalDeletion {
            let mut record = Record::new(*id, *expiry, Timestamp::now());
            changes.apply_to(&mut record.data);
            let _ = self.inner.create(&record).await?;
            return Ok(Applied::Applied);
        }
        Ok(applied)
    }

    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, Error> {
        self.inner.touch(id, expiry).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.inner.delete(id).await
    }

    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        self.inner.cycle(old, new).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "create must not overwrite a live session")]
async fn contract_catches_create_that_overwrites() {
    tether_conformance::checks::contract(&Broken::breaking(Rule::InsertIfAbsent)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "apply must not bring back a deleted session")]
async fn deletion_is_final_catches_apply_that_resurrects() {
    tether_conformance::checks::deletion_is_final(&Broken::breaking(Rule::FinalDeletion)).await;
}
