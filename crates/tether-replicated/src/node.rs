//! A replication node: the public handle, which starts the parts of a node, wires them
//! together, and stops them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::events::Events;
use crate::leave::{Handover, Leave};
use crate::link::Link;
use crate::membership::Members;
use crate::principals::Principals;
use crate::read::Reads;
use crate::rebalance::Rebalance;
use crate::server::Server;
use crate::state::LocalState;
use crate::write::Writes;
use crate::{Error, Membership, NodeConfig, ReplicatedStore, View, discovery, sweep};

/// A running replication node. Holds sessions in memory and copies them to its peers.
///
/// The node runs until [`Node::shutdown`] (graceful: it hands its sessions over first),
/// [`Node::abort`] (at once), or until every handle to it is dropped (at once). Get a
/// [`SessionStore`](tether_core::SessionStore) with [`Node::store`].
///
/// # Example
///
/// ```no_run
/// use tether_replicated::{Mode, Node, NodeConfig, PeerKey};
/// use tether_sessions::SessionLayer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let key = PeerKey::new(std::env::var("CLUSTER_KEY")?.into_bytes())?;
/// let config = NodeConfig::new("node-a", "10.0.0.1:7000".parse()?, key)
///     .with_peer("node-b", "10.0.0.2:7000".parse()?)
///     .with_peer("node-c", "10.0.0.3:7000".parse()?)
///     .with_mode(Mode::Backup { copies: 1 });
/// let node = Node::start(config).await?;
/// let sessions = SessionLayer::new(node.store());
/// # let _ = sessions; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    parts: Arc<Parts>,
    _guard: Arc<DropGuard>,
}

/// Replication traffic and state of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Requests sent to peers, heartbeats not counted.
    pub messages_sent: u64,
    /// Bytes of frames sent to peers (requests and answers), heartbeats not counted.
    pub bytes_sent: u64,
    /// Background (`Async`) copies dropped because a peer's queue was full.
    pub dropped: u64,
    /// Incoming connections dropped for failing authentication or the protocol, or closed
    /// because every handshake slot was taken.
    pub rejected_connections: u64,
    /// Frames from authenticated peers refused because their clock was further ahead of this
    /// node's than the max clock drift (heartbeats among them still count as signs of life).
    pub rejected_frames: u64,
    /// Writes that came again, recognised by their write id and not applied a second time: a
    /// store call retried or forwarded again after a failure, or a peer replaying an old write.
    /// See the crate docs for how long write ids are remembered.
    pub repeated_writes: u64,
    /// Copies of writes refused because their sender was not a member of this node's view: a
    /// node the cluster had declared dead (it stood still, or was cut off) that carried on as a
    /// session's primary. The sender stops serving and joins again; its write is retried on the
    /// session's current primary.
    pub fenced_writes: u64,
    /// Requests to peers not sent because their caller had stopped waiting for the answer
    /// while they were queued (this node stood still, or a peer's queue was slow): sending them
    /// late would apply writes nobody waits for any more, with values read long before.
    pub expired_requests: u64,
    /// Gossip packets refused (feature `gossip`): not signed with the cluster's key (another
    /// cluster, a wrong key, a forgery), or not gossip at all. Each is dropped unread.
    pub rejected_gossip: u64,
    /// Store calls tried again inside the store after a transient failure (the primary
    /// unreachable, a view changing, a backup that died under a `Sync` write).
    pub retries: u64,
    /// Changes of this node's view: members that joined, left, died or came back.
    pub view_changes: u64,
    /// Whole sessions received from peers: state transfers while joining, and the pushes of
    /// rebalancing and of a leaving node's hand-over.
    pub sessions_received: u64,
    /// Sessions and tombstones held.
    pub entries: usize,
    /// Requests waiting in the queues to the peers now: copies and calls not yet sent.
    pub queued: usize,
}

/// The parts of a running node, each owning its own state.
pub(crate) struct Parts {
    link: Arc<Link>,
    state: Arc<LocalState>,
    members: Arc<Members>,
    reads: Arc<Reads>,
    writes: Arc<Writes>,
    principals: Arc<Principals>,
    events: Arc<Events>,
    rebalance: Arc<Rebalance>,
    leave_timeout: Duration,
    /// Only `freeze` reaches it.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    server: Arc<Server>,
    local_addr: SocketAddr,
    #[cfg(feature = "gossip")]
    gossip: Option<Arc<crate::gossip::GossipDiscovery>>,
}

