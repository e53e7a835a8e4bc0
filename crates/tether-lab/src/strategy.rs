//! The strategies the lab compares, and how each is set up and damaged.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_core::{BoxError, SessionStore};
use tether_memory::MemoryStore;
use tether_redis::RedisStore;
use tether_replicated::{LocalCluster, Mode, NodeConfig};
use tether_sticky::{KeyRing, Pinning, Sticky, StickyConfig, Upstream, backends, cookie::Key};

use crate::Error;
use crate::front::{Front, RoundRobin, Tagged};
use crate::network::Delays;
use crate::node::{AppNode, SESSION_COOKIE};
use crate::operator::OperatorView;
use crate::relay::Relay;

/// A way to keep sessions consistent across servers.
///
/// Reads, prints and serialises as its [`name`](Self::name): the command line, the table and
/// the JSON report all say `sticky-replicated`, say.
///
/// ```
/// use tether_lab::Strategy;
///
/// let strategy: Strategy = "sticky-replicated".parse().unwrap();
/// assert_eq!(strategy, Strategy::StickyReplicated);
/// assert_eq!(strategy.to_string(), "sticky-replicated");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Memory store on each node, round robin: the broken baseline.
    MemoryRoundrobin,
    /// Memory store on each node, sticky cookie routing.
    Sticky,
    /// Replicated store (backup, 1 copy), sticky session-id routing onto the holders.
    StickyReplicated,
    /// Replicated store, every node holds every session, round robin.
    ReplicatedAlltoall,
    /// Replicated store, primary and one backup, round robin.
    ReplicatedBackup,
    /// Redis, round robin.
    Redis,
}

impl Strategy {
    /// Every strategy, in report order.
    pub const ALL: [Self; 6] = [
        Self::MemoryRoundrobin,
        Self::Sticky,
        Self::StickyReplicated,
        Self::ReplicatedAlltoall,
        Self::ReplicatedBackup,
        Self::Redis,
    ];

    /// The strategy's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::MemoryRoundrobin => "memory-roundrobin",
            Self::Sticky => "sticky",
            Self::StickyReplicated => "sticky-replicated",
            Self::ReplicatedAlltoall => "replicated-alltoall",
            Self::ReplicatedBackup => "replicated-backup",
            Self::Redis => "redis",
        }
    }

    fn replication(self) -> Option<Mode> {
        match self {
            Self::StickyReplicated | Self::ReplicatedBackup => Some(Mode::Backup { copies: 1 }),
            Self::ReplicatedAlltoall => Some(Mode::AllToAll),
            _ => None,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = ParseStrategyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| ParseStrategyError {
                input: s.to_owned(),
            })
    }
}

