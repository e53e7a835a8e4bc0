//! A read-only request whose session is due for renewal: one round trip when the store knows
//! it is due before reading it (one script reads and renews), two when it does not (`HGETALL`,
//! then the renewal). Feature `metrics`, against a real redis-server.
#![cfg(feature = "metrics")]

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use common::send;
use tether_core::{Created, Expiry, Id, Principal, Record, Renewal, SessionStore as _, Timestamp};
use tether_redis::RedisStore;
use tether_sessions::SessionLayer;
use tether_testkit::metrics_util::debugging::DebuggingRecorder;
use tether_testkit::{MetricsSnapshot, RedisServer};

/// Every operation name the store counts round trips under.
const OPERATIONS: [&str; 9] = [
    "load",
    "load_renewing",
    "create",
    "apply",
    "take",
    "delete",
    "update_key",
    "list",
    "index",
];

fn session_app(store: RedisStore) -> Router {
    common::routes()
        // Every read past the first millisecond is due for renewal.
        .layer(
            SessionLayer::new(store)
                .with_secure(false)
                .with_persistent_cookie(true)
                .with_touch_threshold(0.0),
        )
}

/// Round trips per operation since the last call, those above zero.
fn round_trips(
    snapshotter: &tether_testkit::metrics_util::debugging::Snapshotter,
) -> Vec<(&'static str, u64)> {
    let snapshot = MetricsSnapshot::take(snapshotter);
    OPERATIONS
        .iter()
        .map(|op| {
            (
                *op,
                snapshot.counter("tether_redis_round_trips_total", &[("operation", op)]),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Reads `cookie`'s session through `app` once its renewal is due, and returns the round
/// trips that read cost and the deadline before and after it.
async fn renewing_read(
    app: &Router,
    store: &RedisStore,
    cookie: &str,
    snapshotter: &tether_testkit::metrics_util::debugging::Snapshotter,
) -> (Vec<(&'static str, u64)>, Timestamp, Timestamp) {
    let id: Id = cookie.trim_start_matches("sid=").parse().unwrap();
    let deadline = |record: Option<Record>| record.expect("the session lives").expiry.expires_at();
    let before = deadline(store.load(&id).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    round_trips(snapshotter);
    let (status, body, _) = send(app, "/count", Some(cookie)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "1"));
    let trips = round_trips(snapshotter);
    (trips, before, deadline(store.load(&id).await.unwrap()))
}

// One test: the recorder is global to this test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_due_for_renewal_is_one_round_trip_with_a_copy() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");
    let server = RedisServer::start().unwrap();

    // A session this store has not read yet: HGETALL, then the renewal.
    let store = RedisStore::connect(server.url()).await.unwrap();
    let app = session_app(store.clone());
    let cookie = send(&app, "/incr", None)
        .await
        .2
        .expect("a new session sets its cookie");
    let (trips, before, after) = renewing_read(&app, &store, &cookie, &snapshotter).await;
    assert_eq!(
        trips,
        [("load", 1), ("apply", 3)],
        "HGETALL, then apply.lua (its first run: EVALSHA, SCRIPT LOAD, EVALSHA)"
    );
    assert!(after > before, "renewed: {before:?} -> {after:?}");
    // Read before, so known to be due: one script reads and renews. Its first run loads it
    // into the new server.
    let (trips, _, _) = renewing_read(&app, &store, &cookie, &snapshotter).await;
    assert_eq!(
        trips,
        [("load_renewing", 3)],
        "EVALSHA, SCRIPT LOAD, EVALSHA"
    );
    let (trips, before, after) = renewing_read(&app, &store, &cookie, &snapshotter).await;
    assert_eq!(
        trips,
        [("load_renewing", 1)],
        "one round trip for the read and its renewal"
    );
    assert!(after > before, "renewed: {before:?} -> {after:?}");
    // The renewal stays when the handler fails, and the persistent cookie follows it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, _, set) = send(&app, "/fail", Some(&cookie)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        set.as_deref(),
        Some(cookie.as_str()),
        "same id, new Max-Age"
    );
    let id: Id = cookie.trim_start_matches("sid=").parse().unwrap();
    let renewed = store.load(&id).await.unwrap().unwrap().expiry.expires_at();
    assert!(
        renewed > after,
        "the failed request's read renewed the session"
    );

    // With the near cache, a copy is served as it is and the renewal follows: still one round
    // trip, and the copy is brought up to date from the renewal.
    let store = common::serving_near_cache(&server, Duration::from_millis(50)).await;
    let app = session_app(store.clone());
    let cookie = send(&app, "/incr", None)
        .await
        .2
        .expect("a new session sets its cookie");
    renewing_read(&app, &store, &cookie, &snapshotter).await;
    let refreshes = store.near_cache_stats().unwrap().refreshes;
    let (trips, before, after) = renewing_read(&app, &store, &cookie, &snapshotter).await;
    assert_eq!(trips, [("apply", 1)], "the copy, then the renewal");
    assert!(after > before, "renewed: {before:?} -> {after:?}");
    assert!(
        store.near_cache_stats().unwrap().refreshes > refreshes,
        "the copy is brought up to date from the renewal"
    );

    // A bound session renewed by the script stays listed under its principal.
    let store = RedisStore::connect(server.url()).await.unwrap();
    let alice = Principal::new("alice").unwrap();
    let now = Timestamp::now();
    let hour = Duration::from_secs(3600);
    let due = Record::new(
        Id::random().unwrap(),
        Expiry::from_parts(now + Duration::from_secs(20 * 60), hour, None),
        now,
    )
    .with_principal(Some(alice.clone()));
    assert_eq!(store.create(&due).await.unwrap(), Created::Created);
    // Read once ten minutes after its last renewal, when it was not due yet.
    let earlier = Timestamp::from_millis(Timestamp::now().as_millis() - 30 * 60 * 1000);
    let first = store
        .load_renewing(&due.id, &Renewal::new(earlier, 0.25))
        .await
        .unwrap()
        .expect("the session lives");
    assert!(!first.renewed);
    round_trips(&snapshotter);
    let loaded = store
        .load_renewing(&due.id, &Renewal::new(Timestamp::now(), 0.25))
        .await
        .unwrap()
        .expect("the session lives");
    assert!(loaded.renewed);
    assert_eq!(round_trips(&snapshotter), [("load_renewing", 1)]);
    let listed = store.sessions_of(&alice).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}
