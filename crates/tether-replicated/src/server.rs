//! Incoming replication connections: authenticate the peer, then answer its requests.

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::handshake;
use crate::link::{LinkError, LogLimit, encoded, receive};
use crate::node::Shared;
use crate::wire::{Frame, Request, Response};

/// Requests of one connection handled at the same time; more wait (and the peer's queue fills).
const IN_FLIGHT: usize = 256;

pub(crate) async fn accept(listener: TcpListener, node: Arc<Shared>) {
    // A connection holds a slot from its accept until its peer has authenticated (bounded by
    // the handshake timeout); a connection arriving while every slot is taken is closed at
    // once, so unauthenticated connections cost at most this many tasks and small buffers.
    let handshakes = Arc::new(Semaphore::new(node.config.max_handshakes));
    // Log lines about connections refused because every handshake slot was taken, and about
    // rejected connections.
    let busy_log = LogLimit::default();
    let rejected_log = Arc::new(LogLimit::default());
    loop {
        tokio::select! {
            () = node.link.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let Ok(slot) = Arc::clone(&handshakes).try_acquire_owned() else {
                        drop(stream);
                        node.link.counters().rejected();
                        if let Some(held_back) = busy_log.allow() {
                            tracing::debug!(
                                %addr,
                                held_back,
                                limit = node.config.max_handshakes,
                                "closed a replication connection: every handshake slot is taken"
                            );
                        }
                        continue;
                    };
                    let node = Arc::clone(&node);
                    let rejected_log = Arc::clone(&rejected_log);
                    tokio::spawn(async move {
                        if let Err(rejected) = connection(stream, &node, slot).await {
                            node.link.counters().rejected();
                            if let Some(held_back) = rejected_log.allow() {
                                tracing::warn!(%addr, error = %rejected, held_back, "dropped a replication connection");
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a replication connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves one connection. `Err` when the peer was rejected: it failed the handshake (whatever
/// the reason: garbage, an oversized frame, another protocol version, a wrong key, an unknown
/// name, silence) or broke the protocol after it. A connection that merely closes is `Ok`.
/// `slot` is its handshake slot, given back once the peer has authenticated.
async fn connection(
    stream: TcpStream,
    node: &Arc<Shared>,
    slot: OwnedSemaphorePermit,
) -> Result<(), LinkError> {
    let link = &node.link;
    let (transport, peer) = handshake::accept(link, stream, |name| node.is_peer(name)).await?;
    drop(slot);
    tracing::debug!(%peer, "peer authenticated");

    let (mut sink, mut stream) = transport.split();
    let (responses, mut outbox) = mpsc::channel::<Frame>(IN_FLIGHT);
    let counted = Arc::clone(node);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            let Ok(bytes) = encoded(&frame) else { continue };
            let heartbeat = matches!(
                frame,
                Frame::Response {
                    body: Response::Pong { .. },
                    ..
                }
            );
            if !heartbeat {
                counted.link.counters().reply_sent(bytes.len());
            }
            if sink.send(bytes).await.is_err() {
                return;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let result = loop {
        let frame = tokio::select! {
            () = link.cancelled() => break Ok(()),
            frame = receive(&mut stream) => frame,
        };
        let (id, clock, body) = match frame {
            Ok(Frame::Request { id, clock, body }) => (id, clock, body),
            Ok(_) => break Err(LinkError::Protocol("expected a request")),
            Err(LinkError::Closed) => break Ok(()),
            Err(LinkError::Io(e)) if e.kind() != std::io::ErrorKind::InvalidData => {
                tracing::debug!(%peer, error = %e, "replication connection lost");
                break Ok(());
            }
            Err(e) => break Err(e),
        };
        // A heartbeat is answered whatever its stamp: refusing it would make this node look
        // dead to the peer, which would then serve alone; any other request stamped beyond the
        // max drift is refused, not executed, so the sender sees the problem as errors.
        let heartbeat = matches!(body, Request::Ping);
        let refused = !link.observe(&peer, clock) && !heartbeat;
        if heartbeat {
            node.pinged(&peer);
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break Ok(());
        };
        let node = Arc::clone(node);
        let responses = responses.clone();
        tokio::spawn(async move {
            let body = if refused {
                failed(
                    true,
                    format!(
                        "{} refused a request stamped further ahead of its clock than the max drift",
                        node.name()
                    ),
                )
            } else {
                node.handle(body).await
            };
            let frame = Frame::Response {
                id,
                clock: node.link.clock().peek(),
                body,
            };
            let _ = responses.send(frame).await;
            drop(permit);
        });
    };
    drop(responses);
    writer.abort();
    result
}

/// A response saying the request could not be served.
pub(crate) fn failed(transient: bool, reason: impl Into<String>) -> Response {
    Response::Failed {
        transient,
        reason: reason.into(),
    }
}
