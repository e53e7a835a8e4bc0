//! A replication node: its sessions, its peers, membership, and the primary's write path.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tether_core::{Id, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::link::Link;
use crate::peer::{MAX_BACKOFF as PEER_MAX_BACKOFF, Peer};
use crate::server::{self, failed};
use crate::state::{ApplyOutcome, Delta, Entry, LocalState};
use crate::wire::{Op, Request, Response};
use crate::{Ack, Error, Membership, NodeConfig, ReplicatedStore, View};

/// Entries per `Push` or `Transfer` page are also bounded by bytes: a quarter of the max frame.
const PAGE_ENTRIES: usize = 256;
/// How often expired sessions and tombstones are collected.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A running replication node. Holds sessions in memory and copies them to its peers.
///
/// The node runs until [`Node::shutdown`] or until every handle to it is dropped. Get a
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
    shared: Arc<Shared>,
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
    /// Sessions and tombstones held.
    pub entries: usize,
}

pub(crate) struct Shared {
    pub(crate) link: Arc<Link>,
    pub(crate) config: NodeConfig,
    pub(crate) state: LocalState,
    peers: OnceLock<HashMap<String, Peer>>,
    view: watch::Sender<View>,
    /// Announced to peers as ready: they count this node as a member.
    ready: AtomicBool,
    /// Counts itself as a member: serves and stamps writes for the sessions it holds.
    serving: AtomicBool,
    /// Peers that have pinged this node since it announced itself ready, so count it a member.
    pinged_by: Mutex<HashSet<String>>,
    /// When the heartbeat loop last ran, and how many stalls were noticed: see
    /// [`Shared::notice_stall`].
    liveness: Mutex<Liveness>,
    /// Woken when a stall is noticed, to join again.
    stalled: Notify,
    frozen: AtomicBool,
    local_addr: SocketAddr,
}

/// The node's own sense of time passing: a gap in its heartbeats means the process stood still.
#[derive(Debug)]
struct Liveness {
    last_tick: Instant,
    /// Stalls noticed so far: a join completes only if none was noticed while it ran.
    stalls: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.link.name())
            .field("view", &*self.view.borrow())
            .finish_non_exhaustive()
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
        let (view, _) = watch::channel(View::new(Vec::<String>::new(), config.mode));
        let shared = Arc::new(Shared {
            link: Arc::clone(&link),
            config: config.clone(),
            state: LocalState::default(),
            peers: OnceLock::new(),
            view,
            ready: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            pinged_by: Mutex::new(HashSet::new()),
            liveness: Mutex::new(Liveness {
                last_tick: Instant::now(),
                stalls: 0,
            }),
            stalled: Notify::new(),
            frozen: AtomicBool::new(false),
            local_addr,
        });
        let peers = config
            .peers
            .iter()
            .map(|(name, addr)| {
                (
                    name.clone(),
                    Peer::spawn(name.clone(), *addr, Arc::clone(&link)),
                )
            })
            .collect();
        let _ = shared.peers.set(peers);
        let mut views = shared.view.subscribe();
        tokio::spawn(server::accept(listener, Arc::clone(&shared)));
        tokio::spawn(Arc::clone(&shared).watch_members());
        tokio::spawn(Arc::clone(&shared).stay_joined());
        let name = shared.name().to_owned();
        // The view lists this node once it serves; the sender lives in `shared`.
        let _ = views.wait_for(|view| view.contains(&name)).await;
        tokio::spawn(Arc::clone(&shared).rebalance_on_change());
        tokio::spawn(Arc::clone(&shared).sweep());
        Ok(Self {
            shared,
            _guard: Arc::new(cancel.drop_guard()),
        })
    }

    /// The session store of this node.
    pub fn store(&self) -> ReplicatedStore {
        ReplicatedStore::new(Arc::clone(&self.shared))
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.shared.link.name()
    }

    /// The address peers reach this node on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Counters of replication traffic and held entries.
    pub fn stats(&self) -> NodeStats {
        let counted = self.shared.link.counters().get();
        NodeStats {
            messages_sent: counted.messages,
            bytes_sent: counted.bytes,
            dropped: counted.dropped,
            rejected_connections: counted.rejected,
            rejected_frames: counted.rejected_frames,
            entries: self.shared.state.len(),
        }
    }

    /// Stops the node at once: connections close, peers see it die. Its sessions live on in
    /// their other holders.
    pub fn shutdown(&self) {
        self.shared.link.stop();
    }

    /// Freezes or thaws the node: a frozen node keeps its connections open but answers nothing,
    /// like a process that hangs. For fault tests; needs the `test-util` feature.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn freeze(&self, frozen: bool) {
        self.shared.frozen.store(frozen, Ordering::SeqCst);
    }
}

