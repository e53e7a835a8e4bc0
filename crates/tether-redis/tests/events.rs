//! The store with an event log: the whole conformance suite (its key layout has shards) and
//! the events check, on a standalone redis-server and on a 3-master Cluster; and delivery at
//! least once when a consumer dies before acknowledging.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tether_core::{Created, EventKind, Expiry, Id, Record, SessionHandle, SessionStore, Timestamp};
use tether_redis::{EventLog, RedisStore};
use tether_testkit::{Fixture, RedisServer};

/// An expiry is reported within this long of the deadline: the sweep runs every second, and
/// a consumer polls every 100 ms.
const EXPIRED_WITHIN: Duration = Duration::from_millis(1300);

struct Logged {
    store: RedisStore,
    _server: RedisServer,
}

impl Fixture for Logged {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }
}

async fn logged(max: Option<NonZeroUsize>) -> Logged {
    let server = RedisServer::start().expect("redis-server");
    let store = RedisStore::connect(server.url())
        .await
        .expect("connect")
        .with_max_sessions_per_principal(max)
        .with_event_log(EventLog::new());
    Logged {
        store,
        _server: server,
    }
}

tether_testkit::store_conformance!(
    logged(None),
    principal_index: |max| logged(Some(max)),
    events: EXPIRED_WITHIN
);

fn record() -> Record {
    let now = Timestamp::now();
    Record::new(
        Id::random().unwrap(),
        Expiry::new(now, Duration::from_secs(60), None),
        now,
    )
}

/// An event handed to a consumer that disappears without asking for the next one is handed to
/// another consumer of the group; another group sees every event too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_a_dead_consumer_did_not_acknowledge_comes_again() {
    let fixture = logged(None).await;
    let store = &fixture.store;
    let mut dying = store.events().await.unwrap();
    let audit = store
        .clone()
        .with_event_log(EventLog::new().with_group("audit"));
    let mut other_group = audit.events().await.unwrap();

    let session = record();
    assert_eq!(store.create(&session).await.unwrap(), Created::Created);
    let first = dying.next().await.unwrap().unwrap();
    assert_eq!(first.handle, SessionHandle::of(&session.id));
    // The consumer dies with the event in hand: it never asks for the next one.
    drop(dying);

    let seen = other_group.next().await.unwrap().unwrap();
    assert_eq!(seen, first, "another group gets its own copy");

    // A new consumer of the first group (a restarted service) takes it over once it has been
    // unacknowledged for 30 s.
    let mut restarted = store.events().await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(45), restarted.next())
        .await
        .expect("the event comes again within the takeover time")
        .unwrap()
        .unwrap();
    assert_eq!(again, first, "delivered again, not lost");
    assert_eq!(again.kind, EventKind::Created);
}

#[cfg(feature = "cluster")]
mod cluster {
    use tether_testkit::RedisCluster;

    use super::*;

    struct OnCluster {
        store: RedisStore,
        _cluster: RedisCluster,
    }

    impl Fixture for OnCluster {
        fn store(&self) -> Arc<dyn SessionStore> {
            Arc::new(self.store.clone())
        }
    }

    async fn on_cluster(max: Option<NonZeroUsize>) -> OnCluster {
        let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
            .await
            .expect("join")
            .expect("redis cluster");
        let store = RedisStore::cluster_builder(cluster.urls())
            .connect()
            .await
            .expect("connect to the cluster")
            .with_max_sessions_per_principal(max)
            .with_event_log(EventLog::new());
        OnCluster {
            store,
            _cluster: cluster,
        }
    }

    tether_testkit::store_conformance!(
        on_cluster(None),
        principal_index: |max| on_cluster(Some(max)),
        events: EXPIRED_WITHIN
    );
}

/// The ACL user of the crate docs, with the commands they add for an event log, runs the
/// store with events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_the_documented_commands_keeps_an_event_log() {
    let server = RedisServer::start().unwrap();
    let reply = server
        .command("ACL SETUSER app on >s3cret ~tether:* +hgetall +del +evalsha +eval +script|load +exists +hget +hset +hdel +hkeys +hmget +hlen +pexpireat +pexpiretime +xadd +zadd +zrem +zrangebyscore +xgroup +xreadgroup +xack +xautoclaim")
        .unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    let url = format!("redis://app:s3cret@127.0.0.1:{}", server.port());
    let store = RedisStore::connect(url)
        .await
        .expect("connect as the ACL user")
        .with_event_log(EventLog::new());
    tether_testkit::conformance::contract(&store).await;
    tether_testkit::conformance::session_events(&store, EXPIRED_WITHIN).await;
}
