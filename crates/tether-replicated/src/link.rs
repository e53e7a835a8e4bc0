//! What both ends of a replication connection share: identity, key, clock, limits, counters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::hlc::{Clock, Hlc};
use crate::wire::{self, Frame};
use crate::{NodeConfig, PeerKey};

/// Bound on the handshake: a connection that does not authenticate in time is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest frame accepted before the peer has authenticated. The handshake frames are small:
/// a challenge is 34 bytes, a welcome 35 or 36 plus the server's name, a hello 67 or 68 plus
/// the client's name, so at most 323 bytes with a name of [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)
/// bytes (measured in the wire tests), which leaves a third of margin.
/// Until a connection is authenticated, a longer length prefix is refused before anything is
/// buffered: with the configured max frame (16 MiB by default) instead, every unauthenticated
/// connection could make the node buffer a whole frame.
pub(crate) const HANDSHAKE_MAX_FRAME: usize = 512;

/// Shortest interval between two log lines about the same kind of misbehaving peer.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A connection to a peer, cut into length-delimited frames.
pub(crate) type FramedPeer = Framed<TcpStream, LengthDelimitedCodec>;

/// Counters of replication traffic sent by a node. Heartbeats are not counted.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// Frames refused for a clock beyond the max drift.
    pub(crate) rejected_frames: AtomicU64,
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
}

/// The node-wide context of every connection.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) name: String,
    pub(crate) key: PeerKey,
    pub(crate) clock: Clock,
    pub(crate) heartbeat: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_frame: usize,
    pub(crate) queue: usize,
    pub(crate) counters: Counters,
    pub(crate) cancel: CancellationToken,
    /// Log lines about rejected connections.
    pub(crate) rejected_log: LogLimit,
    /// Log lines about connections refused because every handshake slot was taken.
    pub(crate) busy_log: LogLimit,
    /// Log lines about frames stamped beyond the max clock drift.
    pub(crate) clock_log: LogLimit,
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
            rejected_log: LogLimit::default(),
            busy_log: LogLimit::default(),
            clock_log: LogLimit::default(),
        }
    }

    /// Moves this node's clock past the timestamp of a frame from `peer`: true if it could,
    /// false (counted, and logged at most once a second) when the timestamp is further ahead of
    /// this node's wall clock than the max drift, and the frame must be refused.
    pub(crate) fn observe(&self, peer: &str, remote: Hlc) -> bool {
        let Err(refused) = self.clock.observe(remote) else {
            return true;
        };
        self.counters
            .rejected_frames
            .fetch_add(1, Ordering::Relaxed);
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

    /// A new connection, not authenticated yet: it accepts only frames up to
    /// [`HANDSHAKE_MAX_FRAME`] until [`Link::authenticated`].
    pub(crate) fn framed(&self, stream: TcpStream) -> FramedPeer {
        let _ = stream.set_nodelay(true);
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(HANDSHAKE_MAX_FRAME)
            .new_codec();
        Framed::new(stream, codec)
    }

    /// Raises the frame limit of a connection whose peer has authenticated to the configured
    /// max frame.
    pub(crate) fn authenticated(&self, transport: &mut FramedPeer) {
        transport.codec_mut().set_max_frame_length(self.max_frame);
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
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    use super::*;
    use crate::PeerKey;

    fn link(max_frame: usize) -> Link {
        let key = PeerKey::new([3u8; 32]).unwrap();
        let config =
            NodeConfig::new("a", ([127, 0, 0, 1], 0).into(), key).with_max_frame(max_frame);
        Link::new(&config, CancellationToken::new())
    }

    /// The server end of a loopback connection, framed, and the raw client end.
    async fn pair(link: &Link) -> (FramedPeer, TcpStream) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (link.framed(server), client)
    }

    /// A peer that announces a 16 MiB frame and then dribbles: before authentication the length
    /// prefix alone is refused, and nothing near the announced length was reserved (the codec
    /// reserves the whole announced frame once it accepts a length).
    #[tokio::test]
    async fn before_authentication_a_long_frame_is_refused_at_its_prefix() {
        let link = link(16 << 20);
        let (mut server, mut client) = pair(&link).await;
        client
            .write_all(&((16u32 << 20) - 1).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[0; 3]).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), server.next())
            .await
            .expect("the prefix alone decides");
        assert!(
            matches!(read, Some(Err(ref e)) if e.kind() == std::io::ErrorKind::InvalidData),
            "{read:?}"
        );
        let reserved = server.read_buffer().capacity();
        assert!(reserved < 64 << 10, "{reserved} bytes reserved");
    }

    #[tokio::test]
    async fn after_authentication_the_configured_max_frame_applies() {
        let link = link(1 << 20);
        let (mut server, client) = pair(&link).await;
        let mut client = Framed::new(client, LengthDelimitedCodec::new());
        client
            .send(Bytes::from(vec![1u8; HANDSHAKE_MAX_FRAME]))
            .await
            .unwrap();
        let first = server.next().await.unwrap().unwrap();
        assert_eq!(
            first.len(),
            HANDSHAKE_MAX_FRAME,
            "a handshake-sized frame passes"
        );
        link.authenticated(&mut server);
        client.send(Bytes::from(vec![2u8; 1 << 20])).await.unwrap();
        let second = server.next().await.unwrap().unwrap();
        assert_eq!(second.len(), 1 << 20);
        client
            .send(Bytes::from(vec![3u8; (1 << 20) + 1]))
            .await
            .unwrap();
        assert!(
            matches!(server.next().await, Some(Err(_))),
            "max frame still holds"
        );
    }

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
