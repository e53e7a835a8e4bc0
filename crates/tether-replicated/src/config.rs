//! How a node is set up.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::{Error, PeerKey};

/// Which nodes hold each session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Every node holds every session (Tomcat's `DeltaManager`). Reads are always local; each
    /// write is sent to every other node, so traffic grows with the cluster.
    AllToAll,
    /// Each session has a primary and `copies` backups, chosen by rendezvous hashing over the live
    /// nodes (Tomcat's `BackupManager`). Each write is sent to `copies` nodes whatever the size of
    /// the cluster; a node that holds no copy fetches the session from its holders.
    Backup {
        /// Backups per session, at least 1.
        copies: usize,
    },
}

impl fmt::Display for Mode {
    /// `all-to-all` or `backup-N`, as [`FromStr`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AllToAll => f.write_str("all-to-all"),
            Self::Backup { copies } => write!(f, "backup-{copies}"),
        }
    }
}

impl FromStr for Mode {
    type Err = ParseModeError;

    /// Reads `all-to-all`, or `backup-N` with `N` backups per session (at least 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all-to-all" {
            return Ok(Self::AllToAll);
        }
        s.strip_prefix("backup-")
            .and_then(|copies| copies.parse().ok())
            .filter(|copies| *copies > 0)
            .map(|copies| Self::Backup { copies })
            .ok_or_else(|| ParseModeError {
                input: s.to_owned(),
            })
    }
}

/// A [`Mode`] that could not be read: neither `all-to-all` nor `backup-N` with `N >= 1`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown replication mode {input:?}: expected all-to-all or backup-N (N >= 1 backups)")]
pub struct ParseModeError {
    input: String,
}

/// When a write returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ack {
    /// After every holder of the session (by the current view) applied it. A holder that does
    /// not answer within the sync timeout fails the attempt; the write is tried again (see
    /// [`NodeConfig::with_retry_deadline`]) and, once the dead holder has left the view, answered
    /// when the session's new holders have it. Past the retry deadline it fails with a transient
    /// error (the layer answers 503). Nothing acknowledged is lost while at least one holder
    /// survives.
    Sync,
    /// After the session's primary applied it; backups are updated in the background and may
    /// miss a write if the primary dies at once. Faster.
    Async,
}

impl fmt::Display for Ack {
    /// `sync` or `async`, as [`FromStr`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sync => "sync",
            Self::Async => "async",
        })
    }
}

impl FromStr for Ack {
    type Err = ParseAckError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Self::Sync),
            "async" => Ok(Self::Async),
            other => Err(ParseAckError {
                input: other.to_owned(),
            }),
        }
    }
}

/// An [`Ack`] that could not be read: neither `sync` nor `async`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown ack {input:?}: expected sync or async")]
pub struct ParseAckError {
    input: String,
}

/// `Mode`, `Ack` and `Quorum` in configuration files: written and read as their `Display`
/// strings (`"backup-1"`, `"all-to-all"`, `"sync"`, `"async"`, `"majority"`), so a file says what
/// a flag says.
#[cfg(feature = "serde")]
mod serde_impls {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Ack, Mode};
    use crate::Quorum;

    fn from_display<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr<Err: Display>,
    {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl Serialize for Mode {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de> Deserialize<'de> for Mode {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            from_display(deserializer)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl Serialize for Quorum {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de> Deserialize<'de> for Quorum {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            from_display(deserializer)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl Serialize for Ack {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de> Deserialize<'de> for Ack {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            from_display(deserializer)
        }
    }
}

/// Settings of a replication node. Start with [`NodeConfig::new`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_replicated::{Ack, Mode, NodeConfig, PeerKey};
///
/// let key = PeerKey::new(*b"an example key of 32 bytes, ok!!")?;
/// let config = NodeConfig::new("node-a", "127.0.0.1:7001".parse()?, key)
///     .with_peer("node-b", "127.0.0.1:7002".parse()?)
///     .with_peer("node-c", "127.0.0.1:7003".parse()?)
///     .with_mode(Mode::Backup { copies: 1 })
///     .with_ack(Ack::Sync)
///     .with_sync_timeout(Duration::from_millis(500));
/// assert_eq!(config.name(), "node-a");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct NodeConfig {
    pub(crate) name: String,
    pub(crate) listen: SocketAddr,
    pub(crate) peers: Vec<(String, SocketAddr)>,
    pub(crate) key: PeerKey,
    pub(crate) mode: Mode,
    pub(crate) ack: Ack,
    pub(crate) sync_timeout: Duration,
    pub(crate) retry_deadline: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) failure_timeout: Duration,
    pub(crate) max_frame: usize,
    pub(crate) queue: usize,
    pub(crate) tombstone_retention: Duration,
    pub(crate) max_handshakes: usize,
    pub(crate) max_clock_drift: Duration,
    pub(crate) leave_timeout: Duration,
    pub(crate) quorum: crate::Quorum,
    pub(crate) max_sessions_per_principal: Option<std::num::NonZeroUsize>,
    pub(crate) discovery: Option<std::sync::Arc<dyn crate::Discovery>>,
    pub(crate) discovery_interval: Duration,
    #[cfg(feature = "gossip")]
    pub(crate) gossip: Option<crate::Gossip>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::PeerTls>,
}

