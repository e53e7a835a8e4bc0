//! The write path. A write goes to its session's primary: this node, or one hop away (a
//! `Forward`). The primary stamps it with its hybrid logical clock, applies it, and copies it
//! to the backups (waiting for them under `Sync`); a backup that answers a delta with "no copy"
//! gets the whole session. The backups' side, applying what a primary sends, is here too.

use std::sync::Arc;
use std::time::Duration;

use tether_core::{Applied, Changes, Created, Error, Expiry, Id, Record, Timestamp};

use crate::error::{PeerError, unavailable, unexpected};
use crate::hlc::Hlc;
use crate::link::Link;
use crate::membership::Members;
use crate::peer::Peer;
use crate::state::{ApplyOutcome, Delta, Entry, LocalState};
use crate::wire::{Op, Request, Response};
use crate::{Ack, NodeConfig};

/// Where writes are routed, performed, and copied.
pub(crate) struct Writes {
    link: Arc<Link>,
    members: Arc<Members>,
    state: Arc<LocalState>,
    ack: Ack,
    sync_timeout: Duration,
}

impl Writes {
    pub(crate) fn new(
        config: &NodeConfig,
        link: Arc<Link>,
        members: Arc<Members>,
        state: Arc<LocalState>,
    ) -> Self {
        Self {
            link,
            members,
            state,
            ack: config.ack,
            sync_timeout: config.sync_timeout,
        }
    }

