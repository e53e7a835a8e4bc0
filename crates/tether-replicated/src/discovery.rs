//! How a node learns the other nodes of its cluster: a [`Discovery`] asked every few seconds,
//! whose answer becomes the node's peers. Answers that cannot be right (none at all, more nodes
//! than a cluster has, a name given twice) are ignored with a log line and the peers kept; a
//! peer missing from the answers is dropped only after it was missing from
//! [`MISSING_ROUNDS`] in a row, so one flaky answer does not shrink the cluster.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_core::BoxError;

use crate::link::Link;
use crate::membership::Members;

/// Most nodes an answer may name; more is taken for garbage.
pub const MAX_DISCOVERED: usize = 1_024;
/// Answers in a row a peer must be missing from before it stops being a peer.
pub const MISSING_ROUNDS: u32 = 3;

/// Where a node learns which nodes make up its cluster
/// ([`NodeConfig::with_discovery`](crate::NodeConfig::with_discovery)).
///
/// `discover` is asked when the node starts and then at every interval; it answers every node
/// of the cluster it can find, by name and replication address (this node may be among them:
/// it is left out by name). Implementations: [`StaticPeers`], [`DnsDiscovery`](crate::DnsDiscovery)
/// (feature `dns`), or your own (a service registry, a cloud API).
///
/// How fast the views agree: a node that appears in the answers is a peer of every node within
/// one discovery interval, and a member of every view once it has joined (its state transfer
/// and about four heartbeats): 0.49 s in the DNS test, with a 200 ms interval and 100 ms
/// heartbeats. A node that vanishes from the answers leaves the views after
/// [`MISSING_ROUNDS`] intervals, or at once when it leaves gracefully or its port refuses.
#[async_trait::async_trait]
pub trait Discovery: Send + Sync + std::fmt::Debug + 'static {
    /// The cluster's nodes as of now.
    async fn discover(&self) -> Result<Vec<(String, SocketAddr)>, BoxError>;

    /// Completes when the answer may have changed, so the node asks again before the next
    /// interval (gossip, a registry's watch). The default never completes: the node asks at
    /// every interval only.
    async fn changed(&self) {
        std::future::pending::<()>().await;
    }
}

/// A fixed list of nodes: what [`NodeConfig::with_peer`](crate::NodeConfig::with_peer) gives.
///
/// # Example
///
/// ```
/// use tether_replicated::{Discovery as _, StaticPeers};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let peers = StaticPeers::new([("node-b", "10.0.0.2:7000".parse()?)]);
/// assert_eq!(peers.discover().await?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct StaticPeers(Vec<(String, SocketAddr)>);

impl StaticPeers {
    /// These nodes.
    pub fn new<N: Into<String>>(nodes: impl IntoIterator<Item = (N, SocketAddr)>) -> Self {
        Self(nodes.into_iter().map(|(n, a)| (n.into(), a)).collect())
    }
}

#[async_trait::async_trait]
impl Discovery for StaticPeers {
    async fn discover(&self) -> Result<Vec<(String, SocketAddr)>, BoxError> {
        Ok(self.0.clone())
    }
}

/// A discovery and how often it is asked.
#[derive(Clone, Debug)]
pub(crate) struct Discovering {
    pub(crate) discovery: Arc<dyn Discovery>,
    pub(crate) every: Duration,
}

impl Discovering {
    /// What `config` asks for, if it uses a discovery.
    pub(crate) fn of(config: &crate::NodeConfig) -> Option<Self> {
        Some(Self {
            discovery: Arc::clone(config.discovery.as_ref()?),
            every: config.discovery_interval,
        })
    }
}

