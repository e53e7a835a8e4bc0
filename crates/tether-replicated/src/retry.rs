//! Retrying a store call inside the store: on a transient failure (the primary unreachable or
//! gone, a node still joining, the view changing, a backup that died under a `Sync` write) the
//! call waits for the next view, or a short backoff, and tries again, until its deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tether_core::Error;
use tokio::time::Instant;

use crate::membership::Members;

/// The first pause between two attempts when the view does not change; it doubles up to
/// [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between two attempts when the view does not change.
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// How store calls are retried.
pub(crate) struct Retry {
    members: Arc<Members>,
    deadline: Duration,
}

impl Retry {
    /// Retries within `deadline` of a call's start; `Duration::ZERO` tries once.
    pub(crate) fn new(members: Arc<Members>, deadline: Duration) -> Self {
        Self { members, deadline }
    }

    /// Runs `attempt` until it succeeds, fails for good, or fails transiently past the deadline
    /// or after the node stopped (that error is the answer). No attempt starts after the
    /// deadline, so a call takes at most the deadline plus one attempt. Between two attempts it
    /// waits for the view to change, at most a backoff.
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let until = Instant::now() + self.deadline;
        let mut backoff = MIN_BACKOFF;
        loop {
            let mut views = self.members.watch();
            views.borrow_and_update();
            let error = match attempt().await {
                Err(error) if error.is_transient() => error,
                done => return done,
            };
            let now = Instant::now();
            if now >= until || self.members.is_stopped() {
                return Err(error);
            }
            tracing::debug!(node = %self.members.name(), error = %tether_core::error_chain(&error), "retrying a store call");
            self.members.counters().retried();
            let pause = backoff.min(until - now);
            // A view that changed during the attempt wakes it at once.
            let _ = tokio::time::timeout(pause, views.changed()).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