impl serde::Serialize for Strategy {
    /// As its [`name`](Self::name).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A [`Strategy`] that could not be read: not one of [`Strategy::ALL`]'s names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy '{input}': expected one of {}", names(&Strategy::ALL.map(Strategy::name)))]
pub struct ParseStrategyError {
    input: String,
}

/// `a, b or c`.
pub(crate) fn names(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// One strategy's running servers.
pub(crate) struct Deployment {
    pub(crate) strategy: Strategy,
    pub(crate) nodes: Vec<AppNode>,
    pub(crate) front: Arc<Front>,
    cluster: Option<LocalCluster>,
    redis_url: Option<String>,
    /// With a slowed network: the relays between the nodes and to Redis.
    #[expect(dead_code, reason = "held for its drop, which closes the relays")]
    relays: Vec<Relay>,
}

impl Deployment {
    /// Starts `nodes` app servers (plus `spare` not yet running, for a scale-up) with the
    /// strategy's stores, and its front balancer. With `delays`, every connection between
    /// them pays the network's round trip (see [`Network`](crate::Network)).
    pub(crate) async fn start(
        strategy: Strategy,
        nodes: usize,
        spare: bool,
        redis_url: Option<&str>,
        idle_timeout: Duration,
        delays: Option<&Arc<Delays>>,
    ) -> Result<Self, Error> {
        let total = nodes + usize::from(spare);
        let relays = Mutex::new(Vec::new());
        let relay_error = Mutex::new(None);
        let cluster = match strategy.replication() {
            Some(mode) => Some(
                LocalCluster::start(total, |c| {
                    let c = c
                        .with_mode(mode)
                        .with_failure_detection(
                            Duration::from_millis(100),
                            Duration::from_millis(600),
                        )
                        .with_sync_timeout(Duration::from_millis(500));
                    match delays {
                        Some(delays) => through_relays(c, delays, &relays, &relay_error),
                        None => c,
                    }
                })
                .await
                .map_err(|source| Error::Cluster {
                    nodes: total,
                    source,
                })?,
            ),
            None => None,
        };
        if let Some(error) = lock(&relay_error).take() {
            return Err(error);
        }
        let mut relays = std::mem::take(&mut *lock(&relays));
        let redis_url = match (redis_url, delays) {
            (Some(url), Some(delays)) if strategy == Strategy::Redis => {
                let (relayed, relay) = relayed_redis_url(url, delays)?;
                relays.push(relay);
                Some(relayed)
            }
            (url, _) => url.map(str::to_owned),
        };
        let mut deployment = Self {
            strategy,
            nodes: Vec::with_capacity(total),
            front: Arc::new(Front::RoundRobin(RoundRobin::new(Vec::new()))),
            cluster,
            redis_url,
            relays,
        };
        let mut upstreams = Vec::with_capacity(total);
        for i in 0..total {
            let name = format!("node-{i}");
            let store = deployment.store_for(i).await?;
            let node = AppNode::start(
                &name,
                SocketAddr::from(([127, 0, 0, 1], 0)),
                store,
                idle_timeout,
            )?;
            let front_error = |source: BoxError| Error::Front {
                node: name.clone(),
                addr: node.addr,
                source,
            };
            let uri = format!("http://{}", node.addr)
                .parse()
                .map_err(|e: http::uri::InvalidUri| front_error(e.into()))?;
            let upstream = Upstream::new(uri, false, Duration::from_millis(300))
                .map_err(|e| front_error(e.into()))?;
            upstreams.push((name, Tagged::new(i, upstream, delays.cloned())));
            deployment.nodes.push(node);
        }
        if spare {
            deployment.kill(nodes);
        }
        deployment.front = Arc::new(front(strategy, upstreams));
        Ok(deployment)
    }

    /// The store node `index` uses: its own memory, its cluster node, or Redis.
    async fn store_for(&self, index: usize) -> Result<Arc<dyn SessionStore>, Error> {
        if let Some(cluster) = &self.cluster {
            return Ok(Arc::new(
                cluster
                    .store(index)
                    .ok_or(Error::ClusterNodeDown { index })?,
            ));
        }
        match (&self.redis_url, self.strategy) {
            (Some(url), Strategy::Redis) => Ok(Arc::new(
                RedisStore::connect(url.as_str())
                    .await
                    .map_err(Error::Redis)?,
            )),
            _ => Ok(Arc::new(MemoryStore::new())),
        }
    }

    /// Kills app server `index` (and its cluster node): like the machine dying.
    pub(crate) fn kill(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index) {
            node.kill();
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.kill(index);
        }
    }

    /// Stops server `index` gracefully, as a deploy does: the app server stops accepting, lets
    /// its requests in flight finish (bounded by a grace time) and ends, so the front sees it
    /// gone; then its replication node leaves the cluster, handing its sessions over. A memory
    /// store's sessions are gone with it; Redis keeps them.
    pub(crate) async fn stop_gracefully(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index) {
            node.stop_gracefully().await;
        }
        if let Some(cluster) = &mut self.cluster
            && let Some(handover) = cluster.leave(index).await
            && !handover.complete
        {
            eprintln!("lab: node-{index} left without handing every session over: {handover:?}");
        }
    }

    /// Freezes server `index` (and its replication node) for `duration`: their threads block,
    /// so nothing of them answers, while their sockets stay open. Returns at once; false if
    /// the server does not run.
    pub(crate) fn pause(&self, index: usize, duration: Duration) -> bool {
        let Some(node) = self.nodes.get(index).filter(|n| n.is_running()) else {
            return false;
        };
        if let Some(cluster) = &self.cluster {
            cluster.pause(index, duration);
        }
        node.pause(duration)
    }

    /// Starts server `index` again (a memory node comes back empty; a cluster node first
    /// receives its sessions).
    pub(crate) async fn restart(&mut self, index: usize) -> Result<(), Error> {
        if let Some(cluster) = &mut self.cluster {
            cluster
                .restart(index)
                .await
                .map_err(|source| Error::ClusterRestart { index, source })?;
        }
        let store = self.store_for(index).await?;
        if let Some(node) = self.nodes.get_mut(index) {
            node.restart(store)?;
        }
        Ok(())
    }

    /// What the app nodes' own metrics counted so far.
    pub(crate) fn operator_view(&self) -> OperatorView {
        OperatorView::of(&self.nodes.iter().map(|n| &n.metrics).collect::<Vec<_>>())
    }

