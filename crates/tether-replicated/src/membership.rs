//! Who is a member: this node's peers and what their heartbeats say, the view computed from
//! them and published at every heartbeat, the join protocol that makes this node a member, and
//! the stall detection that makes it join again after it stood still.
//!
//! Two flags say where this node is in the join: *ready* (announced to peers in its heartbeat
//! answers: they count it a member) and *serving* (it counts itself a member: it answers for
//! the sessions it holds and stamps their writes).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::link::Link;
use crate::peer::{MAX_BACKOFF as PEER_MAX_BACKOFF, Peer};
use crate::state::LocalState;
use crate::transfer;
use crate::{Mode, NodeConfig, Quorum, View};

/// This node's membership in the cluster.
pub(crate) struct Members {
    link: Arc<Link>,
    /// Filled by the join protocol's state transfers.
    state: Arc<LocalState>,
    /// The peers by name, with the address each is reached at: the configured list, or what
    /// discovery last found.
    peers: RwLock<HashMap<String, (SocketAddr, Peer)>>,
    mode: Mode,
    heartbeat: Duration,
    failure_timeout: Duration,
    sync_timeout: Duration,
    view: watch::Sender<View>,
    /// Announced to peers as ready: they count this node as a member.
    ready: AtomicBool,
    /// Counts itself as a member: serves and stamps writes for the sessions it holds.
    serving: AtomicBool,
    /// Peers that have pinged this node since it announced itself ready, so count it a member.
    pinged_by: Mutex<HashSet<String>>,
    /// When the heartbeat loop last ran, and how many stalls were noticed: see
    /// [`Members::notice_stall`].
    liveness: Mutex<Liveness>,
    /// Woken when a stall is noticed, to join again.
    stalled: Notify,
    /// Set once a graceful leave began: the node never serves or joins again.
    leaving: AtomicBool,
    /// Members a write needs: see [`Members::quorum_shortfall`].
    quorum: Quorum,
}

/// The node's own sense of time passing: a gap in its heartbeats means the process stood still.
#[derive(Debug)]
struct Liveness {
    last_tick: Instant,
    /// Stalls noticed so far: a join completes only if none was noticed while it ran.
    stalls: u64,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("name", &self.name())
            .field("view", &*self.view.borrow())
            .finish_non_exhaustive()
    }
}

impl Members {
    /// Not a member yet, with an empty view, until [`Members::stay_joined`] has joined;
    /// connected to `peers` (this node left out).
    pub(crate) fn new(
        config: &NodeConfig,
        link: Arc<Link>,
        state: Arc<LocalState>,
        peers: &HashMap<String, SocketAddr>,
    ) -> Self {
        let (view, _) = watch::channel(View::new(Vec::<String>::new(), config.mode));
        let peers = peers
            .iter()
            .filter(|(name, _)| *name != link.name())
            .map(|(name, addr)| {
                let peer = Peer::spawn(name.clone(), *addr, Arc::clone(&link));
                (name.clone(), (*addr, peer))
            })
            .collect();
        Self {
            link,
            state,
            peers: RwLock::new(peers),
            mode: config.mode,
            heartbeat: config.heartbeat,
            failure_timeout: config.failure_timeout,
            sync_timeout: config.sync_timeout,
            quorum: config.quorum,
            view,
            ready: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            pinged_by: Mutex::new(HashSet::new()),
            liveness: Mutex::new(Liveness {
                last_tick: Instant::now(),
                stalls: 0,
            }),
            stalled: Notify::new(),
            leaving: AtomicBool::new(false),
        }
    }

    /// This node's name.
    pub(crate) fn name(&self) -> &str {
        self.link.name()
    }

    /// The counters of the node's traffic and events.
    pub(crate) fn counters(&self) -> &crate::link::Counters {
        self.link.counters()
    }

    /// Whether the node was stopped: nothing it could try again would succeed.
    pub(crate) fn is_stopped(&self) -> bool {
        self.link.is_stopped()
    }

