//! What the tests of this crate share.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use bytes::Bytes;
use tether_core::{Created, Expiry, Id, Record, SessionStore as _, Timestamp};
use tether_redis::RedisStore;
use tether_sessions::Session;
use tether_testkit::RedisServer;
use tower::ServiceExt as _;

/// The session routes the layer tests send to, without a layer:
/// - `/incr` adds one to `n` and answers it;
/// - `/count` answers `n`;
/// - `/fail` reads `n` and answers `500`;
/// - `/login` moves the session to a new id and stores `user`.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/incr",
            get(|session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
                session.insert("n", &n).await?;
                Ok::<_, tether_sessions::Error>(n.to_string())
            }),
        )
        .route(
            "/count",
            get(|session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0);
                Ok::<_, tether_sessions::Error>(n.to_string())
            }),
        )
        .route(
            "/fail",
            get(|session: Session| async move {
                session.get::<u64>("n").await?;
                Ok::<_, tether_sessions::Error>(StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
        .route(
            "/login",
            get(|session: Session| async move {
                session.cycle_id().await?;
                session.insert("user", "alice").await
            }),
        )
}

/// A store with a near cache of 1,000 sessions that serves copies: it waits for the first
/// heartbeat to come back, seen as the first hit on a probe session (bounded).
pub async fn serving_near_cache(server: &RedisServer, heartbeat: Duration) -> RedisStore {
    let store = RedisStore::builder(server.url())
        .with_near_cache(1_000)
        .with_near_cache_heartbeat(heartbeat)
        .connect()
        .await
        .expect("connect");
    let probe = stored_session(&store, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = store.near_cache_stats().expect("a near cache").hits;
        store.load(&probe).await.expect("load the probe");
        if store.near_cache_stats().expect("a near cache").hits > hits {
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.delete(&probe).await.expect("delete the probe");
    store
}

/// A new session in `store` holding `data`, ten minutes from its idle deadline; its id.
pub async fn stored_session(store: &RedisStore, data: &[(&str, &[u8])]) -> Id {
    let now = Timestamp::now();
    let mut record = Record::new(
        Id::random().expect("entropy"),
        Expiry::new(now, Duration::from_secs(600), None),
        now,
    );
    for (key, value) in data {
        record
            .data
            .insert((*key).to_owned(), Bytes::copy_from_slice(value));
    }
    assert_eq!(
        store.create(&record).await.expect("create"),
        Created::Created
    );
    record.id
}

/// Sends a GET for `path` with `cookie`; returns the status, the body and a new cookie if one
/// was set.
pub async fn send(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut request = Request::get(path);
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
