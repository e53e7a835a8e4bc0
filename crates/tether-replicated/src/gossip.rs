//! Peers found by gossip (feature `gossip`): SWIM failure detection and dissemination by
//! [foca](https://docs.rs/foca) over UDP, every packet signed with the cluster's key. A node
//! joins through seed addresses and learns every other node from them; what gossip knows is
//! the node's [`Discovery`] answer, asked again as soon as it changes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foca::{
    AccumulatingRuntime, Config, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec,
};
use rand::SeedableRng as _;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tether_core::BoxError;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::link::Link;
use crate::{Discovery, Error};

/// Default bound on waiting for a seed to answer when a node starts: 2 s.
pub const DEFAULT_GOSSIP_JOIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest gossip payload, in bytes; with the 35-byte envelope a packet fits an Ethernet
/// frame unfragmented.
pub const MAX_GOSSIP_PAYLOAD: usize = 1_400;
/// Default number of nodes gossip is tuned for (how often an update is repeated, how long a
/// silent node is suspected before it is declared down): 8.
pub const DEFAULT_GOSSIP_EXPECTED_SIZE: u32 = 8;

/// Packet prefix: "tg" and the envelope version.
const MAGIC: &[u8; 3] = b"tg\x01";
const TAG_LEN: usize = 32;
const ENVELOPE: usize = MAGIC.len() + TAG_LEN;
/// How often a node that knows no other node announces itself to the seeds again.
const SEED_RETRY: Duration = Duration::from_secs(1);

/// Gossip membership settings ([`NodeConfig::with_gossip`](crate::NodeConfig::with_gossip),
/// feature `gossip`): where this node gossips and which nodes it asks first.
///
/// Nodes gossip over UDP, SWIM-style ([foca](https://docs.rs/foca)): each probes a random
/// member every second, asks others to probe it when it does not answer, and spreads what it
/// learns (joins, leaves, deaths) on the packets it sends anyway. Every packet carries an
/// HMAC-SHA256 tag made with the cluster's [`PeerKey`](crate::PeerKey): a packet from another
/// cluster, with a wrong key or forged is dropped unread and counted
/// ([`NodeStats::rejected_gossip`](crate::NodeStats::rejected_gossip)). Gossip is signed, not
/// encrypted: it carries node names and addresses, never sessions (those go over the
/// replication connections, TLS with feature `tls`).
///
/// A starting node announces itself to the seeds (any nodes of the cluster; the same list on
/// every node is fine, this node's own address is skipped) and waits for one to answer, up to
/// the join timeout; if none does (the first node of a cluster) it starts alone and keeps
/// announcing itself every second until one answers. The seeds must be the addresses the
/// nodes advertise ([`Gossip::with_advertised`]).
///
/// How fast the views agree: a node that starts is known to its seed at once and to the other
/// nodes at the seed's next gossip (every 200 ms); each of them asks its discovery again as soon
/// as gossip changes, so the new node is in every view once it has joined (its state transfer
/// and a few heartbeats): 0.42-0.68 s after it started in the tests, with writes running and
/// none failing, against a bound of 2 s asserted there. A node that leaves with
/// [`Node::shutdown`](crate::Node::shutdown) is out of every view at once; a killed one within
/// the failure timeout, by the heartbeats, before gossip declares it down (a few seconds).
///
/// # Example
///
/// ```
/// use tether_replicated::{Gossip, NodeConfig, PeerKey};
///
/// let key = PeerKey::new(*b"an example key of 32 bytes, ok!!")?;
/// let gossip = Gossip::new("10.0.0.1:7946".parse()?)
///     .with_seeds(["10.0.0.1:7946".parse()?, "10.0.0.2:7946".parse()?]);
/// let config = NodeConfig::new("node-a", "10.0.0.1:7000".parse()?, key).with_gossip(gossip);
/// # let _ = config;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Gossip {
    bind: SocketAddr,
    advertised: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
    join_timeout: Duration,
    expected_size: NonZeroU32,
}

