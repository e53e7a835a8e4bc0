//! Faults against real redis-server processes: killed, hung, restarted, corrupt data, failover.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use common::send;
use tether_core::{ErrorKind, Id, SessionStore};
use tether_redis::RedisStore;
use tether_sessions::SessionLayer;
use tether_testkit::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(500);

fn app(store: RedisStore) -> Router {
    common::routes().layer(SessionLayer::new(store).with_secure(false))
}

/// Sends `/incr` with `cookie`; returns the status, the body and a new cookie if one was set.
async fn incr(app: &Router, cookie: Option<&str>) -> (StatusCode, String, Option<String>) {
    send(app, "/incr", cookie).await
}

async fn store_on(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url())
        .with_command_timeout(TIMEOUT)
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_gives_503_then_recovers_on_restart() {
    let mut server = RedisServer::start().unwrap();
    let app = app(store_on(&server).await);
    let (status, _, cookie) = incr(&app, None).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();

    // Four clients send requests until told to stop (and never more than 2,000 each).
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (app, cookie, stop) = (app.clone(), cookie.clone(), Arc::clone(&stop));
        clients.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..2_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let started = Instant::now();
                let (status, _, _) = incr(&app, Some(&cookie)).await;
                seen.push((status, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::SeqCst);

    let mut statuses = Vec::new();
    while let Some(seen) = clients.join_next().await {
        statuses.extend(seen.unwrap());
    }
    assert!(
        statuses.iter().any(|(s, _)| *s == StatusCode::OK),
        "requests succeeded before the kill"
    );
    assert!(
        statuses
            .iter()
            .any(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE),
        "requests after the kill answer 503"
    );
    for (status, took) in &statuses {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::SERVICE_UNAVAILABLE,
            "only 200 or 503, got {status}"
        );
        // Load and save are each bounded by the command timeout.
        assert!(
            *took < 2 * TIMEOUT + Duration::from_millis(500),
            "a request took {took:?}"
        );
    }

    // Same port, same app: it serves again without a restart of the app. The new server is
    // empty, so the old cookie names nothing and a new session starts.
    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body, _) = incr(&app, Some(&cookie)).await;
        if status == StatusCode::OK {
            assert_eq!(body, "1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} 15 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_costs_at_most_the_timeout() {
    let server = RedisServer::start_with(&["--enable-debug-command", "local"]).unwrap();
    let store = store_on(&server).await;
    let id = Id::random().unwrap();
    assert!(store.load(&id).await.unwrap().is_none());

    let port = server.port();
    let sleeper = std::thread::spawn(move || {
        let server = format!("127.0.0.1:{port}");
        let mut stream = std::net::TcpStream::connect(server).unwrap();
        std::io::Write::write_all(&mut stream, b"DEBUG SLEEP 2\r\n").unwrap();
        let mut reply = [0u8; 16];
        let _ = std::io::Read::read(&mut stream, &mut reply);
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let err = store.load(&id).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_transient(), "{err:?}");
    assert!(took < TIMEOUT + Duration::from_millis(300), "took {took:?}");
    sleeper.join().unwrap();
    // Once Redis answers again, so does the store.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.load(&id).await.is_err() {
        assert!(Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn corrupt_session_data_is_a_typed_error_and_a_new_session() {
    let server = RedisServer::start().unwrap();
    let store = store_on(&server).await;
    let app = app(store.clone());
    let (_, _, cookie) = incr(&app, None).await;
    let cookie = cookie.unwrap();
    let id: Id = cookie.trim_start_matches("sid=").parse().unwrap();
    let key = store.key(&id);

    let cases = [
        format!("HSET {key} garbage x"),
        format!("HSET {key} @m soon"),
        format!("HDEL {key} @m"),
    ];
    for corruption in cases {
        server.command(&format!("DEL {key}")).unwrap();
        assert_eq!(incr(&app, None).await.0, 200);
        // Recreate the session under the same id by hand, then damage it.
        let now = tether_core::Timestamp::now().as_millis();
        server
            .command(&format!(
                "HSET {key} @m {now}:{}:60000: :n \x01",
                now + 60_000
            ))
            .unwrap();
        server.command(&corruption).unwrap();
        let err = store.load(&id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{corruption}: {err:?}");
        let (status, body, _) = incr(&app, Some(&cookie)).await;
        assert_eq!(
            status, 200,
            "{corruption}: a corrupt session is no session, not a 5xx"
        );
        assert_eq!(body, "1", "{corruption}");
    }

    // A key of another type under the session's name.
    server.command(&format!("DEL {key}")).unwrap();
    server.command(&format!("SET {key} not-a-hash")).unwrap();
    assert_eq!(
        store.load(&id).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(incr(&app, Some(&cookie)).await.0, 200);
}

/// Over `maxmemory` with `noeviction`, Redis refuses every write that allocates, but still runs
/// reads and `DEL`. A login (`cycle_id`) then fails with a 503, and the session must still be
/// there under the id the browser holds once memory is free again. Taking the old record first
/// (read and delete) and creating the new one second lost it: the create and the restore were
/// both refused.
#[tokio::test]
async fn cycle_refused_for_memory_keeps_the_session() {
    let server = RedisServer::start_with(&["--maxmemory-policy", "noeviction"]).unwrap();
    let store = store_on(&server).await;
    let app = app(store.clone());
    let (_, _, cookie) = incr(&app, None).await;
    let cookie = cookie.unwrap();
    assert_eq!(incr(&app, Some(&cookie)).await.1, "2");
    let old: Id = cookie.trim_start_matches("sid=").parse().unwrap();

    let reply = server.command("CONFIG SET maxmemory 1").unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    let (status, _, set) = send(&app, "/login", Some(&cookie)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(set, None, "no new id is issued");
    assert!(
        store.load(&old).await.unwrap().is_some(),
        "the session is still under the old id while Redis refuses writes"
    );
    let new = Id::random().unwrap();
    assert!(
        store.cycle(&old, &new).await.is_err(),
        "Redis refuses the copy"
    );
    assert!(
        store.load(&new).await.unwrap().is_none(),
        "nothing under the new id"
    );
    assert!(
        store.load(&old).await.unwrap().is_some(),
        "still under the old id"
    );

    let reply = server.command("CONFIG SET maxmemory 0").unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    assert_eq!(
        incr(&app, Some(&cookie)).await.1,
        "3",
        "the user's session survived the refused login"
    );
    let (status, _, moved) = send(&app, "/login", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let moved = moved.expect("the login issues a new id");
    assert_eq!(incr(&app, Some(&moved)).await.1, "4", "data moved");
    assert_eq!(
        incr(&app, Some(&cookie)).await.1,
        "1",
        "the old id names nothing"
    );
}

/// Each of the three steps of a cycle (read the old id, create the new one, retire the old one)
/// refused by Redis in turn, through ACL key permissions: the cycle fails, and the session is
/// intact and writable under the old id, the one the client still holds.
#[tokio::test]
async fn cycle_refused_at_any_step_keeps_the_session_under_the_old_id() {
    let server = RedisServer::start().unwrap();
    let admin = store_on(&server).await;
    let commands = "+hgetall +del +evalsha +eval +script|load +exists +hget +hset +hdel +hkeys +hmget +hlen +pexpireat +pexpiretime";
    let steps = [
        ("reading the old id", "", "~"),
        ("creating the new id", "~", "%R~"),
        ("retiring the old id", "%R~", "~"),
    ];
    for (step, old_access, new_access) in steps {
        let now = tether_core::Timestamp::now();
        let expiry = tether_core::Expiry::new(now, Duration::from_secs(60), None);
        let record = tether_core::Record::new(Id::random().unwrap(), expiry, now)
            .with_data([("user".to_owned(), bytes::Bytes::from_static(b"alice"))].into());
        assert_eq!(
            admin.create(&record).await.unwrap(),
            tether_core::Created::Created
        );
        let old = record.id;
        let new = Id::random().unwrap();
        let old_key = if old_access.is_empty() {
            String::new()
        } else {
            format!("{old_access}{}", admin.key(&old))
        };
        let reply = server
            .command(&format!(
                "ACL SETUSER cycler reset on >pw {old_key} {new_access}{} {commands}",
                admin.key(&new)
            ))
            .unwrap();
        assert!(reply.starts_with("OK"), "{step}: {reply}");
        let url = format!("redis://cycler:pw@127.0.0.1:{}", server.port());
        let cycler = RedisStore::connect(url).await.unwrap();

        let err = cycler.cycle(&old, &new).await;
        assert!(err.is_err(), "{step}: the cycle fails, got {err:?}");
        let kept = admin.load(&old).await.unwrap();
        assert_eq!(
            kept.map(|r| r.data),
            Some(record.data.clone()),
            "{step}: the old id still holds the session"
        );
        assert!(
            admin.load(&new).await.unwrap().is_none(),
            "{step}: nothing is left under the new id"
        );
        let mut changes = tether_core::Changes::new();
        changes.insert("cart", bytes::Bytes::from_static(b"1"));
        assert_eq!(
            admin.apply(&old, &changes, &expiry).await.unwrap(),
            tether_core::Applied::Applied,
            "{step}: the old id still takes writes"
        );
    }
}

/// Requests of the session that write while it is being cycled: every write the store
/// acknowledged on the old id is under the new id afterwards, and writes after the cycle are
/// refused (the old id names nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_cycle_are_moved_or_refused() {
    use tether_core::{Applied, Changes, Created, Cycled, Expiry, Record, Timestamp};

    let server = RedisServer::start().unwrap();
    let store = store_on(&server).await;
    for round in 0..100 {
        let now = Timestamp::now();
        let expiry = Expiry::new(now, Duration::from_secs(60), None);
        let old = Record::new(Id::random().unwrap(), expiry, now);
        assert_eq!(store.create(&old).await.unwrap(), Created::Created);
        let old = old.id;
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..10_000 {
                    let mut changes = Changes::new();
                    changes.insert(format!("w{i}"), bytes::Bytes::from_static(b"x"));
                    match store.apply(&old, &changes, &expiry).await.unwrap() {
                        Applied::Applied => acknowledged.push(i),
                        Applied::Missing => return (acknowledged, true),
                    }
                }
                (acknowledged, false)
            })
        };
        // Cycle once the writer is under way (bounded: it writes within a few milliseconds).
        let deadline = Instant::now() + Duration::from_secs(5);
        while store
            .load(&old)
            .await
            .unwrap()
            .is_some_and(|r| r.data.is_empty())
        {
            assert!(Instant::now() < deadline, "the writer never wrote");
            tokio::task::yield_now().await;
        }
        let new = Id::random().unwrap();
        assert_eq!(store.cycle(&old, &new).await.unwrap(), Cycled::Moved);
        let (acknowledged, refused) = writer.await.unwrap();
        assert!(
            refused,
            "round {round}: writes to the old id are refused after the cycle"
        );
        let moved = store.load(&new).await.unwrap().unwrap();
        for i in acknowledged {
            assert!(
                moved.data.contains_key(&format!("w{i}")),
                "round {round}: acknowledged write w{i} was lost by the cycle"
            );
        }
    }
}

/// A logout (delete) that lands while the session is being cycled: the session stays deleted
/// under both ids, whichever step the delete fell between.
#[tokio::test]
async fn a_session_deleted_during_its_cycle_stays_deleted() {
    use tether_core::{Created, Cycled, Expiry, Record, Timestamp};

    let server = RedisServer::start().unwrap();
    let store = store_on(&server).await;
    let mut missing = 0;
    for round in 0..50 {
        let now = Timestamp::now();
        let record = Record::new(
            Id::random().unwrap(),
            Expiry::new(now, Duration::from_secs(60), None),
            now,
        );
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        let (old, new) = (record.id, Id::random().unwrap());
        // Both share one multiplexed connection: the cycle's first command goes out first, and
        // the delete is queued behind it, before the cycle's later steps.
        let (cycled, deleted) = tokio::join!(store.cycle(&old, &new), async {
            tokio::task::yield_now().await;
            store.delete(&old).await
        });
        deleted.unwrap();
        assert!(store.load(&old).await.unwrap().is_none(), "round {round}");
        match cycled.unwrap() {
            Cycled::Missing => {
                missing += 1;
                assert!(
                    store.load(&new).await.unwrap().is_none(),
                    "round {round}: a deleted session came back under the new id"
                );
            }
            Cycled::Moved => {}
            Cycled::IdTaken => panic!("round {round}: a fresh id was taken"),
        }
    }
    assert!(missing > 0, "no delete landed inside a cycle in 50 rounds");
}

#[tokio::test]
async fn unreachable_redis_at_startup_is_a_clear_error() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    server.kill();
    let err = RedisStore::builder(url).connect().await.unwrap_err();
    assert!(
        matches!(
            err,
            tether_redis::Error::Connect { .. } | tether_redis::Error::ConnectTimeout { .. }
        ),
        "{err:?}"
    );
    let err = RedisStore::connect("not a url").await.unwrap_err();
    assert!(matches!(err, tether_redis::Error::Config { .. }), "{err:?}");
}

/// A refused connection names the URL it tried, password hidden, and keeps redis-rs's error.
#[tokio::test]
async fn connect_errors_name_the_url_but_not_its_password() {
    use std::error::Error as _;

    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://app:hunter2@127.0.0.1:{port}/3");
    let err = RedisStore::builder(url)
        .with_connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(err, tether_redis::Error::Connect { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert_eq!(
        message,
        format!("could not connect to Redis (standalone) at redis://app:***@127.0.0.1:{port}/3")
    );
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    let source = err.source().expect("the redis-rs error is kept");
    assert!(!source.to_string().contains("hunter2"), "{source}");

    let err = RedisStore::connect("redis://app:hunter2@127.0.0.1:notaport")
        .await
        .unwrap_err();
    assert!(matches!(err, tether_redis::Error::Config { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid Redis configuration for redis://app:***@127.0.0.1:notaport"
    );
}

#[tokio::test]
async fn acl_user_with_password() {
    let server = RedisServer::start().unwrap();
    let reply = server
        .command("ACL SETUSER app on >s3cret ~tether:* +hgetall +del +evalsha +eval +script|load +exists +hget +hset +hdel +hkeys +hmget +hlen +pexpireat +pexpiretime")
        .unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    let url = format!("redis://app:s3cret@127.0.0.1:{}", server.port());
    let store = RedisStore::connect(url)
        .await
        .expect("connect as the ACL user");
    tether_testkit::conformance::contract(&store).await;
    tether_testkit::conformance::cycle(&store).await;
    tether_testkit::conformance::principal_index(&store).await;
    tether_testkit::conformance::principal_index_follows_the_session(&store).await;
    let capped = store.with_max_sessions_per_principal(std::num::NonZeroUsize::new(2));
    tether_testkit::conformance::principal_cap(&capped, 2).await;

    let wrong = format!("redis://app:wrong@127.0.0.1:{}", server.port());
    let err = RedisStore::connect(wrong).await.unwrap_err();
    assert!(
        matches!(err, tether_redis::Error::Connect { .. }),
        "{err:?}"
    );
}

#[cfg(feature = "sentinel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_moves_the_store_to_the_new_master() {
    use tether_testkit::SentinelSetup;
    use tether_testkit::redis::SENTINEL_MASTER;

    let mut setup = tokio::task::spawn_blocking(SentinelSetup::start)
        .await
        .unwrap()
        .unwrap();
    let store = RedisStore::sentinel_builder([setup.sentinel_url()], SENTINEL_MASTER)
        .with_command_timeout(TIMEOUT)
        .connect()
        .await
        .expect("connect through Sentinel");
    let app = app(store.clone());
    let (status, _, cookie) = incr(&app, None).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    assert_eq!(incr(&app, Some(&cookie)).await.1, "2");
    // The replica has the session before the master dies.
    let wait = setup.master().command("WAIT 1 2000").unwrap();
    assert!(wait.starts_with('1'), "replica acknowledged: {wait}");

    let setup = tokio::task::spawn_blocking(move || setup.fail_over().map(|()| setup))
        .await
        .unwrap()
        .expect("failover");

    // The store finds the promoted replica by itself; the session is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, _) = incr(&app, Some(&cookie)).await;
        if status == StatusCode::OK {
            assert_eq!(body, "3", "the session survived the failover");
            break;
        }
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "during the failover: 503"
        );
        assert!(
            Instant::now() < deadline,
            "no service 30 s after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(incr(&app, Some(&cookie)).await.1, "4");
    drop(setup);
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_with_a_private_ca() {
    let server = RedisServer::start_tls().unwrap();
    let url = format!("rediss://127.0.0.1:{}", server.port());
    let store = RedisStore::builder(&url)
        .with_root_certificate(server.tls_ca_pem().unwrap())
        .connect()
        .await
        .expect("TLS connection trusting the test CA");
    tether_testkit::conformance::contract(&store).await;

    // Without the CA, the server's certificate is not trusted: a clear connect error.
    let err = RedisStore::connect(url).await.unwrap_err();
    assert!(
        matches!(err, tether_redis::Error::Connect { .. }),
        "{err:?}"
    );
}
