//! The store conformance suite against the memory store.

use tether_memory::MemoryStore;

tether_testkit::store_conformance!(async { MemoryStore::new() });

#[tokio::test]
async fn capacity_is_bounded() {
    use std::time::Duration;
    use tether_core::{Created, Expiry, Id, Record, SessionStore, Timestamp};

    let store = MemoryStore::with_max_sessions(100);
    let now = Timestamp::now();
    for _ in 0..1_000 {
        let record = Record::new(
            Id::random().unwrap(),
            Expiry::new(now, Duration::from_secs(60), None),
            now,
        );
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    }
    store.run_pending_tasks().await;
    assert!(store.session_count() <= 100, "{}", store.session_count());
}
