//! Sessions by principal across the cluster: listing a principal's sessions, revoking them,
//! and the bound on how many one principal may have.
//!
//! Each node indexes the sessions it holds by principal ([`PrincipalIndex`](crate::index)).
//! In `AllToAll` a serving node holds every session, so its own index answers. In `Backup` a
//! node holds only the sessions it is a holder of, so a listing asks every other member of
//! the view ([`Request::SessionsOf`], paged) and puts the answers together
//! ([`combine`]): for each session, the answer of its primary when the primary answered (its
//! copy has every acknowledged write, as for a read), the other holders' otherwise, a
//! deletion reported by any of them winning over a live copy. A member that does not answer
//! within the sync timeout is left out: its sessions come from their other holders.
//!
//! A revoke deletes through the write path, at the session's primary, on condition that the
//! session is still live and bound to the principal there ([`Op::Revoke`](crate::wire::Op)).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tether_core::{
    Error, EventKind, Id, Principal, Revoked, SessionHandle, SessionInfo, Timestamp,
};

use crate::error::{PeerError, unavailable, unexpected};
use crate::events::Events;
use crate::membership::Members;
use crate::peer::Peer;
use crate::retry::Retry;
use crate::state::{Listed, LocalState};
use crate::transfer::page_budget;
use crate::view::View;
use crate::wire::{Request, Response};
use crate::write::Writes;
use crate::{Mode, NodeConfig};

/// Revokes of one `revoke_all` under way at the same time.
const PARALLEL_REVOKES: usize = 16;

/// A live session of a principal, found in the cluster: its id (which never leaves the
/// store) and what a listing shows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) id: Id,
    pub(crate) info: SessionInfo,
}

/// Where sessions are listed and revoked by principal.
pub(crate) struct Principals {
    members: Arc<Members>,
    state: Arc<LocalState>,
    writes: Arc<Writes>,
    /// Where revokes are reported, by the node that asked for them.
    events: Arc<Events>,
    mode: Mode,
    sync_timeout: Duration,
    retry: Retry,
    page_budget: usize,
    max_per_principal: Option<NonZeroUsize>,
}

impl Principals {
    pub(crate) fn new(
        config: &NodeConfig,
        members: Arc<Members>,
        state: Arc<LocalState>,
        writes: Arc<Writes>,
        events: Arc<Events>,
    ) -> Self {
        Self {
            retry: Retry::new(Arc::clone(&members), config.retry_deadline),
            members,
            state,
            writes,
            events,
            mode: config.mode,
            sync_timeout: config.sync_timeout,
            page_budget: page_budget(config.max_frame),
            max_per_principal: config.max_sessions_per_principal,
        }
    }

    /// The live sessions bound to `principal`, oldest first (by creation, then handle); tried
    /// again after a transient failure until the retry deadline.
    pub(crate) async fn find(&self, principal: &Principal) -> Result<Vec<Found>, Error> {
        self.retry.run(|| self.find_once(principal)).await
    }

    /// One attempt of [`Principals::find`]: this node's own index in `AllToAll`, every
    /// member's otherwise (and while this node is joining).
    async fn find_once(&self, principal: &Principal) -> Result<Vec<Found>, Error> {
        self.members.notice_stall();
        let view = self.members.routing_view().await;
        let me = self.members.name();
        let now = Timestamp::now();
        let serving = self.members.is_serving() && view.contains(me);
        let mut answers = Vec::new();
        if serving {
            let (mine, _) = self.state.listed(principal, None, now, usize::MAX);
            if self.mode == Mode::AllToAll {
                return Ok(combine(&view, vec![(me.to_owned(), mine)], now));
            }
            answers.push((me.to_owned(), mine));
        }
        let peers: Vec<Peer> = view
            .members()
            .iter()
            .filter(|member| *member != me)
            .filter_map(|member| self.members.peer(member))
            .collect();
        let asked = futures_util::future::join_all(
            peers
                .iter()
                .map(|peer| self.ask(peer, principal, self.sync_timeout)),
        )
        .await;
        let mut last_error = None;
        for (peer, answer) in peers.iter().zip(asked) {
            match answer {
                Ok(listed) => answers.push((peer.name().to_owned(), listed)),
                Err(e) => {
                    tracing::debug!(
                        node = %me,
                        peer = peer.name(),
                        error = %tether_core::error_chain(&e),
                        "a member did not list the sessions of a principal; its sessions' other holders do"
                    );
                    last_error = Some(e);
                }
            }
        }
        if answers.is_empty() {
            return Err(
                last_error.unwrap_or_else(|| unavailable("no live member in the cluster view"))
            );
        }
        Ok(combine(&view, answers, now))
    }

