//! The read path: a session's primary reads it locally (in `AllToAll` every member does), any
//! other node asks the holders, primary first; the holders' side, answering a `Fetch`, is here
//! too.

use std::sync::Arc;
use std::time::Duration;

use tether_core::{Error, Id, Record, Timestamp};

use crate::error::{PeerError, unavailable, unexpected};
use crate::membership::Members;
use crate::retry::Retry;
use crate::state::LocalState;
use crate::wire::{Request, Response};
use crate::{Mode, NodeConfig};

/// Where reads are answered.
pub(crate) struct Reads {
    members: Arc<Members>,
    state: Arc<LocalState>,
    sync_timeout: Duration,
    retry: Retry,
    /// In `AllToAll` every member reads its own copy; in `Backup` only the primary does.
    mode: Mode,
}

impl Reads {
    pub(crate) fn new(config: &NodeConfig, members: Arc<Members>, state: Arc<LocalState>) -> Self {
        Self {
            retry: Retry::new(Arc::clone(&members), config.retry_deadline),
            members,
            state,
            sync_timeout: config.sync_timeout,
            mode: config.mode,
        }
    }

    /// The live session `id`, from this node if it holds the session and serves, from another
    /// holder otherwise; tried again after a transient failure until the retry deadline.
    pub(crate) async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.retry.run(|| self.load_once(id)).await
    }

    /// One attempt of [`Reads::load`].
    async fn load_once(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.members.notice_stall();
        let view = self.members.routing_view().await;
        let now = Timestamp::now();
        let holders = view.holders(id);
        if holders.is_empty() {
            // Nobody to ask, not even itself: "no such session" would start a new one.
            return Err(unavailable("no live member in the cluster view"));
        }
        let me = self.members.name();
        // A node that is joining, or noticed a stall, has copies that may be stale. So may a
        // backup's: while a node joins or leaves, the primary's view and this node's can
        // disagree for a heartbeat on who the backups are, and the primary's writes go to the
        // backups of its view. The primary's copy has every acknowledged write.
        let reads_locally = match self.mode {
            Mode::AllToAll => holders.contains(&me),
            Mode::Backup { .. } => holders.first() == Some(&me),
        };
        if self.members.is_serving() && reads_locally {
            return Ok(self.state.record(id, now));
        }
        let mut last_error = None;
        for holder in holders.into_iter().filter(|h| *h != me) {
            let Some(peer) = self.members.peer(holder) else {
                continue;
            };
            match peer
                .request(Request::Fetch { id: *id }, self.sync_timeout)
                .await
            {
                Ok(Response::Entry(entry)) => {
                    return Ok(entry.filter(|e| e.is_live(now)).map(|e| e.record(*id)));
                }
                Ok(Response::Failed { transient, reason }) => {
                    last_error = Some(PeerError::refused(holder, transient, reason));
                }
                Ok(other) => last_error = Some(unexpected(&other)),
                Err(e) => last_error = Some(e.into_store_error()),
            }
        }
        // Nobody asked: the only holder is this node, and it is not serving.
        Err(last_error.unwrap_or_else(|| unavailable("this node is joining the cluster")))
    }

    /// The answer to a peer's `Fetch`: this node's copy, unless it is still joining (its copy
    /// may still miss writes: the reader asks another holder).
    pub(crate) fn answer_fetch(&self, id: &Id) -> Response {
        if !self.members.is_serving() {
            return Response::failed(true, format!("{} is still joining", self.members.name()));
        }
        Response::Entry(self.state.entry(id).map(Box::new))
    }
}
