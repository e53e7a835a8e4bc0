//! The store's round trips, script loads and connection errors reach the metrics facade
//! (feature `metrics`), against a real redis-server.
#![cfg(feature = "metrics")]

use std::time::Duration;

use tether_core::{Applied, Changes, Created, Expiry, Id, Record, SessionStore as _, Timestamp};
use tether_redis::RedisStore;
use tether_testkit::metrics_util::debugging::DebuggingRecorder;
use tether_testkit::{MetricsSnapshot, RedisServer};

fn record() -> Record {
    let now = Timestamp::now();
    Record::new(
        Id::random().unwrap(),
        Expiry::new(now, Duration::from_secs(60), None),
        now,
    )
}

// One test: the recorder is global to this test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_script_loads_and_connection_errors_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");
    let mut server = RedisServer::start().unwrap();
    let store = RedisStore::builder(server.url())
        .with_command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    // Each snapshot holds what was counted since the previous one.
    let counted = || MetricsSnapshot::take(&snapshotter);
    let trips_and_loads = |snapshot: &MetricsSnapshot, name: &str| {
        (
            snapshot.counter("tether_redis_round_trips_total", &[("operation", name)]),
            snapshot.counter("tether_redis_script_loads_total", &[("script", name)]),
        )
    };

    // A new server does not know the script: EVALSHA, SCRIPT LOAD, EVALSHA.
    let first = record();
    assert_eq!(store.create(&first).await.unwrap(), Created::Created);
    assert_eq!(trips_and_loads(&counted(), "create"), (3, 1));
    // From then on, one round trip.
    assert_eq!(store.create(&record()).await.unwrap(), Created::Created);
    assert_eq!(trips_and_loads(&counted(), "create"), (1, 0));
    store.load(&first.id).await.unwrap().unwrap();
    assert_eq!(trips_and_loads(&counted(), "load"), (1, 0));
    let mut changes = Changes::new();
    changes.insert("k".to_owned(), bytes::Bytes::from_static(b"v"));
    assert_eq!(
        store
            .apply(&first.id, &changes, &first.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(trips_and_loads(&counted(), "apply"), (3, 1));
    assert_eq!(
        store
            .apply(&first.id, &changes, &first.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(trips_and_loads(&counted(), "apply"), (1, 0));

    // Scripts flushed (as after a restart or a failover): loaded again, once.
    server.command("SCRIPT FLUSH").unwrap();
    assert_eq!(
        store
            .apply(&first.id, &changes, &first.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(trips_and_loads(&counted(), "apply"), (3, 1));
    // `delete` is a script too (it keeps the principal index): its first run loads it.
    store.delete(&first.id).await.unwrap();
    let snapshot = counted();
    assert_eq!(trips_and_loads(&snapshot, "delete"), (3, 1));
    assert_eq!(
        snapshot.counter("tether_redis_connection_errors_total", &[]),
        0
    );

    server.kill();
    // On a loaded machine the first failure may be the command timeout, which is not a
    // connection error; the next attempts are refused.
    let mut errors = 0;
    for _ in 0..10 {
        assert!(store.load(&first.id).await.is_err());
        errors += counted().counter("tether_redis_connection_errors_total", &[]);
        if errors > 0 {
            break;
        }
    }
    assert!(errors >= 1, "the lost connection is counted: {errors}");
}
