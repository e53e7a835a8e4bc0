//! The near cache against a real redis-server: hits cost no round trip, this store's writes
//! are seen at once, another client's writes invalidate, a restart drops every copy, fills
//! that race writes never stick, and a Redis that cannot track turns the cache off.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::{
    Changes, Codec, Created, Expiry, Id, KeyUpdate, KeyUpdated, Record, SessionStore, Timestamp,
};
use tether_redis::RedisStore;
use tether_testkit::RedisServer;

const HEARTBEAT: Duration = Duration::from_millis(100);

async fn near(server: &RedisServer) -> RedisStore {
    near_with(server, HEARTBEAT).await
}

async fn near_with(server: &RedisServer, heartbeat: Duration) -> RedisStore {
    common::serving_near_cache(server, heartbeat).await
}

fn expiry() -> Expiry {
    Expiry::new(Timestamp::now(), Duration::from_secs(600), None)
}

async fn session(store: &RedisStore, value: &[u8]) -> Id {
    common::stored_session(store, &[("k", value)]).await
}

async fn set(store: &RedisStore, id: &Id, value: &[u8]) {
    let mut changes = Changes::new();
    changes.insert("k", Bytes::copy_from_slice(value));
    let _ = store.apply(id, &changes, &expiry()).await.expect("apply");
}

