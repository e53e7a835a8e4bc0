//! A cluster of nodes in one process, on loopback ports: for tests, benchmarks, examples.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::{Error, Node, NodeConfig, PeerKey, ReplicatedStore};

/// Several [`Node`]s in this process, each on its own loopback port, all peers of each other.
/// Nodes can be killed and restarted (same name, same address) to exercise failures for real:
/// their connections close and the others detect it by heartbeats.
///
/// Needs the `test-util` feature: production nodes are [`Node`]s of their own servers.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_replicated::{LocalCluster, Mode};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), tether_replicated::Error> {
/// let mut cluster = LocalCluster::start(3, |c| c.with_mode(Mode::Backup { copies: 1 })).await?;
/// cluster.kill(2);
/// assert!(cluster.node(2).is_none());
/// cluster.restart(2).await?;
/// // Every running node lists the three again.
/// assert!(cluster.settle(Duration::from_secs(10)).await);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalCluster {
    configs: Vec<NodeConfig>,
    nodes: Vec<Option<Node>>,
}

impl LocalCluster {
    /// Starts `size` nodes named `node-0`, `node-1`, ... with a random key, each config passed
    /// through `configure` (mode, acknowledgements, timeouts).
    ///
    /// # Errors
    ///
    /// When a port cannot be bound or a configuration is invalid.
    pub async fn start(
        size: usize,
        configure: impl Fn(NodeConfig) -> NodeConfig,
    ) -> Result<Self, Error> {
        let mut key = [0u8; 32];
        let _ = getrandom::fill(&mut key);
        let key = PeerKey::new(key)?;
        let mut listeners = Vec::with_capacity(size);
        for _ in 0..size {
            let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            listeners.push(listener);
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Bind {
                addr: ([127, 0, 0, 1], 0).into(),
                source,
            })?;
        let members: Vec<(String, SocketAddr)> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| (format!("node-{i}"), *addr))
            .collect();
        let configs: Vec<NodeConfig> = members
            .iter()
            .map(|(name, addr)| {
                let peers = members.iter().filter(|(other, _)| other != name);
                let config = peers.fold(
                    NodeConfig::new(name.clone(), *addr, key.clone()),
                    |c, (n, a)| c.with_peer(n.clone(), *a),
                );
                configure(config)
            })
            .collect();
        let starts = configs
            .iter()
            .cloned()
            .zip(listeners)
            .map(|(config, listener)| Node::start_with_listener(config, listener));
        let nodes = futures_util::future::try_join_all(starts).await?;
        let cluster = Self {
            configs,
            nodes: nodes.into_iter().map(Some).collect(),
        };
        let patience = cluster
            .configs
            .first()
            .map_or(Duration::from_secs(5), |c| c.failure_timeout * 5);
        cluster.settle(patience).await;
        Ok(cluster)
    }

    /// The number of nodes, running or not.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `index`, if it runs.
    pub fn node(&self, index: usize) -> Option<&Node> {
        self.nodes.get(index).and_then(Option::as_ref)
    }

    /// The store of node `index`, if it runs.
    pub fn store(&self, index: usize) -> Option<ReplicatedStore> {
        self.node(index).map(Node::store)
    }

    /// The configuration node `index` was started with.
    pub fn config(&self, index: usize) -> Option<&NodeConfig> {
        self.configs.get(index)
    }

    /// Kills node `index`: its tasks stop and its connections close at once.
    pub fn kill(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index).and_then(Option::take) {
            node.abort();
        }
    }

    /// Shuts node `index` down gracefully ([`Node::shutdown`]): it hands its sessions over and
    /// leaves; what it handed over, or `None` if it was not running. Its store keeps
    /// forwarding until the node has stopped.
    pub async fn leave(&mut self, index: usize) -> Option<crate::Handover> {
        let node = self.nodes.get_mut(index).and_then(Option::take)?;
        Some(node.shutdown().await)
    }

    /// Starts node `index` again on its old address; returns once it has received its sessions
    /// and joined. The address may take a moment to be free again, so binding is retried for up
    /// to five seconds.
    ///
    /// # Errors
    ///
    /// When the address stays taken.
    pub async fn restart(&mut self, index: usize) -> Result<(), Error> {
        self.kill(index);
        let Some(config) = self.configs.get(index).cloned() else {
            return Err(Error::InvalidSetting("no such node"));
        };
        let started = tokio::time::Instant::now();
        let listener = loop {
            match TcpListener::bind(config.listen).await {
                Ok(listener) => break listener,
                Err(source) if started.elapsed() > Duration::from_secs(5) => {
                    return Err(Error::Bind {
                        addr: config.listen,
                        source,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let patience = config.failure_timeout * 5;
        let node = Node::start_with_listener(config, listener).await?;
        if let Some(slot) = self.nodes.get_mut(index) {
            *slot = Some(node);
        }
        self.settle(patience).await;
        Ok(())
    }

    /// Waits until every running node's view lists exactly the running nodes, at most `within`;
    /// false if they did not agree by then.
    pub async fn settle(&self, within: Duration) -> bool {
        let running: Vec<&str> = self.nodes.iter().flatten().map(Node::name).collect();
        let started = tokio::time::Instant::now();
        while started.elapsed() < within {
            let settled = self.nodes.iter().flatten().all(|node| {
                let view = crate::Membership::view(node);
                view.members().len() == running.len() && running.iter().all(|n| view.contains(n))
            });
            if settled {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter().flatten() {
            node.abort();
        }
    }
}
