//! A replicated in-memory session store for [tether], in the style of Tomcat's session
//! clustering: every server keeps sessions in memory and copies each change to its peers over
//! TCP, so any server can serve any session and one can die without losing one.
//!
//! - **Modes.** [`Mode::AllToAll`] copies every session to every node (Tomcat's
//!   `DeltaManager`); [`Mode::Backup`] gives each session a primary and `copies` backups chosen by
//!   rendezvous hashing over the live nodes (Tomcat's `BackupManager`), so traffic per write does
//!   not grow with the cluster.
//! - **Deltas only.** A write sends the keys a request changed, never the whole session.
//! - **No lost updates.** Writes of one session are ordered by its primary and stamped with a
//!   hybrid logical clock; every key is a last-writer-wins register, deletions are tombstones, so
//!   copies converge whatever order they receive changes in, and concurrent requests changing
//!   different keys all survive.
//! - **Exactly-once writes.** Every store call that changes a session (create, apply, touch,
//!   update_key, delete, and the steps of cycle) gets a random 128-bit write id, kept on every forward of
//!   the call. Each session remembers the ids of its latest 32 writes, on every holder and
//!   across failovers (they travel and merge with the session's state), so a write delivered
//!   twice (retried after a lost answer, sent again to a new primary, replayed by a peer) is
//!   applied once and answered as the first time; a repetition is counted in
//!   [`NodeStats::repeated_writes`]. The bound: a write whose id the session has forgotten,
//!   because 32 later writes of the same session came in between, is applied again if it comes
//!   back. The ids live as long as the session (a deleted one's as long as its tombstone).
//!   Remembering costs up to about 1 KiB per session, in memory and in whole copies; a delta
//!   carries one id (16 bytes).
//! - **Acknowledgements.** [`Ack::Sync`]: a write returns once every holder of the current
//!   view applied it; [`Ack::Async`]: once the primary did.
//! - **Retries.** A store call that fails transiently (the primary unreachable or gone, a node
//!   joining, the view changing, a backup dying under a `Sync` write) waits for the next view
//!   and tries again, with the same write id, on the new primary, within a deadline per call
//!   ([`NodeConfig::with_retry_deadline`], default 2 s); past it the call fails with the
//!   transient error. A `Sync` write whose backup died is thus answered once the primary has
//!   copied the session to its new holders.
//! - **Failures.** Peers are members while they answer heartbeats. A peer whose connection is
//!   lost and cannot be opened again (a crashed process: its port refuses) is declared dead at
//!   once, not after the failure timeout; silence (a paused process, a cut network) is noticed
//!   at the failure timeout. A copy from a node outside the receiver's view is refused (the node
//!   is fenced: it stops serving and joins again). When one dies, the remaining
//!   holders copy its sessions to their new holders; a node that joins or restarts first
//!   receives the sessions it must hold, then becomes a member. Nodes started together agree
//!   on one view before any serves. A node that stood still longer than its peers wait for it
//!   (SIGSTOP, a frozen VM: its own monotonic clock shows the gap) stops serving and joins
//!   again as after a restart; meanwhile its store forwards to the members.
//! - **Planned restarts.** [`Node::shutdown`] leaves gracefully (call it on SIGTERM, after the
//!   HTTP server has drained): the node hands the sessions it holds to their next holders
//!   (each has two copies the moment it is gone), stops serving, hands over what it wrote meanwhile, tells its peers it leaves,
//!   and stops, so a rolling restart loses nothing and fails no request. [`Node::abort`]
//!   stops at once, as a crash would.
//! - **Finding peers.** A fixed list ([`NodeConfig::with_peer`]), any [`Discovery`] asked
//!   every few seconds ([`NodeConfig::with_discovery`]: DNS with the `dns` feature, or your
//!   own), or gossip from seed addresses with the `gossip` feature (SWIM by foca, chosen over
//!   chitchat because it does no I/O of its own, so its packets travel signed with the
//!   cluster's key, and it brings no compression library). Nodes that appear join without a
//!   restart; nodes that vanish leave the views.
//! - **Security.** Peers prove knowledge of a pre-shared key with HMAC-SHA256
//!   challenge-response in both directions (the key never travels); a peer that fails, speaks
//!   another protocol version, or sends an oversized or garbage frame is disconnected and logged,
//!   without affecting the others. Until a peer has authenticated, its frames are limited to 512
//!   bytes and at most [`DEFAULT_MAX_HANDSHAKES`] connections may be authenticating at once, so
//!   connections without the key cost little memory. A peer's timestamps are followed only up to
//!   the max clock drift ([`NodeConfig::with_max_clock_drift`]): a frame stamped further ahead
//!   is refused and counted, so one bad clock cannot drag the cluster's. With the `tls` feature,
//!   `NodeConfig::with_tls` makes every connection mutual TLS: each node's certificate names it
//!   and is signed by the cluster's CA, and the key handshake runs inside. Without it, session
//!   contents travel in clear: keep the replication network private.
//! - **Sessions by principal.** A session's principal and last use replicate with it, and
//!   every node indexes the sessions it holds by principal, so a user's sessions can be listed,
//!   revoked one by one, all, or all but one, and bounded in number: see
//!   [Sessions by principal](#sessions-by-principal).
//! - **Session events.** Each node reports to its own subscribers, in memory and at most
//!   once, the writes of the store calls it took and the expiries of the sessions it is the
//!   primary of: see [Session events](#session-events).
//! - **Atomic key updates.** A compare-and-set or an increment of one key runs at the
//!   session's primary, in one step with its other writes: see
//!   [Atomic key updates](#atomic-key-updates).
//!
//! # Example
//!
//! Three nodes on loopback ports, started together (in production each node is a [`Node`] of
//! its own server, started from a [`NodeConfig`] listing its peers, with [`Node::start`]):
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use tether_core::{Created, Expiry, Id, Record, SessionStore, Timestamp};
//! use tether_replicated::{Mode, Node, NodeConfig, PeerKey};
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = PeerKey::new(*b"an example key of 32 bytes, ok!!")?;
//! let listeners = [
//!     TcpListener::bind("127.0.0.1:0").await?,
//!     TcpListener::bind("127.0.0.1:0").await?,
//!     TcpListener::bind("127.0.0.1:0").await?,
//! ];
//! let addrs: Vec<SocketAddr> = listeners.iter().map(TcpListener::local_addr).collect::<Result<_, _>>()?;
//! // Each node lists the two others as its peers.
//! let config = |i: usize| {
//!     let config = NodeConfig::new(format!("node-{i}"), addrs[i], key.clone())
//!         .with_mode(Mode::Backup { copies: 1 });
//!     (0..3)
//!         .filter(|&j| j != i)
//!         .fold(config, |config, j| config.with_peer(format!("node-{j}"), addrs[j]))
//! };
//! let [l0, l1, l2] = listeners;
//! let (a, _b, c) = tokio::try_join!(
//!     Node::start_with_listener(config(0), l0),
//!     Node::start_with_listener(config(1), l1),
//!     Node::start_with_listener(config(2), l2),
//! )?;
//!
//! // Written through one node, read through another.
//! let now = Timestamp::now();
//! let record = Record::new(Id::random()?, Expiry::new(now, Duration::from_secs(60), None), now);
//! assert_eq!(a.store().create(&record).await?, Created::Created);
//! assert!(c.store().load(&record.id).await?.is_some());
//! # Ok(()) }
//! ```
//!
//! # Sessions by principal
//!
//! [`SessionStore::sessions_of`](tether_core::SessionStore::sessions_of),
//! [`revoke`](tether_core::SessionStore::revoke) and
//! [`revoke_all`](tether_core::SessionStore::revoke_all) work on every node.
//!
//! - **Replicated with the session.** A session's [`Principal`](tether_core::Principal) and
//!   its last use ([`Seen`](tether_core::Seen)) are two more last-writer-wins registers of its
//!   replicated state, stamped like its keys: a `create` or an `apply` that carries them
//!   travels to the backups in the same delta, and whole copies (state transfer, rebalancing,
//!   a leaving node's hand-over) carry them too. A deletion keeps the principal on the
//!   tombstone (so a holder can say a session of that principal was deleted) and drops the
//!   last use with the data.
//! - **One index per node.** Each node keeps an index from principal to the ids of the
//!   sessions it holds, changed under the session's lock in the same step as the session:
//!   creation, a binding or rebinding, a merged copy, and the entry's removal (the sweep of a
//!   session past its deadline or of a tombstone past its retention, or rebalancing handing
//!   it away). It costs an id and a hash-set slot per bound session.
//! - **`AllToAll`: local.** Every serving node holds every session, so a listing is its own
//!   index, no message sent (the same copies `load` reads there).
//! - **`Backup`: gathered.** A node holds only the sessions it is a holder of, so a listing
//!   asks every other member of its view for the sessions it holds of that principal, in
//!   parallel, and puts the answers together by session id. For each session the answer of
//!   its primary counts when the primary answered (its copy has every acknowledged write, as
//!   for a read: a session it does not list has ended there or is bound to someone else);
//!   otherwise the other holders' answers count, and a deletion reported by any of them wins
//!   over a live copy. Sessions past their deadline are left out. A listing costs one request
//!   and one answer per other member, more only for a principal with thousands of sessions
//!   (answers are paged to a quarter of the max frame: with the default max frame, at least
//!   15,000 sessions a page, with the longest device labels); a node that is joining asks the
//!   members the same way in either mode.
//! - **A node down.** A member that does not answer (its connection lost, or no answer within
//!   the sync timeout, [`NodeConfig::with_sync_timeout`]) is left out of the listing, which
//!   then takes at most one sync timeout longer: with `copies >= 1` every one of its sessions
//!   has another holder that answers for it, so nothing is missing while a session has at least
//!   one holder left. A member that answers garbage (or in another protocol version) loses its
//!   connection, as for any malformed frame, and is left out the same way. The listing fails (with a transient error,
//!   after retries) only when no member answered at all.
//! - **Revoking.** `revoke` and `revoke_all` find the sessions as a listing does, then delete
//!   each through the write path: at its primary, copied to its backups, tombstoned, so a
//!   revoked session is gone at once on every node. The deletion is conditional: the primary
//!   deletes only if the session is still live and bound to that principal when it applies the
//!   deletion, under the session's lock, so a handle can never be followed into another
//!   principal's session (a session rebound meanwhile is left alone, and answered `NotFound`).
//!   A revoke costs a listing plus one write per session revoked (`revoke_all` runs 16 at a
//!   time).
//! - **A bound per principal.** With
//!   [`NodeConfig::with_max_sessions_per_principal`](NodeConfig::with_max_sessions_per_principal),
//!   a `create` of a record bound to a principal, or an `apply` that binds one, lists the
//!   principal's sessions once the write is stored and revokes the oldest others past the
//!   bound, by the same conditional deletion, before the call returns (a listing plus one write
//!   per revoked session, paid by logins only). `cycle` moves a session and binds nothing new:
//!   it revokes nothing. When the listing fails, the binding stands and the bound is enforced
//!   at the principal's next binding (logged). Each node enforces the bound it is configured
//!   with, for the calls it takes: configure the same on every node. Concurrent logins of one
//!   principal through different nodes may each revoke, so the principal may end up with
//!   fewer sessions than the bound.
//! - **Protocol version 3.** Sessions carry the two registers, and the index request and the
//!   conditional deletion are new messages, so the replication protocol moved from version 2
//!   to 3. Nodes of different versions refuse each other at the handshake (the connection is
//!   dropped and logged, as for any peer of another version), so they cannot form one
//!   cluster: a rolling restart from an older version would run two clusters side by side,
//!   each with its own sessions. Upgrade all nodes at once, or move traffic to a new cluster.
//!
//! # Atomic key updates
//!
//! [`SessionStore::update_key`](tether_core::SessionStore::update_key), a
//! [`Swap`](tether_core::KeyUpdate::Swap) (compare-and-set) or an
//! [`Increment`](tether_core::KeyUpdate::Increment) of one key, is a write like `apply`.
//!
//! - **Decided at the primary.** The node that takes the call forwards it to the session's
//!   primary (one request and one answer; none when it is the primary itself), which
//!   evaluates the update against its copy under the session's lock, where its other writes
//!   are applied: no write of the session comes between the read and the write, so
//!   concurrent updates of one key through any nodes are serialised and none is lost. Both
//!   kinds run this way: no load first, no loop of swaps.
//! - **Copied as a delta.** An update that writes becomes an ordinary delta of that one key
//!   (set, or removed), stamped by the primary later than the value it was computed from, and
//!   copied to the backups as `apply`'s deltas are (acknowledged per [`Ack`]), so copies
//!   converge by the same last-writer-wins rule. The session's other keys, expiry, principal
//!   and last use are left alone. A conflict, a session that is missing (unknown, deleted, past
//!   its deadline: never created or revived) or [`NotACounter`](tether_core::Error::NotACounter)
//!   writes nothing and copies nothing.
//! - **Exactly once.** The update keeps its write id on every retry; the session remembers,
//!   with the id, the value the update left (on every holder, so also after a failover), and
//!   an update delivered twice is applied once and answered with that value: an increment
//!   retried after a lost answer counts once. An update that wrote nothing is not remembered:
//!   a retry of it is evaluated anew, which is sound since the lost attempt changed nothing.
//!   Remembering costs the value's bytes for each key update among the session's latest 32
//!   writes (a few bytes for a counter).
//! - **Protocol version 5.** The forwarded update and its answer are new messages, so the
//!   replication protocol moved from version 4 to 5, with the consequences described for
//!   version 3 above: nodes of version 4 and 5 refuse each other, and cannot form one cluster.
//!
//! # Session events
//!
//! [`SessionStore::events`](tether_core::SessionStore::events) on a node's store is a stream
//! of what happens to sessions on that node ([`SessionEvent`](tether_core::SessionEvent)):
//! each event is reported by one node, to the subscribers of that node, in memory.
//!
//! - **Writes: where the call was taken.** A write is reported by the node whose
//!   [`ReplicatedStore`] took the store call, whichever node is the session's primary, once
//!   the call succeeded. `create` reports [`Created`](tether_core::EventKind::Created) with
//!   the record's principal (an id that is taken reports nothing); `cycle`
//!   [`Cycled`](tether_core::EventKind::Cycled) under the new handle, `from` the old one, with
//!   the session's principal (neither a creation nor a deletion); an `apply` that binds a
//!   principal [`PrincipalSet`](tether_core::EventKind::PrincipalSet) (a touch, or changes that
//!   bind nobody, report nothing); `delete` [`Deleted`](tether_core::EventKind::Deleted) only
//!   when it ended a live session: the primary checks that under the session's lock and says
//!   so in its answer, with the principal, so deleting a session that ended already reports
//!   nothing. `revoke`, `revoke_all` and the bound per principal report
//!   [`Revoked`](tether_core::EventKind::Revoked) for each session the primary actually
//!   deleted, with its handle and principal (the bound's revocations by the node that took the
//!   binding call). A call that fails reports nothing, even for a step it did (a `cycle` whose
//!   new session was stored but whose old one could not be deleted).
//! - **Expiry: at the primary.** Every node sweeps the sessions it holds once a second. A
//!   session forgotten at its deadline is reported [`Expired`](tether_core::EventKind::Expired),
//!   with its handle and principal, by the node that was its primary at the deadline (by that
//!   node's view); the backups forget their copies without a word, and a node reports a
//!   deadline only in the sweep whose period it falls in (a copy that comes back after its
//!   deadline, pushed by a holder that had not swept it yet, is not reported again). So an
//!   expiry is reported once while its primary lives, **within one second of the deadline**
//!   (plus the time the node's runtime takes to get to its sweep). The conformance suite
//!   checks it with that bound.
//! - **When the primary dies.** A deadline that the primary's sweep passed before it died was
//!   reported by it (to its subscribers, whom its death takes with it). A deadline after the
//!   survivors noticed its death (at once for a crashed process, whose port refuses
//!   connections; after the failure timeout for one that hangs or is cut off) is reported by
//!   the new primary, once. A deadline in between, from the dead primary's last sweep (up to
//!   a second before its death) to the moment its death is noticed, is reported by nobody: the
//!   new primary reports only deadlines from when it was the primary, because the old one may
//!   have reported the earlier ones just before it died. So no two nodes report one expiry
//!   while their views agree; during a network split, a primary on each side may (as each
//!   side may also take writes, unless [`Quorum`] forbids it). A node that stood still, or
//!   was fenced, reports nothing from its last sweep before it until a sweep after it serves
//!   again (the others may have taken its sessions over meanwhile). A node that leaves
//!   ([`Node::shutdown`]) stops reporting when it stops serving, and the others report its
//!   sessions' expiries once they have dropped it from their views: a deadline in between, at
//!   the end of its hand-over, is reported by nobody.
//! - **At most once.** Each node keeps a broadcast of 4,096 events. A subscriber that falls
//!   more than 4,096 events behind gets `Err(`[`EventsMissed(n)`](tether_core::Error::EventsMissed)`)`,
//!   with how many it missed, and goes on from the next event. Nothing is stored: a subscriber
//!   sees the events from when it subscribed, and none survives a node's restart; the stream
//!   ends when its node stops ([`Node::shutdown`], [`Node::abort`], or the node dropped), and a
//!   subscriber subscribes again to the node that replaces it. A `delete` retried inside the
//!   store after its first answer was lost (the primary died or the connection broke after the
//!   deletion) is not reported: the retry finds the deletion done and cannot tell whether it
//!   ended a live session. One node's events come in the order it reported them; events of one
//!   session reported by different nodes (created through one, deleted through another) are
//!   ordered only by their `at` (milliseconds).
//! - **Subscribe on every node.** A node's subscribers see only that node's events. A service
//!   that wants every event subscribes on every node: with the store embedded in each app
//!   instance, each instance subscribes to its own node's store (for example through
//!   `SessionLayer::events` of tether-sessions), and the instances together see every event
//!   reported, each once.
//! - **Cost.** No event is built while nobody subscribes: a write then only checks that there
//!   is no subscriber, and a sweep collects nothing to report. A deletion's answer always
//!   carries the principal of the session it ended (a few bytes), whether or not anyone
//!   subscribes.
//! - **Protocol version 4.** That answer is new, so the replication protocol moved from
//!   version 3 to 4, with the consequences described for version 3 above: nodes of version 3
//!   and 4 refuse each other, and cannot form one cluster.
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `serde` | `Serialize` and `Deserialize` for [`Mode`] and [`Ack`], as their `Display` strings (`"backup-1"`, `"sync"`), for configuration files |
//! | `test-util` | `LocalCluster` (several nodes in one process, each on its own loopback port and thread, to kill, stop, pause and restart) and `Node::freeze` (a node that hangs): for tests and benchmarks, not for production |
//! | `tls` | mutual TLS between peers with rustls (`PeerTls`, `NodeConfig::with_tls`) |
//! | `dns` | peers found through DNS: A/AAAA or SRV records, such as a Kubernetes headless service (`DnsDiscovery`, hickory-resolver) |
//! | `gossip` | peers found by SWIM gossip from seed addresses (`Gossip`, `NodeConfig::with_gossip`, foca), every packet signed with the cluster's key |
//! | `metrics` | the node's [`NodeStats`] and view size as metrics through the [`metrics`](https://docs.rs/metrics) facade, once a second (names in docs/operations.md) |
//!
//! None is on by default.
//!
//! [tether]: https://github.com/tether-rs/tether
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), forbid(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod auth;
mod config;
mod discovery;
#[cfg(feature = "dns")]
mod dns;
mod error;
mod events;
#[cfg(feature = "gossip")]
mod gossip;
mod handshake;
mod hlc;
mod index;
mod leave;
mod link;
#[cfg(feature = "test-util")]
mod local;
mod membership;
mod node;
mod peer;
mod principals;
mod quorum;
mod read;
mod rebalance;
mod retry;
mod server;
mod state;
mod store;
mod sweep;
#[cfg(feature = "metrics")]
mod telemetry;
#[cfg(feature = "tls")]
mod tls;
mod transfer;
mod view;
mod wire;
mod write;
mod write_id;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets; not an API.

    /// Decodes `data` as a replication frame (version prefix and envelope).
    pub fn decode_frame(data: &[u8]) {
        let _ = crate::wire::decode(data);
    }
}

