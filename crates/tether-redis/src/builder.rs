//! Building a [`RedisStore`] for a topology.

use std::time::Duration;

use std::sync::Arc;

use redis::IntoConnectionInfo as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::connection::Connection;
use crate::near_cache::NearCache;
use crate::reconnect::{Reconnecting, Source};
use crate::store::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX};
use crate::{Error, RedisStore};

/// Settings of a [`RedisStore`] before it connects. Start from [`RedisStore::builder`] (one
/// server), `RedisStore::cluster_builder` (feature `cluster`) or `RedisStore::sentinel_builder`
/// (feature `sentinel`).
///
/// URLs take the usual redis-rs forms: `redis://[user:password@]host:port[/db]`, and with the
/// `tls` feature `rediss://...`. A user and password in the URL authenticate with Redis ACLs.
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    topology: Topology,
    prefix: String,
    command_timeout: Duration,
    connect_timeout: Duration,
    #[cfg(feature = "tls")]
    root_certificate: Option<Vec<u8>>,
    near_cache: Option<(u64, Duration)>,
}

#[derive(Clone, Debug)]
enum Topology {
    Standalone(String),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
    #[cfg(feature = "sentinel")]
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl RedisStore {
    /// A builder for a store on one Redis server at `url`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Topology::Standalone(url.into()))
    }

    /// Connects to one Redis server at `url` with the default settings.
    ///
    /// # Errors
    ///
    /// See [`RedisStoreBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        Self::builder(url).connect().await
    }

    /// A builder for a store on a Redis Cluster, given some of its nodes. Commands go to the
    /// master of each key's slot, following `MOVED` and `ASK`; replicas are never read (they may
    /// lag behind the session's last write).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster_builder<U: Into<String>>(
        nodes: impl IntoIterator<Item = U>,
    ) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Topology::Cluster(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }

    /// A builder for a store on the master that the given Sentinels name `master`. After a
    /// failover the store asks the Sentinels again; requests during the failover get transient
    /// errors (503 from the layer). For credentials or TLS towards the data nodes, build a
    /// `redis::sentinel::SentinelClient` yourself and use [`RedisStore::from_sentinel_client`].
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel_builder<U: Into<String>>(
        sentinels: impl IntoIterator<Item = U>,
        master: impl Into<String>,
    ) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Topology::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master.into(),
        })
    }

    /// A store on a connection you built: a redis-rs `ConnectionManager` (which reconnects in
    /// the background), with the default prefix and command timeout.
    pub fn from_connection_manager(connection: ConnectionManager) -> Self {
        Self::new(
            Connection::Standalone(connection),
            DEFAULT_PREFIX,
            DEFAULT_COMMAND_TIMEOUT,
        )
    }

    /// A store on a Redis Cluster connection you built, with the default prefix and command
    /// timeout. Do not enable reads from replicas on it.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn from_cluster_connection(connection: redis::cluster_async::ClusterConnection) -> Self {
        Self::new(
            Connection::Cluster(connection),
            DEFAULT_PREFIX,
            DEFAULT_COMMAND_TIMEOUT,
        )
    }

    /// A store on the master of a `SentinelClient` you built (it must be of
    /// `SentinelServerType::Master`), with the default prefix and command timeout.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn from_sentinel_client(client: redis::sentinel::SentinelClient) -> Self {
        let config = connection_config(DEFAULT_COMMAND_TIMEOUT, DEFAULT_COMMAND_TIMEOUT);
        let master = Reconnecting::new(Source::Sentinel(client), config);
        Self::new(
            Connection::Reconnecting(std::sync::Arc::new(master)),
            DEFAULT_PREFIX,
            DEFAULT_COMMAND_TIMEOUT,
        )
    }
}

impl RedisStoreBuilder {
    fn new(topology: Topology) -> Self {
        Self {
            topology,
            prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_COMMAND_TIMEOUT,
            #[cfg(feature = "tls")]
            root_certificate: None,
            near_cache: None,
        }
    }

    /// Keeps up to `capacity` recently used sessions in this process, so that reading one
    /// costs no round trip (off by default). Redis keeps the copies coherent: it tells this
    /// store of every write to a session it holds (RESP3 `CLIENT TRACKING`), a write through
    /// this store updates or drops its copy before it returns, and a lost connection drops
    /// them all.
    /// A connection that goes silent stops serving copies within two heartbeats (`PING`
    /// every [`DEFAULT_NEAR_CACHE_HEARTBEAT`](crate::DEFAULT_NEAR_CACHE_HEARTBEAT)). A write on another server reaches this one's
    /// copy as fast as Redis's push does (docs/benchmarks.md measures it).
    ///
    /// One Redis server, or the master Sentinel names (every copy is dropped when the store
    /// connects to a master anew, after a failover). With Cluster the store connects without
    /// it, and says so in one warning; so does a Redis that cannot track (before 6.0, or a
    /// proxy in front of it). [`RedisStore::near_cache_stats`] counts hits, misses, invalidations and refreshes.
    pub fn with_near_cache(mut self, capacity: u64) -> Self {
        self.near_cache = Some((capacity, crate::DEFAULT_NEAR_CACHE_HEARTBEAT));
        self
    }

