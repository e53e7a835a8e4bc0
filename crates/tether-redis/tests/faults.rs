//! Faults against real redis-server processes: killed, hung, restarted, corrupt data, failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use tether_core::{ErrorKind, Id, SessionStore};
use tether_redis::RedisStore;
use tether_sessions::{Session, SessionLayer};
use tether_testkit::RedisServer;
use tower::ServiceExt as _;

const TIMEOUT: Duration = Duration::from_millis(500);

fn app(store: RedisStore) -> Router {
    Router::new()
        .route(
            "/incr",
            get(|session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
                session.insert("n", &n).await?;
                Ok::<_, tether_sessions::Error>(n.to_string())
            }),
        )
        .layer(SessionLayer::new(store).with_secure(false))
}

/// Sends `/incr` with `cookie`; returns the status, the body and a new cookie if one was set.
async fn incr(app: &Router, cookie: Option<&str>) -> (StatusCode, String, Option<String>) {
    let mut request = Request::get("/incr");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned(), set)
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
    assert!(matches!(err, tether_redis::Error::Config(_)), "{err:?}");
}

#[tokio::test]
async fn acl_user_with_password() {
    let server = RedisServer::start().unwrap();
    let reply = server
        .command("ACL SETUSER app on >s3cret ~tether:* +hgetall +del +evalsha +eval +script|load +exists +hget +hset +hdel +hkeys +pexpireat")
        .unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    let url = format!("redis://app:s3cret@127.0.0.1:{}", server.port());
    let store = RedisStore::connect(url)
        .await
        .expect("connect as the ACL user");
    tether_testkit::conformance::contract(&store).await;
    tether_testkit::conformance::cycle(&store).await;

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
