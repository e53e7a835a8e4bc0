//! The proxy's backends as a discovery the router follows: the configured ones at start, then
//! what each reload adds, changes or removes.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tower::discover::Change;

/// The sending side: a reload sends one change per backend it adds, changes or removes.
pub(crate) type Updates<S> = UnboundedSender<Change<String, S>>;

/// A [`Discover`](tower::discover::Discover) of the changes sent to its [`Updates`].
#[derive(Debug)]
pub(crate) struct BackendUpdates<S> {
    changes: UnboundedReceiver<Change<String, S>>,
}

/// A channel of backend changes: send the first set before the router is first made ready.
pub(crate) fn backend_updates<S>() -> (Updates<S>, BackendUpdates<S>) {
    let (updates, changes) = unbounded_channel();
    (updates, BackendUpdates { changes })
}

impl<S> futures_core::Stream for BackendUpdates<S> {
    type Item = Result<Change<String, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.changes.poll_recv(cx).map(|change| change.map(Ok))
    }
}