impl Parts {
    #[cfg(feature = "metrics")]
    pub(crate) fn name(&self) -> &str {
        self.link.name()
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn is_stopped(&self) -> bool {
        self.link.is_stopped()
    }

    #[cfg(feature = "metrics")]
    /// Members of this node's view, itself included.
    pub(crate) fn view_size(&self) -> usize {
        self.members.view().members().len()
    }

    pub(crate) fn stats(&self) -> NodeStats {
        let counted = self.link.counters().get();
        NodeStats {
            messages_sent: counted.messages,
            bytes_sent: counted.bytes,
            dropped: counted.dropped,
            rejected_connections: counted.rejected,
            rejected_frames: counted.rejected_frames,
            repeated_writes: counted.repeated_writes,
            fenced_writes: counted.fenced_writes,
            expired_requests: counted.expired,
            rejected_gossip: counted.rejected_gossip,
            retries: counted.retries,
            view_changes: counted.view_changes,
            sessions_received: counted.sessions_received,
            entries: self.state.len(),
            queued: self.members.queued(),
        }
    }
}

impl Node {
    /// Binds the replication address, connects to the peers, receives the sessions this node
    /// must hold from those that are up, and returns once it is a member. Joining takes until
    /// every peer that answers heartbeats is ready and has reconnected to this node (their
    /// backoff is at most 2 s), plus two heartbeats: bounded by 2 s plus four failure timeouts.
    /// Nodes started together thus agree on one view before any of them serves.
    ///
    /// # Errors
    ///
    /// An invalid configuration, or an address that cannot be bound.
    pub async fn start(config: NodeConfig) -> Result<Self, Error> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        Self::start_with_listener(config, listener).await
    }

    /// As [`Node::start`], on a listener bound already (to port 0 in tests, say).
    ///
    /// # Errors
    ///
    /// An invalid configuration.
    pub async fn start_with_listener(
        config: NodeConfig,
        listener: TcpListener,
    ) -> Result<Self, Error> {
        config.validate()?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let cancel = CancellationToken::new();
        let link = Arc::new(Link::new(&config, cancel.clone()));
        let events = Events::new(cancel.clone());
        let state = Arc::new(LocalState::default());
        let configured = config.peers.iter().cloned().collect();
        #[cfg(feature = "gossip")]
        let gossip = match &config.gossip {
            Some(gossip) => Some(
                crate::gossip::start(gossip, &config.name, local_addr, Arc::clone(&link)).await?,
            ),
            None => None,
        };
        let discovering = discovery::Discovering::of(&config);
        #[cfg(feature = "gossip")]
        let discovering = discovering.or_else(|| {
            gossip.as_ref().map(|gossip| discovery::Discovering {
                discovery: Arc::clone(gossip) as Arc<dyn crate::Discovery>,
                every: config.discovery_interval,
            })
        });
        let discovered = match &discovering {
            Some(discovering) => {
                discovery::ask(&config.name, discovering, config.failure_timeout * 2).await
            }
            None => None,
        };
        let peers = discovered.unwrap_or(configured);
        let members = Arc::new(Members::new(
            &config,
            Arc::clone(&link),
            Arc::clone(&state),
            &peers,
        ));
        let reads = Arc::new(Reads::new(
            &config,
            Arc::clone(&members),
            Arc::clone(&state),
        ));
        let writes = Arc::new(Writes::new(
            &config,
            Arc::clone(&link),
            Arc::clone(&members),
            Arc::clone(&state),
        ));
        let principals = Arc::new(Principals::new(
            &config,
            Arc::clone(&members),
            Arc::clone(&state),
            Arc::clone(&writes),
            Arc::clone(&events),
        ));
        let server = Arc::new(Server::new(
            &config,
            Arc::clone(&link),
            Arc::clone(&members),
            Arc::clone(&reads),
            Arc::clone(&writes),
            Arc::clone(&principals),
            Arc::clone(&state),
        ));
        let mut views = members.watch();
        tokio::spawn(Arc::clone(&server).accept(listener));
        tokio::spawn(Arc::clone(&members).watch_members());
        tokio::spawn(Arc::clone(&members).stay_joined());
        if let Some(discovering) = discovering {
            tokio::spawn(discovery::run(
                Arc::clone(&link),
                Arc::clone(&members),
                discovering,
            ));
        }
        let name = link.name().to_owned();
        // The view lists this node once it serves; the sender lives in `members`.
        let _ = views.wait_for(|view| view.contains(&name)).await;
        let rebalance = Arc::new(Rebalance::new(
            &config,
            Arc::clone(&link),
            Arc::clone(&members),
            Arc::clone(&state),
        ));
        tokio::spawn(Arc::clone(&rebalance).run());
        tokio::spawn(sweep::run(
            Arc::clone(&link),
            Arc::clone(&members),
            Arc::clone(&state),
            Arc::clone(&events),
            config.tombstone_retention,
        ));
        let parts = Parts {
            link,
            state,
            members,
            reads,
            writes,
            principals,
            events,
            rebalance,
            leave_timeout: config.leave_timeout,
            server,
            local_addr,
            #[cfg(feature = "gossip")]
            gossip,
        };
        let parts = Arc::new(parts);
        #[cfg(feature = "metrics")]
        tokio::spawn(crate::telemetry::run(Arc::downgrade(&parts)));
        Ok(Self {
            parts,
            _guard: Arc::new(cancel.drop_guard()),
        })
    }

