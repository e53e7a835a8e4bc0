//! Graceful leave: a node that is shut down hands its sessions to the holders of the view
//! without it before it goes, so a planned restart loses nothing and answers no error.
//!
//! The order matters. The node first pushes every session it is the primary of to the holders
//! it has in the view without this node, while it still serves. Then it stops serving (its
//! store forwards, it refuses to act as a primary: writes to those sessions wait, retried) and
//! waits for the writes it was doing as a primary; it pushes the sessions those wrote again, so
//! the next holders have every write it acknowledged before any of them acts as a primary.
//! Only then does it tell its peers that it leaves, and they drop it from their views at once.
//! The sessions it is a backup of keep their primary, which copies them to their new holders
//! on that view change, as after a failure.

use std::time::Duration;

use tokio::time::Instant;

use crate::link::Link;
use crate::membership::Members;
use crate::rebalance::Rebalance;
use crate::write::Writes;

/// What a graceful [`Node::shutdown`](crate::Node::shutdown) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handover {
    /// Sessions (and tombstones) this node was the primary of, pushed to their next holders.
    /// The sessions it was a backup of are copied to their new holders by their primaries.
    pub sessions: usize,
    /// Peers that acknowledged that this node leaves.
    pub peers_told: usize,
    /// Every push was taken and every live peer acknowledged the leave within the leave
    /// timeout. When false, what was not handed over lives on in the sessions' other holders
    /// (every session has at least one more), and the peers drop this node once it is gone.
    pub complete: bool,
}

/// The parts of a node a leave goes through.
pub(crate) struct Leave<'a> {
    pub(crate) link: &'a Link,
    pub(crate) members: &'a Members,
    pub(crate) writes: &'a Writes,
    pub(crate) rebalance: &'a Rebalance,
}

impl Leave<'_> {
    /// Hands over and leaves, within `timeout`; then stops the node. A second call while the
    /// first runs waits for the node to stop and reports nothing handed over.
    pub(crate) async fn run(self, timeout: Duration) -> Handover {
        if !self.members.begin_leave() {
            self.link.cancelled().await;
            return Handover::default();
        }
        let deadline = Instant::now() + timeout;
        let mut handover = Handover {
            complete: true,
            ..Handover::default()
        };
        if self.members.is_serving() {
            let current = self.members.view();
            let next = current.without(self.members.name());
            let (sessions, taken) =
                tokio::time::timeout_at(deadline, self.rebalance.hand_over(&current, &next, None))
                    .await
                    .unwrap_or((0, false));
            handover.sessions = sessions;
            handover.complete &= taken;
            self.members.stop_serving();
            let written = self
                .writes
                .finish_writes(deadline.saturating_duration_since(Instant::now()))
                .await;
            if !written.is_empty() {
                let (_, taken) = tokio::time::timeout_at(
                    deadline,
                    self.rebalance.hand_over(&current, &next, Some(&written)),
                )
                .await
                .unwrap_or((0, false));
                handover.complete &= taken;
            }
        } else {
            self.members.stop_serving();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let live = self.members.live_peers();
        handover.peers_told = self.members.announce_leave(remaining).await;
        handover.complete &= handover.peers_told == live;
        tracing::info!(
            node = %self.members.name(),
            sessions = handover.sessions,
            peers_told = handover.peers_told,
            complete = handover.complete,
            "left the cluster"
        );
        self.link.stop();
        handover
    }
}
