//! What both ends of a replication connection share: identity, key, clock, limits, counters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::hlc::{Clock, Hlc};
use crate::wire::{self, Frame};
use crate::{NodeConfig, PeerKey};

/// Shortest interval between two log lines about the same kind of misbehaving peer.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A connection to a peer, cut into length-delimited frames.
pub(crate) type FramedPeer = Framed<PeerStream, LengthDelimitedCodec>;

/// The bytes of one replication connection: plain TCP, or TLS over it.
#[cfg(feature = "tls")]
pub(crate) type PeerStream =
    tokio_util::either::Either<TcpStream, tokio_rustls::TlsStream<TcpStream>>;
/// The bytes of one replication connection.
#[cfg(not(feature = "tls"))]
pub(crate) type PeerStream = TcpStream;

/// A plain TCP connection as a [`PeerStream`].
pub(crate) fn plain(stream: TcpStream) -> PeerStream {
    #[cfg(feature = "tls")]
    let stream = PeerStream::Left(stream);
    stream
}

/// Counters of replication traffic sent by a node, and of what it refused. Heartbeats are not
/// counted.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    messages: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    /// Frames refused for a clock beyond the max drift.
    rejected_frames: AtomicU64,
    /// Writes recognised by their write id and not applied again.
    repeated_writes: AtomicU64,
    /// Copies refused because their sender is outside this node's view.
    fenced_writes: AtomicU64,
    /// Requests not sent because their caller had stopped waiting while they were queued.
    expired: AtomicU64,
    /// Gossip packets refused: not from a holder of the cluster's key, or not gossip at all.
    rejected_gossip: AtomicU64,
    /// Store calls tried again after a transient failure.
    retries: AtomicU64,
    /// Views published: each change of the members this node counts.
    view_changes: AtomicU64,
    /// Whole sessions received from peers: state transfers, rebalancing and hand-over pushes.
    sessions_received: AtomicU64,
}

/// The values of [`Counters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) dropped: u64,
    pub(crate) rejected: u64,
    pub(crate) rejected_frames: u64,
    pub(crate) repeated_writes: u64,
    pub(crate) fenced_writes: u64,
    pub(crate) expired: u64,
    pub(crate) rejected_gossip: u64,
    pub(crate) retries: u64,
    pub(crate) view_changes: u64,
    pub(crate) sessions_received: u64,
}

impl Counters {
    /// A request frame of `bytes` went out: one message.
    pub(crate) fn request_sent(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.reply_sent(bytes);
    }

