//! Why a lab run or a soak could not go on.

use std::net::SocketAddr;

use tether_core::BoxError;

/// Why [`run`](crate::run) or [`soak`](crate::soak) stopped: a server of the deployment could
/// not be started or started again. What the simulated users see (errors, lost sessions) is
/// not an error but the report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An app server could not listen or start its thread.
    #[error("starting app server {node} on {addr}")]
    Serve {
        /// The node, `node-<i>`.
        node: String,
        /// The address it was to listen on (port 0: any free one).
        addr: SocketAddr,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },
    /// The front balancer could not take an app server as upstream.
    #[error("adding app server {node} ({addr}) to the front balancer")]
    Front {
        /// The node, `node-<i>`.
        node: String,
        /// Where it listens.
        addr: SocketAddr,
        /// What was wrong with it.
        #[source]
        source: BoxError,
    },
    /// The replication cluster of a strategy could not be started.
    #[error("starting a replication cluster of {nodes} nodes")]
    Cluster {
        /// Its size.
        nodes: usize,
        /// What tether-replicated reported.
        #[source]
        source: tether_replicated::Error,
    },
    /// A killed replication node could not be started again.
    #[error("restarting replication node node-{index}")]
    ClusterRestart {
        /// The node's index.
        index: usize,
        /// What tether-replicated reported.
        #[source]
        source: tether_replicated::Error,
    },
    /// The node `node-<i>` has no store: its replication node is not running.
    #[error("replication node node-{index} is not running")]
    ClusterNodeDown {
        /// The node's index.
        index: usize,
    },
    /// The `redis` strategy's store could not connect (the error names the URL).
    #[error("connecting the redis strategy's store")]
    Redis(#[source] tether_redis::Error),
    /// A relay of the slowed network (`--rtt`) could not be set up in front of `to`.
    #[error("relaying the lab's network to {to}")]
    Relay {
        /// What the relay was to forward to: an address or a Redis URL.
        to: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The slowed network's timer thread (`--rtt`) could not be started.
    #[error("starting the timer thread of the slowed network")]
    Timer(#[source] std::io::Error),
    /// The soak's private `redis-server` could not be started or started again.
    #[error("starting redis-server")]
    RedisServer(#[source] tether_conformance::Error),
}