    /// The current view.
    pub(crate) fn view(&self) -> View {
        self.view.borrow().clone()
    }

    /// Changes of the view, as they are published.
    pub(crate) fn watch(&self) -> watch::Receiver<View> {
        self.view.subscribe()
    }

    /// The view to route a request by. A node that is not serving has no member in its view
    /// until fresh heartbeats came in (after a stall its last ones are too old), and the view is
    /// published once per heartbeat: then it is recomputed, for up to two heartbeats, so that
    /// requests arriving at once are forwarded rather than refused.
    pub(crate) async fn routing_view(&self) -> View {
        let deadline = tokio::time::Instant::now() + self.heartbeat * 2;
        loop {
            let view = self.view();
            if !view.members().is_empty() || tokio::time::Instant::now() >= deadline {
                return view;
            }
            self.publish_view();
            tokio::time::sleep(self.heartbeat / 10).await;
        }
    }

    fn read_peers(&self) -> RwLockReadGuard<'_, HashMap<String, (SocketAddr, Peer)>> {
        self.peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection to the peer `name`.
    pub(crate) fn peer(&self, name: &str) -> Option<Peer> {
        self.read_peers().get(name).map(|(_, peer)| peer.clone())
    }

    /// Every peer's name and address, as of now.
    pub(crate) fn peer_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.read_peers()
            .iter()
            .map(|(name, (addr, _))| (name.clone(), *addr))
            .collect()
    }

    /// Every peer, as of now.
    fn peers(&self) -> Vec<Peer> {
        self.read_peers()
            .values()
            .map(|(_, peer)| peer.clone())
            .collect()
    }

    /// Requests waiting in the queues to every peer.
    pub(crate) fn queued(&self) -> usize {
        self.read_peers()
            .values()
            .map(|(_, peer)| peer.queued())
            .sum()
    }

    /// Makes `found` the peers (this node left out): connects to the new ones and to those
    /// whose address changed, and drops the others, whose connections then end. Returns
    /// whether anything changed.
    pub(crate) fn set_peers(&self, found: &HashMap<String, SocketAddr>) -> bool {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        let before = peers.len();
        peers.retain(|name, (addr, _)| found.get(name) == Some(addr));
        let mut changed = peers.len() != before;
        for (name, addr) in found {
            if name == self.name() || peers.contains_key(name) {
                continue;
            }
            let peer = Peer::spawn(name.clone(), *addr, Arc::clone(&self.link));
            peers.insert(name.clone(), (*addr, peer));
            changed = true;
        }
        drop(peers);
        if changed {
            tracing::info!(node = %self.name(), peers = ?found.keys().collect::<Vec<_>>(), "peers changed");
            self.link.peer_lost();
        }
        changed
    }

    /// `Some((seen, needed))` when the view holds fewer members than the quorum: the node must
    /// not take writes, it may be on the smaller side of a network split.
    pub(crate) fn quorum_shortfall(&self) -> Option<(usize, usize)> {
        if self.quorum == Quorum::Off {
            // Every write asks: no lock on the peers when there is nothing to count.
            return None;
        }
        let seen = self.view.borrow().members().len();
        let needed = self.quorum.required(self.read_peers().len() + 1);
        (seen < needed).then_some((seen, needed))
    }

    /// Whether `name` is a configured peer.
    pub(crate) fn is_peer(&self, name: &str) -> bool {
        self.peer(name).is_some()
    }

    /// Announced to peers as ready: the answer to their heartbeats.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Counts itself a member: it may answer for the sessions it holds. A node that is joining
    /// (after a start or a stall) forwards everything to the members instead.
    pub(crate) fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    fn lock_liveness(&self) -> MutexGuard<'_, Liveness> {
        self.liveness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A gap between heartbeats longer than this means the process stood still long enough for
    /// its peers to have declared it dead: they stop counting a peer whose last answer is a
    /// failure timeout old, and that answer may be a heartbeat older than this node's last tick.
    fn stall_limit(&self) -> Duration {
        let (heartbeat, failure) = (self.heartbeat, self.failure_timeout);
        failure.saturating_sub(heartbeat).max(heartbeat * 3 / 2)
    }

    /// Checks this node's own monotonic clock for a stall: a pause (SIGSTOP, a frozen VM, a
    /// starved runtime) longer than [`Members::stall_limit`] since the heartbeat loop last ran.
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
        tracing::warn!(node = %self.name(), ?gap, "this node stood still past the failure timeout; it stops serving and joins again");
        self.join_again(liveness);
    }

    /// A peer refused a copy from this node because this node is not in its view: the cluster
    /// declared it dead (a stall this node did not see, or a one-way cut) and moved on. It stops
    /// serving and joins again, as after a stall.
    pub(crate) fn fenced_by(&self, peer: &str) {
        let mut liveness = self.lock_liveness();
        if !self.is_serving() {
            return;
        }
        tracing::warn!(node = %self.name(), %peer, "a peer no longer counts this node a member; it stops serving and joins again");
        self.join_again(&mut liveness);
    }

    /// Stops serving and announcing itself ready, and wakes the join loop: a new join epoch.
    fn join_again(&self, liveness: &mut Liveness) {
        liveness.stalls += 1;
        liveness.last_tick = Instant::now();
        self.serving.store(false, Ordering::Release);
        self.ready.store(false, Ordering::Release);
        self.lock_pinged_by().clear();
        self.publish_view();
        self.stalled.notify_one();
    }

    /// A heartbeat of the node itself: checks for a stall, then records that it runs.
    fn tick(&self) {
        let mut liveness = self.lock_liveness();
        self.check_stall(&mut liveness);
        liveness.last_tick = Instant::now();
    }

    /// How many times the node stopped serving to join again (it stood still, or was
    /// fenced): a new join epoch each time.
    pub(crate) fn stalls(&self) -> u64 {
        self.lock_liveness().stalls
    }

    /// Sets `flag` (ready or serving) unless a stall was noticed since the join of `epoch`
    /// began, or is noticed now, or the node is leaving.
    fn set_if_current(&self, epoch: u64, flag: &AtomicBool) -> bool {
        let mut liveness = self.lock_liveness();
        self.check_stall(&mut liveness);
        if liveness.stalls != epoch || self.is_leaving() {
            return false;
        }
        flag.store(true, Ordering::Release);
        true
    }

    /// The peers that answer heartbeats and have finished joining.
    fn member_peers(&self) -> Vec<Peer> {
        let failure = self.failure_timeout;
        let mut peers = self.peers();
        peers.retain(|peer| peer.is_member(failure));
        peers
    }

    fn current_members(&self) -> View {
        let peers = self.member_peers();
        let mut members: Vec<&str> = peers.iter().map(Peer::name).collect();
        if self.is_serving() {
            members.push(self.name());
        }
        View::new(members, self.mode)
    }

    /// Recomputes the view at every heartbeat and publishes it when it changed.
    pub(crate) async fn watch_members(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat);
        loop {
            tokio::select! {
                () = self.link.cancelled() => return,
                _ = tick.tick() => self.tick(),
                () = self.link.peers_changed() => self.notice_stall(),
            }
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
                self.link.counters().view_changed();
                *current = view;
            }
            changed
        });
    }

    /// Whether a graceful leave began.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// Begins a graceful leave; false if one began already.
    pub(crate) fn begin_leave(&self) -> bool {
        !self.leaving.swap(true, Ordering::AcqRel)
    }

    /// The leaving node stops serving: its store forwards to the members and it refuses to act
    /// as a primary. Its heartbeats still say it is ready, so its peers keep it in their views
    /// (and keep forwarding its sessions' writes to it, which it refuses as transient) until it
    /// has handed those sessions over and announced that it leaves.
    pub(crate) fn stop_serving(&self) {
        let _liveness = self.lock_liveness();
        self.serving.store(false, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.publish_view();
    }

    /// How many peers answer heartbeats.
    pub(crate) fn live_peers(&self) -> usize {
        let failure = self.failure_timeout;
        self.peers().iter().filter(|p| p.is_alive(failure)).count()
    }

    /// Tells every live peer that this node leaves, and waits for their answers, at most
    /// `timeout`; how many answered. A peer that does not answer drops this node at its next
    /// heartbeat (the answer says "not ready") or once the node is gone.
    pub(crate) async fn announce_leave(&self, timeout: Duration) -> usize {
        self.ready.store(false, Ordering::Release);
        let failure = self.failure_timeout;
        let mut live = self.peers();
        live.retain(|p| p.is_alive(failure));
        let answers = futures_util::future::join_all(
            live.iter()
                .map(|peer| peer.request(crate::wire::Request::Leave, timeout)),
        )
        .await;
        answers.iter().filter(|a| a.is_ok()).count()
    }

    /// `peer` announced that it leaves: it is no member from now on, until it joins again.
    pub(crate) fn peer_left(&self, peer: &str) {
        if let Some(peer) = self.peer(peer) {
            peer.left();
            tracing::info!(node = %self.name(), peer = peer.name(), "peer leaves the cluster");
            self.link.peer_lost();
        }
    }

    /// Joins, and joins again after every stall, until the node stops or leaves.
    pub(crate) async fn stay_joined(self: Arc<Self>) {
        loop {
            if self.is_leaving() {
                return;
            }
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
        let window = self.failure_timeout * 2;
        let started = tokio::time::Instant::now();
        let failure = self.failure_timeout;
        while started.elapsed() < window {
            // A peer whose port refuses is not waited for: discovery may still list a node
            // that has just died.
            if self
                .peers()
                .iter()
                .all(|peer| peer.is_alive(failure) || peer.refuses())
            {
                break;
            }
            tokio::time::sleep(self.heartbeat / 2).await;
        }
        let mut received = self.transfer_from_members().await;
        self.lock_pinged_by().clear();
        if !self.set_if_current(epoch, &self.ready) {
            return false;
        }
        if !self.read_peers().is_empty() {
            self.await_live_peers().await;
            // A peer adopts the new view at its next tick after the ping.
            tokio::time::sleep(self.heartbeat * 2).await;
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
        let members = self.member_peers();
        let mut received = 0;
        for peer in &members {
            received += transfer::pull(peer, self.name(), &self.state, self.sync_timeout * 4).await;
        }
        self.link.counters().sessions_received(received);
        received
    }

    /// Records that `peer` pinged this node; from its answer on, it counts this node a member
    /// once this node is ready.
    pub(crate) fn pinged(&self, peer: &str) {
        if self.is_ready() && !self.is_serving() {
            self.lock_pinged_by().insert(peer.to_owned());
        }
    }

    fn lock_pinged_by(&self) -> MutexGuard<'_, HashSet<String>> {
        self.pinged_by
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until every live peer is ready and has pinged this node since it became ready (a
    /// peer that was away reconnects with a backoff of up to two seconds), bounded in time.
    async fn await_live_peers(&self) {
        let failure = self.failure_timeout;
        let deadline = tokio::time::Instant::now() + PEER_MAX_BACKOFF + failure * 2;
        while tokio::time::Instant::now() < deadline {
            let all_seen = {
                let pinged_by = self.lock_pinged_by();
                self.peers()
                    .iter()
                    .filter(|peer| peer.is_alive(failure))
                    .all(|peer| peer.is_member(failure) && pinged_by.contains(peer.name()))
            };
            if all_seen {
                return;
            }
            tokio::time::sleep(self.heartbeat / 4).await;
        }
        tracing::warn!(node = %self.name(), "not every live peer was ready and pinged this node while joining");
    }
}
