//! Redis Sentinel: the master's connection, found again after a failover.

use std::sync::{Arc, RwLock, Weak};

use redis::aio::MultiplexedConnection;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};

use crate::near_cache::NearCache;

/// The current master connection, resolved through Sentinel on first use and again after any
/// failure that suggests the master moved (connection lost or refused, `READONLY`, `LOADING`,
/// a timeout). Requests in flight during a failover fail as transient errors (the layer
/// answers 503); the next request asks Sentinel for the new master.
pub(crate) struct SentinelMaster {
    client: tokio::sync::Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
    /// The master's name for logs, when known (a `SentinelClient` does not tell it).
    master: Option<String>,
    /// The connection and its generation; `None` until resolved or after a failure.
    current: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// The near cache whose copies a new master connection drops.
    near: Option<Weak<NearCache>>,
}

impl SentinelMaster {
    pub(crate) fn new(client: SentinelClient, config: AsyncConnectionConfig) -> Self {
        Self {
            client: tokio::sync::Mutex::new(client),
            config,
            master: None,
            current: RwLock::new(None),
            near: None,
        }
    }

    /// Names the master in logs.
    pub(crate) fn with_master_name(mut self, master: String) -> Self {
        self.master = Some(master);
        self
    }

    /// Drops every copy of `near` whenever a master connection is made anew: the new master
    /// (after a failover) may lack writes the copies hold, and tracked nothing for this store.
    pub(crate) fn with_near_cache(mut self, near: &Arc<NearCache>) -> Self {
        self.near = Some(Arc::downgrade(near));
        self
    }

    /// The master's name for logs.
    fn master_name(&self) -> &str {
        self.master
            .as_deref()
            .unwrap_or("(named by the given SentinelClient)")
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        // One resolution at a time; whoever waited behind it uses its result.
        let mut client = self.client.lock().await;
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        let conn = client
            .get_async_connection_with_config(&self.config)
            .await?;
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *current = Some((generation, conn.clone()));
        if let Some(near) = self.near.as_ref().and_then(Weak::upgrade) {
            near.flush("a new connection to the Redis master named by Sentinel");
        }
        tracing::info!(master = %self.master_name(), "connected to the Redis master named by Sentinel");
        Ok((generation, conn))
    }

    /// Drops the connection of `generation` if `error` says the master may have moved.
    pub(crate) fn failed(&self, generation: u64, error: &RedisError) {
        if !master_may_have_moved(error) {
            return;
        }
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(
                master = %self.master_name(),
                error = %error,
                "Redis master connection failed; asking Sentinel again"
            );
            *current = None;
        }
    }
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn master_may_have_moved(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
            )
        )
}
