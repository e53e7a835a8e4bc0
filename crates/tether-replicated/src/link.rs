//! What both ends of a replication connection share: identity, key, clock, limits, counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::hlc::Clock;
use crate::wire::{self, Frame};
use crate::{NodeConfig, PeerKey};

/// Bound on the handshake: a connection that does not authenticate in time is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) type Transport = Framed<TcpStream, LengthDelimitedCodec>;

/// Counters of replication traffic sent by a node. Heartbeats are not counted.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) rejected: AtomicU64,
}

impl Counters {
    pub(crate) fn sent(&self, bytes: usize, message: bool) {
        if message {
            self.messages.fetch_add(1, Ordering::Relaxed);
        }
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
}

impl Link {
    pub(crate) fn new(config: &NodeConfig, cancel: CancellationToken) -> Self {
        let tag = xxhash_rust::xxh3::xxh3_64(config.name.as_bytes());
        Self {
            name: config.name.clone(),
            key: config.key.clone(),
            clock: Clock::new(u32::try_from(tag & 0xffff_ffff).unwrap_or(0)),
            heartbeat: config.heartbeat,
            connect_timeout: config.failure_timeout,
            max_frame: config.max_frame,
            queue: config.queue,
            counters: Counters::default(),
            cancel,
        }
    }

    pub(crate) fn framed(&self, stream: TcpStream) -> Transport {
        let _ = stream.set_nodelay(true);
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(self.max_frame)
            .new_codec();
        Framed::new(stream, codec)
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

pub(crate) async fn send(transport: &mut Transport, frame: &Frame) -> Result<usize, LinkError> {
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