    /// Bytes sent between replication nodes so far.
    pub(crate) fn replication_bytes(&self) -> Option<u64> {
        let cluster = self.cluster.as_ref()?;
        Some(
            (0..cluster.len())
                .filter_map(|i| cluster.node(i))
                .map(|n| n.stats().bytes_sent)
                .sum(),
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `config` with each of its peers reached through a relay of the slowed network; the relays
/// go into `relays`, a relay that could not start into `failed` (and the peer stays direct).
fn through_relays(
    config: NodeConfig,
    delays: &Arc<Delays>,
    relays: &Mutex<Vec<Relay>>,
    failed: &Mutex<Option<Error>>,
) -> NodeConfig {
    let peers: Vec<(String, SocketAddr)> = config
        .peers()
        .iter()
        .map(|(name, addr)| match Relay::start(*addr, delays) {
            Ok(relay) => {
                let through = relay.addr();
                lock(relays).push(relay);
                (name.clone(), through)
            }
            Err(source) => {
                *lock(failed) = Some(Error::Relay {
                    to: addr.to_string(),
                    source,
                });
                (name.clone(), *addr)
            }
        })
        .collect();
    config.with_peers(peers)
}

/// A Redis URL that reaches the same server through a relay of the slowed network.
fn relayed_redis_url(url: &str, delays: &Arc<Delays>) -> Result<(String, Relay), Error> {
    let relay_error = |source: std::io::Error| Error::Relay {
        to: url.to_owned(),
        source,
    };
    let invalid = |why: &str| {
        relay_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            why.to_owned(),
        ))
    };
    let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    if uri.scheme_str() != Some("redis") {
        // A TLS server's certificate names its host, not the relay's loopback address.
        return Err(invalid(
            "only redis:// URLs can be relayed, not TLS or Unix sockets",
        ));
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    let port = authority.port_u16().unwrap_or(6379);
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(authority.host(), port))
        .map_err(relay_error)?
        .next()
        .ok_or_else(|| invalid("the host has no address"))?;
    let relay = Relay::start(target, delays).map_err(relay_error)?;
    let host_port = match authority.port() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    };
    let relayed_authority = authority
        .as_str()
        .replacen(&host_port, &relay.addr().to_string(), 1);
    let relayed = url.replacen(authority.as_str(), &relayed_authority, 1);
    Ok((relayed, relay))
}

fn front(strategy: Strategy, upstreams: Vec<(String, Tagged)>) -> Front {
    let keys = KeyRing::new(Key::generate());
    let layer = StickyConfig::new(keys)
        .with_secure(false)
        .with_passive_health(1, Duration::from_millis(500));
    match strategy {
        Strategy::Sticky => Front::Sticky(Sticky::new(&layer, backends(upstreams))),
        Strategy::StickyReplicated => {
            let layer = layer
                .with_pinning(Pinning::SessionId)
                .with_session_cookie(SESSION_COOKIE);
            Front::Sticky(Sticky::new(&layer, backends(upstreams)))
        }
        _ => Front::RoundRobin(RoundRobin::new(
            upstreams.into_iter().map(|(_, u)| u).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relayed_redis_url_keeps_all_but_the_address() {
        let delays = Arc::new(
            Delays::start(crate::Network::new(
                Duration::from_millis(1),
                Duration::ZERO,
            ))
            .unwrap()
            .unwrap(),
        );
        let (url, relay) = relayed_redis_url("redis://:secret@127.0.0.1:6390/2", &delays).unwrap();
        assert_eq!(url, format!("redis://:secret@{}/2", relay.addr()));
        let (url, relay) = relayed_redis_url("redis://localhost", &delays).unwrap();
        assert_eq!(url, format!("redis://{}", relay.addr()));
        let error = relayed_redis_url("rediss://127.0.0.1:6390", &delays).unwrap_err();
        let chain = tether_core::error_chain(&error).to_string();
        assert!(chain.contains("only redis:// URLs"), "{chain}");
    }

    #[test]
    fn strategies_read_print_and_serialise_as_their_names() {
        for strategy in Strategy::ALL {
            let name = strategy.name();
            assert_eq!(name.parse::<Strategy>(), Ok(strategy));
            assert_eq!(strategy.to_string(), name);
            assert_eq!(
                serde_json::to_value(strategy).unwrap(),
                serde_json::Value::from(name)
            );
        }
        let err = "sticky+replicated".parse::<Strategy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown strategy 'sticky+replicated': expected one of memory-roundrobin, sticky, \
             sticky-replicated, replicated-alltoall, replicated-backup or redis"
        );
    }
}