    /// Creates `record` unless its id is taken (live, or deleted: ids are never reused).
    pub(crate) async fn create(&self, record: &Record) -> Result<Created, Error> {
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
            other => Err(unexpected(&other)),
        }
    }

    /// Applies one request's `changes` and new `expiry` to a live session.
    pub(crate) async fn apply(
        &self,
        id: &Id,
        changes: &Changes,
        expiry: &Expiry,
    ) -> Result<Applied, Error> {
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
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes a session: it never lives again.
    pub(crate) async fn delete(&self, id: &Id) -> Result<(), Error> {
        match self.execute(Op::Delete { id: *id }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a write on the session's primary, here or there.
    async fn execute(&self, op: Op) -> Result<Response, Error> {
        self.members.notice_stall();
        let view = self.members.routing_view().await;
        let Some(primary) = view.primary(op.id()) else {
            return Err(unavailable("no live member in the cluster view"));
        };
        if primary == self.members.name() {
            return self.execute_as_primary(op).await;
        }
        let peer = self
            .members
            .peer(primary)
            .ok_or_else(|| unavailable("the primary is not a configured peer"))?;
        // The primary may wait one sync timeout for its backups.
        let timeout = self.sync_timeout * 2;
        match peer.request(Request::Forward(op), timeout).await {
            Ok(Response::Failed { transient, reason }) => {
                Err(PeerError::refused(primary, transient, reason))
            }
            Ok(response) => Ok(response),
            Err(e) => Err(e.into_store_error()),
        }
    }

    /// The answer to a `Forward` from a peer that routed a write here: performed if this node
    /// is the session's primary by its own view, refused (transient) otherwise.
    pub(crate) async fn answer_forward(&self, op: Op) -> Response {
        let view = self.members.view();
        if view.primary(op.id()) != Some(self.members.name()) {
            return Response::failed(
                true,
                format!("{} is not the primary of this session", self.members.name()),
            );
        }
        match self.execute_as_primary(op).await {
            Ok(response) => response,
            Err(e) => Response::failed(e.is_transient(), tether_core::error_chain(&e).to_string()),
        }
    }

    /// Performs a write as the session's primary: stamp it, apply it, copy it to the backups.
    async fn execute_as_primary(&self, op: Op) -> Result<Response, Error> {
        self.members.notice_stall();
        if !self.members.is_serving() {
            // The view it routed by was taken before a stall was noticed.
            return Err(Error::Unavailable(
                "this node is joining the cluster".into(),
            ));
        }
        let view = self.members.view();
        let id = *op.id();
        let me = self.members.name();
        let backups: Vec<&str> = view.holders(&id).into_iter().filter(|h| *h != me).collect();
        let now = Timestamp::now();
        let at = self.link.clock().now();
        match op {
            Op::Create {
                id,
                created_at,
                expiry,
                data,
            } => {
                let record =
                    Record::new(id, expiry, created_at).with_data(data.into_iter().collect());
                let entry = Entry::from_record(&record, at);
                if !self.state.create(id, entry.clone()) {
                    return Ok(Response::Created(false));
                }
                self.replicate(&backups, &Request::Create { id, entry })
                    .await?;
                Ok(Response::Created(true))
            }
            Op::Apply {
                id,
                clear,
                removed,
                set,
                expiry,
            } => {
                let delta = Delta {
                    at,
                    clear,
                    removed,
                    set,
                    expiry,
                };
                match self.state.apply(&id, &delta, now) {
                    ApplyOutcome::Applied => {}
                    _ => return Ok(Response::Applied(ApplyOutcome::Missing)),
                }
                let answers = self
                    .replicate(&backups, &Request::Apply { id, delta })
                    .await?;
                self.repair(&id, &answers).await?;
                Ok(Response::Applied(ApplyOutcome::Applied))
            }
            Op::Delete { id } => {
                self.state.delete(id, at);
                self.replicate(&backups, &Request::Delete { id, at })
                    .await?;
                Ok(Response::Done)
            }
        }
    }

    /// Sends `request` to `targets`. `Sync`: waits for every answer, and fails (transient) if one
    /// does not come. `Async`: queues and returns.
    async fn replicate(
        &self,
        targets: &[&str],
        request: &Request,
    ) -> Result<Vec<(String, Response)>, Error> {
        let peers: Vec<&Peer> = targets
            .iter()
            .filter_map(|t| self.members.peer(t))
            .collect();
        match self.ack {
            Ack::Async => {
                for peer in peers {
                    if !peer.send(request.clone()) {
                        self.link.counters().dropped();
                    }
                }
                Ok(Vec::new())
            }
            Ack::Sync => {
                let timeout = self.sync_timeout;
                let answers = futures_util::future::join_all(peers.iter().map(|peer| async move {
                    (
                        peer.name().to_owned(),
                        peer.request(request.clone(), timeout).await,
                    )
                }))
                .await;
                answers
                    .into_iter()
                    .map(|(name, answer)| {
                        answer.map(|a| (name, a)).map_err(|e| e.into_store_error())
                    })
                    .collect()
            }
        }
    }

    /// Backups that answered a delta with "no copy" get the whole session.
    async fn repair(&self, id: &Id, answers: &[(String, Response)]) -> Result<(), Error> {
        let lacking: Vec<&str> = answers
            .iter()
            .filter(|(_, a)| matches!(a, Response::Applied(ApplyOutcome::Unknown)))
            .map(|(name, _)| name.as_str())
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        let Some(entry) = self.state.entry(id) else {
            return Ok(());
        };
        self.replicate(
            &lacking,
            &Request::Push {
                entries: vec![(*id, entry)],
            },
        )
        .await?;
        Ok(())
    }

    /// As a backup: stores a new session from its primary. Merges, so a copy pushed earlier
    /// does not refuse it.
    pub(crate) fn backup_create(&self, id: Id, entry: Entry) -> Response {
        let deleted = self
            .state
            .entry(&id)
            .is_some_and(|e| e.deleted_at.is_some());
        self.state.merge(id, entry);
        Response::Created(!deleted)
    }

    /// As a backup: applies a delta its primary stamped.
    pub(crate) fn backup_apply(&self, id: &Id, delta: &Delta) -> Response {
        Response::Applied(self.state.apply(id, delta, Timestamp::now()))
    }

    /// As a backup: records a deletion its primary stamped.
    pub(crate) fn backup_delete(&self, id: Id, at: Hlc) -> Response {
        self.state.delete(id, at);
        Response::Done
    }
}