    /// Every page of `peer`'s answer to [`Request::SessionsOf`], each page within `timeout`.
    async fn ask(
        &self,
        peer: &Peer,
        principal: &Principal,
        timeout: Duration,
    ) -> Result<Vec<Listed>, Error> {
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let request = Request::SessionsOf {
                principal: principal.clone(),
                after,
            };
            match peer.request(request, timeout).await {
                Ok(Response::Sessions { sessions, next }) => {
                    listed.extend(sessions);
                    match next {
                        // Pages move forward in id order, or the answer is not to be trusted.
                        Some(next) if after.is_none_or(|after| next > after) => after = Some(next),
                        Some(_) => {
                            return Err(Error::Backend(Box::new(PeerError::Unexpected(
                                peer.name().to_owned(),
                            ))));
                        }
                        None => return Ok(listed),
                    }
                }
                Ok(Response::Failed { transient, reason }) => {
                    return Err(PeerError::refused(peer.name(), transient, reason));
                }
                Ok(other) => return Err(unexpected(&other)),
                Err(e) => return Err(e.into_store_error()),
            }
        }
    }

    /// The answer to a peer's [`Request::SessionsOf`]: a page of the sessions bound to
    /// `principal` that this node holds, unless it is still joining (its copies may miss
    /// writes; the asker takes the sessions' other holders).
    pub(crate) fn answer(&self, principal: &Principal, after: Option<Id>) -> Response {
        if !self.members.is_serving() {
            return Response::failed(true, format!("{} is still joining", self.members.name()));
        }
        let (sessions, next) =
            self.state
                .listed(principal, after, Timestamp::now(), self.page_budget);
        Response::Sessions { sessions, next }
    }

    /// Revokes the session `handle` names if it is a live session of `principal`.
    pub(crate) async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        let found = self.find(principal).await?;
        let Some(session) = found.iter().find(|found| found.info.handle == *handle) else {
            return Ok(Revoked::NotFound);
        };
        Ok(if self.revoke_id(&session.id, principal).await? {
            Revoked::Revoked
        } else {
            Revoked::NotFound
        })
    }

    /// Revokes session `id` if its primary still finds it live and bound to `principal`;
    /// whether it did. A session revoked is reported [`EventKind::Revoked`] here.
    async fn revoke_id(&self, id: &Id, principal: &Principal) -> Result<bool, Error> {
        let revoked = self.writes.revoke(id, principal).await?;
        if revoked {
            self.events.emit(EventKind::Revoked, id, Some(principal));
        }
        Ok(revoked)
    }

    /// Revokes every live session of `principal` but the one `keep` names; how many.
    pub(crate) async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        let found = self.find(principal).await?;
        let ids: Vec<Id> = found
            .into_iter()
            .filter(|found| keep != Some(&found.info.handle))
            .map(|found| found.id)
            .collect();
        self.revoke_ids(principal, &ids).await
    }

    /// Revokes the sessions `ids` of `principal`, several at a time; how many were revoked,
    /// or the first error once every one was tried (those revoked stay revoked).
    async fn revoke_ids(&self, principal: &Principal, ids: &[Id]) -> Result<usize, Error> {
        let outcomes: Vec<Result<bool, Error>> = futures_util::stream::iter(ids.to_vec())
            .map(|id| async move { self.revoke_id(&id, principal).await })
            .buffer_unordered(PARALLEL_REVOKES)
            .collect()
            .await;
        let mut revoked = 0;
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(true) => revoked += 1,
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(revoked),
        }
    }

    /// After a store call bound session `bound` to `principal`: with a bound on the sessions
    /// per principal, revokes the oldest of the principal's other live sessions past it. A
    /// failure is logged, not returned: the binding itself was stored, and the next one
    /// enforces the bound again.
    pub(crate) async fn enforce_cap(&self, principal: &Principal, bound: &Id) {
        let Some(max) = self.max_per_principal else {
            return;
        };
        let found = match self.find(principal).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(
                    node = %self.members.name(),
                    error = %tether_core::error_chain(&e),
                    "could not list a principal's sessions to bound them; the bound is enforced again at its next binding"
                );
                return;
            }
        };
        // Oldest first; the session just bound counts whether or not a listing found it.
        let others: Vec<Id> = found
            .into_iter()
            .map(|found| found.id)
            .filter(|id| id != bound)
            .collect();
        let excess = (others.len() + 1).saturating_sub(max.get());
        let Some(oldest) = others.get(..excess) else {
            return;
        };
        match self.revoke_ids(principal, oldest).await {
            Ok(revoked) if revoked > 0 => tracing::debug!(
                node = %self.members.name(),
                revoked,
                "sessions revoked: their principal reached the session bound"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                node = %self.members.name(),
                error = %tether_core::error_chain(&e),
                "could not revoke a session past its principal's bound"
            ),
        }
    }
}

