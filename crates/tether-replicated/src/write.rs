//! The write path. A write goes to its session's primary: this node, or one hop away (a
//! `Forward`). The primary stamps it with its hybrid logical clock, applies it, and copies it
//! to the backups (waiting for them under `Sync`); a backup that answers a delta with "no copy"
//! gets the whole session. The backups' side, applying what a primary sends, is here too.
//!
//! Each store call gets a write id, kept on every forward of the call. A session remembers the
//! ids of its latest writes, on every holder: a write that comes again is not applied again,
//! and answers as the first time (see [`crate::write_id`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tether_core::{
    Applied, Changes, Created, Error, Expiry, Id, KeyUpdate, KeyUpdated, Principal, Record,
    Timestamp,
};
use tracing::Instrument as _;

use crate::error::{PeerError, unavailable, unexpected};
use crate::hlc::Hlc;
use crate::link::Link;
use crate::membership::Members;
use crate::peer::Peer;
use crate::retry::Retry;
use crate::state::{
    ApplyOutcome, CreateOutcome, DeleteOutcome, Delta, Entry, KeyUpdateOutcome, LocalState,
    RevokeOutcome,
};
use crate::wire::{KeyAnswer, KeyChange, Op, Request, Response};
use crate::write_id::WriteId;
use crate::{Ack, NodeConfig};

/// How many of the latest copied writes `Node::replay_copied_write` can replay.
#[cfg(feature = "test-util")]
const REPLAYABLE: usize = 16;

/// How many stamps a key update takes at most at its primary, each newer than the key's
/// value when it was taken, before the attempt fails (transient, so the call is retried).
/// More than one only while writes of the same key, stamped after it, keep getting to the
/// session's lock first.
const STAMPS_PER_KEY_UPDATE: u32 = 16;

/// Where writes are routed, performed, and copied.
pub(crate) struct Writes {
    link: Arc<Link>,
    members: Arc<Members>,
    state: Arc<LocalState>,
    ack: Ack,
    sync_timeout: Duration,
    retry: Retry,
    /// Writes under way as the primary: a leaving node waits for them before its last
    /// hand-over.
    as_primary: AtomicUsize,
    /// Sessions written as the primary since a graceful leave began: what the last hand-over
    /// sends. `None` while the node is not leaving.
    written_while_leaving: Mutex<Option<HashSet<Id>>>,
    /// The latest writes copied to backups, and to which, newest first: for
    /// `Node::replay_copied_write`.
    #[cfg(feature = "test-util")]
    copied: std::sync::Mutex<std::collections::VecDeque<(Vec<String>, Request)>>,
    /// Time from sending a `Sync` copy to the last backup's answer.
    #[cfg(feature = "metrics")]
    ack_duration: metrics::Histogram,
}

