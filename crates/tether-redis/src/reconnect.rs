//! A multiplexed connection made again after a failure: to the master Sentinel names (found
//! again after a failover), or to one server for the near cache, whose invalidation pushes must
//! be handled in the connection's reader task, in order with the replies (redis-rs's
//! `ConnectionManager` hands them to another task).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};

use crate::near_cache::NearCache;
use crate::telemetry;

/// Where a new connection comes from.
pub(crate) enum Source {
    /// One server.
    Server(redis::Client),
    /// The master a `SentinelClient` names.
    #[cfg(feature = "sentinel")]
    Sentinel(redis::sentinel::SentinelClient),
}

/// The current connection, made on first use and again after any failure that suggests it is
/// gone or the master moved (connection lost or refused, `READONLY`, `LOADING`, a timeout).
/// Requests in flight when it fails get transient errors (the layer answers 503); the next
/// request connects anew.
pub(crate) struct Reconnecting {
    source: tokio::sync::Mutex<Source>,
    topology: &'static str,
    config: AsyncConnectionConfig,
    /// What the connection goes to, for logs.
    target: Option<String>,
    /// The connection and its generation; `None` until made or after a failure.
    current: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// The near cache whose copies a new connection drops.
    near: Option<Weak<NearCache>>,
    /// Connections made so far: every one after the first replaces a lost one.
    made: AtomicU64,
}

impl Reconnecting {
    pub(crate) fn new(source: Source, config: AsyncConnectionConfig) -> Self {
        let topology = match &source {
            Source::Server(_) => "standalone",
            #[cfg(feature = "sentinel")]
            Source::Sentinel(_) => "sentinel",
        };
        Self {
            source: tokio::sync::Mutex::new(source),
            topology,
            config,
            target: None,
            current: RwLock::new(None),
            near: None,
            made: AtomicU64::new(0),
        }
    }

    /// Names what the connection goes to in logs (a Sentinel master's name).
    pub(crate) fn with_target(mut self, target: String) -> Self {
        self.target = Some(target);
        self
    }

    /// Serves `near`: every connection turns key tracking on before it is used (so every read
    /// through it is tracked), and every copy of `near` is dropped whenever a connection is
    /// made anew: it tracked nothing for this store yet, and behind Sentinel the new master
    /// (after a failover) may lack writes the copies hold.
    pub(crate) fn with_near_cache(mut self, near: &Arc<NearCache>) -> Self {
        self.near = Some(Arc::downgrade(near));
        self
    }

    pub(crate) fn topology(&self) -> &'static str {
        self.topology
    }

    /// What the connection goes to, for logs.
    fn target(&self) -> &str {
        self.target
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
        // One connection attempt at a time; whoever waited behind it uses its result.
        let mut source = self.source.lock().await;
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        let mut conn = match &mut *source {
            Source::Server(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?
            }
            #[cfg(feature = "sentinel")]
            Source::Sentinel(client) => {
                client
                    .get_async_connection_with_config(&self.config)
                    .await?
            }
        };
        if self.near.is_some() {
            track(&mut conn).await?;
        }
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        if self.made.fetch_add(1, Ordering::Relaxed) > 0 {
            telemetry::reconnected(self.topology);
        }
        *current = Some((generation, conn.clone()));
        if let Some(near) = self.near.as_ref().and_then(Weak::upgrade) {
            near.flush("a new connection to Redis");
        }
        if self.topology == "sentinel" {
            tracing::info!(master = %self.target(), "connected to the Redis master named by Sentinel");
        }
        Ok((generation, conn))
    }

    /// Drops the connection of `generation` if `error` says it is gone or the master may have
    /// moved.
    pub(crate) fn failed(&self, generation: u64, error: &RedisError) {
        if !gone_or_moved(error) {
            return;
        }
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(
                topology = self.topology,
                target = %self.target(),
                error = %error,
                "Redis connection failed; connecting again"
            );
            *current = None;
        }
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Turns on key tracking for the near cache on `conn`, without pushes for this connection's
/// own writes (the store keeps its copies coherent with those itself); fails on a Redis that
/// cannot track.
async fn track(conn: &mut MultiplexedConnection) -> RedisResult<()> {
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("NOLOOP")
        .query_async::<()>(conn)
        .await
}

fn gone_or_moved(error: &RedisError) -> bool {
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
