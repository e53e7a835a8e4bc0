//! The stores' statements and pool figures reach the metrics facade (feature `metrics`), on
//! PostgreSQL (the statement counter agrees with sqlx's own log of what it ran) and SQLite.
#![cfg(all(feature = "metrics", feature = "postgres", feature = "sqlite"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tether_core::{
    Applied, Changes, Created, Cycled, Expiry, Id, KeyUpdate, KeyUpdated, Record, SessionStore,
    Timestamp,
};
use tether_testkit::MetricsSnapshot;
use tether_testkit::metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use tracing_subscriber::layer::SubscriberExt as _;

/// Counts the statements sqlx reports having run.
struct Statements(Arc<AtomicU64>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Every operation once, and the expiry sweep.
async fn every_operation(store: &dyn SessionStore) {
    let now = Timestamp::now();
    let expiry = Expiry::new(now, Duration::from_secs(60), None);
    let mut record = Record::new(Id::random().unwrap(), expiry, now);
    record.data.insert("a".into(), Bytes::from_static(b"1"));
    record.data.insert("b".into(), Bytes::from_static(b"2"));
    let mut changes = Changes::new();
    changes.insert("c", Bytes::from_static(b"3"));
    changes.remove("a");
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    assert!(store.load(&record.id).await.unwrap().is_some());
    assert_eq!(
        store.apply(&record.id, &changes, &expiry).await.unwrap(),
        Applied::Applied
    );
    let swap = KeyUpdate::Swap {
        expected: None,
        new: Some(Bytes::from_static(b"4")),
    };
    assert!(matches!(
        store.update_key(&record.id, "d", &swap).await.unwrap(),
        KeyUpdated::Updated(_)
    ));
    assert_eq!(
        store.touch(&record.id, &expiry).await.unwrap(),
        Applied::Applied
    );
    let new = Id::random().unwrap();
    assert_eq!(store.cycle(&record.id, &new).await.unwrap(), Cycled::Moved);
    store.delete(&new).await.unwrap();
}

/// The statements counted for `database` in `snapshotter`'s recorder since its last snapshot,
/// and the pool waits timed.
fn counted(snapshotter: &Snapshotter, database: &str) -> (u64, usize) {
    let snapshot = MetricsSnapshot::take(snapshotter);
    let statements = [
        "create",
        "load",
        "apply",
        "update_key",
        "touch",
        "cycle",
        "delete",
        "sweep",
    ]
    .iter()
    .map(|operation| {
        snapshot.counter(
            "tether_sql_statements_total",
            &[("database", database), ("operation", operation)],
        )
    })
    .sum();
    let waits = snapshot.samples("tether_sql_pool_wait_seconds", &[("database", database)]);
    assert!(
        snapshot
            .gauge(
                "tether_sql_pool_connections",
                &[("database", database), ("state", "busy")]
            )
            .is_some(),
        "{database}: pool size published"
    );
    (statements, waits)
}

// One test: the recorder is global to this test binary.
#[tokio::test]
async fn statements_and_pool_waits_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");
    let logged = Arc::new(AtomicU64::new(0));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(Statements(Arc::clone(&logged))),
    );

    let postgres = common::postgres().await;
    let sqlite = common::sqlite_memory().await;
    let stores: [(&str, &dyn SessionStore, _); 2] = [
        ("postgres", &postgres.store, {
            let store = postgres.store.clone();
            Box::pin(async move { store.delete_expired().await.map(drop) })
                as std::pin::Pin<Box<dyn Future<Output = _>>>
        }),
        ("sqlite", &sqlite, {
            let store = sqlite.clone();
            Box::pin(async move { store.delete_expired().await.map(drop) })
        }),
    ];
    for (database, store, sweep) in stores {
        let _ = MetricsSnapshot::take(&snapshotter);
        let before = logged.load(Ordering::SeqCst);
        every_operation(store).await;
        sweep.await.unwrap();
        let ran = logged.load(Ordering::SeqCst) - before;
        let (statements, waits) = counted(&snapshotter, database);
        let expected = match database {
            // sqlx logs every statement but the BEGIN it queues itself: cycle's transaction.
            "postgres" => ran + 1,
            // sqlx runs SQLite on a worker thread, whose statements this thread's subscriber
            // does not see; by hand: create BEGIN, free, insert, 2 keys, COMMIT; load 1;
            // apply BEGIN, update, remove, insert, COMMIT; update_key BEGIN, read, insert,
            // COMMIT; touch BEGIN, update, COMMIT; cycle BEGIN, free, check, rename, COMMIT;
            // delete and sweep BEGIN, 1, COMMIT each.
            _ => 6 + 1 + 5 + 4 + 3 + 5 + 3 + 3,
        };
        assert_eq!(statements, expected, "{database}: statements counted");
        assert!(
            waits >= 8,
            "{database}: each operation waited for a connection: {waits}"
        );
    }
}
