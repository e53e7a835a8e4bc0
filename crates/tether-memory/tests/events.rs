//! The memory store's events beyond the conformance check: eviction at the session bound, and
//! a subscriber that falls behind.

use std::time::Duration;

use futures_util::StreamExt as _;
use tether_core::{Created, ErrorKind, EventKind, Expiry, Id, Record, SessionStore, Timestamp};
use tether_memory::MemoryStore;

fn record() -> Record {
    let now = Timestamp::now();
    Record::new(
        Id::random().unwrap(),
        Expiry::new(now, Duration::from_secs(60), None),
        now,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_dropped_for_room_are_reported_evicted() {
    let store = MemoryStore::with_max_sessions(10);
    let mut events = store.events().await.unwrap();
    for _ in 0..30 {
        assert_eq!(store.create(&record()).await.unwrap(), Created::Created);
    }
    store.run_pending_tasks().await;
    let mut evicted = 0;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(3), events.next()).await {
        if event.unwrap().kind == EventKind::Evicted {
            evicted += 1;
        }
        if evicted == 20 {
            break;
        }
    }
    assert_eq!(
        evicted, 20,
        "every session dropped past the bound of 10 is reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_is_told_and_goes_on() {
    let store = MemoryStore::new();
    let mut events = store.events().await.unwrap();
    for _ in 0..5_000 {
        assert_eq!(store.create(&record()).await.unwrap(), Created::Created);
    }
    let first = events.next().await.unwrap();
    let error = first.expect_err("the first item says events were missed");
    assert_eq!(error.kind(), ErrorKind::EventsMissed);
    assert!(error.to_string().contains("904"), "{error}");
    let next = events
        .next()
        .await
        .unwrap()
        .expect("then the stream goes on");
    assert_eq!(next.kind, EventKind::Created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_built_without_a_subscriber_and_late_subscribers_see_only_later_events() {
    let store = MemoryStore::new();
    let before = record();
    assert_eq!(store.create(&before).await.unwrap(), Created::Created);
    let mut events = store.events().await.unwrap();
    let after = record();
    assert_eq!(store.create(&after).await.unwrap(), Created::Created);
    let event = events.next().await.unwrap().unwrap();
    assert_eq!(event.handle, tether_core::SessionHandle::of(&after.id));
}
