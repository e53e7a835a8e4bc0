//! The session store of a replication node.

use std::sync::Arc;

use async_trait::async_trait;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, Expiry, Id, Record, SessionStore, Timestamp,
};

use crate::error::PeerError;
use crate::node::Shared;
use crate::state::ApplyOutcome;
use crate::wire::{Op, Request, Response};

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
    node: Arc<Shared>,
}

impl ReplicatedStore {
    pub(crate) fn new(node: Arc<Shared>) -> Self {
        Self { node }
    }

    fn unavailable(reason: &'static str) -> Error {
        Error::Unavailable(reason.into())
    }

    /// A peer's refusal: `Unavailable` when it said to retry, `Backend` otherwise.
    fn refused(peer: &str, transient: bool, reason: String) -> Error {
        let error = Box::new(PeerError::Refused {
            peer: peer.to_owned(),
            reason,
        });
        if transient {
            Error::Unavailable(error)
        } else {
            Error::Backend(error)
        }
    }

    /// Runs a write on the session's primary, here or there.
    async fn execute(&self, op: Op) -> Result<Response, Error> {
        self.node.notice_stall();
        let view = self.node.routing_view().await;
        let Some(primary) = view.primary(op.id()) else {
            return Err(Self::unavailable("no live member in the cluster view"));
        };
        if primary == self.node.name() {
            return self.node.execute_as_primary(op).await;
        }
        let peer = self
            .node
            .peer(primary)
            .ok_or_else(|| Self::unavailable("the primary is not a configured peer"))?;
        // The primary may wait one sync timeout for its backups.
        let timeout = self.node.config.sync_timeout * 2;
        match peer.request(Request::Forward(op), timeout).await {
            Ok(Response::Failed { transient, reason }) => {
                Err(Self::refused(primary, transient, reason))
            }
            Ok(response) => Ok(response),
            Err(e) => Err(e.into_store_error()),
        }
    }

    fn unexpected(&self, response: &Response) -> Error {
        tracing::warn!(?response, "unexpected answer from a primary");
        Error::Backend(Box::new(PeerError::Unexpected("primary".into())))
    }
}

#[async_trait]
impl SessionStore for ReplicatedStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.node.notice_stall();
        let view = self.node.routing_view().await;
        let now = Timestamp::now();
        let holders = view.holders(id);
        if holders.is_empty() {
            // Nobody to ask, not even itself: "no such session" would start a new one.
            return Err(Self::unavailable("no live member in the cluster view"));
        }
        let me = self.node.name();
        // A node that is joining, or noticed a stall, has copies that may be stale.
        if self.node.is_serving() && holders.contains(&me) {
            let local = self.node.state.record(id, now);
            // The primary's copy is authoritative; a backup without one asks the primary, in
            // case it has not received the session yet.
            if local.is_some() || holders.first() == Some(&me) {
                return Ok(local);
            }
        }
        let mut last_error = None;
        for holder in holders.into_iter().filter(|h| *h != me) {
            let Some(peer) = self.node.peer(holder) else {
                continue;
            };
            match peer
                .request(Request::Fetch { id: *id }, self.node.config.sync_timeout)
                .await
            {
                Ok(Response::Entry(entry)) => {
                    return Ok(entry.filter(|e| e.is_live(now)).map(|e| e.record(*id)));
                }
                Ok(Response::Failed { transient, reason }) => {
                    last_error = Some(Self::refused(holder, transient, reason));
                }
                Ok(other) => last_error = Some(self.unexpected(&other)),
                Err(e) => last_error = Some(e.into_store_error()),
            }
        }
        // Nobody asked: the only holder is this node, and it is not serving.
        Err(last_error.unwrap_or_else(|| Self::unavailable("this node is joining the cluster")))
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        let op = Op::Create {
            id: record.id,
            created_at: record.created_at,
            expiry: record.expiry,
            data: record
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        match self.execute(op).await? {
            Response::Created(true) => Ok(Created::Created),
            Response::Created(false) => Ok(Created::IdTaken),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        let op = Op::Apply {
            id: *id,
            clear: changes.is_clear(),
            removed: changes.removed().map(str::to_owned).collect(),
            set: changes
                .inserted()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
            expiry: *expiry,
        };
        match self.execute(op).await? {
            Response::Applied(ApplyOutcome::Applied) => Ok(Applied::Applied),
            Response::Applied(_) => Ok(Applied::Missing),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        match self.execute(Op::Delete { id: *id }).await? {
            Response::Done => Ok(()),
            other => Err(self.unexpected(&other)),
        }
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
            .field("node", &self.node.name())
            .finish_non_exhaustive()
    }
}