impl Writes {
    pub(crate) fn new(
        config: &NodeConfig,
        link: Arc<Link>,
        members: Arc<Members>,
        state: Arc<LocalState>,
    ) -> Self {
        let retry = Retry::new(Arc::clone(&members), config.retry_deadline);
        #[cfg(feature = "metrics")]
        let ack_duration = metrics::histogram!(
            "tether_replicated_ack_duration_seconds",
            "node" => link.name().to_owned()
        );
        Self {
            link,
            members,
            state,
            ack: config.ack,
            sync_timeout: config.sync_timeout,
            retry,
            as_primary: AtomicUsize::new(0),
            written_while_leaving: Mutex::new(None),
            #[cfg(feature = "test-util")]
            copied: std::sync::Mutex::default(),
            #[cfg(feature = "metrics")]
            ack_duration,
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
            principal: record.principal.clone(),
            seen: record.seen.as_deref().cloned(),
        };
        match self.execute(WriteId::random()?, op).await? {
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
        self.apply_as(WriteId::random()?, id, changes, expiry).await
    }

    /// As [`Writes::apply`], for the store call `write`.
    pub(crate) async fn apply_as(
        &self,
        write: WriteId,
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
            principal: changes.principal().cloned(),
            seen: changes.seen().cloned(),
        };
        match self.execute(write, op).await? {
            Response::Applied(ApplyOutcome::Applied) => Ok(Applied::Applied),
            Response::Applied(_) => Ok(Applied::Missing),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes a session: it never lives again. Whether it ended a live session, as its
    /// primary found it: [`DeleteOutcome::Ended`] or [`DeleteOutcome::NotLive`] (also when the
    /// deletion came again after a lost answer: that its first time ended the session is not
    /// remembered).
    pub(crate) async fn delete(&self, id: &Id) -> Result<DeleteOutcome, Error> {
        match self
            .execute(WriteId::random()?, Op::Delete { id: *id })
            .await?
        {
            Response::Deleted {
                ended: true,
                principal,
            } => Ok(DeleteOutcome::Ended(principal)),
            Response::Deleted { ended: false, .. } => Ok(DeleteOutcome::NotLive),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes session `id` if it is live and bound to `principal` when its primary applies
    /// the deletion (a revoke); whether it did. A session of another principal is left alone,
    /// whoever names it.
    pub(crate) async fn revoke(&self, id: &Id, principal: &Principal) -> Result<bool, Error> {
        let op = Op::Revoke {
            id: *id,
            principal: principal.clone(),
        };
        match self.execute(WriteId::random()?, op).await? {
            Response::Revoked(revoked) => Ok(revoked),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies `update` to `key` of a live session, at its primary.
    pub(crate) async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        self.update_key_as(WriteId::random()?, id, key, update)
            .await
    }

    /// As [`Writes::update_key`], for the store call `write`.
    pub(crate) async fn update_key_as(
        &self,
        write: WriteId,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        let op = Op::UpdateKey {
            id: *id,
            key: key.to_owned(),
            change: KeyChange::new(update)?,
        };
        match self.execute(write, op).await? {
            Response::KeyUpdated(answer) => answer.outcome(key, update),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs the store call `write` on the session's primary, here or there, trying again after
    /// a transient failure until the retry deadline.
    async fn execute(&self, write: WriteId, op: Op) -> Result<Response, Error> {
        let span = tracing::debug_span!("replicated.write", node = %self.members.name(), %write);
        self.retry
            .run(|| self.execute_once(write, op.clone()))
            .instrument(span)
            .await
    }

    /// One attempt of [`Writes::execute`].
    async fn execute_once(&self, write: WriteId, op: Op) -> Result<Response, Error> {
        self.members.notice_stall();
        let view = self.members.routing_view().await;
        let Some(primary) = view.primary(op.id()) else {
            return Err(unavailable("no live member in the cluster view"));
        };
        if primary == self.members.name() {
            return self.execute_as_primary(write, op).await;
        }
        let peer = self
            .members
            .peer(primary)
            .ok_or_else(|| unavailable("the primary is not a configured peer"))?;
        // The primary may wait one sync timeout for its backups.
        let timeout = self.sync_timeout * 2;
        match peer.request(Request::Forward { write, op }, timeout).await {
            Ok(Response::Failed { transient, reason }) => {
                Err(PeerError::refused(primary, transient, reason))
            }
            Ok(response) => Ok(response),
            Err(e) => Err(e.into_store_error()),
        }
    }

    /// The answer to a `Forward` from a peer that routed a write here: performed if this node
    /// is the session's primary by its own view, refused (transient) otherwise.
    pub(crate) async fn answer_forward(&self, write: WriteId, op: Op) -> Response {
        let view = self.members.view();
        if view.primary(op.id()) != Some(self.members.name()) {
            return Response::failed(
                true,
                format!("{} is not the primary of this session", self.members.name()),
            );
        }
        match self.execute_as_primary(write, op).await {
            Ok(response) => response,
            Err(e) => Response::failed(e.is_transient(), tether_core::error_chain(&e).to_string()),
        }
    }

    /// Performs a write as the session's primary: stamp it, apply it, copy it to the backups.
    /// A write the session remembers (by its id) is not applied again: the backups get the
    /// session as it is, so that under `Sync` the answer still means every holder has it.
    async fn execute_as_primary(&self, write: WriteId, op: Op) -> Result<Response, Error> {
        let _under_way = UnderWay::new(self, *op.id());
        let at = self.stamp()?;
        let view = self.members.view();
        let id = *op.id();
        let me = self.members.name();
        let backups: Vec<&str> = view.holders(&id).into_iter().filter(|h| *h != me).collect();
        let now = Timestamp::now();
        match op {
            Op::Create {
                id,
                created_at,
                expiry,
                data,
                principal,
                seen,
            } => {
                let record = Record::new(id, expiry, created_at)
                    .with_data(data.into_iter().collect())
                    .with_principal(principal)
                    .with_seen(seen);
                let entry = Entry::from_record(&record, at, write);
                match self.state.create(id, entry.clone(), &write) {
                    CreateOutcome::Taken => return Ok(Response::Created(false)),
                    CreateOutcome::Repeated => self.reconfirm(&backups, &id).await?,
                    CreateOutcome::Created => {
                        self.replicate(
                            &backups,
                            &Request::Create {
                                id,
                                write,
                                entry: Box::new(entry),
                            },
                        )
                        .await?;
                    }
                }
                Ok(Response::Created(true))
            }
            Op::Apply {
                id,
                clear,
                removed,
                set,
                expiry,
                principal,
                seen,
            } => {
                let delta = Delta {
                    write,
                    at,
                    clear,
                    removed,
                    set,
                    expiry: Some(expiry),
                    principal,
                    seen,
                    key_update: false,
                };
                match self.state.apply(&id, &delta, now) {
                    ApplyOutcome::Applied => {}
                    ApplyOutcome::Repeated => {
                        self.reconfirm(&backups, &id).await?;
                        return Ok(Response::Applied(ApplyOutcome::Applied));
                    }
                    ApplyOutcome::Missing | ApplyOutcome::Unknown => {
                        return Ok(Response::Applied(ApplyOutcome::Missing));
                    }
                }
                let answers = self
                    .replicate(&backups, &Request::Apply { id, delta })
                    .await?;
                self.repair(&id, &answers).await?;
                Ok(Response::Applied(ApplyOutcome::Applied))
            }
            Op::Delete { id } => {
                let outcome = self.state.delete_reporting(id, at, write, now);
                if outcome == DeleteOutcome::Repeated {
                    self.reconfirm(&backups, &id).await?;
                } else {
                    self.replicate(&backups, &Request::Delete { id, at, write })
                        .await?;
                }
                Ok(match outcome {
                    DeleteOutcome::Ended(principal) => Response::Deleted {
                        ended: true,
                        principal,
                    },
                    DeleteOutcome::NotLive | DeleteOutcome::Repeated => Response::Deleted {
                        ended: false,
                        principal: None,
                    },
                })
            }
            Op::UpdateKey { id, key, change } => {
                self.update_key_as_primary(write, id, &key, &change, at, &backups)
                    .await
            }
            Op::Revoke { id, principal } => {
                // The condition is checked here, at the primary, under the session's lock;
                // the backups take the deletion as any other.
                match self.state.revoke(id, &principal, at, write, now) {
                    RevokeOutcome::Revoked => {
                        self.replicate(&backups, &Request::Delete { id, at, write })
                            .await?;
                        Ok(Response::Revoked(true))
                    }
                    RevokeOutcome::Repeated => {
                        self.reconfirm(&backups, &id).await?;
                        Ok(Response::Revoked(true))
                    }
                    RevokeOutcome::NotBound => Ok(Response::Revoked(false)),
                }
            }
        }
    }

    /// A stamp for a write as the primary, once this node is sure it may take one.
    ///
    /// Stamped before the last check that this node serves: a stamp taken after a stall
    /// would be newer than the writes the others made meanwhile, and let a value read before
    /// the stall win over them. Stamped before the check, the write either is refused (the
    /// stall is noticed) or carries a stamp from before the stall, which loses to them.
    fn stamp(&self) -> Result<Hlc, Error> {
        let at = self.link.clock().now();
        self.members.notice_stall();
        if !self.members.is_serving() {
            // The view it routed by was taken before a stall was noticed.
            return Err(Error::Unavailable(
                "this node is joining the cluster".into(),
            ));
        }
        if let Some((seen, needed)) = self.members.quorum_shortfall() {
            return Err(Error::Unavailable(
                format!(
                    "{} sees {seen} cluster members, a write needs {needed} (quorum)",
                    self.members.name()
                )
                .into(),
            ));
        }
        Ok(at)
    }

    /// Runs a key update as the session's primary, stamped `at` (see [`Writes::stamp`]): the
    /// update is evaluated against this node's copy and, if it writes, applied and copied to
    /// the backups as an ordinary delta of the one key. A stamp that turns out older than the
    /// key's (a write stamped later got to the session's lock first) is taken anew, checks
    /// and all, so the update orders after the value it was computed from.
    async fn update_key_as_primary(
        &self,
        write: WriteId,
        id: Id,
        key: &str,
        change: &KeyChange,
        mut at: Hlc,
        backups: &[&str],
    ) -> Result<Response, Error> {
        let update = change.update();
        let mut stamps = 1;
        let delta = loop {
            let outcome = self
                .state
                .update_key(&id, key, &update, write, at, Timestamp::now());
            match outcome {
                Ok(KeyUpdateOutcome::Written(delta)) => break delta,
                Ok(KeyUpdateOutcome::Answered(answer)) => {
                    return Ok(Response::KeyUpdated(KeyAnswer::new(answer)));
                }
                Ok(KeyUpdateOutcome::Repeated(value)) => {
                    self.reconfirm(backups, &id).await?;
                    return Ok(Response::KeyUpdated(KeyAnswer::Updated(value)));
                }
                Ok(KeyUpdateOutcome::Stale) if stamps < STAMPS_PER_KEY_UPDATE => {
                    stamps += 1;
                    at = self.stamp()?;
                }
                Ok(KeyUpdateOutcome::Stale) => {
                    // Later writes of the key kept getting there first; the call is retried.
                    return Err(Error::Unavailable(
                        format!("session key {key:?} kept changing under {stamps} stamps").into(),
                    ));
                }
                Err(Error::NotACounter { .. }) => {
                    return Ok(Response::KeyUpdated(KeyAnswer::NotACounter));
                }
                Err(other) => return Err(other),
            }
        };
        let value = delta.updated_value();
        let answers = self
            .replicate(backups, &Request::Apply { id, delta })
            .await?;
        self.repair(&id, &answers).await?;
        Ok(Response::KeyUpdated(KeyAnswer::Updated(value)))
    }

    fn lock_written_while_leaving(&self) -> MutexGuard<'_, Option<HashSet<Id>>> {
        self.written_while_leaving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until no write is under way as the primary (the node stopped serving, so no new
    /// one starts), at most `timeout`; then the sessions written since the leave began.
    pub(crate) async fn finish_writes(&self, timeout: Duration) -> HashSet<Id> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.as_primary.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.lock_written_while_leaving().take().unwrap_or_default()
    }

    /// Sends `request` to `targets`. `Sync`: waits for every answer, and fails (transient) if one
    /// does not come. `Async`: queues and returns.
    async fn replicate(
        &self,
        targets: &[&str],
        request: &Request,
    ) -> Result<Vec<(String, Response)>, Error> {
        #[cfg(feature = "test-util")]
        if !targets.is_empty()
            && matches!(
                request,
                Request::Create { .. } | Request::Apply { .. } | Request::Delete { .. }
            )
        {
            let targets = targets.iter().map(|t| (*t).to_owned()).collect();
            let mut copied = self
                .copied
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            copied.push_front((targets, request.clone()));
            copied.truncate(REPLAYABLE);
        }
        let peers: Vec<Peer> = targets
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
                #[cfg(feature = "metrics")]
                let sent = std::time::Instant::now();
                let answers = futures_util::future::join_all(peers.iter().map(|peer| async move {
                    (
                        peer.name().to_owned(),
                        peer.request(request.clone(), timeout).await,
                    )
                }))
                .await;
                #[cfg(feature = "metrics")]
                if !peers.is_empty() {
                    self.ack_duration.record(sent.elapsed().as_secs_f64());
                }
                let answers: Vec<(String, Response)> = answers
                    .into_iter()
                    .map(|(name, answer)| {
                        answer.map(|a| (name, a)).map_err(|e| e.into_store_error())
                    })
                    .collect::<Result<_, _>>()?;
                if let Some((by, _)) = answers.iter().find(|(_, a)| matches!(a, Response::Fenced)) {
                    // The others moved on without this node: it must not answer for this write.
                    // It stops serving and joins again; the retry goes to the new primary.
                    self.members.fenced_by(by);
                    return Err(Error::Unavailable(
                        format!("{by} no longer counts {} a member", self.members.name()).into(),
                    ));
                }
                Ok(answers)
            }
        }
    }

    /// A write came again, applied already: counted, and the session as it is goes to the
    /// backups of the current view (which may not be those the first attempt copied it to).
    async fn reconfirm(&self, backups: &[&str], id: &Id) -> Result<(), Error> {
        self.link.counters().repeated_write();
        let Some(entry) = self.state.entry(id) else {
            return Ok(());
        };
        self.replicate(
            backups,
            &Request::Push {
                entries: vec![(*id, entry)],
            },
        )
        .await?;
        Ok(())
    }

    /// Sends the write copied to backups `back` writes ago (0: the last) to them again, stamped
    /// anew, as a peer replaying an old write would; how many backups answered.
    #[cfg(feature = "test-util")]
    pub(crate) async fn replay_copied_write(&self, back: usize) -> usize {
        let old = self
            .copied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(back)
            .cloned();
        let Some((targets, mut request)) = old else {
            return 0;
        };
        let now = self.link.clock().now();
        match &mut request {
            Request::Apply { delta, .. } => delta.at = now,
            Request::Delete { at, .. } => *at = now,
            _ => {}
        }
        let mut answered = 0;
        for target in &targets {
            if let Some(peer) = self.members.peer(target)
                && peer
                    .request(request.clone(), self.sync_timeout)
                    .await
                    .is_ok()
            {
                answered += 1;
            }
        }
        answered
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

    /// Whether a copy from `from` may be applied: only while `from` is a member of this node's
    /// view. A node the cluster declared dead (it stood still, or was cut off) and that carries
    /// on as if it were a primary is fenced: counted, answered [`Response::Fenced`], and its
    /// write is not applied here. A node that is joining itself has no view to judge by yet, and
    /// takes every copy (merged as usual).
    fn admits(&self, from: &str) -> bool {
        if !self.members.is_serving() || self.members.view().contains(from) {
            return true;
        }
        self.link.counters().fenced();
        tracing::debug!(peer = %from, "refused a copy from a node outside this node's view");
        false
    }

    /// As a backup: stores a new session from its primary `from`, created by the store call
    /// `write`. Merges, so a copy pushed earlier does not refuse it; a creation the session
    /// remembers (a replay, perhaps stamped anew) is counted and not merged again.
    pub(crate) fn backup_create(
        &self,
        from: &str,
        id: Id,
        write: &WriteId,
        entry: Entry,
    ) -> Response {
        if !self.admits(from) {
            return Response::Fenced;
        }
        let known = self.state.entry(&id);
        if known.as_ref().is_some_and(|e| e.writes.contains(write)) {
            self.link.counters().repeated_write();
            return Response::Created(true);
        }
        let deleted = known.is_some_and(|e| e.deleted_at.is_some());
        self.state.merge(id, entry);
        Response::Created(!deleted)
    }

    /// As a backup: applies a delta its primary `from` stamped, unless the session remembers
    /// its write id (counted: a replay, answered as applied).
    pub(crate) fn backup_apply(&self, from: &str, id: &Id, delta: &Delta) -> Response {
        if !self.admits(from) {
            return Response::Fenced;
        }
        match self.state.apply(id, delta, Timestamp::now()) {
            ApplyOutcome::Repeated => {
                self.link.counters().repeated_write();
                Response::Applied(ApplyOutcome::Applied)
            }
            outcome => Response::Applied(outcome),
        }
    }

    /// As a backup: records a deletion its primary `from` stamped, unless the session
    /// remembers it.
    pub(crate) fn backup_delete(&self, from: &str, id: Id, at: Hlc, write: WriteId) -> Response {
        if !self.admits(from) {
            return Response::Fenced;
        }
        if !self.state.delete(id, at, write) {
            self.link.counters().repeated_write();
        }
        Response::Done
    }
}

/// A write under way as the primary, counted for as long as it lives. When it ends while the
/// node leaves, its session is noted for the last hand-over: it may have changed after the
/// first hand-over read it.
struct UnderWay<'a> {
    writes: &'a Writes,
    id: Id,
}

impl<'a> UnderWay<'a> {
    fn new(writes: &'a Writes, id: Id) -> Self {
        writes.as_primary.fetch_add(1, Ordering::SeqCst);
        // Ordered before the caller reads the serving flag: a leaving node clears that flag and
        // then reads this count, so one of the two sees the other.
        std::sync::atomic::fence(Ordering::SeqCst);
        Self { writes, id }
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        if self.writes.members.is_leaving() {
            self.writes
                .lock_written_while_leaving()
                .get_or_insert_with(HashSet::new)
                .insert(self.id);
        }
        self.writes.as_primary.fetch_sub(1, Ordering::SeqCst);
    }
}
