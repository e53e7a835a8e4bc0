//! A cluster of nodes in one process, on loopback ports: for tests, benchmarks, examples.
//!
//! Each node runs on a thread and a current-thread runtime of its own, as it would in a
//! process of its own: killing a node drops its runtime, so every one of its sockets closes,
//! and pausing a node blocks its thread, so its tasks stop while its sockets stay open.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::{Error, Node, NodeConfig, PeerKey, ReplicatedStore};

/// Several [`Node`]s in this process, each on its own loopback port and its own thread, all
/// peers of each other. Nodes can be killed and restarted (same name, same address), stopped,
/// and paused to exercise failures for real: a killed node's connections close and the others
/// detect it; a paused node's connections stay open but nothing answers, and its heartbeats
/// stop.
///
/// Each node runs on a current-thread Tokio runtime on a thread of its own, which started it
/// and runs its tasks until it is killed. Its [`ReplicatedStore`] may be used from any runtime.
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
    nodes: Vec<Option<Running>>,
}

/// A node on its own thread: a current-thread runtime that started the node and runs its tasks
/// until `stop` is sent or dropped. Dropping it stops the node, ends the thread and with it the
/// runtime, which closes every socket of the node.
#[derive(Debug)]
struct Running {
    node: Node,
    runtime: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts a node with `config` on `listener` (non-blocking), on a new thread; returns once
    /// the node has joined, as [`Node::start_with_listener`] does.
    async fn start(config: NodeConfig, listener: std::net::TcpListener) -> Result<Self, Error> {
        let name = config.name.clone();
        let thread_error = |source| Error::Thread {
            node: name.clone(),
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(thread_error)?;
        let handle = runtime.handle().clone();
        let (started_tx, started_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("tether-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let addr = config.listen;
                    // The listener joins this runtime's reactor, so that it closes with it.
                    let started = match TcpListener::from_std(listener) {
                        Ok(listener) => Node::start_with_listener(config, listener).await,
                        Err(source) => Err(Error::Bind { addr, source }),
                    };
                    let ok = started.is_ok();
                    // A start nobody waits for any more (the caller gave up) ends here.
                    if started_tx.send(started).is_err() || !ok {
                        return;
                    }
                    // Sent or dropped: the node is killed.
                    let _ = stopped.await;
                });
                // Dropping the runtime drops every task of the node and closes its sockets.
                drop(runtime);
            })
            .map_err(thread_error)?;
        let node = match started_rx.await {
            Ok(Ok(node)) => node,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::Thread {
                    node: name,
                    source: std::io::Error::other("the node's thread ended before it started"),
                });
            }
        };
        Ok(Self {
            node,
            runtime: handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.node.abort();
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // Ends at once, unless the node is paused: then when the pause ends.
            let _ = thread.join();
        }
    }
}

/// Binds a loopback listener for a node's runtime to take over.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    std::net::TcpListener::bind(addr)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|source| Error::Bind { addr, source })
}

impl LocalCluster {
    /// Starts `size` nodes named `node-0`, `node-1`, ... with a random key, each config passed
    /// through `configure` (mode, acknowledgements, timeouts).
    ///
    /// # Errors
    ///
    /// When a port cannot be bound, a configuration is invalid, or a node's thread cannot be
    /// started.
    pub async fn start(
        size: usize,
        configure: impl Fn(NodeConfig) -> NodeConfig,
    ) -> Result<Self, Error> {
        let mut key = [0u8; 32];
        let _ = getrandom::fill(&mut key);
        let key = PeerKey::new(key)?;
        let listeners = (0..size)
            .map(|_| bind(([127, 0, 0, 1], 0).into()))
            .collect::<Result<Vec<_>, _>>()?;
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(std::net::TcpListener::local_addr)
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
            .map(|(config, listener)| Running::start(config, listener));
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

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten().map(|running| &running.node)
    }

    /// Node `index`, if it runs.
    pub fn node(&self, index: usize) -> Option<&Node> {
        self.nodes
            .get(index)
            .and_then(Option::as_ref)
            .map(|running| &running.node)
    }

    /// The store of node `index`, if it runs.
    pub fn store(&self, index: usize) -> Option<ReplicatedStore> {
        self.node(index).map(Node::store)
    }