/// What one answer means for the peers: `None` when it is ignored.
fn accepted(
    me: &str,
    answer: Result<Vec<(String, SocketAddr)>, BoxError>,
) -> Option<HashMap<String, SocketAddr>> {
    let nodes = match answer {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::warn!(error = %tether_core::error_chain(&*e), "discovery failed; the peers are kept");
            return None;
        }
    };
    if nodes.len() > MAX_DISCOVERED {
        tracing::warn!(
            nodes = nodes.len(),
            "discovery named more than {MAX_DISCOVERED} nodes; the answer is ignored"
        );
        return None;
    }
    let mut found = HashMap::new();
    for (name, addr) in nodes {
        if name == me {
            continue;
        }
        if name.is_empty() || name.len() > crate::MAX_NAME_LEN {
            tracing::warn!(name = %name.escape_debug(), "discovery named a node with an invalid name; it is ignored");
            continue;
        }
        if found
            .insert(name.clone(), addr)
            .is_some_and(|other| other != addr)
        {
            tracing::warn!(%name, "discovery gave one node two addresses; the answer is ignored");
            return None;
        }
    }
    if found.is_empty() {
        tracing::warn!("discovery found no other node; the peers are kept");
        return None;
    }
    Some(found)
}

/// Asks `discovering` once, bounded by `timeout`: the other nodes, unless the answer is
/// ignored.
pub(crate) async fn ask(
    me: &str,
    discovering: &Discovering,
    timeout: Duration,
) -> Option<HashMap<String, SocketAddr>> {
    let answer = tokio::time::timeout(timeout, discovering.discovery.discover())
        .await
        .unwrap_or_else(|_| Err("discovery did not answer in time".into()));
    accepted(me, answer)
}

/// Asks `discovering` at every interval and makes its answers the peers of `members`, until
/// the node stops.
pub(crate) async fn run(link: Arc<Link>, members: Arc<Members>, discovering: Discovering) {
    let mut missing: HashMap<String, u32> = HashMap::new();
    let mut tick = tokio::time::interval(discovering.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = link.cancelled() => return,
            _ = tick.tick() => {}
            () = discovering.discovery.changed() => {}
        }
        let Some(mut found) = ask(link.name(), &discovering, discovering.every).await else {
            continue;
        };
        for (name, addr) in members.peer_addrs() {
            if found.contains_key(&name) {
                missing.remove(&name);
                continue;
            }
            let rounds = missing.entry(name.clone()).or_default();
            *rounds += 1;
            if *rounds < MISSING_ROUNDS {
                found.insert(name, addr);
            }
        }
        missing.retain(|name, _| !found.contains_key(name));
        members.set_peers(&found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn answers_that_cannot_be_right_are_ignored() {
        let nodes = |list: &[(&str, u16)]| -> Result<Vec<(String, SocketAddr)>, BoxError> {
            Ok(list
                .iter()
                .map(|(n, p)| ((*n).to_owned(), addr(*p)))
                .collect())
        };
        let found = accepted("me", nodes(&[("me", 1), ("b", 2), ("c", 3)])).unwrap();
        assert_eq!(found.len(), 2, "this node is left out");
        assert!(accepted("me", nodes(&[])).is_none(), "no node at all");
        assert!(
            accepted("me", nodes(&[("me", 1)])).is_none(),
            "only this node"
        );
        assert!(
            accepted("me", nodes(&[("b", 2), ("b", 3)])).is_none(),
            "two addresses"
        );
        assert_eq!(
            accepted("me", nodes(&[("b", 2), ("b", 2)])).unwrap().len(),
            1
        );
        assert!(accepted("me", Err("down".into())).is_none());
        let many: Vec<(String, u16)> = (0..=MAX_DISCOVERED).map(|i| (format!("n{i}"), 1)).collect();
        let many: Vec<(&str, u16)> = many.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        assert!(
            accepted("me", nodes(&many)).is_none(),
            "more than a cluster has"
        );
        let long = "x".repeat(crate::MAX_NAME_LEN + 1);
        let found = accepted("me", nodes(&[(&long, 2), ("", 3), ("b", 4)])).unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), ["b"]);
    }
}
