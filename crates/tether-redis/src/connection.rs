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
    /// The master named by Sentinel, found again after a failover.
    #[cfg(feature = "sentinel")]
    Sentinel(std::sync::Arc<crate::sentinel::SentinelMaster>),
}

impl Connection {
    /// A connection to send one command on.
    pub(crate) async fn get(&self) -> RedisResult<Handle> {
        Ok(match self {
            Self::Standalone(conn) => Handle::Standalone(conn.clone()),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => Handle::Cluster(conn.clone()),
            #[cfg(feature = "sentinel")]
            Self::Sentinel(master) => {
                let (generation, conn) = master.connection().await?;
                Handle::Sentinel(std::sync::Arc::clone(master), generation, conn)
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
            #[cfg(feature = "sentinel")]
            Self::Sentinel(_) => "sentinel",
        }
    }
}

/// One checked-out connection. For Sentinel it remembers which master connection it is, so a
/// failure can drop exactly that one.
pub(crate) enum Handle {
    Standalone(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    #[cfg(feature = "sentinel")]
    Sentinel(
        std::sync::Arc<crate::sentinel::SentinelMaster>,
        u64,
        redis::aio::MultiplexedConnection,
    ),
}

impl Handle {
    /// Tells the topology that a command on this connection failed with `error`.
    pub(crate) fn failed(&self, error: &redis::RedisError) {
        #[cfg(feature = "sentinel")]
        if let Self::Sentinel(master, generation, _) = self {
            master.failed(*generation, error);
        }
        let _ = error;
    }
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "sentinel")]
            Self::Sentinel(_, _, conn) => conn.req_packed_command(cmd),
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
            #[cfg(feature = "sentinel")]
            Self::Sentinel(_, _, conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(conn) => conn.get_db(),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => conn.get_db(),
            #[cfg(feature = "sentinel")]
            Self::Sentinel(_, _, conn) => conn.get_db(),
        }
    }
}