    /// The session store of this node.
    pub fn store(&self) -> ReplicatedStore {
        ReplicatedStore::new(
            self.parts.link.name(),
            Arc::clone(&self.parts.reads),
            Arc::clone(&self.parts.writes),
            Arc::clone(&self.parts.principals),
            Arc::clone(&self.parts.events),
        )
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.parts.link.name()
    }

    /// The address peers reach this node on.
    pub fn local_addr(&self) -> SocketAddr {
        self.parts.local_addr
    }

    /// The UDP address this node gossips on (feature `gossip`), if it gossips.
    #[cfg(feature = "gossip")]
    #[cfg_attr(docsrs, doc(cfg(feature = "gossip")))]
    pub fn gossip_addr(&self) -> Option<SocketAddr> {
        self.parts.gossip.as_ref().map(|gossip| gossip.local_addr())
    }

    /// Counters of replication traffic and held entries.
    pub fn stats(&self) -> NodeStats {
        self.parts.stats()
    }

    /// Leaves the cluster gracefully, then stops: for a planned restart or a scale-down
    /// (SIGTERM). The node stops taking sessions, hands every session it holds to its holders
    /// in the view without it and waits for them to take it, tells its peers that it leaves
    /// (they drop it from their views at once), and stops, within the leave timeout
    /// ([`NodeConfig::with_leave_timeout`], default 10 s).
    ///
    /// Meanwhile its store keeps answering by forwarding to the other members, so an
    /// application can drain its requests while the node leaves; once the node has stopped,
    /// its store fails with transient errors. Nothing acknowledged is lost and no request
    /// needs to fail: the sessions' next holders have every write before any of them answers
    /// for them. Calling it again while it runs waits for the node to stop.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run(node: tether_replicated::Node) {
    /// // On SIGTERM, after the HTTP server has stopped accepting:
    /// let handover = node.shutdown().await;
    /// assert!(handover.complete, "some sessions live on only in their other holders");
    /// # }
    /// ```
    pub async fn shutdown(&self) -> Handover {
        let parts = &self.parts;
        #[cfg(feature = "gossip")]
        if let Some(gossip) = &parts.gossip {
            gossip.leave_on_stop();
        }
        Leave {
            link: &parts.link,
            members: &parts.members,
            writes: &parts.writes,
            rebalance: &parts.rebalance,
        }
        .run(parts.leave_timeout)
        .await
    }

    /// Stops the node at once, as if its process died: connections close and its peers
    /// declare it dead as soon as they fail to reconnect. Its sessions live on in their other
    /// holders; a write under way here may fail. Prefer [`Node::shutdown`] for a planned stop.
    pub fn abort(&self) {
        self.parts.link.stop();
    }

    /// Sends a write this node copied to backups (as a session's primary) `back` writes ago
    /// (0: the last, up to 15) to those backups again, stamped anew: what a peer replaying an old
    /// write does. They recognise its write id and do not apply it again (counted in
    /// [`NodeStats::repeated_writes`]). Returns how many backups answered. For tests of that;
    /// needs the `test-util` feature.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub async fn replay_copied_write(&self, back: usize) -> usize {
        self.parts.writes.replay_copied_write(back).await
    }

    /// Freezes or thaws the node: a frozen node keeps its connections open but answers nothing,
    /// like a process that hangs. For fault tests; needs the `test-util` feature.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn freeze(&self, frozen: bool) {
        self.parts.server.freeze(frozen);
    }

    /// The copy of session `id` this node holds, if it holds a live one, as it is here (no
    /// forwarding to the primary). For tests that compare the holders of a session; needs the
    /// `test-util` feature.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn held(&self, id: &tether_core::Id) -> Option<tether_core::Record> {
        self.parts.state.record(id, tether_core::Timestamp::now())
    }

    /// Entries in this node's principal index: one for each session it holds (live, past its
    /// deadline but not swept yet, or deleted and still remembered) that is bound to a
    /// principal. For tests that look for leaks; needs the `test-util` feature.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn indexed_sessions(&self) -> usize {
        self.parts.state.indexed()
    }

    /// Cuts this node off from exactly the peers `peers` (none: healed), as a network
    /// partition that drops every packet would: nothing goes to them or comes from them, and
    /// connecting to them times out, while open connections stay open. For partition tests;
    /// needs the `test-util` feature.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn cut_off<'a>(&self, peers: impl IntoIterator<Item = &'a str>) {
        self.parts
            .link
            .cut_off(peers.into_iter().map(str::to_owned).collect());
    }
}

impl Membership for Node {
    fn view(&self) -> View {
        self.parts.members.view()
    }

    fn watch(&self) -> watch::Receiver<View> {
        self.parts.members.watch()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name())
            .field("view", &self.parts.members.view())
            .finish_non_exhaustive()
    }
}