pub use auth::{MIN_KEY_LEN, PeerKey};
pub use config::{
    Ack, DEFAULT_DISCOVERY_INTERVAL, DEFAULT_FAILURE_TIMEOUT, DEFAULT_HEARTBEAT,
    DEFAULT_LEAVE_TIMEOUT, DEFAULT_MAX_CLOCK_DRIFT, DEFAULT_MAX_FRAME, DEFAULT_MAX_HANDSHAKES,
    DEFAULT_QUEUE, DEFAULT_RETRY_DEADLINE, DEFAULT_SYNC_TIMEOUT, DEFAULT_TOMBSTONE_RETENTION,
    MAX_NAME_LEN, Mode, NodeConfig, ParseAckError, ParseModeError,
};
pub use discovery::{Discovery, MAX_DISCOVERED, MISSING_ROUNDS, StaticPeers};
#[cfg(feature = "dns")]
pub use dns::DnsDiscovery;
pub use error::Error;
#[cfg(feature = "gossip")]
pub use gossip::{
    DEFAULT_GOSSIP_EXPECTED_SIZE, DEFAULT_GOSSIP_JOIN_TIMEOUT, Gossip, MAX_GOSSIP_PAYLOAD,
};
pub use leave::Handover;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use local::LocalCluster;
pub use node::{Node, NodeStats};
pub use quorum::{ParseQuorumError, Quorum};
pub use store::ReplicatedStore;
#[cfg(feature = "tls")]
pub use tls::PeerTls;
pub use view::{Membership, View};