impl Membership for Node {
    fn view(&self) -> View {
        self.shared.view()
    }

    fn watch(&self) -> watch::Receiver<View> {
        self.shared.view.subscribe()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl Shared {
    pub(crate) fn name(&self) -> &str {
        self.link.name()
    }

    pub(crate) fn view(&self) -> View {
        self.view.borrow().clone()
    }

    /// The view to route a request by. A node that is not serving has no member in its view
    /// until fresh heartbeats came in (after a stall its last ones are too old), and the view is
    /// published once per heartbeat: then it is recomputed, for up to two heartbeats, so that
    /// requests arriving at once are forwarded rather than refused.
    pub(crate) async fn routing_view(&self) -> View {
        let deadline = tokio::time::Instant::now() + self.config.heartbeat * 2;
        loop {
            let view = self.view();
            if !view.members().is_empty() || tokio::time::Instant::now() >= deadline {
                return view;
            }
            self.publish_view();
            tokio::time::sleep(self.config.heartbeat / 10).await;
        }
    }

    pub(crate) fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.get().and_then(|peers| peers.get(name))
    }

    fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.get().into_iter().flat_map(HashMap::values)
    }

    pub(crate) fn is_peer(&self, name: &str) -> bool {
        self.peer(name).is_some()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Counts itself a member: it may answer for the sessions it holds. A node that is joining
    /// (after a start or a stall) forwards everything to the members instead.
    pub(crate) fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    fn lock_liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.liveness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A gap between heartbeats longer than this means the process stood still long enough for
    /// its peers to have declared it dead: they stop counting a peer whose last answer is a
    /// failure timeout old, and that answer may be a heartbeat older than this node's last tick.
    fn stall_limit(&self) -> Duration {
        let (heartbeat, failure) = (self.config.heartbeat, self.config.failure_timeout);
        failure.saturating_sub(heartbeat).max(heartbeat * 3 / 2)
    }

    /// Checks this node's own monotonic clock for a stall: a pause (SIGSTOP, a frozen VM, a
    /// starved runtime) longer than [`Shared::stall_limit`] since the heartbeat loop last ran.
    /// Called before anything is served, so whatever runs first after the stall notices it.
    ///
    /// After a stall the peers have probably declared this node dead and moved on: its copies
    /// may be stale and what it knows of its peers is as old as the stall. So it stops serving
    /// and stops announcing itself ready, and joins again as after a restart (transfers first);
    /// until then its store forwards to the members, and it never makes a view of itself out of
    /// peers it merely has not heard from while it stood still.
    pub(crate) fn notice_stall(&self) {
        let mut liveness = self.lock_liveness();
        self.check_stall(&mut liveness);
    }

    fn check_stall(&self, liveness: &mut Liveness) {
        let gap = liveness.last_tick.elapsed();
        if gap <= self.stall_limit() {
            return;
        }
        liveness.stalls += 1;
        liveness.last_tick = Instant::now();
        self.serving.store(false, Ordering::Release);
        self.ready.store(false, Ordering::Release);
        self.lock_pinged_by().clear();
        tracing::warn!(node = %self.name(), ?gap, "this node stood still past the failure timeout; it stops serving and joins again");
        self.publish_view();
        self.stalled.notify_one();
    }

    /// A heartbeat of the node itself: checks for a stall, then records that it runs.
    fn tick(&self) {
        let mut liveness = self.lock_liveness();
        self.check_stall(&mut liveness);
        liveness.last_tick = Instant::now();
    }

    fn stalls(&self) -> u64 {
        self.lock_liveness().stalls
    }

    /// Sets `flag` (ready or serving) unless a stall was noticed since the join of `epoch`
    /// began, or is noticed now.
    fn set_if_current(&self, epoch: u64, flag: &AtomicBool) -> bool {
        let mut liveness = self.lock_liveness();
        self.check_stall(&mut liveness);
        if liveness.stalls != epoch {
            return false;
        }
        flag.store(true, Ordering::Release);
        true
    }

    /// The peers that answer heartbeats and have finished joining.
    fn member_peers(&self) -> impl Iterator<Item = &Peer> {
        let failure = self.config.failure_timeout;
        self.peers()
            .filter(move |peer| peer.is_member(failure))
    }

    fn current_members(&self) -> View {
        let mut members: Vec<&str> = self.member_peers().map(Peer::name).collect();
        if self.is_serving() {
            members.push(self.name());
        }
        View::new(members, self.config.mode)
    }

    /// Recomputes the view at every heartbeat and publishes it when it changed.
    async fn watch_members(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        loop {
            tokio::select! {
                () = self.link.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.tick();
            self.publish_view();
        }
    }

    /// Publishes the current members if they changed. They are computed under the view's lock,
    /// so that of two calls racing with a change of the flags, the last publishes the truth.
    fn publish_view(&self) {
        self.view.send_if_modified(|current| {
            let view = self.current_members();
            let changed = *current != view;
            if changed {
                tracing::info!(node = %self.name(), members = ?view.members(), "cluster view changed");
                *current = view;
            }
            changed
        });
    }

    /// Joins, and joins again after every stall, until the node stops.
    async fn stay_joined(self: Arc<Self>) {
        loop {
            let epoch = self.stalls();
            let joined = tokio::select! {
                () = self.link.cancelled() => return,
                joined = self.join(epoch) => joined,
            };
            if !joined {
                continue;
            }
            while self.stalls() == epoch {
                tokio::select! {
                    () = self.link.cancelled() => return,
                    () = self.stalled.notified() => {}
                }
            }
        }
    }

    /// Waits for the peers that are up, takes from each the sessions this node must hold, and
    /// becomes a member; false if a stall was noticed meanwhile (the caller joins again).
    ///
    /// The hand-over has two steps so that no write is lost to a stale copy: after the bulk
    /// transfer the node announces itself, and the members start routing its sessions to it
    /// (which it refuses, as a transient error, until it serves); once every live peer has
    /// pinged it since (and had a heartbeat to adopt the new view), it takes a second transfer
    /// with what their primaries wrote in the meantime, and only then counts itself a member
    /// and serves.
    ///
    /// It also waits until every live peer has announced itself ready, so that nodes started
    /// together (none a member yet) agree on one view before any serves: none serves alone a
    /// session that another would not find.
    async fn join(&self, epoch: u64) -> bool {
        let window = self.config.failure_timeout * 2;
        let started = tokio::time::Instant::now();
        let failure = self.config.failure_timeout;
        while started.elapsed() < window {
            if self.peers().all(|peer| peer.is_alive(failure)) {
                break;
            }
            tokio::time::sleep(self.config.heartbeat / 2).await;
        }
        let mut received = self.transfer_from_members().await;
        self.lock_pinged_by().clear();
        if !self.set_if_current(epoch, &self.ready) {
            return false;
        }
        if self.peers().next().is_some() {
            self.await_live_peers().await;
            // A peer adopts the new view at its next tick after the ping.
            tokio::time::sleep(self.config.heartbeat * 2).await;
            received += self.transfer_from_members().await;
        }
        if !self.set_if_current(epoch, &self.serving) {
            return false;
        }
        self.publish_view();
        tracing::info!(node = %self.name(), received, "joined the cluster");
        true
    }

    /// Takes from every member the sessions this node must hold; returns how many came.
    async fn transfer_from_members(&self) -> usize {
        let members: Vec<&Peer> = self.member_peers().collect();
        let mut received = 0;
        for peer in members {
            received += self.transfer_from(peer).await;
        }
        received
    }

    /// Records that `peer` pinged this node; from its answer on, it counts this node a member
    /// once this node is ready.
    pub(crate) fn pinged(&self, peer: &str) {
        if self.is_ready() && !self.is_serving() {
            self.lock_pinged_by().insert(peer.to_owned());
        }
    }

    fn lock_pinged_by(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.pinged_by
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until every live peer is ready and has pinged this node since it became ready (a
    /// peer that was away reconnects with a backoff of up to two seconds), bounded in time.
    async fn await_live_peers(&self) {
        let failure = self.config.failure_timeout;
        let deadline = tokio::time::Instant::now() + PEER_MAX_BACKOFF + failure * 2;
        while tokio::time::Instant::now() < deadline {
            let all_seen = {
                let pinged_by = self.lock_pinged_by();
                self.peers()
                    .filter(|peer| peer.is_alive(failure))
                    .all(|peer| peer.is_member(failure) && pinged_by.contains(peer.name()))
            };
            if all_seen {
                return;
            }
            tokio::time::sleep(self.config.heartbeat / 4).await;
        }
        tracing::warn!(node = %self.name(), "not every live peer was ready and pinged this node while joining");
    }

    /// Pages through the sessions `peer` says this node must hold.
    async fn transfer_from(&self, peer: &Peer) -> usize {
        let mut after = None;
        let mut received = 0;
        loop {
            let request = Request::Transfer {
                for_node: self.name().to_owned(),
                after,
            };
            match peer.request(request, self.config.sync_timeout * 4).await {
                Ok(Response::Page { entries, next }) => {
                    received += entries.len();
                    for (id, entry) in entries {
                        self.state.merge(id, entry);
                    }
                    match next {
                        Some(id) => after = Some(id),
                        None => return received,
                    }
                }
                Ok(other) => {
                    tracing::warn!(peer = peer.name(), answer = ?other, "unexpected answer to a state transfer");
                    return received;
                }
                Err(e) => {
                    tracing::warn!(peer = peer.name(), error = %e, "state transfer failed; the primaries will push what is missing");
                    return received;
                }
            }
        }
    }

    /// After every view change, pushes each held session to its holders under the new view: the
    /// primary to its backups, and a node that no longer holds a session to its new holders,
    /// after which it forgets it. This restores `copies` after a node left and fills a node that
    /// joined.
    async fn rebalance_on_change(self: Arc<Self>) {
        let mut changes = self.view.subscribe();
        loop {
            tokio::select! {
                () = self.link.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            let view = changes.borrow_and_update().clone();
            // A joining node holds nothing yet by the view (it is not in it): it must keep
            // what it received, and what it held before a stall merges in harmlessly.
            if !self.is_serving() || !view.contains(self.name()) {
                continue;
            }
            self.rebalance(&view).await;
        }
    }

    async fn rebalance(&self, view: &View) {
        let me = self.name();
        let mut batches: HashMap<String, Vec<(Id, Entry)>> = HashMap::new();
        let mut leaving = Vec::new();
        for (id, entry) in self.state.select(|_| true) {
            let holders = view.holders(&id);
            let targets: Vec<&str> = if holders.first() == Some(&me) {
                holders.iter().skip(1).copied().collect()
            } else if !holders.contains(&me) {
                leaving.push(id);
                holders
            } else {
                continue;
            };
            for target in targets {
                batches
                    .entry(target.to_owned())
                    .or_default()
                    .push((id, entry.clone()));
            }
        }
        let mut failed_targets = Vec::new();
        for (target, entries) in batches {
            let Some(peer) = self.peer(&target) else {
                continue;
            };
            for page in pages(entries, self.config.max_frame / 4) {
                let request = Request::Push { entries: page };
                if let Err(e) = peer.request(request, self.config.sync_timeout * 4).await {
                    tracing::warn!(peer = %target, error = %e, "re-replication push failed");
                    failed_targets.push(target.clone());
                    break;
                }
            }
        }
        if failed_targets.is_empty() {
            for id in leaving {
                self.state.remove(&id);
            }
        }
    }

    async fn sweep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = self.link.cancelled() => return,
                _ = tick.tick() => {}
            }
            let forgotten = self
                .state
                .sweep(Timestamp::now(), self.config.tombstone_retention);
            if forgotten > 0 {
                tracing::debug!(node = %self.name(), forgotten, "collected expired sessions and tombstones");
            }
        }
    }

    /// Answers a peer's request.
    pub(crate) async fn handle(&self, request: Request) -> Response {
        if self.frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        // Before answering anything, even a heartbeat: after a stall the answer says "not ready".
        self.notice_stall();
        let now = Timestamp::now();
        match request {
            Request::Ping => Response::Pong {
                ready: self.is_ready(),
            },
            // A joining node's copy may still miss writes: the reader asks another holder.
            Request::Fetch { .. } if !self.is_serving() => {
                failed(true, format!("{} is still joining", self.name()))
            }
            Request::Fetch { id } => Response::Entry(self.state.entry(&id)),
            Request::Create { id, entry } => {
                // From the primary: merge, so a copy pushed earlier does not refuse it.
                let deleted = self
                    .state
                    .entry(&id)
                    .is_some_and(|e| e.deleted_at.is_some());
                self.state.merge(id, entry);
                Response::Created(!deleted)
            }
            Request::Apply { id, delta } => Response::Applied(self.state.apply(&id, &delta, now)),
            Request::Delete { id, at } => {
                self.state.delete(id, at);
                Response::Done
            }
            Request::Push { entries } => {
                for (id, entry) in entries {
                    self.state.merge(id, entry);
                }
                Response::Done
            }
            Request::Transfer { for_node, after } => self.transfer_page(&for_node, after),
            Request::Forward(op) => {
                let view = self.view();
                if view.primary(op.id()) != Some(self.name()) {
                    return failed(
                        true,
                        format!("{} is not the primary of this session", self.name()),
                    );
                }
                match self.execute_as_primary(op).await {
                    Ok(response) => response,
                    Err(e) => failed(e.is_transient(), tether_core::error_chain(&e).to_string()),
                }
            }
        }
    }

    fn transfer_page(&self, for_node: &str, after: Option<Id>) -> Response {
        let view = self.view().with(for_node);
        let mut wanted = self.state.select(|id| {
            after.is_none_or(|after| *id > after) && view.holders(id).contains(&for_node)
        });
        wanted.sort_by_key(|(id, _)| *id);
        let mut page = pages(wanted, self.config.max_frame / 4);
        let first = if page.is_empty() {
            Vec::new()
        } else {
            page.remove(0)
        };
        let next = if page.is_empty() {
            None
        } else {
            first.last().map(|(id, _)| *id)
        };
        Response::Page {
            entries: first,
            next,
        }
    }

    /// Performs a write as the session's primary: stamp it, apply it, copy it to the backups.
    pub(crate) async fn execute_as_primary(&self, op: Op) -> Result<Response, tether_core::Error> {
        self.notice_stall();
        if !self.is_serving() {
            // The view it routed by was taken before a stall was noticed.
            return Err(tether_core::Error::Unavailable(
                "this node is joining the cluster".into(),
            ));
        }
        let view = self.view();
        let id = *op.id();
        let me = self.name();
        let backups: Vec<&str> = view.holders(&id).into_iter().filter(|h| *h != me).collect();
        let now = Timestamp::now();
        let at = self.link.clock().now();
        match op {
            Op::Create {
                id,
                created_at,
                expiry,
                data,
            } => {
                let record = tether_core::Record::new(id, expiry, created_at)
                    .with_data(data.into_iter().collect());
                let entry = Entry::from_record(&record, at);
                if !self.state.create(id, entry.clone()) {
                    return Ok(Response::Created(false));
                }
                self.replicate(&backups, &Request::Create { id, entry })
                    .await?;
                Ok(Response::Created(true))
            }
            Op::Apply {
                id,
                clear,
                removed,
                set,
                expiry,
            } => {
                let delta = Delta {
                    at,
                    clear,
                    removed,
                    set,
                    expiry,
                };
                match self.state.apply(&id, &delta, now) {
                    ApplyOutcome::Applied => {}
                    _ => return Ok(Response::Applied(ApplyOutcome::Missing)),
                }
                let answers = self
                    .replicate(&backups, &Request::Apply { id, delta })
                    .await?;
                self.repair(&id, &answers).await?;
                Ok(Response::Applied(ApplyOutcome::Applied))
            }
            Op::Delete { id } => {
                self.state.delete(id, at);
                self.replicate(&backups, &Request::Delete { id, at })
                    .await?;
                Ok(Response::Done)
            }
        }
    }

    /// Sends `request` to `targets`. `Sync`: waits for every answer, and fails (transient) if one
    /// does not come. `Async`: queues and returns.
    async fn replicate(
        &self,
        targets: &[&str],
        request: &Request,
    ) -> Result<Vec<(String, Response)>, tether_core::Error> {
        let peers: Vec<&Peer> = targets.iter().filter_map(|t| self.peer(t)).collect();
        match self.config.ack {
            Ack::Async => {
                for peer in peers {
                    if !peer.send(request.clone()) {
                        self.link.counters().dropped();
                    }
                }
                Ok(Vec::new())
            }
            Ack::Sync => {
                let timeout = self.config.sync_timeout;
                let answers = futures_util::future::join_all(peers.iter().map(|peer| async move {
                    (
                        peer.name().to_owned(),
                        peer.request(request.clone(), timeout).await,
                    )
                }))
                .await;
                answers
                    .into_iter()
                    .map(|(name, answer)| {
                        answer.map(|a| (name, a)).map_err(|e| e.into_store_error())
                    })
                    .collect()
            }
        }
    }

    /// Backups that answered a delta with "no copy" get the whole session.
    async fn repair(
        &self,
        id: &Id,
        answers: &[(String, Response)],
    ) -> Result<(), tether_core::Error> {
        let lacking: Vec<&str> = answers
            .iter()
            .filter(|(_, a)| matches!(a, Response::Applied(ApplyOutcome::Unknown)))
            .map(|(name, _)| name.as_str())
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        let Some(entry) = self.state.entry(id) else {
            return Ok(());
        };
        self.replicate(
            &lacking,
            &Request::Push {
                entries: vec![(*id, entry)],
            },
        )
        .await?;
        Ok(())
    }
}

/// Splits entries into pages of at most [`PAGE_ENTRIES`] and about `budget` bytes.
fn pages(entries: Vec<(Id, Entry)>, budget: usize) -> Vec<Vec<(Id, Entry)>> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut size = 0;
    for (id, entry) in entries {
        let weight = 64
            + entry
                .fields
                .iter()
                .map(|(k, f)| k.len() + f.value.as_ref().map_or(0, |v| v.len()) + 32)
                .sum::<usize>();
        if !page.is_empty() && (page.len() == PAGE_ENTRIES || size + weight > budget) {
            pages.push(std::mem::take(&mut page));
            size = 0;
        }
        size += weight;
        page.push((id, entry));
    }
    if !page.is_empty() {
        pages.push(page);
    }
    pages
}
