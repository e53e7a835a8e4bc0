//! The outgoing connection to one peer: requests go out over it, responses and heartbeats come
//! back. Reconnects with backoff; a bounded queue keeps a slow peer from holding up the others.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::PeerError;
use crate::handshake;
use crate::link::{FramedPeer, Link, LinkError, encoded, receive};
use crate::wire::{Frame, Request, Response};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Reply = oneshot::Sender<Result<Response, PeerError>>;

struct Outgoing {
    body: Request,
    reply: Option<Reply>,
    /// When the caller stops waiting for the answer. A request still queued then is not sent:
    /// its caller has given up (and may have retried it elsewhere), so sending it late (after
    /// this node stood still, say) would apply a write nobody waits for any more.
    expires: Option<Instant>,
}

/// What heartbeats tell about a peer.
#[derive(Debug, Default)]
struct Health {
    last_pong: Mutex<Option<Instant>>,
    ready: AtomicBool,
    /// The last connection attempt was refused: nothing listens at the peer's address.
    refused: AtomicBool,
}

impl Health {
    fn pong(&self, ready: bool) {
        *self.last_pong.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.ready.store(ready, Ordering::Release);
    }

    /// Answered a heartbeat within `failure_timeout`, and has finished joining.
    fn is_member(&self, failure_timeout: Duration) -> bool {
        let last = *self.last_pong.lock().unwrap_or_else(|p| p.into_inner());
        self.ready.load(Ordering::Acquire) && last.is_some_and(|at| at.elapsed() < failure_timeout)
    }

    /// Answered a heartbeat within `failure_timeout`, member or not.
    fn is_alive(&self, failure_timeout: Duration) -> bool {
        let last = *self.last_pong.lock().unwrap_or_else(|p| p.into_inner());
        last.is_some_and(|at| at.elapsed() < failure_timeout)
    }

    /// Forgets the last heartbeat: neither alive nor a member until the next one.
    fn declare_dead(&self) {
        *self.last_pong.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.ready.store(false, Ordering::Release);
    }

    /// The peer announced that it leaves: not a member until it answers a heartbeat as ready
    /// again (after it has joined anew).
    fn left(&self) {
        self.ready.store(false, Ordering::Release);
    }
}

/// A handle on the connection to one peer.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    name: Arc<str>,
    tx: mpsc::Sender<Outgoing>,
    health: Arc<Health>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing").finish_non_exhaustive()
    }
}

impl Peer {
    /// Starts the connection task.
    pub(crate) fn spawn(name: String, addr: SocketAddr, link: Arc<Link>) -> Self {
        let (tx, rx) = mpsc::channel(link.queue());
        let health = Arc::new(Health::default());
        let name: Arc<str> = name.into();
        tokio::spawn(run(Arc::clone(&name), addr, rx, Arc::clone(&health), link));
        Self { name, tx, health }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Answered a heartbeat within `failure_timeout`, and has finished joining.
    pub(crate) fn is_member(&self, failure_timeout: Duration) -> bool {
        self.health.is_member(failure_timeout)
    }

    /// Answered a heartbeat within `failure_timeout`, member or not.
    pub(crate) fn is_alive(&self, failure_timeout: Duration) -> bool {
        self.health.is_alive(failure_timeout)
    }

    /// The last attempt to connect was refused: no process listens at its address (a node
    /// that died, or one that discovery still lists after it went away).
    pub(crate) fn refuses(&self) -> bool {
        self.health.refused.load(Ordering::Acquire)
    }

    /// Sends `body` and waits for the answer, at most `timeout`.
    pub(crate) async fn request(
        &self,
        body: Request,
        timeout: Duration,
    ) -> Result<Response, PeerError> {
        let (reply, answer) = oneshot::channel();
        let outgoing = Outgoing {
            body,
            reply: Some(reply),
            expires: Instant::now().checked_add(timeout),
        };
        self.tx.try_send(outgoing).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PeerError::Busy(self.name.to_string()),
            mpsc::error::TrySendError::Closed(_) => PeerError::Disconnected(self.name.to_string()),
        })?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PeerError::Disconnected(self.name.to_string())),
            Err(_) => Err(PeerError::Timeout {
                peer: self.name.to_string(),
                timeout,
            }),
        }
    }

    /// Sends `body` without waiting for an answer; false when the queue is full.
    pub(crate) fn send(&self, body: Request) -> bool {
        self.tx
            .try_send(Outgoing {
                body,
                reply: None,
                expires: None,
            })
            .is_ok()
    }

    /// Requests waiting in the queue to this peer.
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The peer announced that it leaves the cluster.
    pub(crate) fn left(&self) {
        self.health.left();
    }
}