impl Gossip {
    /// Gossips on the UDP address `bind` (port 0 picks a free port; then give the address
    /// others reach with [`Gossip::with_advertised`]).
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            advertised: None,
            seeds: Vec::new(),
            join_timeout: DEFAULT_GOSSIP_JOIN_TIMEOUT,
            expected_size: NonZeroU32::MIN.saturating_add(DEFAULT_GOSSIP_EXPECTED_SIZE - 1),
        }
    }

    /// Adds a seed: the gossip address of a node of the cluster.
    pub fn with_seed(mut self, seed: SocketAddr) -> Self {
        self.seeds.push(seed);
        self
    }

    /// Adds seeds.
    pub fn with_seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds.extend(seeds);
        self
    }

    /// The gossip address the other nodes reach this node at (default: the bound address,
    /// which must then not be `0.0.0.0` or `[::]`). When the node's replication address is
    /// unspecified too, peers reach it at this address's IP and the replication port.
    pub fn with_advertised(mut self, addr: SocketAddr) -> Self {
        self.advertised = Some(addr);
        self
    }

    /// How long a starting node waits for a seed to answer before it starts alone (default
    /// [`DEFAULT_GOSSIP_JOIN_TIMEOUT`]).
    pub fn with_join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// The number of nodes the cluster usually has (default [`DEFAULT_GOSSIP_EXPECTED_SIZE`];
    /// at least 1): gossip repeats each update about `3 * log10(n)` times and suspects a
    /// silent node longer in a larger cluster before declaring it down.
    pub fn with_expected_size(mut self, nodes: u32) -> Self {
        self.expected_size = NonZeroU32::new(nodes).unwrap_or(NonZeroU32::MIN);
        self
    }
}

/// A node as gossip names it: its gossip address (what the protocol keys members by), its
/// node name and replication address (what the cluster needs), and an incarnation that makes
/// a restarted node win over its earlier self.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    gossip: SocketAddr,
    name: String,
    replication: SocketAddr,
    incarnation: u64,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.gossip, self.incarnation)
    }
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            incarnation: self.incarnation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

impl Member {
    /// What a seed is known as before it answers: its address is all that counts for an
    /// announcement.
    fn seed(gossip: SocketAddr) -> Self {
        Self {
            gossip,
            name: String::new(),
            replication: gossip,
            incarnation: 0,
        }
    }
}

/// The running gossip of a node, as its [`Discovery`].
#[derive(Debug)]
pub(crate) struct GossipDiscovery {
    members: watch::Receiver<Vec<(String, SocketAddr)>>,
    changes: tokio::sync::Mutex<watch::Receiver<Vec<(String, SocketAddr)>>>,
    leaving: Arc<AtomicBool>,
    local_addr: SocketAddr,
}

impl GossipDiscovery {
    /// Makes the node's stop a graceful leave: gossip tells the others before it stops.
    pub(crate) fn leave_on_stop(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }

    /// The bound gossip address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

#[async_trait::async_trait]
impl Discovery for GossipDiscovery {
    async fn discover(&self) -> Result<Vec<(String, SocketAddr)>, BoxError> {
        Ok(self.members.borrow().clone())
    }

