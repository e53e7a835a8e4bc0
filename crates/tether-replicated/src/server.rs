//! Incoming replication connections: authenticate the peer, then answer its requests by handing
//! each to the part of the node that owns it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::Instrument as _;

use crate::NodeConfig;
use crate::handshake;
use crate::link::{Link, LinkError, LogLimit, encoded, receive};
use crate::membership::Members;
use crate::principals::Principals;
use crate::read::Reads;
use crate::state::LocalState;
use crate::transfer::{self, page_budget};
use crate::wire::{Frame, Request, Response};
use crate::write::Writes;

/// Requests of one connection handled at the same time; more wait (and the peer's queue fills).
const IN_FLIGHT: usize = 256;

/// What answers peers: the accept loop, its connections, and the dispatch of their requests
/// to the parts of the node that own them.
pub(crate) struct Server {
    link: Arc<Link>,
    members: Arc<Members>,
    reads: Arc<Reads>,
    writes: Arc<Writes>,
    principals: Arc<Principals>,
    state: Arc<LocalState>,
    max_handshakes: usize,
    page_budget: usize,
    /// A frozen node answers nothing (a test hook: a process that hangs).
    frozen: AtomicBool,
    /// Log lines about rejected connections.
    rejected_log: LogLimit,
    /// Log lines about connections refused because every handshake slot was taken.
    busy_log: LogLimit,
}

impl Server {
    pub(crate) fn new(
        config: &NodeConfig,
        link: Arc<Link>,
        members: Arc<Members>,
        reads: Arc<Reads>,
        writes: Arc<Writes>,
        principals: Arc<Principals>,
        state: Arc<LocalState>,
    ) -> Self {
        Self {
            link,
            members,
            reads,
            writes,
            principals,
            state,
            max_handshakes: config.max_handshakes,
            page_budget: page_budget(config.max_frame),
            frozen: AtomicBool::new(false),
            rejected_log: LogLimit::default(),
            busy_log: LogLimit::default(),
        }
    }

    /// Freezes or thaws the node: a frozen node keeps its connections open but answers nothing.
    #[cfg(feature = "test-util")]
    pub(crate) fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Accepts peers' connections until the node stops.
    pub(crate) async fn accept(self: Arc<Self>, listener: TcpListener) {
        let server = self;
        // A connection holds a slot from its accept until its peer has authenticated (bounded by
        // the handshake timeout); a connection arriving while every slot is taken is closed at
        // once, so unauthenticated connections cost at most this many tasks and small buffers.
        let handshakes = Arc::new(Semaphore::new(server.max_handshakes));
        loop {
            tokio::select! {
                () = server.link.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let Ok(slot) = Arc::clone(&handshakes).try_acquire_owned() else {
                            // Counted before the close, so that whoever sees it closed (on
                            // another thread) also sees it counted.
                            server.link.counters().rejected();
                            drop(stream);
                            if let Some(held_back) = server.busy_log.allow() {
                                tracing::debug!(
                                    %addr,
                                    held_back,
                                    limit = server.max_handshakes,
                                    "closed a replication connection: every handshake slot is taken"
                                );
                            }
                            continue;
                        };
                        let server = Arc::clone(&server);
                        tokio::spawn(async move {
                            if let Err(rejected) = server.connection(stream, slot).await {
                                server.link.counters().rejected();
                                if let Some(held_back) = server.rejected_log.allow() {
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
        self: &Arc<Self>,
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
    ) -> Result<(), LinkError> {
        let server = self;
        let link = &server.link;
        let (transport, peer) =
            handshake::accept(link, stream, |name| server.members.is_peer(name)).await?;
        drop(slot);
        tracing::debug!(%peer, "peer authenticated");
        let peer: Arc<str> = peer.into();

        let (mut sink, mut stream) = transport.split();
        let (responses, mut outbox) = mpsc::channel::<Frame>(IN_FLIGHT);
        let counted = Arc::clone(server);
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
            if link.is_cut(&peer) {
                continue;
            }
            // A heartbeat is answered whatever its stamp: refusing it would make this node look
            // dead to the peer, which would then serve alone; any other request stamped beyond the
            // max drift is refused, not executed, so the sender sees the problem as errors.
            let heartbeat = matches!(body, Request::Ping);
            let refused = !link.observe(&peer, clock) && !heartbeat;
            if heartbeat {
                server.members.pinged(&peer);
            }
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                break Ok(());
            };
            let server = Arc::clone(server);
            let responses = responses.clone();
            let from = Arc::clone(&peer);
            tokio::spawn(async move {
                let body = if refused {
                    Response::failed(
                        true,
                        format!(
                            "{} refused a request stamped further ahead of its clock than the max drift",
                            server.link.name()
                        ),
                    )
                } else {
                    server.handle(&from, body).await
                };
                let frame = Frame::Response {
                    id,
                    clock: server.link.clock().peek(),
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

    /// The span of a copy of the write `write` that `from` sent as its primary.
    fn copy_span(&self, from: &str, write: &crate::write_id::WriteId) -> tracing::Span {
        tracing::debug_span!("replicated.copy", node = %self.members.name(), from, %write)
    }

    /// Answers a request of the authenticated peer `from`.
    async fn handle(&self, from: &str, request: Request) -> Response {
        if self.frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        // Before answering anything, even a heartbeat: after a stall the answer says "not ready".
        self.members.notice_stall();
        match request {
            Request::Ping => Response::Pong {
                ready: self.members.is_ready(),
            },
            Request::Fetch { id } => self.reads.answer_fetch(&id),
            Request::Create { id, write, entry } => {
                let _span = self.copy_span(from, &write).entered();
                self.writes.backup_create(from, id, &write, *entry)
            }
            Request::Apply { id, delta } => {
                let _span = self.copy_span(from, &delta.write).entered();
                self.writes.backup_apply(from, &id, &delta)
            }
            Request::Delete { id, at, write } => {
                let _span = self.copy_span(from, &write).entered();
                self.writes.backup_delete(from, id, at, write)
            }
            Request::Push { entries } => {
                self.link.counters().sessions_received(entries.len());
                transfer::merge(&self.state, entries);
                Response::Done
            }
            Request::Transfer { for_node, after } => transfer::page(
                &self.state,
                &self.members.view(),
                &for_node,
                after,
                self.page_budget,
            ),
            Request::Forward { write, op } => {
                let span = tracing::debug_span!(
                    "replicated.forwarded",
                    node = %self.members.name(),
                    from,
                    %write
                );
                self.writes.answer_forward(write, op).instrument(span).await
            }
            Request::Leave => {
                self.members.peer_left(from);
                Response::Done
            }
            Request::SessionsOf { principal, after } => self.principals.answer(&principal, after),
        }
    }
}