    /// A reply frame of `bytes` went out: bytes only, the request was the message.
    pub(crate) fn reply_sent(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A background (`Async`) copy was dropped because a peer's queue was full.
    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// An incoming connection was dropped (failed handshake or protocol), or closed because
    /// every handshake slot was taken.
    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame was refused for a clock beyond the max drift.
    fn rejected_frame(&self) {
        self.rejected_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// A write came again (same write id) and was not applied again.
    pub(crate) fn repeated_write(&self) {
        self.repeated_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy from a node outside this node's view was refused.
    pub(crate) fn fenced(&self) {
        self.fenced_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was not sent: its caller had stopped waiting while it was queued.
    pub(crate) fn expired(&self) {
        self.expired.fetch_add(1, Ordering::Relaxed);
    }

    /// A gossip packet was refused; returns how many have been, this one included.
    #[cfg(feature = "gossip")]
    pub(crate) fn rejected_gossip(&self) -> u64 {
        self.rejected_gossip.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A store call is tried again after a transient failure.
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The node published a new view.
    pub(crate) fn view_changed(&self) {
        self.view_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// `count` whole sessions came from a peer.
    pub(crate) fn sessions_received(&self, count: usize) {
        self.sessions_received
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Counted {
        Counted {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            rejected_frames: self.rejected_frames.load(Ordering::Relaxed),
            repeated_writes: self.repeated_writes.load(Ordering::Relaxed),
            fenced_writes: self.fenced_writes.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            rejected_gossip: self.rejected_gossip.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            view_changes: self.view_changes.load(Ordering::Relaxed),
            sessions_received: self.sessions_received.load(Ordering::Relaxed),
        }
    }
}

/// The node-wide context of every connection: who this node is, the key, the clock, the
/// connection settings, the counters, and the token that stops everything.
#[derive(Debug)]
pub(crate) struct Link {
    name: String,
    key: PeerKey,
    clock: Clock,
    heartbeat: Duration,
    connect_timeout: Duration,
    max_frame: usize,
    queue: usize,
    counters: Counters,
    cancel: CancellationToken,
    /// Certificates to speak TLS with, if the cluster does.
    #[cfg(feature = "tls")]
    tls: Option<crate::PeerTls>,
    /// Peers this node is cut off from, as by a network partition: see [`Link::is_cut`].
    #[cfg(feature = "test-util")]
    cut: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Log lines about frames stamped beyond the max clock drift.
    clock_log: LogLimit,
    /// Woken when a peer is declared dead or leaves, so the view changes at once rather than
    /// at the next heartbeat.
    peers_changed: Notify,
}

impl Link {
    pub(crate) fn new(config: &NodeConfig, cancel: CancellationToken) -> Self {
        let tag = xxhash_rust::xxh3::xxh3_64(config.name.as_bytes());
        Self {
            name: config.name.clone(),
            key: config.key.clone(),
            clock: Clock::new(
                u32::try_from(tag & 0xffff_ffff).unwrap_or(0),
                config.max_clock_drift,
            ),
            heartbeat: config.heartbeat,
            connect_timeout: config.failure_timeout,
            max_frame: config.max_frame,
            queue: config.queue,
            counters: Counters::default(),
            cancel,
            clock_log: LogLimit::default(),
            peers_changed: Notify::new(),
            #[cfg(feature = "tls")]
            tls: config.tls.clone(),
            #[cfg(feature = "test-util")]
            cut: std::sync::Mutex::default(),
        }
    }

    /// This node's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's key, for the handshake.
    pub(crate) fn key(&self) -> &PeerKey {
        &self.key
    }

    /// This node's hybrid logical clock.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Interval between heartbeats to each peer.
    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// Bound on connecting to a peer: the failure timeout.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Largest frame accepted from an authenticated peer.
    /// Whether traffic with `peer` is cut, as by a network partition that drops every packet:
    /// nothing is sent to it or taken from it, and connecting to it times out. Connections stay
    /// open, so traffic flows again once the cut is healed.
    #[cfg(feature = "test-util")]
    pub(crate) fn is_cut(&self, peer: &str) -> bool {
        self.cut
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(peer)
    }

    /// Whether traffic with `peer` is cut: never, outside tests.
    #[cfg(not(feature = "test-util"))]
    #[inline]
    pub(crate) fn is_cut(&self, _peer: &str) -> bool {
        false
    }

    /// Cuts traffic with exactly `peers` (none: healed).
    #[cfg(feature = "test-util")]
    pub(crate) fn cut_off(&self, peers: std::collections::HashSet<String>) {
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = peers;
    }

    /// The certificates to speak TLS with, if the cluster does.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(&self) -> Option<&crate::PeerTls> {
        self.tls.as_ref()
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Messages that may wait for one peer.
    pub(crate) fn queue(&self) -> usize {
        self.queue
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Completes once the node stops.
    pub(crate) fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Stops the node: every task and connection ends.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }

    /// A peer was declared dead or left: the view must be computed again now.
    pub(crate) fn peer_lost(&self) {
        self.peers_changed.notify_one();
    }

    /// Completes when a peer was declared dead or left since the last call.
    pub(crate) async fn peers_changed(&self) {
        self.peers_changed.notified().await;
    }

    /// Whether the node was stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Moves this node's clock past the timestamp of a frame from `peer`: true if it could,
    /// false (counted, and logged at most once a second) when the timestamp is further ahead of
    /// this node's wall clock than the max drift, and the frame must be refused.
    pub(crate) fn observe(&self, peer: &str, remote: Hlc) -> bool {
        let Err(refused) = self.clock.observe(remote) else {
            return true;
        };
        self.counters.rejected_frame();
        if let Some(held_back) = self.clock_log.allow() {
            tracing::warn!(
                %peer,
                ahead_ms = u64::try_from(refused.ahead.as_millis()).unwrap_or(u64::MAX),
                held_back,
                "refused a frame stamped further ahead of this node's clock than the max clock \
                 drift; check the time synchronisation of both nodes"
            );
        }
        false
    }
}

/// Lets one log line through per second and counts the ones it held back, so that a flood of
/// bad connections or frames cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    /// `Some(held_back)` when a line may be logged now, with the number of lines held back
    /// since the last one; `None` when this one is held back.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < LOG_EVERY => {
                state.1 = state.1.saturating_add(1);
                None
            }
            _ => {
                let held_back = state.1;
                *state = (Some(now), 0);
                Some(held_back)
            }
        }
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("connection closed")]
    Closed,
    #[error("I/O on the connection failed")]
    Io(#[from] std::io::Error),
    #[error("could not decode a frame")]
    Decode(#[from] wire::DecodeError),
    #[error("could not encode a frame")]
    Encode(#[from] postcard::Error),
    #[error("the peer broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("authentication failed")]
    Authentication,
    #[error("the peer took too long")]
    Timeout,
    #[cfg(feature = "tls")]
    #[error("the TLS handshake failed")]
    Tls(#[source] std::io::Error),
    #[cfg(feature = "tls")]
    #[error("the peer's certificate does not name it")]
    NotCertified,
}

pub(crate) async fn send(transport: &mut FramedPeer, frame: &Frame) -> Result<usize, LinkError> {
    let bytes = wire::encode(frame)?;
    let len = bytes.len();
    transport.send(bytes).await?;
    Ok(len)
}

pub(crate) async fn receive(
    transport: &mut (impl futures_util::Stream<Item = std::io::Result<bytes::BytesMut>> + Unpin),
) -> Result<Frame, LinkError> {
    match transport.next().await {
        Some(Ok(bytes)) => Ok(wire::decode(&bytes)?),
        Some(Err(e)) => Err(LinkError::Io(e)),
        None => Err(LinkError::Closed),
    }
}

/// Frames ready to write, as the sink wants them.
pub(crate) fn encoded(frame: &Frame) -> Result<Bytes, LinkError> {
    Ok(wire::encode(frame)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limit_lets_one_line_through_and_counts_the_others() {
        let limit = LogLimit::default();
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        limit
            .state
            .lock()
            .unwrap()
            .0
            .replace(Instant::now() - LOG_EVERY);
        assert_eq!(limit.allow(), Some(2));
    }
}