async fn run(
    name: Arc<str>,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Outgoing>,
    health: Arc<Health>,
    link: Arc<Link>,
) {
    let mut backoff = MIN_BACKOFF;
    // The connection was just lost: the peer is suspected, and reconnecting decides.
    let mut suspected = false;
    loop {
        let attempt = connect(&name, addr, &link).await;
        let refused = matches!(&attempt, Err(LinkError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused);
        health.refused.store(refused, Ordering::Release);
        match attempt {
            Ok(transport) => {
                backoff = MIN_BACKOFF;
                suspected = false;
                tracing::debug!(peer = %name, %addr, "connected to peer");
                let connected = Instant::now();
                match serve(&name, transport, &mut rx, &health, &link).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(peer = %name, error = %e, "peer connection ended"),
                }
                // A connection that had been up a while is tried again at once: a crashed
                // process refuses it, and is declared dead now rather than at the failure
                // timeout. One that broke at once waits its backoff, so a peer that keeps
                // dropping connections is not hammered.
                if connected.elapsed() >= link.heartbeat() {
                    suspected = true;
                    continue;
                }
            }
            Err(e) => {
                if suspected {
                    suspected = false;
                    health.declare_dead();
                    link.peer_lost();
                    tracing::info!(peer = %name, %addr, error = %e, "peer declared dead: its connection was lost and reconnecting failed");
                } else {
                    tracing::debug!(peer = %name, %addr, error = %e, "cannot reach peer");
                }
            }
        }
        // While disconnected, whatever is queued fails at once instead of waiting for a timeout.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = link.cancelled() => return,
                () = &mut pause => break,
                outgoing = rx.recv() => match outgoing {
                    Some(outgoing) => fail(outgoing, &name),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn fail(outgoing: Outgoing, name: &str) {
    if let Some(reply) = outgoing.reply {
        let _ = reply.send(Err(PeerError::Disconnected(name.to_owned())));
    }
}

/// Connects and runs the client half of the handshake.
async fn connect(name: &str, addr: SocketAddr, link: &Link) -> Result<FramedPeer, LinkError> {
    if link.is_cut(name) {
        tokio::time::sleep(link.connect_timeout()).await;
        return Err(LinkError::Timeout);
    }
    let stream = tokio::time::timeout(link.connect_timeout(), TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Timeout)??;
    handshake::connect(link, stream, name).await
}

enum Waiter {
    Ping,
    Reply(Reply),
}

/// Runs an authenticated connection until it fails (`Err`) or the node stops (`Ok`).
async fn serve(
    name: &str,
    transport: FramedPeer,
    rx: &mut mpsc::Receiver<Outgoing>,
    health: &Health,
    link: &Link,
) -> Result<(), LinkError> {
    let (mut sink, mut stream) = transport.split();
    let mut pending: HashMap<u64, Waiter> = HashMap::new();
    let mut next_id = 0u64;
    let mut heartbeat = tokio::time::interval(link.heartbeat());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            () = link.cancelled() => break Ok(()),
            _ = heartbeat.tick() => {
                if link.is_cut(name) {
                    continue;
                }
                next_id += 1;
                let frame = Frame::Request { id: next_id, clock: link.clock().peek(), body: Request::Ping };
                if let Err(e) = sink.send(encoded(&frame)?).await {
                    break Err(e.into());
                }
                pending.insert(next_id, Waiter::Ping);
            }
            outgoing = rx.recv() => {
                let Some(outgoing) = outgoing else { break Ok(()) };
                if outgoing.expires.is_some_and(|at| at <= Instant::now()) {
                    link.counters().expired();
                    continue;
                }
                next_id += 1;
                if link.is_cut(name) {
                    // Lost on the way: the caller waits for an answer that never comes.
                    if let Some(reply) = outgoing.reply {
                        pending.insert(next_id, Waiter::Reply(reply));
                    }
                    continue;
                }
                let frame = Frame::Request { id: next_id, clock: link.clock().peek(), body: outgoing.body };
                let bytes = encoded(&frame)?;
                link.counters().request_sent(bytes.len());
                if let Err(e) = sink.send(bytes).await {
                    if let Some(reply) = outgoing.reply {
                        let _ = reply.send(Err(PeerError::Disconnected(name.to_owned())));
                    }
                    break Err(e.into());
                }
                if let Some(reply) = outgoing.reply {
                    pending.insert(next_id, Waiter::Reply(reply));
                }
            }
            frame = receive(&mut stream) => {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(e) => break Err(e),
                };
                let Frame::Response { id, clock, body } = frame else {
                    break Err(LinkError::Protocol("expected a response"));
                };
                if link.is_cut(name) {
                    continue;
                }
                // As on the server side: a pong counts whatever its stamp, an answer stamped
                // beyond the max drift is refused.
                let in_bound = link.observe(name, clock);
                match (pending.remove(&id), body) {
                    (Some(Waiter::Ping), Response::Pong { ready }) => health.pong(ready),
                    (Some(Waiter::Reply(reply)), _) if !in_bound => {
                        let _ = reply.send(Err(PeerError::ClockAhead(name.to_owned())));
                    }
                    (Some(Waiter::Reply(reply)), body) => { let _ = reply.send(Ok(body)); }
                    (Some(Waiter::Ping), _) | (None, _) => break Err(LinkError::Protocol("unexpected response")),
                }
            }
        }
    };
    for (_, waiter) in pending {
        if let Waiter::Reply(reply) = waiter {
            let _ = reply.send(Err(PeerError::Disconnected(name.to_owned())));
        }
    }
    result
}
