//! A store that spreads its calls over the nodes of a local cluster.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use futures_util::stream::Fuse;
use futures_util::{FutureExt as _, StreamExt as _};
use tether_core::{
    Applied, Changes, Created, Cycled, Error, EventStream, Expiry, Id, KeyUpdate, KeyUpdated,
    Principal, Record, Revoked, SessionEvent, SessionHandle, SessionInfo, SessionStore, Timestamp,
};
use tether_replicated::{Ack, LocalCluster, Mode, NodeConfig, ReplicatedStore};
use tether_sessions::{Session, SessionLayer};
use tokio::sync::mpsc;

/// An app whose `GET /incr` increments the session's counter `n` and answers it.
pub fn app(store: ReplicatedStore) -> Router {
    Router::new()
        .route(
            "/incr",
            get(|session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
                session.insert("n", &n).await?;
                Ok::<_, tether_sessions::Error>(n.to_string())
            }),
        )
        .layer(SessionLayer::new(store).with_secure(false))
}

/// A new, empty session record that lives five minutes.
pub fn record() -> Record {
    let now = Timestamp::now();
    Record::new(
        Id::random().expect("random id"),
        Expiry::new(now, Duration::from_secs(300), None),
        now,
    )
}

/// Polls until `done`, at most `within`; how long it took, if it happened.
pub async fn time_until(within: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// The members of `node`'s view, sorted.
pub fn members(node: &tether_replicated::Node) -> Vec<String> {
    let mut members = tether_replicated::Membership::view(node).members().to_vec();
    members.sort();
    members
}

/// How long until every node's view is `expected`, if it is within `within`.
pub async fn until_views(
    nodes: &[&tether_replicated::Node],
    expected: &[String],
    within: Duration,
) -> Option<Duration> {
    time_until(within, || nodes.iter().all(|n| members(n) == expected)).await
}

/// Fast failure detection for tests.
pub fn quick(config: NodeConfig) -> NodeConfig {
    config.with_failure_detection(Duration::from_millis(100), Duration::from_millis(600))
}

pub async fn cluster(size: usize, mode: Mode, ack: Ack) -> LocalCluster {
    LocalCluster::start(size, |c| quick(c).with_mode(mode).with_ack(ack))
        .await
        .expect("local cluster")
}

/// As [`cluster`], each node bounding the sessions of one principal to `max`.
pub async fn capped_cluster(
    size: usize,
    mode: Mode,
    ack: Ack,
    max: std::num::NonZeroUsize,
) -> LocalCluster {
    LocalCluster::start(size, |c| {
        quick(c)
            .with_mode(mode)
            .with_ack(ack)
            .with_max_sessions_per_principal(Some(max))
    })
    .await
    .expect("local cluster")
}

/// Each call goes to the next node, round robin.
///
/// Its [`events`](SessionStore::events) are those of every node, as a service that wants
/// every event gets them: subscribed on each node. Each node reports the writes of the calls
/// it took, so one session's events come from several nodes (created through one, deleted
/// through another); merged as they arrive they could come out of order. This fixture makes
/// its calls one after the other, so it restores their order: when a call returns, the events
/// its node reported (before returning) are passed on before the next call starts; events
/// that come of no call (expiries, reported by a primary's sweep) are passed on within a few
/// milliseconds by a task.
#[derive(Clone)]
pub struct Spread {
    stores: Arc<Vec<ReplicatedStore>>,
    next: Arc<AtomicUsize>,
    subscribers: Arc<Mutex<Vec<Arc<Merged>>>>,
    _cluster: Arc<LocalCluster>,
}

/// One subscriber to a [`Spread`]'s events: a subscription on every node, passed on to it in
/// order.
struct Merged {
    nodes: Mutex<Vec<Fuse<EventStream>>>,
    out: mpsc::UnboundedSender<Result<SessionEvent, Error>>,
}

impl Merged {
    /// Passes on every event the nodes have reported so far, node by node; false once the
    /// subscriber is gone. Unconstrained by Tokio's cooperative budget, which would otherwise
    /// answer "not ready" after some events although more are there.
    fn pass_on(&self) -> bool {
        let mut nodes = self.nodes.lock().unwrap();
        for node in nodes.iter_mut() {
            while let Some(Some(item)) = tokio::task::unconstrained(node.next()).now_or_never() {
                if self.out.send(item).is_err() {
                    return false;
                }
            }
        }
        !self.out.is_closed()
    }
}

impl std::fmt::Debug for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spread")
    }
}

impl Spread {
    pub fn new(cluster: LocalCluster) -> Self {
        let stores = (0..cluster.len())
            .filter_map(|i| cluster.store(i))
            .collect();
        Self {
            stores: Arc::new(stores),
            next: Arc::default(),
            subscribers: Arc::default(),
            _cluster: Arc::new(cluster),
        }
    }

    fn pick(&self) -> &ReplicatedStore {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.stores.len();
        &self.stores[i]
    }

    /// After a call: its events go to the subscribers before the next call starts.
    fn pass_on<T>(&self, answer: T) -> T {
        self.subscribers
            .lock()
            .unwrap()
            .retain(|merged| merged.pass_on());
        answer
    }
}

#[async_trait]
impl SessionStore for Spread {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        let answer = self.pick().load(id).await;
        self.pass_on(answer)
    }
    async fn create(&self, record: &Record) -> Result<Created, Error> {
        let answer = self.pick().create(record).await;
        self.pass_on(answer)
    }
    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        let answer = self.pick().apply(id, changes, expiry).await;
        self.pass_on(answer)
    }
    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, Error> {
        let answer = self.pick().touch(id, expiry).await;
        self.pass_on(answer)
    }
    async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        let answer = self.pick().update_key(id, key, update).await;
        self.pass_on(answer)
    }
    async fn delete(&self, id: &Id) -> Result<(), Error> {
        let answer = self.pick().delete(id).await;
        self.pass_on(answer)
    }
    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        let answer = self.pick().cycle(old, new).await;
        self.pass_on(answer)
    }
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>, Error> {
        let answer = self.pick().sessions_of(principal).await;
        self.pass_on(answer)
    }
    async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        let answer = self.pick().revoke(principal, handle).await;
        self.pass_on(answer)
    }
    async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        let answer = self.pick().revoke_all(principal, keep).await;
        self.pass_on(answer)
    }

    async fn events(&self) -> Result<EventStream, Error> {
        let mut nodes = Vec::new();
        for store in self.stores.iter() {
            nodes.push(store.events().await?.fuse());
        }
        let (out, events) = mpsc::unbounded_channel();
        let merged = Arc::new(Merged {
            nodes: Mutex::new(nodes),
            out,
        });
        self.subscribers.lock().unwrap().push(Arc::clone(&merged));
        tokio::spawn(async move {
            while merged.pass_on() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Ok(Box::pin(futures_util::stream::unfold(
            events,
            |mut events| async move { events.recv().await.map(|item| (item, events)) },
        )))
    }
}
