//! The session store of a replication node.

use std::sync::Arc;

use async_trait::async_trait;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, EventKind, EventStream, Expiry, Id, KeyUpdate,
    KeyUpdated, Principal, Record, Revoked, SessionHandle, SessionInfo, SessionStore,
};

use crate::events::Events;
use crate::principals::Principals;
use crate::read::Reads;
use crate::state::DeleteOutcome;
use crate::write::Writes;

/// A [`SessionStore`] whose sessions live in the memory of a cluster of [`Node`](crate::Node)s.
///
/// Any node serves any session. Writes go to the session's primary (forwarded when this node is
/// not it, one hop), which stamps them with its hybrid logical clock, applies them and copies the
/// delta to the backups. Reads are local on a node that holds the session, one request to a
/// holder otherwise. [`update_key`](SessionStore::update_key) is a write: the primary
/// evaluates the update against its copy and copies the key's new value like any delta (one
/// forward, no load, however many writers contend for the key).
///
/// Sessions by principal ([`sessions_of`](SessionStore::sessions_of),
/// [`revoke`](SessionStore::revoke), [`revoke_all`](SessionStore::revoke_all)) come from
/// this node's index in `AllToAll` and from every member's in `Backup`; see
/// [Sessions by principal](crate#sessions-by-principal). The bound on sessions per principal
/// is a node setting,
/// [`NodeConfig::with_max_sessions_per_principal`](crate::NodeConfig::with_max_sessions_per_principal).
///
/// [`events`](SessionStore::events) are this node's: the writes of the store calls it took,
/// and the expiries of the sessions it is the primary of; see [Session events](crate#session-events).
///
/// Cloning is cheap.
#[derive(Clone)]
pub struct ReplicatedStore {
    /// The node's name, for `Debug`.
    node: Arc<str>,
    reads: Arc<Reads>,
    writes: Arc<Writes>,
    principals: Arc<Principals>,
    events: Arc<Events>,
}

impl ReplicatedStore {
    pub(crate) fn new(
        node: &str,
        reads: Arc<Reads>,
        writes: Arc<Writes>,
        principals: Arc<Principals>,
        events: Arc<Events>,
    ) -> Self {
        Self {
            node: node.into(),
            reads,
            writes,
            principals,
            events,
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
        let applied = self
            .writes
            .apply_as(
                crate::write_id::WriteId::from_bytes(write),
                id,
                changes,
                expiry,
            )
            .await?;
        self.applied(id, changes, applied);
        Ok(applied)
    }

    /// As [`SessionStore::update_key`], with the write id `write` instead of a new random one:
    /// two calls with the same id are one store call delivered twice, and the session applies
    /// it once and answers both alike. For tests of that; needs the `test-util` feature.
    ///
    /// # Errors
    ///
    /// As [`SessionStore::update_key`].
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub async fn update_key_with_write_id(
        &self,
        write: [u8; 16],
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        self.writes
            .update_key_as(crate::write_id::WriteId::from_bytes(write), id, key, update)
            .await
    }

    /// Reports a binding that `apply` stored.
    fn applied(&self, id: &Id, changes: &Changes, applied: Applied) {
        if let (Applied::Applied, Some(principal)) = (applied, changes.principal()) {
            self.events
                .emit(EventKind::PrincipalSet, id, Some(principal));
        }
    }
}

#[async_trait]
impl SessionStore for ReplicatedStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.reads.load(id).await
    }

    /// A record bound to a principal may revoke the principal's oldest sessions past the
    /// bound ([`NodeConfig::with_max_sessions_per_principal`](crate::NodeConfig::with_max_sessions_per_principal)).
    async fn create(&self, record: &Record) -> Result<Created, Error> {
        let created = self.writes.create(record).await?;
        if created == Created::Created {
            self.events
                .emit(EventKind::Created, &record.id, record.principal.as_ref());
            if let Some(principal) = &record.principal {
                self.principals.enforce_cap(principal, &record.id).await;
            }
        }
        Ok(created)
    }

    /// Changes that bind a principal may revoke the principal's oldest sessions past the
    /// bound ([`NodeConfig::with_max_sessions_per_principal`](crate::NodeConfig::with_max_sessions_per_principal)).
    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        let applied = self.writes.apply(id, changes, expiry).await?;
        self.applied(id, changes, applied);
        if let (Applied::Applied, Some(principal)) = (applied, changes.principal()) {
            self.principals.enforce_cap(principal, id).await;
        }
        Ok(applied)
    }

    /// Run at the session's primary (one forward from another node, as a write), both swaps
    /// and increments: evaluated there against its copy, under the session's lock, and
    /// stored, if it writes, as a delta of the one key, copied to the backups like
    /// [`apply`](SessionStore::apply)'s. No loop of swaps, and no load first. Exactly once like
    /// any write: an update delivered twice is applied once and answered alike. See
    /// [Atomic key updates](crate#atomic-key-updates).
    async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        self.writes.update_key(id, key, update).await
    }

    /// Reported [`EventKind::Deleted`] when the session's primary found it live: deleting a
    /// session that ended already reports nothing.
    async fn delete(&self, id: &Id) -> Result<(), Error> {
        if let DeleteOutcome::Ended(principal) = self.writes.delete(id).await? {
            self.events.emit(EventKind::Deleted, id, principal.as_ref());
        }
        Ok(())
    }

    /// Load, create under the new id, delete the old one: three steps, since the two ids have
    /// different primaries. A write to the old id between the steps is lost with the old id.
    /// The principal and last use move with the session; a move is no new binding, so it
    /// revokes nothing for the bound on sessions per principal. Reported as one event,
    /// [`EventKind::Cycled`] under the new id, once the old one is deleted.
    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        let Some(mut record) = self.load(old).await? else {
            return Ok(Cycled::Missing);
        };
        record.id = *new;
        match self.writes.create(&record).await? {
            Created::IdTaken => Ok(Cycled::IdTaken),
            Created::Created => {
                let _ended_by_the_move = self.writes.delete(old).await?;
                let from = SessionHandle::of(old);
                self.events
                    .emit(EventKind::Cycled { from }, new, record.principal.as_ref());
                Ok(Cycled::Moved)
            }
        }
    }

    /// This node's index in `AllToAll`; in `Backup`, every member's, put together (one
    /// request to each other member per page of its answer).
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>, Error> {
        let found = self.principals.find(principal).await?;
        Ok(found.into_iter().map(|found| found.info).collect())
    }

    /// Found as by [`sessions_of`](SessionStore::sessions_of), deleted at its primary on
    /// condition that it is still bound to `principal` there.
    async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        self.principals.revoke(principal, handle).await
    }

    /// Found as by [`sessions_of`](SessionStore::sessions_of), each deleted at its primary on
    /// condition that it is still bound to `principal` there.
    async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        self.principals.revoke_all(principal, keep).await
    }

    /// This node's events, from now on, in memory: the writes of the store calls this node
    /// took (whichever node was the session's primary), once each call succeeded, and the
    /// expiries of the sessions this node is the primary of, within about a second of their
    /// deadline. At most once: a subscriber more than 4,096 events behind gets
    /// [`Error::EventsMissed`] and goes on from the next event; nothing survives the node's
    /// restart, and the stream ends when the node stops. To see every event of the cluster,
    /// subscribe on every node. See [Session events](crate#session-events).
    async fn events(&self) -> Result<EventStream, Error> {
        Ok(self.events.subscribe())
    }
}

impl std::fmt::Debug for ReplicatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedStore")
            .field("node", &&*self.node)
            .finish_non_exhaustive()
    }
}
