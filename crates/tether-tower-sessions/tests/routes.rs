//! tower-sessions' own behaviours (its route tests: insert, get, remove, flush, cycle id,
//! expiry on inactivity and at a date, when the cookie is issued again), through a real axum app
//! with `SessionManagerLayer` over `TetherStore`, on every kind of tether store: memory, Redis
//! standalone, Redis Cluster and replicated.

use std::future::Future;
use std::time::Duration as StdDuration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use cookie::{Cookie, SameSite};
use http::{Request, StatusCode, header};
use tether_core::SessionStore;
use tether_memory::MemoryStore;
use tether_redis::RedisStore;
use tether_replicated::LocalCluster;
use tether_testkit::{RedisCluster, RedisServer};
use tether_tower_sessions::TetherStore;
use time::{Duration, OffsetDateTime};
use tower::ServiceExt as _;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The app every behaviour is checked through; `foo` holds a number.
fn routes() -> Router {
    Router::new()
        .route("/", get(|_: Session| async { "hello" }))
        .route(
            "/insert",
            get(|session: Session| async move {
                session.insert("foo", 42).await.map_err(|e| e.to_string())
            }),
        )
        .route(
            "/get",
            get(|session: Session| async move {
                let value: Option<usize> = session.get("foo").await.map_err(|e| e.to_string())?;
                Ok::<_, String>(format!("{value:?}"))
            }),
        )
        .route(
            "/remove",
            get(|session: Session| async move {
                let _: Option<usize> = session.remove("foo").await.map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            }),
        )
        .route(
            "/cycle_id",
            get(|session: Session| async move {
                session.cycle_id().await.map_err(|e| e.to_string())
            }),
        )
        .route(
            "/flush",
            get(|session: Session| async move { session.flush().await.map_err(|e| e.to_string()) }),
        )
        .route(
            "/expire_tomorrow",
            get(|session: Session| async move {
                let tomorrow = OffsetDateTime::now_utc() + Duration::days(1);
                session.set_expiry(Some(Expiry::AtDateTime(tomorrow)));
            }),
        )
        .route(
            "/expire_soon",
            get(|session: Session| async move {
                let soon = OffsetDateTime::now_utc() + Duration::milliseconds(1500);
                session.set_expiry(Some(Expiry::AtDateTime(soon)));
            }),
        )
        .route(
            "/expire_on_session_end",
            get(|session: Session| async move {
                session.set_expiry(Some(Expiry::OnSessionEnd));
            }),
        )
}

/// One app instance over `store`, with `expiry` and `domain` when given.
fn app<S: SessionStore + Clone>(
    store: &S,
    expiry: Option<Expiry>,
    domain: Option<&'static str>,
) -> Router {
    let mut layer = SessionManagerLayer::new(TetherStore::new(store.clone()));
    if let Some(expiry) = expiry {
        layer = layer.with_expiry(expiry);
    }
    if let Some(domain) = domain {
        layer = layer.with_domain(domain);
    }
    routes().layer(layer)
}

struct Answer {
    status: StatusCode,
    cookie: Option<Cookie<'static>>,
    body: String,
}

