//! The store conformance suite against the memory store.

use std::time::Duration;

use tether_core::{Created, Expiry, Id, Principal, Record, SessionStore, Timestamp};
use tether_memory::MemoryStore;

tether_testkit::store_conformance!(
    async { MemoryStore::new() },
    principal_index: |max| async move { MemoryStore::new().with_max_sessions_per_principal(Some(max)) },
    events: Duration::from_millis(2500)
);

fn record(ttl: Duration) -> Record {
    let now = Timestamp::now();
    Record::new(Id::random().unwrap(), Expiry::new(now, ttl, None), now)
}

#[tokio::test]
async fn capacity_is_bounded() {
    let store = MemoryStore::with_max_sessions(100);
    for _ in 0..1_000 {
        let record = record(Duration::from_secs(60));
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    }
    store.run_pending_tasks().await;
    assert!(store.session_count() <= 100, "{}", store.session_count());
}

/// Sessions that end by expiry or eviction leave no entry behind in the principal index:
/// nothing else would ever remove it.
#[tokio::test]
async fn expired_and_evicted_sessions_leave_the_index() {
    let store = MemoryStore::with_max_sessions(50);
    let user = Principal::new("user").unwrap();
    for n in 0..200 {
        let ttl = if n % 2 == 0 {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(60)
        };
        let record = record(ttl).with_principal(Some(user.clone()));
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    }
    // moka's timer wheel looks at deadlines in slots of about a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    store.run_pending_tasks().await;
    let live = store.sessions_of(&user).await.unwrap().len();
    assert!(live <= 50, "{live} sessions listed past the capacity of 50");
    assert_eq!(
        store.indexed_sessions(),
        live,
        "the index holds an entry for each live session and nothing else"
    );
}
