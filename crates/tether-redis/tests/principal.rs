//! The principal index in Redis, beyond the conformance suite: round trips, entries that name
//! missing or foreign sessions, and index hashes that end with their sessions.
#![cfg(feature = "metrics")]

use std::time::Duration;

use tether_core::{
    Applied, Changes, Created, Expiry, Id, Principal, Record, Revoked, SessionHandle,
    SessionStore as _, Timestamp,
};
use tether_redis::RedisStore;
use tether_testkit::metrics_util::debugging::DebuggingRecorder;
use tether_testkit::{MetricsSnapshot, RedisServer};

fn record(ttl: Duration, absolute: Option<Duration>) -> Record {
    let now = Timestamp::now();
    Record::new(
        Id::random().unwrap(),
        Expiry::new(now, ttl, absolute.map(|a| now + a)),
        now,
    )
}

fn bound(principal: &Principal) -> Record {
    record(Duration::from_secs(60), None).with_principal(Some(principal.clone()))
}

/// Round trips of every operation since the last snapshot.
fn trips(snapshot: &MetricsSnapshot) -> u64 {
    [
        "load",
        "create",
        "apply",
        "delete",
        "take",
        "bind",
        "list",
        "revoke",
        "revoke_session",
        "index",
    ]
    .iter()
    .map(|op| snapshot.counter("tether_redis_round_trips_total", &[("operation", op)]))
    .sum()
}

