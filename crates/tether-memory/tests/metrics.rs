//! Sessions evicted at the capacity bound are counted (feature `metrics`); expired and deleted
//! ones are not evictions.
#![cfg(feature = "metrics")]

use std::time::Duration;

use tether_core::{Created, Expiry, Id, Record, SessionStore as _, Timestamp};
use tether_memory::MemoryStore;
use tether_testkit::MetricsSnapshot;
use tether_testkit::metrics_util::debugging::DebuggingRecorder;

// One test: the recorder is global to this test binary.
#[tokio::test]
async fn evictions_at_the_bound_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");
    let store = MemoryStore::with_max_sessions(10);
    let now = Timestamp::now();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let record = Record::new(
            Id::random().unwrap(),
            Expiry::new(now, Duration::from_secs(60), None),
            now,
        );
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        ids.push(record.id);
    }
    for id in &ids[..5] {
        store.delete(id).await.unwrap();
    }
    store.run_pending_tasks().await;
    let evictions =
        |snapshot: MetricsSnapshot| snapshot.counter("tether_memory_evictions_total", &[]);
    assert_eq!(
        evictions(MetricsSnapshot::take(&snapshotter)),
        0,
        "deletes are not evictions"
    );

    for _ in 0..100 {
        let record = Record::new(
            Id::random().unwrap(),
            Expiry::new(now, Duration::from_secs(60), None),
            now,
        );
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    }
    store.run_pending_tasks().await;
    let evicted = evictions(MetricsSnapshot::take(&snapshotter));
    let held = store.session_count();
    assert_eq!(
        evicted,
        5 + 100 - held,
        "every session over the bound is counted: {held} held"
    );
}