/// Puts the answers of several nodes (`(node, what it listed)`) together into one listing,
/// oldest first: for each session, the answer of its primary by `view` if the primary
/// answered (a session it did not list is not live there: deleted, ended, or bound to another
/// principal); otherwise the other answers, where a deletion wins over a live copy. Sessions
/// past their deadline at `now` are left out.
pub(crate) fn combine(
    view: &View,
    answers: Vec<(String, Vec<Listed>)>,
    now: Timestamp,
) -> Vec<Found> {
    let answered: HashSet<&str> = answers.iter().map(|(node, _)| node.as_str()).collect();
    let mut by_id: HashMap<Id, Vec<(&str, &Listed)>> = HashMap::new();
    for (node, listed) in &answers {
        for session in listed {
            by_id
                .entry(session.id)
                .or_default()
                .push((node.as_str(), session));
        }
    }
    let mut found: Vec<Found> = by_id
        .into_iter()
        .filter_map(|(id, reports)| {
            let chosen = match view.primary(&id) {
                Some(primary) if answered.contains(primary) => reports
                    .iter()
                    .find(|(node, _)| *node == primary)
                    .map(|(_, listed)| *listed)?,
                _ => {
                    if reports.iter().any(|(_, listed)| listed.deleted) {
                        return None;
                    }
                    // The copy that lives longest has seen the latest renewal.
                    reports
                        .iter()
                        .map(|(_, listed)| *listed)
                        .max_by_key(|listed| {
                            (
                                listed.expires_at,
                                listed.seen.as_ref().map(tether_core::Seen::at),
                            )
                        })?
                }
            };
            (!chosen.deleted && now < chosen.expires_at).then(|| Found {
                id,
                info: SessionInfo::new(
                    SessionHandle::of(&id),
                    chosen.created_at,
                    chosen.expires_at,
                )
                .with_seen(chosen.seen.clone()),
            })
        })
        .collect();
    found.sort_by_key(|found| (found.info.created_at, found.info.handle));
    found
}

#[cfg(test)]
mod tests {
    use tether_core::Seen;

    use super::*;

    fn listed(id: Id, created: u64, expires: u64, deleted: bool) -> Listed {
        Listed {
            id,
            created_at: Timestamp::from_millis(created),
            expires_at: Timestamp::from_millis(expires),
            seen: None,
            deleted,
        }
    }

    fn ids(found: &[Found]) -> Vec<Id> {
        found.iter().map(|found| found.id).collect()
    }

    /// A session id whose primary in `view` is `primary`.
    fn primaried_by(view: &View, primary: &str) -> Id {
        loop {
            let id = Id::random().unwrap();
            if view.primary(&id) == Some(primary) {
                return id;
            }
        }
    }

    #[test]
    fn union_by_id_oldest_first_without_ended_sessions() {
        let view = View::new(["a", "b", "c"], Mode::Backup { copies: 1 });
        let now = Timestamp::from_millis(1_000);
        let (x, y, z) = (
            primaried_by(&view, "a"),
            primaried_by(&view, "b"),
            primaried_by(&view, "c"),
        );
        let answers = vec![
            (
                "a".to_owned(),
                vec![listed(x, 30, 5_000, false), listed(y, 10, 5_000, false)],
            ),
            ("b".to_owned(), vec![listed(y, 10, 5_000, false)]),
            ("c".to_owned(), vec![listed(z, 20, 900, false)]),
        ];
        let found = combine(&view, answers, now);
        assert_eq!(
            ids(&found),
            [y, x],
            "z expired; y once though two listed it"
        );
        assert_eq!(found[0].info.handle, SessionHandle::of(&y));
    }

    #[test]
    fn the_primary_decides_when_it_answered() {
        let view = View::new(["a", "b", "c"], Mode::Backup { copies: 1 });
        let now = Timestamp::from_millis(1_000);
        let x = primaried_by(&view, "a");
        // A backup lags: it still has x live (or bound here), the primary does not list it.
        let answers = vec![
            ("a".to_owned(), vec![]),
            ("b".to_owned(), vec![listed(x, 1, 5_000, false)]),
        ];
        assert!(combine(&view, answers, now).is_empty());
        // The primary did not answer: the backup's copy is what there is.
        let answers = vec![("b".to_owned(), vec![listed(x, 1, 5_000, false)])];
        assert_eq!(ids(&combine(&view, answers, now)), [x]);
        // Without the primary, a deletion anywhere wins.
        let answers = vec![
            ("b".to_owned(), vec![listed(x, 1, 5_000, false)]),
            ("c".to_owned(), vec![listed(x, 1, 5_000, true)]),
        ];
        assert!(combine(&view, answers, now).is_empty());
        // The primary's deletion too.
        let answers = vec![
            ("a".to_owned(), vec![listed(x, 1, 5_000, true)]),
            ("b".to_owned(), vec![listed(x, 1, 5_000, false)]),
        ];
        assert!(combine(&view, answers, now).is_empty());
    }

    #[test]
    fn without_the_primary_the_latest_copy_shows() {
        let view = View::new(["a", "b", "c"], Mode::Backup { copies: 2 });
        let x = primaried_by(&view, "a");
        let mut fresh = listed(x, 1, 9_000, false);
        fresh.seen = Some(Seen::new(Timestamp::from_millis(800)).with_device("Firefox"));
        let answers = vec![
            ("b".to_owned(), vec![listed(x, 1, 5_000, false)]),
            ("c".to_owned(), vec![fresh]),
        ];
        let found = combine(&view, answers, Timestamp::from_millis(1_000));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].info.device(), Some("Firefox"));
        assert_eq!(found[0].info.expires_at, Timestamp::from_millis(9_000));
    }
}
