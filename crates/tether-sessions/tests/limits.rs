//! Session limits through a real axum router: a refused insert that the handler passes on with
//! `?` is the client's `413` and stores nothing; the size counts a per-key overhead; the key
//! count is limited.

mod common;

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, header};
use axum::routing::{get as route_get, post};
use common::*;
use tether_core::{Codec, Created, Expiry, Id, Record, SessionStore as _, Timestamp};
use tether_sessions::{
    DEFAULT_MAX_KEYS, DEFAULT_MAX_SIZE, Error, KEY_OVERHEAD, Session, SessionLayer,
};
use tether_testkit::Failure;

/// Routes whose handlers pass every session error on with `?`:
/// - `POST /fill` with a JSON list of keys: inserts `0u8` (one encoded byte) under each;
/// - `/remove/{k}`: removes `k`;
/// - `/put/{n}`: inserts `n` bytes under `big`.
fn limits_app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/fill",
            post(|s: Session, Json(keys): Json<Vec<String>>| async move {
                for key in &keys {
                    s.insert(key, &0u8).await?;
                }
                Ok::<_, Error>("filled")
            }),
        )
        .route(
            "/remove/{k}",
            route_get(|s: Session, Path(k): Path<String>| async move {
                s.remove::<u8>(&k).await?;
                Ok::<_, Error>("removed")
            }),
        )
        .route(
            "/put/{n}",
            route_get(|s: Session, Path(n): Path<usize>| async move {
                s.insert("big", &"x".repeat(n)).await?;
                Ok::<_, Error>("stored")
            }),
        )
        .layer(layer)
}

/// `n` distinct keys of three ASCII characters each.
fn tiny_keys(n: usize) -> Vec<String> {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    assert!(n <= DIGITS.len().pow(3));
    (0..n)
        .map(|i| {
            let digit = |place: u32| DIGITS[i / DIGITS.len().pow(place) % DIGITS.len()] as char;
            [digit(2), digit(1), digit(0)].iter().collect()
        })
        .collect()
}

fn fill(keys: &[String], cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/fill").header(header::CONTENT_TYPE, "application/json");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request
        .body(Body::from(serde_json::to_vec(keys).unwrap()))
        .unwrap()
}

fn session_id(cookie: &str) -> tether_core::Id {
    cookie.trim_start_matches("sid=").parse().unwrap()
}

fn assert_refused(answer: &Answer) {
    assert_eq!(answer.status, 413, "body: {}", answer.body);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(answer.body, "session too large");
}

#[tokio::test]
async fn a_propagated_too_large_is_413_and_changes_nothing() {
    let store = spy();
    let app = limits_app(SessionLayer::new(store.clone()).with_max_size(1_000));

    // A new session: refused, nothing stored, no cookie.
    let answer = send(&app, get("/put/2000", None)).await;
    assert_refused(&answer);
    assert!(
        answer.set_cookies().is_empty(),
        "{:?}",
        answer.set_cookies()
    );
    assert_eq!(store.calls().writes(), 0);

    // An existing session: refused, the stored session unchanged.
    let cookie = ok(&app, get("/put/100", None)).await.cookie();
    let writes = store.calls().writes();
    assert_refused(&send(&app, get("/put/2000", Some(&cookie))).await);
    assert_eq!(store.calls().writes(), writes, "nothing written");
    let stored = store.inner().load(&session_id(&cookie)).await.unwrap();
    let encoded_100 = Codec::default().encode(&"x".repeat(100)).unwrap();
    assert_eq!(stored.unwrap().data["big"], encoded_100);
}

#[tokio::test]
async fn twelve_thousand_tiny_keys_are_refused_and_nothing_is_stored() {
    // 12,000 keys of three bytes, each holding one byte: 48,000 bytes of keys and values, which
    // fit 64 KiB if keys cost nothing; in Redis they take 611 KB.
    let store = spy();
    let app = limits_app(SessionLayer::new(store.clone()));
    let answer = send(&app, fill(&tiny_keys(12_000), None)).await;
    assert_refused(&answer);
    assert!(
        answer.set_cookies().is_empty(),
        "{:?}",
        answer.set_cookies()
    );
    assert_eq!(store.calls().writes(), 0, "nothing stored");

    // The same into an existing session: refused, and the stored session keeps its one key.
    let cookie = ok(&app, fill(&tiny_keys(1), None)).await.cookie();
    let writes = store.calls().writes();
    assert_refused(&send(&app, fill(&tiny_keys(12_000), Some(&cookie))).await);
    assert_eq!(store.calls().writes(), writes, "nothing written");
    let stored = store.inner().load(&session_id(&cookie)).await.unwrap();
    assert_eq!(stored.unwrap().data.len(), 1);
}