    /// The interval between two heartbeats of the near cache (see
    /// [`with_near_cache`](Self::with_near_cache)); has no effect without it. Kept within
    /// 10 ms to one hour: shorter would keep the connection busy with `PING`s, and a copy is
    /// served for two intervals after a heartbeat.
    pub fn with_near_cache_heartbeat(mut self, heartbeat: Duration) -> Self {
        if let Some((_, interval)) = &mut self.near_cache {
            *interval = heartbeat.clamp(Duration::from_millis(10), Duration::from_secs(3600));
        }
        self
    }

    /// Trusts the certificate authority in `pem` (instead of the webpki roots) for `rediss://`
    /// connections: for a Redis whose certificate an internal CA signed. Standalone and Cluster;
    /// for Sentinel, configure a `SentinelClient` and use [`RedisStore::from_sentinel_client`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self
    }

    /// The certificates to verify the server with, when a root certificate was given.
    #[cfg(feature = "tls")]
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.root_certificate
            .clone()
            .map(|root| redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            })
    }

    fn standalone_client(
        &self,
        url: impl redis::IntoConnectionInfo,
    ) -> Result<redis::Client, Error> {
        let config_error = |source| self.config_error(source);
        #[cfg(feature = "tls")]
        if let Some(certificates) = self.certificates() {
            return redis::Client::build_with_tls(url, certificates).map_err(config_error);
        }
        redis::Client::open(url).map_err(config_error)
    }

    /// The prefix of session keys (default `tether`): a session lives under `<prefix>:<id>`.
    /// Give each application sharing a Redis its own.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound on each store operation (default 1 s). A Redis that hangs costs a request this
    /// long at most, then a transient error (503).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The bound on establishing a connection (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects. Redis must be reachable now; later outages are survived: the store reconnects
    /// by itself and answers with transient errors meanwhile.
    ///
    /// Once connected, it reads Redis's `maxmemory-policy` (on every master of a Cluster, on the
    /// master Sentinel names) and logs one warning when that policy can evict sessions, which
    /// logs users out silently: use `noeviction` (see the crate docs on memory). The check takes
    /// one round trip, at most the command timeout, and is skipped (a debug message) when Redis
    /// refuses `CONFIG GET`; it never fails the connect.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid URL, [`Error::Connect`] when Redis cannot be reached or
    /// refuses the credentials, [`Error::ConnectTimeout`] when it does not answer in time.
    pub async fn connect(self) -> Result<RedisStore, Error> {
        let topology = self.topology.name();
        let connecting = self.open();
        let connection = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| Error::ConnectTimeout {
                topology,
                target: self.topology.target(),
                timeout: self.connect_timeout,
            })??;
        let (connection, near) = connection;
        crate::eviction::warn_if_evicting(&connection, self.command_timeout).await;
        let store = RedisStore::new(connection, &self.prefix, self.command_timeout);
        Ok(match near {
            Some(near) => {
                crate::near_cache::keep_alive(&store, &near);
                store.with_near(near)
            }
            None => store,
        })
    }

    fn config_error(&self, source: redis::RedisError) -> Error {
        Error::Config {
            target: self.topology.target(),
            source,
        }
    }

    /// The connection, and the near cache when one was asked for and the topology and the
    /// server allow it.
    async fn open(&self) -> Result<(Connection, Option<Arc<NearCache>>), Error> {
        let connection = self.open_plain().await?;
        let Some((capacity, heartbeat)) = self.near_cache else {
            return Ok((connection, None));
        };
        let near = NearCache::new(capacity, &self.prefix, heartbeat);
        let tracked = match &self.topology {
            Topology::Standalone(url) => self.open_tracked(url, &near).await,
            #[cfg(feature = "sentinel")]
            Topology::Sentinel { sentinels, master } => {
                self.open_tracked_sentinel(sentinels, master, &near).await
            }
            #[cfg(feature = "cluster")]
            Topology::Cluster(_) => {
                tracing::warn!(
                    "the near cache does not work with Redis Cluster yet; connected without it"
                );
                return Ok((connection, None));
            }
        };
        match tracked {
            Ok(tracked) => Ok((tracked, Some(near))),
            Err(error) => {
                tracing::warn!(
                    error = %tether_core::error_chain(&error),
                    "this Redis cannot track keys for a near cache (RESP3 CLIENT TRACKING, Redis 6 or later); connected without it"
                );
                Ok((connection, None))
            }
        }
    }

    /// A RESP3 connection to one server whose invalidation pushes go to `near`, once it has
    /// shown that it tracks keys. Not redis-rs's `ConnectionManager`: it hands pushes to a task
    /// of its own, so a push could be handled after the reply of a write that Redis ran after
    /// the push's write, and this store would keep a copy missing that write. A
    /// `MultiplexedConnection` runs the push handler in its reader, in order with the replies;
    /// [`Reconnecting`] makes it again after a failure.
    async fn open_tracked(&self, url: &str, near: &Arc<NearCache>) -> Result<Connection, Error> {
        let info = url
            .into_connection_info()
            .map_err(|source| self.config_error(source))?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = self.standalone_client(info.set_redis_settings(settings))?;
        let connection = Reconnecting::new(Source::Server(client), self.pushing_to(near))
            .with_target(self.topology.target());
        self.tracking(connection, near).await
    }

    /// Makes `connection`'s first connection, which turns tracking on (as every later one
    /// does); its copies in `near` are dropped whenever it connects anew.
    async fn tracking(
        &self,
        connection: Reconnecting,
        near: &Arc<NearCache>,
    ) -> Result<Connection, Error> {
        let connection = connection.with_near_cache(near);
        let connect_error = |source| Error::Connect {
            topology: connection.topology(),
            target: self.topology.target(),
            source,
        };
        connection.connection().await.map_err(connect_error)?;
        Ok(Connection::Reconnecting(Arc::new(connection)))
    }

    /// Connection settings whose pushes go to `near`. Weak: the connection must not keep the
    /// cache alive, nor the cache the connection.
    fn pushing_to(&self, near: &Arc<NearCache>) -> redis::AsyncConnectionConfig {
        let receiver = Arc::downgrade(near);
        redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.command_timeout))
            .set_connection_timeout(Some(self.connect_timeout))
            .set_push_sender(move |push| {
                if let Some(near) = receiver.upgrade() {
                    near.on_push(push);
                }
                Ok::<(), std::convert::Infallible>(())
            })
    }

    /// [`open_tracked`](Self::open_tracked) behind Sentinel: RESP3 connections to each master
    /// Sentinel names, their pushes going to `near`, which drops every copy whenever the
    /// store connects to a master anew (a failover may have lost writes the copies hold).
    #[cfg(feature = "sentinel")]
    async fn open_tracked_sentinel(
        &self,
        sentinels: &[String],
        master: &str,
        near: &Arc<NearCache>,
    ) -> Result<Connection, Error> {
        let resp3 =
            redis::RedisConnectionInfo::default().set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::sentinel::SentinelClient::build(
            sentinels.iter().map(String::as_str).collect(),
            String::from(master),
            Some(
                redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(resp3),
            ),
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(|source| self.config_error(source))?;
        let master = Reconnecting::new(Source::Sentinel(client), self.pushing_to(near))
            .with_target(master.to_owned());
        self.tracking(master, near).await
    }

    async fn open_plain(&self) -> Result<Connection, Error> {
        let topology = self.topology.name();
        let connect_error = |source| Error::Connect {
            topology,
            target: self.topology.target(),
            source,
        };

        match &self.topology {
            Topology::Standalone(url) => {
                let client = self.standalone_client(url.as_str())?;
                // ConnectionManager keeps retrying a refused login until the timeout; one plain
                // connection first reports wrong credentials as what they are.
                let probe = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.command_timeout));
                client
                    .get_multiplexed_async_connection_with_config(&probe)
                    .await
                    .map_err(connect_error)?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(self.command_timeout))
                    .set_connection_timeout(Some(self.connect_timeout));
                let manager = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(connect_error)?;
                Ok(Connection::Standalone(manager))
            }
            #[cfg(feature = "cluster")]
            Topology::Cluster(nodes) => {
                let client =
                    redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(self.connect_timeout)
                        .response_timeout(self.command_timeout)
                        .build()
                        .map_err(|source| self.config_error(source))?;
                let connection = client.get_async_connection().await.map_err(connect_error)?;
                Ok(Connection::Cluster(connection))
            }
            #[cfg(feature = "sentinel")]
            Topology::Sentinel { sentinels, master } => {
                let client = redis::sentinel::SentinelClient::build(
                    sentinels.iter().map(String::as_str).collect(),
                    master.clone(),
                    None,
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(|source| self.config_error(source))?;
                let config = connection_config(self.command_timeout, self.connect_timeout);
                let master =
                    Reconnecting::new(Source::Sentinel(client), config).with_target(master.clone());
                master.connection().await.map_err(connect_error)?;
                Ok(Connection::Reconnecting(std::sync::Arc::new(master)))
            }
        }
    }
}

#[cfg(feature = "sentinel")]
fn connection_config(response: Duration, connect: Duration) -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(response))
        .set_connection_timeout(Some(connect))
}

impl Topology {
    fn name(&self) -> &'static str {
        match self {
            Self::Standalone(_) => "standalone",
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => "cluster",
            #[cfg(feature = "sentinel")]
            Self::Sentinel { .. } => "sentinel",
        }
    }

    /// Where the store connects, for error messages: the URL or the nodes' URLs, passwords
    /// redacted, and for Sentinel the master's name.
    fn target(&self) -> String {
        match self {
            Self::Standalone(url) => crate::error::redact(url),
            #[cfg(feature = "cluster")]
            Self::Cluster(nodes) => crate::error::redact_all(nodes),
            #[cfg(feature = "sentinel")]
            Self::Sentinel { sentinels, master } => format!(
                "master {master} via sentinels {}",
                crate::error::redact_all(sentinels)
            ),
        }
    }
}
