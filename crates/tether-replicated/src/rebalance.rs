//! Re-replication after a view change: each held session goes to its holders under the new
//! view, which restores `copies` after a node left and fills a node that joined.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tether_core::Id;

use crate::NodeConfig;
use crate::link::Link;
use crate::membership::Members;
use crate::state::{Entry, LocalState};
use crate::transfer::{page_budget, pages};
use crate::view::View;
use crate::wire::Request;

/// Pushes this node's sessions to their holders whenever the view changes.
pub(crate) struct Rebalance {
    link: Arc<Link>,
    members: Arc<Members>,
    state: Arc<LocalState>,
    page_budget: usize,
    timeout: Duration,
}

impl Rebalance {
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
            page_budget: page_budget(config.max_frame),
            timeout: config.sync_timeout * 4,
        }
    }

    /// After every view change, pushes each held session to its holders under the new view: the
    /// primary to its backups, and a node that no longer holds a session to its new holders,
    /// after which it forgets it. This restores `copies` after a node left and fills a node that
    /// joined.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut changes = self.members.watch();
        loop {
            tokio::select! {
                () = self.link.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            let view = changes.borrow_and_update().clone();
            // A joining node holds nothing yet by the view (it is not in it): it must keep
            // what it received, and what it held before a stall merges in harmlessly.
            if !self.members.is_serving() || !view.contains(self.members.name()) {
                continue;
            }
            self.rebalance(&view).await;
        }
    }

    async fn rebalance(&self, view: &View) {
        let me = self.members.name();
        let mut batches: HashMap<String, Vec<(Id, Entry)>> = HashMap::new();
        let mut leaving = Vec::new();
        for (id, entry) in self.state.select(|_| true) {
            let holders = view.holders(&id);
            let targets: Vec<&str> = if holders.first() == Some(&me) {
                holders.iter().skip(1).copied().collect()
            } else if !holders.contains(&me) {
                leaving.push(id);
                holders
            } else {
                continue;
            };
            for target in targets {
                batches
                    .entry(target.to_owned())
                    .or_default()
                    .push((id, entry.clone()));
            }
        }
        let failed = self.push(batches).await;
        if failed.is_empty() {
            for id in leaving {
                self.state.remove(&id);
            }
        }
    }

    /// A graceful leave: pushes the sessions this node holds under `current` (all of them, or
    /// those in `only`) to their holders under `next`, the view without this node, and keeps
    /// them (it answers for them until it stops serving). Sessions it is the primary of go to
    /// every next holder; sessions it is a backup of go only to the holders that are new, so
    /// that each has two copies the moment this node is gone, even if its primary dies right
    /// after. Such a copy may miss the primary's writes of the last moments before the view
    /// changes; the primary's own copy, pushed once the view has changed, brings them (per-key
    /// merge), and until then backups are not read. How many sessions went, and whether every
    /// peer took them.
    pub(crate) async fn hand_over(
        &self,
        current: &View,
        next: &View,
        only: Option<&HashSet<Id>>,
    ) -> (usize, bool) {
        let me = self.members.name();
        let mut batches: HashMap<String, Vec<(Id, Entry)>> = HashMap::new();
        let mut sessions = 0;
        let chosen = |id: &Id| {
            only.is_none_or(|only| only.contains(id)) && current.holders(id).contains(&me)
        };
        for (id, entry) in self.state.select(chosen) {
            sessions += 1;
            // As primary, every next holder gets this node's copy (a backup may lag under
            // `Async`); as a backup, only the holders that are new: the others have it.
            let primary = current.primary(&id) == Some(me);
            let holders = current.holders(&id);
            let targets = next
                .holders(&id)
                .into_iter()
                .filter(|h| *h != me && (primary || !holders.contains(h)));
            for target in targets {
                batches
                    .entry(target.to_owned())
                    .or_default()
                    .push((id, entry.clone()));
            }
        }
        (sessions, self.push(batches).await.is_empty())
    }

    /// Pushes each target its entries, in pages; the targets that did not take them all.
    async fn push(&self, batches: HashMap<String, Vec<(Id, Entry)>>) -> Vec<String> {
        let mut failed_targets = Vec::new();
        for (target, entries) in batches {
            let Some(peer) = self.members.peer(&target) else {
                continue;
            };
            for page in pages(entries, self.page_budget) {
                let request = Request::Push { entries: page };
                if let Err(e) = peer.request(request, self.timeout).await {
                    tracing::warn!(peer = %target, error = %e, "pushing sessions failed");
                    failed_targets.push(target.clone());
                    break;
                }
            }
        }
        failed_targets
    }
}
