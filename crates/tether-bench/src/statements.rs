//! The SQL statements a stack runs: sqlx, which both PostgreSQL stacks use, reports each one it
//! sends as an event of target `sqlx::query`. A statement is one round trip on the request's
//! path; sqlx's pool adds pings it does not report (on taking a connection back, and before
//! handing one out where `test_before_acquire` is on), which this does not count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Dispatch;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// Counts the statements run under its [`dispatch`](Self::dispatch).
pub(crate) struct StatementCount {
    count: Arc<AtomicU64>,
    dispatch: Dispatch,
}

impl StatementCount {
    pub(crate) fn new() -> Self {
        let count = Arc::new(AtomicU64::new(0));
        let dispatch =
            Dispatch::new(tracing_subscriber::registry().with(Counting(Arc::clone(&count))));
        Self { count, dispatch }
    }

    /// The dispatcher to run the counted work under (`WithSubscriber::with_subscriber`).
    pub(crate) fn dispatch(&self) -> Dispatch {
        self.dispatch.clone()
    }

    /// Statements run so far.
    pub(crate) fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

struct Counting(Arc<AtomicU64>);

impl<S: tracing::Subscriber> Layer<S> for Counting {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}