// One test: the recorder is global to this test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_index_costs_no_extra_round_trip() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");
    let counted = || MetricsSnapshot::take(&snapshotter);
    let server = RedisServer::start().unwrap();
    let store = RedisStore::connect(server.url()).await.unwrap();
    let alice = Principal::new("alice").unwrap();

    // Warm the scripts up, so the counts below are the steady state.
    let warm = bound(&alice);
    assert_eq!(store.create(&warm).await.unwrap(), Created::Created);
    let _ = store.sessions_of(&alice).await.unwrap();
    let _ = store.revoke_all(&alice, None).await.unwrap();
    let mut bind = Changes::new();
    bind.bind(alice.clone());
    let login = record(Duration::from_secs(60), None);
    assert_eq!(store.create(&login).await.unwrap(), Created::Created);
    let _ = store.apply(&login.id, &bind, &login.expiry).await.unwrap();
    store.delete(&login.id).await.unwrap();
    counted();

    // A login binds in the write it makes anyway.
    let login = record(Duration::from_secs(60), None);
    assert_eq!(store.create(&login).await.unwrap(), Created::Created);
    counted();
    assert_eq!(
        store.apply(&login.id, &bind, &login.expiry).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        trips(&counted()),
        1,
        "binding rides on the login's one write"
    );
    let fresh = bound(&alice);
    assert_eq!(store.create(&fresh).await.unwrap(), Created::Created);
    assert_eq!(trips(&counted()), 1, "a session created bound: one write");

    // 100 sessions listed in one round trip.
    for _ in 0..98 {
        assert_eq!(
            store.create(&bound(&alice)).await.unwrap(),
            Created::Created
        );
    }
    counted();
    assert_eq!(store.sessions_of(&alice).await.unwrap().len(), 100);
    assert_eq!(trips(&counted()), 1, "sessions_of is one round trip");
    assert_eq!(
        store
            .revoke_all(&alice, Some(&SessionHandle::of(&fresh.id)))
            .await
            .unwrap(),
        99
    );
    assert_eq!(trips(&counted()), 1, "revoke_all is one round trip");
    assert_eq!(store.sessions_of(&alice).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_naming_missing_or_foreign_sessions_are_dropped_never_followed() {
    let server = RedisServer::start().unwrap();
    let store = RedisStore::connect(server.url()).await.unwrap();
    let alice = Principal::new("alice").unwrap();
    let bob = Principal::new("bob").unwrap();
    let bobs = bound(&bob);
    assert_eq!(store.create(&bobs).await.unwrap(), Created::Created);
    let alices = bound(&alice);
    assert_eq!(store.create(&alices).await.unwrap(), Created::Created);

    // Entries written into alice's index by hand: bob's session, a session that does not
    // exist, and garbage.
    let foreign = SessionHandle::of(&bobs.id);
    let missing = Id::random().unwrap();
    let now = Timestamp::now().as_millis();
    for (field, value) in [
        (foreign.to_string(), format!("{}:{now}", bobs.id)),
        (
            SessionHandle::of(&missing).to_string(),
            format!("{missing}:{now}"),
        ),
        ("garbage".to_string(), "not-an-entry".to_string()),
    ] {
        server
            .command(&format!("HSET tether:principal:alice {field} {value}"))
            .unwrap();
    }

    assert_eq!(
        store.revoke(&alice, &foreign).await.unwrap(),
        Revoked::NotFound,
        "an entry naming bob's session does not revoke it"
    );
    assert!(
        store.load(&bobs.id).await.unwrap().is_some(),
        "bob's session lives"
    );
    server
        .command(&format!(
            "HSET tether:principal:alice {foreign} {}:{now}",
            bobs.id
        ))
        .unwrap();
    assert_eq!(
        store
            .revoke_all(&alice, Some(&SessionHandle::of(&alices.id)))
            .await
            .unwrap(),
        0
    );
    assert!(
        store.load(&bobs.id).await.unwrap().is_some(),
        "revoke_all skips it too"
    );

    server
        .command(&format!(
            "HSET tether:principal:alice {foreign} {}:{now}",
            bobs.id
        ))
        .unwrap();
    let listed: Vec<SessionHandle> = store
        .sessions_of(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.handle)
        .collect();
    assert_eq!(listed, vec![SessionHandle::of(&alices.id)]);
    let fields = server.command("HKEYS tether:principal:alice").unwrap();
    assert!(
        !fields.contains(&foreign.to_string())
            && !fields.contains(&SessionHandle::of(&missing).to_string()),
        "listing dropped the foreign and the missing entry: {fields}"
    );
    assert_eq!(
        store.sessions_of(&bob).await.unwrap().len(),
        1,
        "bob still lists his session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_ends_with_its_last_session() {
    let server = RedisServer::start().unwrap();
    let store = RedisStore::connect(server.url()).await.unwrap();
    let carol = Principal::new("carol").unwrap();
    let mut short = record(Duration::from_millis(600), Some(Duration::from_secs(3600)))
        .with_principal(Some(carol.clone()));
    assert_eq!(store.create(&short).await.unwrap(), Created::Created);
    // A write extends the session, and its index with it.
    short.expiry = Expiry::new(
        Timestamp::now(),
        Duration::from_millis(1200),
        short.expiry.absolute_deadline(),
    );
    assert_eq!(
        store.touch(&short.id, &short.expiry).await.unwrap(),
        Applied::Applied
    );
    let index_deadline: u64 = server
        .command("PEXPIRETIME tether:principal:carol")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(index_deadline, short.expiry.expires_at().as_millis());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        server
            .command("EXISTS tether:principal:carol")
            .unwrap()
            .trim(),
        "0",
        "the index hash expired with its last session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_principal_or_last_use_fields_are_corrupt_sessions() {
    let server = RedisServer::start().unwrap();
    let store = RedisStore::connect(server.url()).await.unwrap();
    for (field, value) in [
        ("@p", "''"),
        ("@s", "not-a-use"),
        ("@s", "\"12\\nnot-an-ip\\nFirefox\""),
    ] {
        let record = record(Duration::from_secs(60), None);
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        server
            .command(&format!("HSET tether:{} {field} {value}", record.id))
            .unwrap();
        let error = store.load(&record.id).await.unwrap_err();
        assert_eq!(
            error.kind(),
            tether_core::ErrorKind::Corrupt,
            "{field} {value}: {error}"
        );
    }
}
