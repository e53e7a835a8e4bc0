//! Deleting expired sessions in the background, in bounded batches.

use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;

/// Most batches one [`delete_all_expired`] call runs, so one sweep ends even while sessions
/// expire faster than it deletes them; the next sweep goes on.
const MAX_BATCHES_PER_SWEEP: u32 = 1_000;

/// A store the sweeper can clean.
#[async_trait]
pub(crate) trait Sweep: Send + Sync + 'static {
    /// Deletes at most one batch of expired sessions; answers how many.
    async fn sweep_batch(&self) -> Result<u64, tether_core::Error>;
    /// The batch size.
    fn batch_size(&self) -> u64;
    /// Deletes at most one batch of events past the retention (none without events); answers
    /// how many.
    async fn trim_batch(&self) -> Result<u64, tether_core::Error>;
}

/// Batches until one comes back short, or [`MAX_BATCHES_PER_SWEEP`]; then the same for events
/// past the retention. Answers how many sessions it deleted.
pub(crate) async fn delete_all_expired(store: &impl Sweep) -> Result<u64, tether_core::Error> {
    let mut deleted = 0u64;
    for _ in 0..MAX_BATCHES_PER_SWEEP {
        let batch = store.sweep_batch().await?;
        deleted = deleted.saturating_add(batch);
        if batch < store.batch_size() {
            break;
        }
    }
    for _ in 0..MAX_BATCHES_PER_SWEEP {
        if store.trim_batch().await? < store.batch_size() {
            break;
        }
    }
    Ok(deleted)
}

/// The background task of `spawn_sweeper`: deletes expired sessions every period until it is
/// [stopped](Self::stop) or dropped.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = tether_sql::SqliteStore::in_memory().await?;
/// store.migrate().await?;
/// let sweeper = store.spawn_sweeper(Duration::from_secs(60));
/// // ... serve ...
/// sweeper.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the sweeper stops it"]
pub struct Sweeper {
    task: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub(crate) fn spawn(store: impl Sweep, period: Duration) -> Self {
        let period = period.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match delete_all_expired(&store).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::debug!(deleted, "deleted expired sessions"),
                    Err(error) => tracing::warn!(
                        error = %tether_core::error_chain(&error),
                        "deleting expired sessions failed; trying again next period"
                    ),
                }
            }
        });
        Self { task: Some(task) }
    }

    /// Stops the task and waits until it has stopped. A statement in flight is abandoned: what
    /// it deleted is committed or rolled back, never half done.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The task only ends by this abort; its outcome says nothing more.
            let _ = task.await;
        }
    }

    /// Whether the task has ended (it only ends when stopped, or when its runtime shuts down).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
