//! The strategies the lab compares, and how each is set up and damaged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_core::SessionStore;
use tether_memory::MemoryStore;
use tether_redis::RedisStore;
use tether_replicated::{LocalCluster, Mode};
use tether_sticky::{KeyRing, Pinning, Sticky, StickyConfig, Upstream, backends, cookie::Key};

use crate::front::{Front, RoundRobin};
use crate::node::{AppNode, SESSION_COOKIE};

use tether_core::BoxError;

/// A way to keep sessions consistent across servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
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
            Self::StickyReplicated => "sticky+replicated",
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

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|st| st.name()).collect();
                format!(
                    "unknown strategy {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One strategy's running servers.
pub(crate) struct Deployment {
    pub(crate) strategy: Strategy,
    pub(crate) nodes: Vec<AppNode>,
    pub(crate) front: Arc<Front>,
    cluster: Option<LocalCluster>,
    redis_url: Option<String>,
}

impl Deployment {
    /// Starts `nodes` app servers (plus `spare` not yet running, for a scale-up) with the
    /// strategy's stores, and its front balancer.
    pub(crate) async fn start(
        strategy: Strategy,
        nodes: usize,
        spare: bool,
        redis_url: Option<&str>,
        idle_timeout: Duration,
    ) -> Result<Self, BoxError> {
        let total = nodes + usize::from(spare);
        let cluster = match strategy.replication() {
            Some(mode) => Some(
                LocalCluster::start(total, |c| {
                    c.with_mode(mode)
                        .with_failure_detection(
                            Duration::from_millis(100),
                            Duration::from_millis(600),
                        )
                        .with_sync_timeout(Duration::from_millis(500))
                })
                .await?,
            ),
            None => None,
        };
        let mut deployment = Self {
            strategy,
            nodes: Vec::with_capacity(total),
            front: Arc::new(Front::RoundRobin(RoundRobin::new(Vec::new()))),
            cluster,
            redis_url: redis_url.map(str::to_owned),
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
            let uri = format!("http://{}", node.addr).parse()?;
            upstreams.push((name, Upstream::new(uri, false, Duration::from_millis(300))?));
            deployment.nodes.push(node);
        }
        if spare {
            deployment.kill(nodes);
        }
        deployment.front = Arc::new(front(strategy, upstreams));
        Ok(deployment)
    }

    /// The store node `index` uses: its own memory, its cluster node, or Redis.
    async fn store_for(&self, index: usize) -> Result<Arc<dyn SessionStore>, BoxError> {
        if let Some(cluster) = &self.cluster {
            return Ok(Arc::new(
                cluster.store(index).ok_or("cluster node not running")?,
            ));
        }
        match (&self.redis_url, self.strategy) {
            (Some(url), Strategy::Redis) => Ok(Arc::new(RedisStore::connect(url.as_str()).await?)),
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

    /// Starts server `index` again (a memory node comes back empty; a cluster node first
    /// receives its sessions).
    pub(crate) async fn restart(&mut self, index: usize) -> Result<(), BoxError> {
        if let Some(cluster) = &mut self.cluster {
            cluster.restart(index).await?;
        }
        let store = self.store_for(index).await?;
        if let Some(node) = self.nodes.get_mut(index) {
            node.restart(store)?;
        }
        Ok(())
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

fn front(strategy: Strategy, upstreams: Vec<(String, Upstream)>) -> Front {
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