async fn value(store: &RedisStore, id: &Id) -> Option<Bytes> {
    store
        .load(id)
        .await
        .expect("load")
        .and_then(|record| record.data.get("k").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_cost_nothing_and_own_writes_are_seen_at_once() {
    let server = RedisServer::start().expect("redis-server");
    // Copies are served only within two heartbeats of the last one: a long interval keeps a
    // heartbeat delayed on a loaded machine from turning the hits counted here into misses.
    let store = near_with(&server, Duration::from_secs(5)).await;
    let id = session(&store, b"0").await;
    assert_eq!(value(&store, &id).await.as_deref(), Some(&b"0"[..]));
    let before = store.near_cache_stats().expect("a near cache");
    for _ in 0..10 {
        assert_eq!(value(&store, &id).await.as_deref(), Some(&b"0"[..]));
    }
    let after = store.near_cache_stats().expect("a near cache");
    assert_eq!(after.hits - before.hits, 10, "{after:?}");

    for round in 0..300_u32 {
        let written = round.to_string();
        set(&store, &id, written.as_bytes()).await;
        assert_eq!(
            value(&store, &id).await.as_deref(),
            Some(written.as_bytes()),
            "round {round}: a write through the store is read back at once"
        );
        let _ = value(&store, &id).await;
    }
    let counted = store
        .update_key(
            &id,
            "n",
            &KeyUpdate::Increment {
                by: 2,
                codec: Codec::default(),
            },
        )
        .await
        .expect("increment");
    assert!(matches!(counted, KeyUpdated::Updated(Some(_))));
    let record = store.load(&id).await.expect("load").expect("session");
    assert!(
        record.data.contains_key("n"),
        "update_key drops the copy too"
    );
    store.delete(&id).await.expect("delete");
    assert!(
        store.load(&id).await.expect("load").is_none(),
        "a delete is seen at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_refresh_the_copy_which_stays_coherent() {
    let server = RedisServer::start().expect("redis-server");
    let store = near_with(&server, Duration::from_secs(5)).await;
    let other = RedisStore::connect(server.url()).await.expect("connect");
    let id = session(&store, b"0").await;
    let _ = value(&store, &id).await;
    for round in 0..50_u32 {
        let own = format!("own-{round}");
        set(&store, &id, own.as_bytes()).await;
        let before = store.near_cache_stats().expect("a near cache");
        assert_eq!(value(&store, &id).await.as_deref(), Some(own.as_bytes()));
        let after = store.near_cache_stats().expect("a near cache");
        assert_eq!(
            (after.hits - before.hits, after.refreshes - before.refreshes),
            (1, 0),
            "round {round}: the read after this store's write is served by the refreshed copy"
        );

        // Redis tracks the key again after the write: another client's write still reaches
        // the copy.
        let theirs = format!("theirs-{round}");
        set(&other, &id, theirs.as_bytes()).await;
        let start = Instant::now();
        while value(&store, &id).await.as_deref() != Some(theirs.as_bytes()) {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "round {round}: a refreshed copy outlived another client's write"
            );
            tokio::task::yield_now().await;
        }
    }
    let stats = store.near_cache_stats().expect("a near cache");
    assert_eq!(stats.refreshes, 50, "{stats:?}");

    // So does an increment counted in Redis.
    let _ = value(&store, &id).await;
    let increment = KeyUpdate::Increment {
        by: 1,
        codec: Codec::default(),
    };
    for round in 1..=20_i64 {
        let counted = store.update_key(&id, "n", &increment).await;
        let expected = Codec::default().encode(&round).expect("encode");
        assert!(
            matches!(&counted, Ok(KeyUpdated::Updated(Some(n))) if *n == expected),
            "{counted:?}"
        );
        let before = store.near_cache_stats().expect("a near cache");
        let record = store.load(&id).await.expect("load").expect("session");
        assert_eq!(record.data.get("n"), Some(&expected), "round {round}");
        let after = store.near_cache_stats().expect("a near cache");
        assert_eq!(
            after.hits - before.hits,
            1,
            "round {round}: served by the copy"
        );
    }
    set(&other, &id, b"last").await;
    let start = Instant::now();
    while value(&store, &id).await.as_deref() != Some(&b"last"[..]) {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a copy refreshed by an increment outlived another client's write"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_dropped_half_way_leaves_no_stale_copy() {
    let server = RedisServer::start().expect("redis-server");
    let store = near_with(&server, Duration::from_secs(5)).await;
    let truth = RedisStore::connect(server.url()).await.expect("connect");
    let id = session(&store, b"0").await;
    for round in 0..100_u32 {
        let _ = value(&store, &id).await;
        let mut changes = Changes::new();
        changes.insert("k", Bytes::from(round.to_string()));
        let expiry = expiry();
        // Polled once (the command goes out), then dropped, as when a client goes away.
        let _ = tokio::time::timeout(Duration::ZERO, store.apply(&id, &changes, &expiry)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            value(&store, &id).await,
            value(&truth, &id).await,
            "round {round}: the copy disagrees with Redis after a dropped write"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_write_invalidates_the_copy() {
    let server = RedisServer::start().expect("redis-server");
    let store = near(&server).await;
    let other = RedisStore::connect(server.url()).await.expect("connect");
    let id = session(&store, b"old").await;
    let _ = value(&store, &id).await;
    assert_eq!(value(&store, &id).await.as_deref(), Some(&b"old"[..]));

    let mut delays = Vec::new();
    for round in 0..50_u32 {
        let written = format!("new-{round}");
        set(&other, &id, written.as_bytes()).await;
        let start = Instant::now();
        loop {
            if value(&store, &id).await.as_deref() == Some(written.as_bytes()) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "round {round}: another client's write never reached the copy"
            );
            tokio::task::yield_now().await;
        }
        delays.push(start.elapsed());
        // Cached again for the next round.
        let _ = value(&store, &id).await;
    }
    delays.sort();
    let stats = store.near_cache_stats().expect("a near cache");
    assert!(stats.invalidations >= 50, "{stats:?}");
    eprintln!(
        "write on another client to invalidation here: p50 {:?}, max {:?}",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_that_race_writes_never_stick() {
    let server = RedisServer::start().expect("redis-server");
    let store = Arc::new(near(&server).await);
    let other = RedisStore::connect(server.url()).await.expect("connect");
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(session(&other, b"0").await);
    }
    let ids = Arc::new(ids);

    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, ids) = (Arc::clone(&store), Arc::clone(&ids));
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_millis(1500);
                while Instant::now() < deadline {
                    for id in ids.iter() {
                        let _ = value(&store, id).await;
                    }
                }
            })
        })
        .collect();
    for round in 1..=100_u32 {
        for id in ids.iter() {
            set(&other, id, round.to_string().as_bytes()).await;
        }
    }
    for reader in readers {
        reader.await.expect("reader");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in ids.iter() {
        assert_eq!(
            value(&store, id).await.as_deref(),
            Some(&b"100"[..]),
            "a copy filled while the session was written must not outlive the write"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_drops_every_copy() {
    let mut server = RedisServer::start().expect("redis-server");
    let store = near(&server).await;
    let id = session(&store, b"before").await;
    assert_eq!(value(&store, &id).await.as_deref(), Some(&b"before"[..]));
    assert_eq!(value(&store, &id).await.as_deref(), Some(&b"before"[..]));

    let flushed = store.near_cache_stats().expect("a near cache").flushes;
    server.kill();
    server.restart().expect("restart");
    // Whatever the restarted server holds, a write made now must be what is read.
    let other = RedisStore::connect(server.url()).await.expect("connect");
    let mut record = Record::new(id, expiry(), Timestamp::now());
    record.data.insert("k".into(), Bytes::from_static(b"after"));
    if other.create(&record).await.expect("create") == Created::IdTaken {
        set(&other, &id, b"after").await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.load(&id).await {
            Ok(found) => {
                let found = found.and_then(|r| r.data.get("k").cloned());
                assert_ne!(
                    found.as_deref(),
                    Some(&b"before"[..]),
                    "the copy from before the restart was served"
                );
                if found.as_deref() == Some(&b"after"[..]) {
                    break;
                }
            }
            Err(error) => assert!(error.is_transient(), "{error}"),
        }
        assert!(Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.near_cache_stats().expect("a near cache").flushes > flushed);

    // The new connection tracks too: once a copy serves again, another client's write drops
    // it. Without tracking on the new connection the copy would be served on and on.
    let hits = |store: &RedisStore| store.near_cache_stats().expect("a near cache").hits;
    let before = hits(&store);
    let deadline = Instant::now() + Duration::from_secs(10);
    while hits(&store) == before {
        assert_eq!(value(&store, &id).await.as_deref(), Some(&b"after"[..]));
        assert!(
            Instant::now() < deadline,
            "no copy served after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set(&other, &id, b"later").await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while value(&store, &id).await.as_deref() != Some(&b"later"[..]) {
        assert!(
            Instant::now() < deadline,
            "another client's write did not reach the reconnected near cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_redis_that_cannot_track_turns_the_cache_off() {
    let server =
        RedisServer::start_with(&["--rename-command", "CLIENT", ""]).expect("redis-server");
    let store = RedisStore::builder(server.url())
        .with_near_cache(100)
        .connect()
        .await
        .expect("the store connects without a near cache");
    assert!(store.near_cache_stats().is_none());
    let id = session(&store, b"v").await;
    assert_eq!(value(&store, &id).await.as_deref(), Some(&b"v"[..]));
}

#[cfg(feature = "sentinel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinel_copies_stay_coherent_and_a_failover_drops_them() {
    use tether_testkit::SentinelSetup;
    use tether_testkit::redis::SENTINEL_MASTER;

    let mut setup = tokio::task::spawn_blocking(SentinelSetup::start)
        .await
        .expect("join")
        .expect("sentinel setup");
    let store = RedisStore::sentinel_builder([setup.sentinel_url()], SENTINEL_MASTER)
        .with_near_cache(1_000)
        .with_near_cache_heartbeat(HEARTBEAT)
        .with_command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect through Sentinel");
    assert!(store.near_cache_stats().is_some(), "the near cache is on");
    let other = RedisStore::sentinel_builder([setup.sentinel_url()], SENTINEL_MASTER)
        .with_command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect through Sentinel");

    let id = session(&other, b"first").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.near_cache_stats().expect("a near cache").hits == 0 {
        assert_eq!(value(&store, &id).await.as_deref(), Some(&b"first"[..]));
        assert!(Instant::now() < deadline, "no copy was served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    set(&other, &id, b"second").await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while value(&store, &id).await.as_deref() != Some(&b"second"[..]) {
        assert!(
            Instant::now() < deadline,
            "another client's write never reached the copy"
        );
        tokio::task::yield_now().await;
    }
    // Cached again, and on the replica before the master dies.
    assert_eq!(value(&store, &id).await.as_deref(), Some(&b"second"[..]));
    let wait = setup.master().command("WAIT 1 2000").expect("WAIT");
    assert!(wait.starts_with('1'), "replica acknowledged: {wait}");

    let setup = tokio::task::spawn_blocking(move || setup.fail_over().map(|()| setup))
        .await
        .expect("join")
        .expect("failover");

    // A write on the new master: once it is acknowledged, no read may answer what came before.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut changes = Changes::new();
        changes.insert("k", Bytes::from_static(b"after"));
        if other.apply(&id, &changes, &expiry()).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other client found no master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.load(&id).await {
            Ok(found) => {
                let found = found.and_then(|record| record.data.get("k").cloned());
                assert_eq!(
                    found.as_deref(),
                    Some(&b"after"[..]),
                    "a copy from before the failover was served"
                );
                break;
            }
            Err(error) => assert!(error.is_transient(), "{error}"),
        }
        assert!(Instant::now() < deadline, "the store found no master");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = store.near_cache_stats().expect("a near cache");
    assert!(stats.flushes >= 1, "{stats:?}");
    // Copies are served again from the new master, and kept coherent there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.near_cache_stats().expect("a near cache").hits == stats.hits {
        assert_eq!(value(&store, &id).await.as_deref(), Some(&b"after"[..]));
        assert!(
            Instant::now() < deadline,
            "no copy served after the failover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    set(&other, &id, b"later").await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while value(&store, &id).await.as_deref() != Some(&b"later"[..]) {
        assert!(
            Instant::now() < deadline,
            "after the failover, another client's write never reached the copy"
        );
        tokio::task::yield_now().await;
    }
    drop(setup);
}
