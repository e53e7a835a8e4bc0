//! The session store of a replication node.

use std::sync::Arc;

use async_trait::async_trait;
use tether_core::{Applied, Changes, Created, Cycled, Error, Expiry, Id, Record, SessionStore};

use crate::read::Reads;
use crate::write::Writes;

/// A [`SessionStore`] whose sessions live in the memory of a cluster of [`Node`](crate::Node)s.
///
/// Any node serves any session. Writes go to the session's primary (forwarded when this node is
/// not it, one hop), which stamps them with its hybrid logical clock, applies them and copies the
/// delta to the backups. Reads are local on a node that holds the session, one request to a
/// holder otherwise.
///
/// Cloning is cheap.
#[derive(Clone)]
pub struct ReplicatedStore {
    /// The node's name, for `Debug`.
    node: Arc<str>,
    reads: Arc<Reads>,
    writes: Arc<Writes>,
}

impl ReplicatedStore {
    pub(crate) fn new(node: &str, reads: Arc<Reads>, writes: Arc<Writes>) -> Self {
        Self {
            node: node.into(),
            reads,
            writes,
        }
    }

    /// As [`SessionStore::apply`], with the write id `write` instead of a new random one:
    /// two calls with the same id are one store call delivered twice (as after a lost answer),
    /// and the session applies it once. For tests of that; needs the `test-util` feature.
    ///
    /// # Errors
    ///
    /// As [`SessionStore::apply`].
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub async fn apply_with_write_id(
        &self,
        write: [u8; 16],
        id: &Id,
        changes: &Changes,
        expiry: &Expiry,
    ) -> Result<Applied, Error> {
        self.writes
            .apply_as(
                crate::write_id::WriteId::from_bytes(write),
                id,
                changes,
                expiry,
            )
            .await
    }
}

#[async_trait]
impl SessionStore for ReplicatedStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.reads.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.writes.create(record).await
    }

    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        self.writes.apply(id, changes, expiry).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.writes.delete(id).await
    }

    /// Load, create under the new id, delete the old one: three steps, since the two ids have
    /// different primaries. A write to the old id between the steps is lost with the old id.
    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        let Some(mut record) = self.load(old).await? else {
            return Ok(Cycled::Missing);
        };
        record.id = *new;
        match self.create(&record).await? {
            Created::IdTaken => Ok(Cycled::IdTaken),
            Created::Created => {
                self.delete(old).await?;
                Ok(Cycled::Moved)
            }
        }
    }
}

impl std::fmt::Debug for ReplicatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedStore")
            .field("node", &&*self.node)
            .finish_non_exhaustive()
    }
}