async fn send(app: &Router, path: &str, cookie: Option<&Cookie<'_>>) -> Answer {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(
            header::COOKIE,
            format!("{}={}", cookie.name(), cookie.value()),
        );
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let mut cookies = response.headers().get_all(header::SET_COOKIE).iter();
    let cookie = cookies
        .next()
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap());
    assert!(cookies.next().is_none(), "at most one Set-Cookie");
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    Answer {
        status,
        cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn within_a_second(actual: Option<Duration>, expected: Duration) {
    let actual = actual.expect("a Max-Age");
    assert!(
        (actual - expected).abs() <= Duration::seconds(1),
        "Max-Age {actual} where {expected} was expected"
    );
}

/// Every behaviour, on one store; `other` is a second handle on it (another node's, for the
/// replicated store) that a second app instance uses.
async fn behaves_as_tower_sessions_documents<S: SessionStore + Clone>(store: S, other: S) {
    let hour = Some(Expiry::OnInactivity(Duration::hours(1)));
    let app = app(&store, hour, None);

    // A handler that does not touch the session: no cookie.
    let quiet = send(&app, "/", None).await;
    assert_eq!(quiet.status, StatusCode::OK);
    assert!(quiet.cookie.is_none(), "no session, no cookie");

    // Insert: a cookie with tower-sessions' defaults and the inactivity Max-Age.
    let inserted = send(&app, "/insert", None).await;
    assert_eq!(inserted.status, StatusCode::OK);
    let cookie = inserted.cookie.expect("a session cookie");
    assert_eq!(cookie.name(), "id");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.path(), Some("/"));
    within_a_second(cookie.max_age(), Duration::hours(1));

    // Get, through another app instance on the same store.
    let other = self::app(&other, hour, None);
    let got = send(&other, "/get", Some(&cookie)).await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (StatusCode::OK, "Some(42)")
    );
    assert_eq!(
        send(&app, "/get", None).await.body,
        "None",
        "no value without a session"
    );

    // Remove the last value: the key is gone.
    assert_eq!(
        send(&app, "/remove", Some(&cookie)).await.status,
        StatusCode::OK
    );
    assert_eq!(send(&app, "/get", Some(&cookie)).await.body, "None");

    // A bogus id (well formed, unknown) and a malformed one: a fresh session, never the given id.
    for value in ["AAAAAAAAAAAAAAAAAAAAAA", "malformed"] {
        let planted = Cookie::new("id", value);
        let answer = send(&app, "/insert", Some(&planted)).await;
        assert_eq!(answer.status, StatusCode::OK, "{value}");
        let issued = answer.cookie.expect("a new session cookie");
        assert_ne!(issued.value(), value);
        assert_eq!(send(&app, "/get", Some(&issued)).await.body, "Some(42)");
        assert_eq!(send(&app, "/get", Some(&planted)).await.body, "None");
    }

    // Cycle id: a new id keeps the data; the old id is gone.
    let first = send(&app, "/insert", None).await.cookie.unwrap();
    let cycled = send(&app, "/cycle_id", Some(&first)).await;
    let second = cycled.cookie.expect("the new id is sent");
    assert_ne!(first.value(), second.value());
    assert_eq!(send(&app, "/get", Some(&second)).await.body, "Some(42)");
    assert_eq!(send(&app, "/get", Some(&first)).await.body, "None");

    // Flush: the cookie is removed (empty, Max-Age 0, same path and domain), the data gone.
    let with_domain = self::app(&store, hour, Some("localhost"));
    let cookie = send(&with_domain, "/insert", None).await.cookie.unwrap();
    let flushed = send(&with_domain, "/flush", Some(&cookie)).await;
    let removal = flushed.cookie.expect("a removal cookie");
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age(), Some(Duration::ZERO));
    assert_eq!(removal.path(), Some("/"));
    assert_eq!(removal.domain(), Some("localhost"));
    assert_eq!(send(&with_domain, "/get", Some(&cookie)).await.body, "None");

    // Set expiry: a date a day away gives a day's Max-Age.
    let cookie = send(&app, "/insert", None).await.cookie.unwrap();
    let moved = send(&app, "/expire_tomorrow", Some(&cookie)).await;
    within_a_second(moved.cookie.unwrap().max_age(), Duration::days(1));
    assert_eq!(send(&app, "/get", Some(&cookie)).await.body, "Some(42)");

    // No expiry: a browser-session cookie without Max-Age; a date then sets one, and back.
    let session_end = self::app(&store, None, None);
    let cookie = send(&session_end, "/insert", None).await.cookie.unwrap();
    assert_eq!(cookie.max_age(), None);
    let dated = send(&session_end, "/expire_tomorrow", Some(&cookie)).await;
    within_a_second(dated.cookie.unwrap().max_age(), Duration::days(1));
    let undated = send(&app, "/expire_on_session_end", Some(&cookie)).await;
    assert_eq!(undated.cookie.expect("re-issued").max_age(), None);
    assert_eq!(send(&app, "/get", Some(&cookie)).await.body, "Some(42)");

    // Cookie re-issue rules: a request that only reads sends no cookie; with always-save it
    // saves and sends the cookie with a fresh Max-Age; a request whose session is empty (here:
    // a stale cookie) gets a removal cookie.
    let cookie = send(&app, "/insert", None).await.cookie.unwrap();
    assert!(send(&app, "/get", Some(&cookie)).await.cookie.is_none());
    let always = routes().layer(
        SessionManagerLayer::new(TetherStore::new(store.clone()))
            .with_expiry(Expiry::OnInactivity(Duration::hours(1)))
            .with_always_save(true),
    );
    let read = send(&always, "/get", Some(&cookie)).await;
    assert_eq!(read.body, "Some(42)");
    let again = read.cookie.expect("re-issued on a read");
    assert_eq!(again.value(), cookie.value(), "the same session");
    within_a_second(again.max_age(), Duration::hours(1));
    let stale = Cookie::new("id", "AAAAAAAAAAAAAAAAAAAAAA");
    let removal = send(&app, "/get", Some(&stale))
        .await
        .cookie
        .expect("a removal");
    assert_eq!(removal.max_age(), Some(Duration::ZERO));

    // Expiry on inactivity: unused for longer than the expiry, the session is gone.
    let short = self::app(
        &store,
        Some(Expiry::OnInactivity(Duration::seconds(1))),
        None,
    );
    let cookie = send(&short, "/insert", None).await.cookie.unwrap();
    assert_eq!(send(&short, "/get", Some(&cookie)).await.body, "Some(42)");
    tokio::time::sleep(StdDuration::from_millis(1300)).await;
    let expired = send(&short, "/get", Some(&cookie)).await;
    assert_eq!(
        (expired.status, expired.body.as_str()),
        (StatusCode::OK, "None")
    );

    // Expiry at a date: gone once the date passed, however recently used.
    let cookie = send(&session_end, "/insert", None).await.cookie.unwrap();
    send(&session_end, "/expire_soon", Some(&cookie)).await;
    assert_eq!(
        send(&session_end, "/get", Some(&cookie)).await.body,
        "Some(42)"
    );
    tokio::time::sleep(StdDuration::from_millis(1700)).await;
    assert_eq!(send(&session_end, "/get", Some(&cookie)).await.body, "None");
}

/// Runs the check, failing instead of hanging if a store stops answering.
async fn within_time(check: impl Future<Output = ()>) {
    tokio::time::timeout(StdDuration::from_secs(60), check)
        .await
        .expect("the behaviours ran within a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_memory_store() {
    let store = MemoryStore::new();
    within_time(behaves_as_tower_sessions_documents(store.clone(), store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_standalone() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap()
        .expect("redis-server");
    let store = RedisStore::connect(server.url().as_str()).await.unwrap();
    within_time(behaves_as_tower_sessions_documents(store.clone(), store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .unwrap()
        .expect("redis cluster");
    let store = RedisStore::cluster_builder(cluster.urls())
        .connect()
        .await
        .unwrap();
    within_time(behaves_as_tower_sessions_documents(store.clone(), store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_replicated_store() {
    let cluster = LocalCluster::start(3, |config| config).await.unwrap();
    let (first, second) = (cluster.store(0), cluster.store(1));
    let (first, second) = (first.expect("node 0 runs"), second.expect("node 1 runs"));
    within_time(behaves_as_tower_sessions_documents(first, second)).await;
}
