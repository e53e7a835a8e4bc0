//! The store conformance suite against a real 3-master Redis Cluster.
#![cfg(feature = "cluster")]

use std::sync::Arc;

use tether_core::SessionStore;
use tether_redis::RedisStore;
use tether_testkit::{Fixture, RedisCluster};

struct Cluster {
    store: RedisStore,
    _cluster: RedisCluster,
}

impl Fixture for Cluster {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }
}

async fn cluster() -> Cluster {
    capped(None).await
}

async fn capped(max: Option<std::num::NonZeroUsize>) -> Cluster {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .expect("join")
        .expect("redis cluster");
    let store = RedisStore::cluster_builder(cluster.urls())
        .connect()
        .await
        .expect("connect to the cluster")
        .with_max_sessions_per_principal(max);
    Cluster {
        store,
        _cluster: cluster,
    }
}

tether_testkit::store_conformance!(cluster(), principal_index: |max| capped(Some(max)));

/// Sessions spread over the masters: with many ids, every master holds some, and `cycle` moves
/// sessions between slots of different masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_every_master_and_cycle_across_slots() {
    use std::time::Duration;
    use tether_core::{Created, Cycled, Expiry, Id, Record, Timestamp};

    let fixture = cluster().await;
    let store = &fixture.store;
    let now = Timestamp::now();
    let mut ids = Vec::new();
    for _ in 0..60 {
        let record = Record::new(
            Id::random().unwrap(),
            Expiry::new(now, Duration::from_secs(60), None),
            now,
        );
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        ids.push(record.id);
    }
    for node in fixture._cluster.nodes() {
        let keys = node.command("DBSIZE").unwrap();
        let count: u64 = keys.trim().parse().unwrap();
        assert!(count > 0, "master on port {} holds no session", node.port());
    }
    for old in ids {
        let new = Id::random().unwrap();
        assert_eq!(store.cycle(&old, &new).await.unwrap(), Cycled::Moved);
        assert!(store.load(&old).await.unwrap().is_none());
        assert!(store.load(&new).await.unwrap().is_some());
    }
}
