//! A store that spreads its calls over the nodes of a local cluster.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, Expiry, Id, Principal, Record, Revoked,
    SessionHandle, SessionInfo, SessionStore, Timestamp,
};
use tether_replicated::{Ack, LocalCluster, Mode, NodeConfig, ReplicatedStore};
use tether_sessions::{Session, SessionLayer};

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
#[derive(Clone)]
pub struct Spread {
    stores: Arc<Vec<ReplicatedStore>>,
    next: Arc<AtomicUsize>,
    _cluster: Arc<LocalCluster>,
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
            _cluster: Arc::new(cluster),
        }
    }

    fn pick(&self) -> &ReplicatedStore {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.stores.len();
        &self.stores[i]
    }
}

#[async_trait]
impl SessionStore for Spread {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.pick().load(id).await
    }
    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.pick().create(record).await
    }
    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        self.pick().apply(id, changes, expiry).await
    }
    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, Error> {
        self.pick().touch(id, expiry).await
    }
    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.pick().delete(id).await
    }
    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        self.pick().cycle(old, new).await
    }
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>, Error> {
        self.pick().sessions_of(principal).await
    }
    async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        self.pick().revoke(principal, handle).await
    }
    async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        self.pick().revoke_all(principal, keep).await
    }
}