/// Default bound on waiting for holders to acknowledge a write.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time within which a store call is retried after a transient failure: 2 s.
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(2);
/// Default interval between heartbeats to each peer.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(200);
/// Default silence after which a peer counts as dead.
pub const DEFAULT_FAILURE_TIMEOUT: Duration = Duration::from_millis(1_200);
/// Default largest frame accepted from a peer: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// Default number of messages waiting for one peer before further ones are refused.
pub const DEFAULT_QUEUE: usize = 4_096;
/// Default shortest time a deletion is remembered.
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(120);
/// Default number of incoming connections that may be authenticating at the same time.
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;
/// Default bound on how far ahead of a node's wall clock a peer's timestamps may be: 5 s.
///
/// Far above what synchronised clocks disagree by (NTP keeps servers within milliseconds; a
/// VM pause or a leap-second smear costs well under a second), so that an ordinary clock hiccup
/// does not make nodes refuse each other's writes; small next to session lifetimes and the
/// tombstone retention. CockroachDB's `--max-offset` is 500 ms, but a database needs it tight
/// for its uncertainty intervals; here the bound only stops one bad clock from dragging the
/// cluster's timestamps (and its writes' precedence) far into the future.
pub const DEFAULT_MAX_CLOCK_DRIFT: Duration = Duration::from_secs(5);
/// Default interval between two questions to a [`Discovery`](crate::Discovery): 5 s.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// Default bound on a graceful leave ([`Node::shutdown`](crate::Node::shutdown)): 10 s, well
/// inside Kubernetes' default grace period of 30 s.
pub const DEFAULT_LEAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest node name, in bytes: any DNS name fits. Names travel in the handshake, whose frames
/// are limited to a few hundred bytes until the peer has authenticated.
pub const MAX_NAME_LEN: usize = 255;