#[tokio::test]
async fn every_key_counts_its_overhead_in_the_size() {
    // Only the size limit binds here: keys of three bytes holding one byte each.
    let store = spy();
    let app = limits_app(SessionLayer::new(store.clone()).with_max_keys(usize::MAX));
    let fitting = DEFAULT_MAX_SIZE / (3 + 1 + KEY_OVERHEAD);
    assert!(fitting < 1_000, "{fitting}");
    assert_refused(&send(&app, fill(&tiny_keys(fitting + 1), None)).await);
    assert_refused(&send(&app, fill(&tiny_keys(12_000), None)).await);
    assert_eq!(store.calls().writes(), 0, "nothing stored");
    let cookie = ok(&app, fill(&tiny_keys(fitting), None)).await.cookie();
    let stored = store.inner().load(&session_id(&cookie)).await.unwrap();
    assert_eq!(stored.unwrap().data.len(), fitting);
}

#[tokio::test]
async fn a_thousand_keys_fit_the_default_key_limit_and_one_more_does_not() {
    // Only the key limit binds here.
    let store = spy();
    let app = limits_app(SessionLayer::new(store.clone()).with_max_size(1 << 20));
    assert_eq!(DEFAULT_MAX_KEYS, 1_000);
    let keys = tiny_keys(DEFAULT_MAX_KEYS + 1);
    assert_refused(&send(&app, fill(&keys, None)).await);
    assert_refused(&send(&app, fill(&tiny_keys(12_000), None)).await);
    assert_eq!(store.calls().writes(), 0, "nothing stored");

    let cookie = ok(&app, fill(&keys[..DEFAULT_MAX_KEYS], None))
        .await
        .cookie();
    let id = session_id(&cookie);
    let stored = || async { store.inner().load(&id).await.unwrap().unwrap().data };
    assert_eq!(stored().await.len(), DEFAULT_MAX_KEYS);
    // A full session takes no new key, but its keys can still change.
    assert_refused(&send(&app, fill(&keys[DEFAULT_MAX_KEYS..], Some(&cookie))).await);
    ok(&app, fill(&keys[..1], Some(&cookie))).await;
    assert_eq!(stored().await.len(), DEFAULT_MAX_KEYS);

    // A configured limit is the one that counts.
    let small = limits_app(SessionLayer::new(store.clone()).with_max_keys(2));
    let cookie = ok(&small, fill(&keys[..2], None)).await.cookie();
    assert_refused(&send(&small, fill(&keys[2..3], Some(&cookie))).await);
}

#[tokio::test]
async fn a_stored_session_past_the_limits_can_shrink_but_not_grow() {
    // Stored before the limits counted keys: 1,200 keys.
    let store = spy();
    let now = Timestamp::now();
    let keys = tiny_keys(1_201);
    let zero = Codec::default().encode(&0u8).unwrap();
    let data = keys[..1_200]
        .iter()
        .map(|k| (k.clone(), zero.clone()))
        .collect();
    let record = Record::new(
        Id::random().unwrap(),
        Expiry::new(now, Duration::from_secs(60), None),
        now,
    )
    .with_data(data);
    let created = store.inner().create(&record).await.unwrap();
    assert_eq!(created, Created::Created);
    let cookie = format!("sid={}", record.id);

    let app = limits_app(SessionLayer::new(store.clone()));
    assert_refused(&send(&app, fill(&keys[1_200..], Some(&cookie))).await);
    assert_refused(&send(&app, fill(&keys[..1], Some(&cookie))).await);
    ok(&app, get(&format!("/remove/{}", keys[0]), Some(&cookie))).await;
    let stored = store.inner().load(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.data.len(), 1_199);
}

#[tokio::test]
async fn other_session_errors_keep_their_status_with_a_short_text() {
    let store = spy();
    let app = limits_app(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/put/1", None)).await.cookie();
    store.fail_with(Some(Failure::Unavailable));
    let answer = send(&app, get("/put/1", Some(&cookie))).await;
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(answer.body, "session store unavailable");
}
