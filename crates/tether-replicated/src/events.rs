//! Session events of one node: what happened to sessions through this node, told to the
//! subscribers of this node, in memory, at most once.
//!
//! A write is reported by the node that took the store call, once the call succeeded: that
//! node knows the outcome whichever node was the session's primary (the primary's answer says
//! whether a deletion ended a live session, and whose). An expiry is reported by the node that
//! was the session's primary at its deadline, when its sweep forgets the session (see
//! [`crate::sweep`]). Events
//! are built only while someone subscribes: with no subscriber, reporting costs one atomic
//! load.

use std::sync::Arc;

use futures_util::stream;
use tether_core::{
    Error, EventKind, EventStream, Id, Principal, SessionEvent, SessionHandle, Timestamp,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many events a subscriber may fall behind by before it misses some.
pub(crate) const BUFFER: usize = 4096;

/// The events of one node: a broadcast to its subscribers, which ends when the node stops.
pub(crate) struct Events {
    sender: broadcast::Sender<SessionEvent>,
    /// Cancelled when the node stops: every subscriber's stream then ends.
    stopped: CancellationToken,
}

impl Events {
    /// The events of a node that stops when `stopped` is cancelled.
    pub(crate) fn new(stopped: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            sender: broadcast::channel(BUFFER).0,
            stopped,
        })
    }

    /// Whether anyone subscribes: nothing is built for nobody.
    pub(crate) fn wanted(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Tells the subscribers that `kind` happened to session `id`, bound to `principal`.
    pub(crate) fn emit(&self, kind: EventKind, id: &Id, principal: Option<&Principal>) {
        if !self.wanted() {
            return;
        }
        let event = SessionEvent::new(
            kind,
            SessionHandle::of(id),
            principal.cloned(),
            Timestamp::now(),
        );
        // An error only says that the last subscriber left since `wanted`.
        let _ = self.sender.send(event);
    }

    /// A new subscriber: the events from now on. A subscriber more than [`BUFFER`] events
    /// behind gets [`Error::EventsMissed`] with how many it missed, then the events after them.
    /// The stream ends once the node has stopped, after the events reported before.
    pub(crate) fn subscribe(&self) -> EventStream {
        let receiver = self.sender.subscribe();
        let stopped = self.stopped.clone();
        Box::pin(stream::unfold(
            (receiver, stopped),
            |(mut receiver, stopped)| async move {
                let item = tokio::select! {
                    // Events already reported go out before the end.
                    biased;
                    received = receiver.recv() => match received {
                        Ok(event) => Ok(event),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "a session event subscriber fell behind and missed events");
                            Err(Error::EventsMissed(missed))
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    () = stopped.cancelled() => return None,
                };
                Some((item, (receiver, stopped)))
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    fn alice() -> Principal {
        Principal::new("alice").unwrap()
    }

    #[tokio::test]
    async fn nothing_is_built_without_a_subscriber_and_each_gets_every_event() {
        let events = Events::new(CancellationToken::new());
        let id = Id::random().unwrap();
        assert!(!events.wanted());
        events.emit(EventKind::Created, &id, None);
        let mut first = events.subscribe();
        let mut second = events.subscribe();
        assert!(events.wanted());
        events.emit(EventKind::Deleted, &id, Some(&alice()));
        for stream in [&mut first, &mut second] {
            let event = stream.next().await.unwrap().unwrap();
            assert_eq!(
                event.kind,
                EventKind::Deleted,
                "the event before is not sent"
            );
            assert_eq!(event.handle, SessionHandle::of(&id));
            assert_eq!(event.principal, Some(alice()));
        }
        drop((first, second));
        assert!(!events.wanted());
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_and_goes_on() {
        let events = Events::new(CancellationToken::new());
        let mut stream = events.subscribe();
        let ids: Vec<Id> = (0..BUFFER + 3).map(|_| Id::random().unwrap()).collect();
        for id in &ids {
            events.emit(EventKind::Created, id, None);
        }
        assert!(matches!(
            stream.next().await,
            Some(Err(Error::EventsMissed(3)))
        ));
        let next = stream.next().await.unwrap().unwrap();
        assert_eq!(next.handle, SessionHandle::of(&ids[3]));
    }

    #[tokio::test]
    async fn the_stream_ends_when_the_node_stops_after_what_was_reported() {
        let stopped = CancellationToken::new();
        let events = Events::new(stopped.clone());
        let mut stream = events.subscribe();
        let id = Id::random().unwrap();
        events.emit(EventKind::Created, &id, None);
        stopped.cancel();
        assert!(stream.next().await.unwrap().is_ok());
        assert!(stream.next().await.is_none());
    }
}