    /// The configuration node `index` was started with.
    pub fn config(&self, index: usize) -> Option<&NodeConfig> {
        self.configs.get(index)
    }

    /// Kills node `index`: its tasks stop and its connections close at once, like a crashed
    /// process. Returns once its thread has ended (at once; for a paused node, when the pause
    /// ends).
    pub fn kill(&mut self, index: usize) {
        drop(self.nodes.get_mut(index).and_then(Option::take));
    }

    /// Shuts node `index` down gracefully ([`Node::shutdown`]): it hands its sessions over and
    /// leaves the cluster; afterwards its thread has ended and its sockets are closed, as after
    /// [`LocalCluster::kill`]. Its store keeps forwarding until the node has stopped. What it
    /// handed over, or `None` if it was not running. Start it again with
    /// [`LocalCluster::restart`].
    pub async fn leave(&mut self, index: usize) -> Option<crate::Handover> {
        let running = self.nodes.get_mut(index).and_then(Option::take)?;
        Some(running.node.shutdown().await)
    }

    /// Splits the network in two: the nodes in `side` can reach each other, the others can
    /// reach each other, and no packet crosses between the two (see [`Node::cut_off`]).
    pub fn split(&self, side: &[usize]) {
        let name = |i: usize| self.configs.get(i).map(NodeConfig::name);
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(running) = node else { continue };
            let mine = side.contains(&i);
            let others = (0..self.configs.len())
                .filter(|j| side.contains(j) != mine)
                .filter_map(name);
            running.node.cut_off(others);
        }
    }

    /// Heals a [`LocalCluster::split`]: every node reaches every other again.
    pub fn heal(&self) {
        for node in self.running() {
            node.cut_off([]);
        }
    }

    /// Freezes node `index` for `duration`, like a process stopped by `SIGSTOP` or a VM being
    /// migrated: its thread blocks, so none of its tasks runs (no heartbeat, no answer) while
    /// its sockets stay open; afterwards it resumes, notices that it stood still, and joins
    /// again. Returns once the node stands still (it stands still `duration` from then),
    /// blocking the caller that long: a moment, or until an earlier pause of the node ends.
    /// False if the node does not run.
    pub fn pause(&self, index: usize, duration: Duration) -> bool {
        let Some(running) = self.nodes.get(index).and_then(Option::as_ref) else {
            return false;
        };
        let (began, beginning) = std::sync::mpsc::sync_channel(1);
        // Blocking the runtime's only thread is the point: everything of this node stops.
        running.runtime.spawn(async move {
            let _ = began.send(());
            std::thread::sleep(duration);
        });
        // Tasks ready to run may go before the pause: wait until it has begun. A runtime that
        // ended drops the task, and with it the sender.
        beginning.recv().is_ok()
    }

    /// Starts node `index` again on its old address; returns once it has received its sessions
    /// and joined. The address may take a moment to be free again, so binding is retried for up
    /// to five seconds.
    ///
    /// # Errors
    ///
    /// When the address stays taken, or the node's thread cannot be started.
    pub async fn restart(&mut self, index: usize) -> Result<(), Error> {
        self.kill(index);
        let Some(config) = self.configs.get(index).cloned() else {
            return Err(Error::InvalidSetting("no such node"));
        };
        let started = tokio::time::Instant::now();
        let listener = loop {
            match bind(config.listen) {
                Ok(listener) => break listener,
                Err(e) if started.elapsed() > Duration::from_secs(5) => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let patience = config.failure_timeout * 5;
        let running = Running::start(config, listener).await?;
        if let Some(slot) = self.nodes.get_mut(index) {
            *slot = Some(running);
        }
        self.settle(patience).await;
        Ok(())
    }

    /// Waits until every running node's view lists exactly the running nodes, at most `within`;
    /// false if they did not agree by then.
    pub async fn settle(&self, within: Duration) -> bool {
        let running: Vec<&str> = self.running().map(Node::name).collect();
        let started = tokio::time::Instant::now();
        while started.elapsed() < within {
            let settled = self.running().all(|node| {
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
        // All stop first, then each thread is joined as its node is dropped.
        for node in self.running() {
            node.abort();
        }
    }
}
