//! Garbage collection: expired sessions, and tombstones past their retention, are forgotten.

use std::sync::Arc;
use std::time::Duration;

use tether_core::Timestamp;

use crate::link::Link;
use crate::state::LocalState;

/// How often expired sessions and tombstones are collected.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Sweeps `state` every [`SWEEP_EVERY`] until the node stops, keeping tombstones at least
/// `tombstone_retention`.
pub(crate) async fn run(link: Arc<Link>, state: Arc<LocalState>, tombstone_retention: Duration) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = link.cancelled() => return,
            _ = tick.tick() => {}
        }
        let forgotten = state.sweep(Timestamp::now(), tombstone_retention);
        if forgotten > 0 {
            tracing::debug!(node = %link.name(), forgotten, "collected expired sessions and tombstones");
        }
    }
}
