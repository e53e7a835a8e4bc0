//! Errors of starting a node, and of talking to peers.

use std::net::SocketAddr;

use crate::wire::Response;

/// Why a replication node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pre-shared key is shorter than 32 bytes.
    #[error("the peer key has {len} bytes; at least 32 are needed")]
    KeyTooShort {
        /// Its length.
        len: usize,
    },
    /// Two members share a name, or a peer has this node's name.
    #[error("node name {0:?} is used twice")]
    DuplicateName(String),
    /// A backup count of zero, or a timeout of zero.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
    /// The replication address could not be bound.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS setting could not be used: `what` says which and why.
    #[error("{what}")]
    Tls {
        /// What was wrong.
        what: &'static str,
        /// Why.
        #[source]
        source: tether_core::BoxError,
    },
    /// Peer discovery could not be set up: `what` says which part and why.
    #[error("{what}")]
    Discovery {
        /// What was wrong.
        what: &'static str,
        /// Why.
        #[source]
        source: tether_core::BoxError,
    },
    /// A certificate or key file could not be read.
    #[error("could not read {}", path.display())]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The thread or the runtime a [`LocalCluster`](crate::LocalCluster) node runs on could not
    /// be started.
    #[error("could not start a thread for node {node}")]
    Thread {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a request to a peer failed. All of these are transient for the caller.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("peer {0} is not connected")]
    Disconnected(String),
    #[error("the queue to peer {0} is full")]
    Busy(String),
    #[error("peer {peer} did not answer within {timeout:?}")]
    Timeout {
        peer: String,
        timeout: std::time::Duration,
    },
    #[error("peer {peer} could not do it: {reason}")]
    Refused { peer: String, reason: String },
    #[error("peer {0} answered with something else than asked")]
    Unexpected(String),
    #[error("peer {0} stamped its answer further ahead of this node's clock than the max drift")]
    ClockAhead(String),
}

impl PeerError {
    pub(crate) fn into_store_error(self) -> tether_core::Error {
        match self {
            Self::Timeout { timeout, .. } => tether_core::Error::Timeout(timeout),
            other => tether_core::Error::Unavailable(Box::new(other)),
        }
    }

    /// A peer's refusal: `Unavailable` when it said to retry, `Backend` otherwise.
    pub(crate) fn refused(peer: &str, transient: bool, reason: String) -> tether_core::Error {
        let error = Box::new(Self::Refused {
            peer: peer.to_owned(),
            reason,
        });
        if transient {
            tether_core::Error::Unavailable(error)
        } else {
            tether_core::Error::Backend(error)
        }
    }
}

/// The store cannot serve now, for `reason`; a retry may succeed.
pub(crate) fn unavailable(reason: &'static str) -> tether_core::Error {
    tether_core::Error::Unavailable(reason.into())
}

/// A peer answered with something else than the request calls for.
pub(crate) fn unexpected(response: &Response) -> tether_core::Error {
    tracing::warn!(?response, "unexpected answer from a primary");
    tether_core::Error::Backend(Box::new(PeerError::Unexpected("primary".into())))
}