impl NodeConfig {
    /// A node named `name` (unique in the cluster, stable across restarts: placement hashes it)
    /// listening for peers on `listen`, authenticating them with `key`. Defaults: `Backup`
    /// with 1 copy, `Sync` acknowledgements.
    pub fn new(name: impl Into<String>, listen: SocketAddr, key: PeerKey) -> Self {
        Self {
            name: name.into(),
            listen,
            peers: Vec::new(),
            key,
            mode: Mode::Backup { copies: 1 },
            ack: Ack::Sync,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
            retry_deadline: DEFAULT_RETRY_DEADLINE,
            heartbeat: DEFAULT_HEARTBEAT,
            failure_timeout: DEFAULT_FAILURE_TIMEOUT,
            max_frame: DEFAULT_MAX_FRAME,
            queue: DEFAULT_QUEUE,
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_clock_drift: DEFAULT_MAX_CLOCK_DRIFT,
            leave_timeout: DEFAULT_LEAVE_TIMEOUT,
            quorum: crate::Quorum::Off,
            max_sessions_per_principal: None,
            discovery: None,
            discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
            #[cfg(feature = "gossip")]
            gossip: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Learns the cluster's nodes from `discovery` (DNS, a registry) instead of, or on top
    /// of, a fixed list: asked at start and then every [`DEFAULT_DISCOVERY_INTERVAL`] (see
    /// [`NodeConfig::with_discovery_interval`]), so nodes that appear join the cluster and
    /// nodes that vanish leave it without a restart. The peers given with
    /// [`NodeConfig::with_peer`] are used only when the first answer fails.
    pub fn with_discovery(mut self, discovery: impl crate::Discovery) -> Self {
        self.discovery = Some(std::sync::Arc::new(discovery));
        self
    }

    /// Learns the cluster's nodes by gossip (feature `gossip`): the node gossips on the UDP
    /// address in `gossip`, joins through its seeds, and its peers follow what gossip knows,
    /// at once when it changes. Instead of [`NodeConfig::with_discovery`], not on top of it.
    #[cfg(feature = "gossip")]
    pub fn with_gossip(mut self, gossip: crate::Gossip) -> Self {
        self.gossip = Some(gossip);
        self
    }

    /// How often the [`Discovery`](crate::Discovery) is asked (default
    /// [`DEFAULT_DISCOVERY_INTERVAL`]); at least 100 ms.
    pub fn with_discovery_interval(mut self, every: Duration) -> Self {
        self.discovery_interval = every.max(Duration::from_millis(100));
        self
    }

    /// How many members this node must see, itself included, to take writes as a session's
    /// primary (default [`Quorum::Off`](crate::Quorum::Off)). Below it, writes fail with a
    /// transient error: see [`Quorum`](crate::Quorum) for what each choice costs in a split.
    pub fn with_quorum(mut self, quorum: crate::Quorum) -> Self {
        self.quorum = quorum;
        self
    }

    /// Speaks TLS to every peer, with mutual certificate checks (feature `tls`; default: plain
    /// TCP). Every node of the cluster must use TLS: a node without it cannot connect to one
    /// with it, nor the other way round. Each node's certificate names it (a DNS subject
    /// alternative name equal to its node name) and is signed by the CA given here; the
    /// pre-shared key handshake still runs, inside the encrypted connection.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: crate::PeerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Adds a peer: its name and replication address.
    pub fn with_peer(mut self, name: impl Into<String>, addr: SocketAddr) -> Self {
        self.peers.push((name.into(), addr));
        self
    }

    /// Sets the peers, replacing every one given before: to reach them through other
    /// addresses (a proxy, a tunnel) than a generated configuration lists.
    pub fn with_peers<N: Into<String>>(
        mut self,
        peers: impl IntoIterator<Item = (N, SocketAddr)>,
    ) -> Self {
        self.peers = peers
            .into_iter()
            .map(|(name, addr)| (name.into(), addr))
            .collect();
        self
    }

    /// The replication mode (default `Backup { copies: 1 }`).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// When writes return (default `Sync`).
    pub fn with_ack(mut self, ack: Ack) -> Self {
        self.ack = ack;
        self
    }

    /// How long a write waits for its holders (default 1 s), and a read for a remote holder.
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// How long a store call keeps trying after a transient failure (default 2 s, see
    /// [`DEFAULT_RETRY_DEADLINE`]; `Duration::ZERO` tries once). When the session's primary is
    /// unreachable or gone, a node is still joining, the view is changing, or a backup died
    /// under a `Sync` write, the call waits for the next view (or a short backoff) and tries
    /// again, with the same write id, so it is applied once whatever happened to the attempts
    /// before. Past the deadline the call fails with the last transient error. No attempt
    /// starts after the deadline, so a call takes at most the deadline plus one attempt (a sync
    /// timeout, two for a write forwarded to its primary). Reads are retried the same way.
    ///
    /// A deadline longer than the failure timeout lets writes ride out the death of a node:
    /// once the others have noticed it, the call goes to the new primary (with `Sync`, once the
    /// session's new holders have it).
    pub fn with_retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry_deadline = deadline;
        self
    }

    /// Heartbeat interval (default 200 ms) and the silence after which a peer is dead (default
    /// 1.2 s). Shorter detects failures sooner, at the price of false alarms on a busy network.
    ///
    /// A node whose own heartbeats stop for longer than the failure timeout less one heartbeat
    /// (and at least one and a half heartbeats) counts itself stalled: its peers may have
    /// declared it dead. It stops serving and joins again, state transfer first.
    pub fn with_failure_detection(
        mut self,
        heartbeat: Duration,
        failure_timeout: Duration,
    ) -> Self {
        self.heartbeat = heartbeat;
        self.failure_timeout = failure_timeout;
        self
    }

    /// The largest frame accepted from an authenticated peer (default 16 MiB). A peer
    /// announcing a larger one is disconnected. Must exceed the largest session. Until a peer
    /// has authenticated, its frames are limited to 512 bytes whatever this setting.
    pub fn with_max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Messages that may wait for one peer (default 4,096). When a peer's queue is full, a `Sync`
    /// write that needs it fails at once with a transient error, and an `Async` background copy to
    /// it is dropped (and counted in [`NodeStats`](crate::NodeStats)); re-replication after the
    /// peer is declared dead, or a later write, repairs it.
    pub fn with_queue(mut self, messages: usize) -> Self {
        self.queue = messages;
        self
    }

    /// How long a deleted session's tombstone is kept at least (default 2 minutes), so a copy
    /// from a peer that was slow or partitioned cannot bring it back. It is kept longer if the
    /// session would have lived longer.
    pub fn with_tombstone_retention(mut self, retention: Duration) -> Self {
        self.tombstone_retention = retention;
        self
    }

    /// Incoming connections that may be authenticating at the same time (default 64). Each
    /// holds a slot from its accept until its peer has proved the key, at most 2 s; a
    /// connection arriving while every slot is taken is closed at once (counted in
    /// [`NodeStats::rejected_connections`](crate::NodeStats::rejected_connections)).
    /// Authenticated connections do not count: a cluster needs one slot per peer only while
    /// it reconnects.
    pub fn with_max_handshakes(mut self, connections: usize) -> Self {
        self.max_handshakes = connections;
        self
    }

    /// How far ahead of this node's wall clock a peer's timestamps may be (default 5 s, see
    /// [`DEFAULT_MAX_CLOCK_DRIFT`]). Writes are ordered by hybrid logical clocks, which follow
    /// the latest timestamp seen from any peer: without a bound, one node with a clock set far
    /// ahead would drag every node's clock along for good. A frame stamped beyond the bound is
    /// refused without being applied (the sender gets a transient error), counted in
    /// [`NodeStats::rejected_frames`](crate::NodeStats::rejected_frames) and logged; heartbeats
    /// are still answered, so the nodes see each other alive and the write errors surface
    /// instead of a split cluster. Use the same value on every node, well above the clock
    /// offsets of the servers.
    pub fn with_max_clock_drift(mut self, drift: Duration) -> Self {
        self.max_clock_drift = drift;
        self
    }

    /// How long a graceful leave ([`Node::shutdown`](crate::Node::shutdown)) may take at most
    /// (default 10 s, see [`DEFAULT_LEAVE_TIMEOUT`]): handing the sessions over to their next
    /// holders and waiting for the peers to acknowledge that this node leaves. Past it the node
    /// stops anyway; what was not handed over lives on in the sessions' other holders.
    pub fn with_leave_timeout(mut self, timeout: Duration) -> Self {
        self.leave_timeout = timeout;
        self
    }

    /// Bounds the sessions of one principal (default: no bound): a store call through this
    /// node that binds one more session to a principal (a `create` of a record that has one,
    /// an `apply` whose changes bind one) then revokes the oldest (by creation) of the
    /// principal's other live sessions, so that at most `max` remain. Set the same bound on
    /// every node: each enforces it for the calls it takes. See
    /// [Sessions by principal](crate#sessions-by-principal) for what enforcing it costs.
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use tether_replicated::{NodeConfig, PeerKey};
    ///
    /// let key = PeerKey::new(*b"an example key of 32 bytes, ok!!")?;
    /// let config = NodeConfig::new("node-a", "127.0.0.1:7001".parse()?, key)
    ///     .with_max_sessions_per_principal(NonZeroUsize::new(5));
    /// assert_eq!(config.max_sessions_per_principal(), NonZeroUsize::new(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_max_sessions_per_principal(mut self, max: Option<std::num::NonZeroUsize>) -> Self {
        self.max_sessions_per_principal = max;
        self
    }

