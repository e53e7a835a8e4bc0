//! Re-replication after a view change: each held session goes to its holders under the new
//! view, which restores `copies` after a node left and fills a node that joined.

use std::collections::HashMap;
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
    pub(crate) async fn run(self) {
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
        let mut failed_targets = Vec::new();
        for (target, entries) in batches {
            let Some(peer) = self.members.peer(&target) else {
                continue;
            };
            for page in pages(entries, self.page_budget) {
                let request = Request::Push { entries: page };
                if let Err(e) = peer.request(request, self.timeout).await {
                    tracing::warn!(peer = %target, error = %e, "re-replication push failed");
                    failed_targets.push(target.clone());
                    break;
                }
            }
        }
        if failed_targets.is_empty() {
            for id in leaving {
                self.state.remove(&id);
            }
        }
    }
}
