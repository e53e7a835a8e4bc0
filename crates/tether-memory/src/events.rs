//! The store's session events: a broadcast to the subscribers of this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream;
use tether_core::{
    Error, EventKind, EventStream, Id, Principal, SessionEvent, SessionHandle, Timestamp,
};
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it misses some.
const BUFFER: usize = 4096;

/// How often the cache's maintenance runs while someone subscribes, so expiries are reported
/// without waiting for other calls to the store.
pub(crate) const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Events {
    sender: broadcast::Sender<SessionEvent>,
    /// A maintenance task is running.
    ticking: AtomicBool,
}

impl Events {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            sender: broadcast::channel(BUFFER).0,
            ticking: AtomicBool::new(false),
        })
    }

    /// Whether anyone listens: events are only built for subscribers.
    pub(crate) fn wanted(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Reports `kind` for session `id` of `principal`, if anyone listens.
    pub(crate) fn emit(&self, kind: EventKind, id: &Id, principal: Option<&Principal>) {
        if self.wanted() {
            let event = SessionEvent::new(
                kind,
                SessionHandle::of(id),
                principal.cloned(),
                Timestamp::now(),
            );
            // No receiver left since `wanted`: nobody to tell.
            let _ = self.sender.send(event);
        }
    }

    /// A new subscriber's stream.
    pub(crate) fn subscribe(&self) -> EventStream {
        let receiver = self.sender.subscribe();
        Box::pin(stream::unfold(receiver, |mut receiver| async move {
            let item = match receiver.recv().await {
                Ok(event) => Ok(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "a session event subscriber fell behind and missed events"
                    );
                    Err(Error::EventsMissed(missed))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((item, receiver))
        }))
    }

    /// Claims the maintenance task: true for the one caller that must start it.
    pub(crate) fn start_ticking(&self) -> bool {
        !self.ticking.swap(true, Ordering::AcqRel)
    }

    /// The maintenance task stopped (nobody subscribes any more).
    pub(crate) fn stop_ticking(&self) {
        self.ticking.store(false, Ordering::Release);
    }
}
