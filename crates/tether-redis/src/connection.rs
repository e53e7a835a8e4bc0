//! The connection to Redis, whatever the topology: one multiplexed connection, cloned per call.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A cheap-to-clone handle on the connection of one topology.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server, reconnected in the background by redis-rs's `ConnectionManager`.
    Standalone(ConnectionManager),
    /// Redis Cluster: commands go to the master owning the key's slot.
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    /// One multiplexed connection made again after a failure: the master named by Sentinel
    /// (found again after a failover), or one server with the near cache.
    Reconnecting(std::sync::Arc<crate::reconnect::Reconnecting>),
}

impl Connection {
    /// A connection to send one command on.
    pub(crate) async fn get(&self) -> RedisResult<Handle> {
        Ok(match self {
            Self::Standalone(conn) => Handle::Standalone(conn.clone()),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => Handle::Cluster(conn.clone()),
            Self::Reconnecting(source) => {
                let (generation, conn) = source.connection().await?;
                Handle::Reconnecting(std::sync::Arc::clone(source), generation, conn)
            }
        })
    }

    /// Whether keys live on many masters, so one script cannot reach every key.
    pub(crate) fn is_cluster(&self) -> bool {
        match self {
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => true,
            _ => false,
        }
    }

    pub(crate) fn topology(&self) -> &'static str {
        match self {
            Self::Standalone(_) => "standalone",
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => "cluster",
            Self::Reconnecting(source) => source.topology(),
        }
    }
}

/// One checked-out connection. A reconnecting one remembers which connection it is, so a
/// failure can drop exactly that one.
pub(crate) enum Handle {
    Standalone(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    Reconnecting(
        std::sync::Arc<crate::reconnect::Reconnecting>,
        u64,
        redis::aio::MultiplexedConnection,
    ),
}

impl Handle {
    /// Tells the topology that a command on this connection failed with `error`.
    pub(crate) fn failed(&self, error: &redis::RedisError) {
        if let Self::Reconnecting(source, generation, _) = self {
            source.failed(*generation, error);
        }
    }
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => conn.req_packed_command(cmd),
            Self::Reconnecting(_, _, conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Reconnecting(_, _, conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(conn) => conn.get_db(),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => conn.get_db(),
            Self::Reconnecting(_, _, conn) => conn.get_db(),
        }
    }
}