    async fn changed(&self) {
        let mut changes = self.changes.lock().await;
        if changes.changed().await.is_err() {
            // Gossip stopped with the node: nothing changes any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Binds the gossip socket of node `name` (replication address `replication`), announces it
/// to the seeds and waits, up to the join timeout, for one of them to answer.
pub(crate) async fn start(
    settings: &Gossip,
    name: &str,
    replication: SocketAddr,
    link: Arc<Link>,
) -> Result<Arc<GossipDiscovery>, Error> {
    let socket = UdpSocket::bind(settings.bind)
        .await
        .map_err(|source| Error::Discovery {
            what: "could not bind the gossip address",
            source: Box::new(source),
        })?;
    let local_addr = socket.local_addr().map_err(|source| Error::Discovery {
        what: "could not read the gossip address",
        source: Box::new(source),
    })?;
    let advertised = settings.advertised.unwrap_or(local_addr);
    if advertised.ip().is_unspecified() {
        return Err(Error::Discovery {
            what: "gossip needs an address the other nodes can reach: bind to one, or give it \
                   with Gossip::with_advertised",
            source: format!("{advertised} is unspecified").into(),
        });
    }
    let replication = if replication.ip().is_unspecified() {
        SocketAddr::new(advertised.ip(), replication.port())
    } else {
        replication
    };
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let identity = Member {
        gossip: advertised,
        name: name.to_owned(),
        replication,
        incarnation,
    };
    let config = Config::new_lan(settings.expected_size);
    // Randomness here only picks whom to probe; a weak seed costs nothing but spread.
    let rng = SmallRng::seed_from_u64(getrandom::u64().unwrap_or(incarnation));
    let foca = Foca::new(identity, config, rng, PostcardCodec);
    let seeds = settings
        .seeds
        .iter()
        .copied()
        .filter(|seed| *seed != advertised && *seed != local_addr)
        .collect::<Vec<_>>();
    let (sender, members) = watch::channel(Vec::new());
    let leaving = Arc::new(AtomicBool::new(false));
    let agent = Agent {
        foca,
        runtime: AccumulatingRuntime::new(),
        socket,
        link,
        timers: BTreeMap::new(),
        timer_seq: 0,
        seeds: seeds.clone(),
        members: sender,
        leaving: Arc::clone(&leaving),
    };
    tokio::spawn(agent.run());
    if !seeds.is_empty() {
        let mut joined = members.clone();
        let answered = tokio::time::timeout(
            settings.join_timeout,
            joined.wait_for(|members| !members.is_empty()),
        )
        .await;
        if !matches!(answered, Ok(Ok(_))) {
            tracing::info!(
                node = %name,
                seeds = seeds.len(),
                "no gossip seed answered within the join timeout; starting alone and \
                 announcing to the seeds every second"
            );
        }
    }
    Ok(Arc::new(GossipDiscovery {
        changes: tokio::sync::Mutex::new(members.clone()),
        members,
        leaving,
        local_addr,
    }))
}

type Protocol = Foca<Member, PostcardCodec, SmallRng, NoCustomBroadcast>;

/// The task that owns the protocol state, the socket and the timers of one node's gossip.
struct Agent {
    foca: Protocol,
    runtime: AccumulatingRuntime<Member>,
    socket: UdpSocket,
    link: Arc<Link>,
    /// Timer events by due time, in the order they were asked for (foca needs that order).
    timers: BTreeMap<(Instant, u64), foca::Timer<Member>>,
    timer_seq: u64,
    seeds: Vec<SocketAddr>,
    members: watch::Sender<Vec<(String, SocketAddr)>>,
    leaving: Arc<AtomicBool>,
}

impl Agent {
    async fn run(mut self) {
        let mut buf = vec![0u8; ENVELOPE + MAX_GOSSIP_PAYLOAD + 1];
        let mut seed_retry = tokio::time::interval(SEED_RETRY);
        seed_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let link = Arc::clone(&self.link);
        loop {
            let next_timer = self.timers.first_key_value().map(|((at, _), _)| *at);
            tokio::select! {
                () = link.cancelled() => {
                    if self.leaving.load(Ordering::Relaxed) {
                        if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
                            tracing::debug!(%error, "gossip could not announce the leave");
                        }
                        self.drain().await;
                    }
                    return;
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.receive(buf.get(..len).unwrap_or_default(), from),
                    Err(error) => tracing::debug!(%error, "gossip receive failed"),
                },
                () = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)),
                    if next_timer.is_some() => self.fire_timers(),
                _ = seed_retry.tick() => self.announce_to_seeds(),
            }
            self.drain().await;
        }
    }