    /// The bound on the sessions of one principal, if any.
    pub fn max_sessions_per_principal(&self) -> Option<std::num::NonZeroUsize> {
        self.max_sessions_per_principal
    }

    /// The configured peers.
    pub fn peers(&self) -> &[(String, SocketAddr)] {
        &self.peers
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let mut names = vec![self.name.as_str()];
        for (peer, _) in &self.peers {
            if names.contains(&peer.as_str()) {
                return Err(Error::DuplicateName(peer.clone()));
            }
            names.push(peer);
        }
        if names.iter().any(|name| name.len() > MAX_NAME_LEN) {
            return Err(Error::InvalidSetting("node names are at most 255 bytes"));
        }
        if matches!(self.mode, Mode::Backup { copies: 0 }) {
            return Err(Error::InvalidSetting("Backup needs at least one copy"));
        }
        if self.sync_timeout.is_zero()
            || self.max_clock_drift.is_zero()
            || self.heartbeat.is_zero()
            || self.failure_timeout <= self.heartbeat
        {
            return Err(Error::InvalidSetting(
                "timeouts and the max clock drift must be positive, and the failure timeout \
                 longer than the heartbeat",
            ));
        }
        #[cfg(feature = "gossip")]
        if self.gossip.is_some() && self.discovery.is_some() {
            return Err(Error::InvalidSetting(
                "gossip and a discovery cannot both be set: gossip is the discovery",
            ));
        }
        if self.queue == 0 || self.max_frame < 1024 || self.max_handshakes == 0 {
            return Err(Error::InvalidSetting(
                "queue and handshakes must be positive and max frame at least 1 KiB",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> NodeConfig {
        let key = PeerKey::new([5u8; 32]).unwrap();
        NodeConfig::new(name, ([127, 0, 0, 1], 0).into(), key)
    }

    #[test]
    fn modes_and_acks_read_what_they_print() {
        for mode in [
            Mode::AllToAll,
            Mode::Backup { copies: 1 },
            Mode::Backup { copies: 12 },
        ] {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        for bad in [
            "",
            "backup-0",
            "backup-",
            "backup-x",
            "backup--1",
            "All-To-All",
        ] {
            let error = bad.parse::<Mode>().unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
        for ack in [Ack::Sync, Ack::Async] {
            assert_eq!(ack.to_string().parse::<Ack>(), Ok(ack));
        }
        assert!("Sync".parse::<Ack>().is_err());
    }

    #[test]
    fn names_must_fit_a_handshake_frame_and_handshakes_a_slot() {
        let longest = "n".repeat(MAX_NAME_LEN);
        assert!(config(&longest).validate().is_ok());
        assert!(config(&format!("{longest}n")).validate().is_err());
        let peer = config("a").with_peer(format!("{longest}n"), ([127, 0, 0, 1], 1).into());
        assert!(peer.validate().is_err());
        assert!(config("a").with_max_handshakes(0).validate().is_err());
        assert!(config("a").with_max_handshakes(1).validate().is_ok());
        assert!(
            config("a")
                .with_max_clock_drift(Duration::ZERO)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn with_peers_replaces_the_peers_given_before() {
        let b: SocketAddr = ([127, 0, 0, 1], 1).into();
        let c: SocketAddr = ([127, 0, 0, 1], 2).into();
        let first = config("a").with_peer("b", b).with_peer("c", c);
        let moved = first.clone().with_peers([("b", c), ("c", b)]);
        assert_eq!(moved.peers(), [("b".to_owned(), c), ("c".to_owned(), b)]);
        assert!(moved.validate().is_ok());
        assert!(first.with_peer("b", c).validate().is_err(), "a name twice");
    }
}
