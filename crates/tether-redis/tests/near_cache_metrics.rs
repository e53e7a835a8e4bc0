//! The near cache's hits, misses, invalidations, refreshes, flushes and reconnects reach the
//! metrics facade (feature `metrics`), against a real redis-server.
#![cfg(feature = "metrics")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::{Applied, Changes, Created, Expiry, Id, Record, SessionStore as _, Timestamp};
use tether_redis::RedisStore;
use tether_testkit::metrics_util::debugging::DebuggingRecorder;
use tether_testkit::{MetricsSnapshot, RedisServer};

fn expiry() -> Expiry {
    Expiry::new(Timestamp::now(), Duration::from_secs(600), None)
}

async fn set(store: &RedisStore, id: &Id, value: &'static [u8]) {
    let mut changes = Changes::new();
    changes.insert("k", Bytes::from_static(value));
    assert_eq!(
        store.apply(id, &changes, &expiry()).await.expect("apply"),
        Applied::Applied
    );
}

// One test: the recorder is global to this test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_events_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");
    let mut server = RedisServer::start().expect("redis-server");
    let store = RedisStore::builder(server.url())
        .with_near_cache(100)
        .with_near_cache_heartbeat(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    let other = RedisStore::connect(server.url()).await.expect("connect");
    let record = Record::new(Id::random().expect("entropy"), expiry(), Timestamp::now());
    assert_eq!(
        store.create(&record).await.expect("create"),
        Created::Created
    );
    let id = record.id;
    // Each snapshot holds what was counted since the previous one.
    let counted = || {
        let snapshot = MetricsSnapshot::take(&snapshotter);
        ["hit", "miss", "invalidation", "refresh", "flush"]
            .map(|event| snapshot.counter("tether_redis_near_cache_total", &[("event", event)]))
    };

    // Until the first heartbeat comes back, reads miss; then the copy serves them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.near_cache_stats().expect("a near cache").hits == 0 {
        store.load(&id).await.expect("load");
        assert!(Instant::now() < deadline, "no heartbeat came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let [hits, misses, ..] = counted();
    assert_eq!(hits, 1);
    assert!(misses >= 1, "{misses}");

    store.load(&id).await.expect("load");
    assert_eq!(counted(), [1, 0, 0, 0, 0]);

    set(&store, &id, b"own").await;
    assert_eq!(counted(), [0, 0, 0, 1, 0], "this store's write refreshes");

    set(&other, &id, b"theirs").await;
    // The push is handled on the connection's reader: wait for its count.
    let mut seen = [0; 5];
    let deadline = Instant::now() + Duration::from_secs(1);
    while seen[2] == 0 {
        assert!(Instant::now() < deadline, "the invalidation never came");
        for (total, n) in seen.iter_mut().zip(counted()) {
            *total += n;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(seen, [0, 0, 1, 0, 0], "another client's write invalidates");

    // Connecting flushed once already: count the flushes from here.
    let before = store.near_cache_stats().expect("a near cache").flushes;
    server.kill();
    let mut flushes = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.near_cache_stats().expect("a near cache").flushes == before || flushes == 0 {
        assert!(
            Instant::now() < deadline,
            "the lost connection was not noticed, or not counted"
        );
        let _ = store.load(&id).await;
        let [.., flushed] = counted();
        flushes += flushed;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Back up: the next read makes the connection again, counted once.
    server.restart().expect("restart");
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.load(&id).await.is_err() {
        assert!(Instant::now() < deadline, "no connection after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = MetricsSnapshot::take(&snapshotter);
    assert_eq!(
        snapshot.counter(
            "tether_redis_reconnects_total",
            &[("topology", "standalone")]
        ),
        1,
        "{snapshot:?}"
    );
}