    /// Hands a packet to the protocol if it carries the cluster's tag.
    fn receive(&mut self, packet: &[u8], from: SocketAddr) {
        let Some(payload) = open(self.link.key(), packet) else {
            let refused = self.link.counters().rejected_gossip();
            // A flood must not flood the log: the 1st, 2nd, 4th, 8th... refusal is logged.
            if refused.is_power_of_two() {
                tracing::warn!(
                    %from,
                    refused,
                    "gossip packet refused: not signed with this cluster's key (another \
                     cluster, a wrong key, a forgery) or not gossip"
                );
            }
            return;
        };
        if let Err(error) = self.foca.handle_data(payload, &mut self.runtime) {
            tracing::debug!(%from, %error, "gossip packet not applied");
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(%error, "gossip timer not applied");
            }
        }
    }

    /// A node that knows no other announces itself to the seeds (again).
    fn announce_to_seeds(&mut self) {
        if self.foca.num_members() > 0 {
            return;
        }
        for seed in &self.seeds {
            if let Err(error) = self.foca.announce(Member::seed(*seed), &mut self.runtime) {
                tracing::debug!(%seed, %error, "gossip could not announce to a seed");
            }
        }
    }

    /// Sends what the protocol wants sent, schedules its timers and publishes the members
    /// when they changed.
    async fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            let packet = seal(self.link.key(), &data);
            if let Err(error) = self.socket.send_to(&packet, to.gossip).await {
                tracing::debug!(to = %to.gossip, %error, "gossip send failed");
            }
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        let mut changed = false;
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(member) => {
                    tracing::info!(node = %member.name, addr = %member.gossip, "gossip: node up");
                    changed = true;
                }
                OwnedNotification::MemberDown(member) => {
                    tracing::info!(node = %member.name, addr = %member.gossip, "gossip: node down");
                    changed = true;
                }
                OwnedNotification::Rename(_, _) => changed = true,
                OwnedNotification::Rejoin(member) => {
                    tracing::info!(
                        incarnation = member.incarnation,
                        "gossip declared this node down; it rejoined"
                    );
                }
                other => tracing::debug!(notification = ?other, "gossip"),
            }
        }
        if changed {
            self.publish();
        }
    }

    /// The members by node name, the latest incarnation of each (a node restarted at a new
    /// address is briefly known at both).
    fn publish(&self) {
        let mut latest: HashMap<&str, &Member> = HashMap::new();
        for member in self.foca.iter_members() {
            let member = member.id();
            latest
                .entry(member.name.as_str())
                .and_modify(|known| {
                    if member.incarnation > known.incarnation {
                        *known = member;
                    }
                })
                .or_insert(member);
        }
        let mut members: Vec<(String, SocketAddr)> = latest
            .values()
            .map(|member| (member.name.clone(), member.replication))
            .collect();
        members.sort();
        self.members.send_if_modified(|current| {
            let changed = *current != members;
            if changed {
                *current = members;
            }
            changed
        });
    }
}

/// `payload` in its envelope: the prefix, the tag, the payload.
fn seal(key: &crate::PeerKey, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(ENVELOPE + payload.len());
    packet.extend_from_slice(MAGIC);
    packet.extend_from_slice(&key.gossip_tag(payload));
    packet.extend_from_slice(payload);
    packet
}

/// The payload of `packet` if its envelope is whole and its tag is right.
fn open<'a>(key: &crate::PeerKey, packet: &'a [u8]) -> Option<&'a [u8]> {
    let rest = packet.strip_prefix(MAGIC)?;
    let (tag, payload) = rest.split_at_checked(TAG_LEN)?;
    key.verify_gossip(payload, tag).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_packets_sealed_with_the_key_open() {
        let key = crate::PeerKey::new([1u8; 32]).unwrap();
        let other = crate::PeerKey::new([2u8; 32]).unwrap();
        let packet = seal(&key, b"hello");
        assert_eq!(open(&key, &packet), Some(&b"hello"[..]));
        assert_eq!(open(&other, &packet), None, "another cluster's key");
        let mut forged = packet.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(open(&key, &forged), None, "a changed payload");
        assert_eq!(open(&key, &packet[..10]), None, "a cut envelope");
        assert_eq!(open(&key, b""), None);
        assert_eq!(open(&key, &[0u8; 64]), None, "no prefix");
    }
}
