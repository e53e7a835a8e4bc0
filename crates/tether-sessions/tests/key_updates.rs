//! Atomic updates of one key through the layer: `Session::update`, `Session::increment` and
//! the reject-on-conflict write policy, with concurrent requests of one session.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get as route_get;
use common::*;
use tether_sessions::{Error, Session, SessionLayer, WritePolicy};
use tokio::sync::Notify;

const TASKS: usize = 8;
const ROUNDS: usize = 25;

/// Routes on top of the common ones:
/// - `/add/{item}`: appends `item` to `cart` with `update`, answers the cart's length;
/// - `/hit`: increments `hits`, answers the count;
/// - `/set-then-hit`: inserts `hits` = 5, then increments it;
/// - `/slow-draft/{v}`: reads `draft`, waits for `gate`, then inserts `v`;
/// - `/slow-hit`: reads the session, waits for `gate`, then increments `hits`.
fn key_app(layer: SessionLayer, gate: Arc<Notify>, reached: Arc<Notify>) -> Router {
    let draft_gate = (Arc::clone(&gate), Arc::clone(&reached));
    routes()
        .route(
            "/add/{item}",
            route_get(|s: Session, Path(item): Path<u32>| async move {
                let cart = s
                    .update("cart", |cart: Option<Vec<u32>>| {
                        let mut cart = cart.unwrap_or_default();
                        cart.push(item);
                        Some(cart)
                    })
                    .await?;
                Ok::<_, Error>(cart.map_or(0, |c| c.len()).to_string())
            }),
        )
        .route(
            "/hit",
            route_get(
                |s: Session| async move { s.increment("hits", 1).await.map(|n| n.to_string()) },
            ),
        )
        .route(
            "/set-then-hit",
            route_get(|s: Session| async move {
                s.insert("hits", &5_i64).await?;
                s.increment("hits", 1).await.map(|n| n.to_string())
            }),
        )
        .route(
            "/slow-draft/{v}",
            gated_draft_insert(draft_gate.0, draft_gate.1),
        )
        .route(
            "/slow-hit",
            route_get(move |s: Session| async move {
                let _seen: Option<String> = s.get("draft").await?;
                reached.notify_one();
                gate.notified().await;
                s.increment("hits", 1).await.map(|n| n.to_string())
            }),
        )
        .layer(layer)
}

fn plain_app(layer: SessionLayer) -> Router {
    key_app(layer, Arc::new(Notify::new()), Arc::new(Notify::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_and_increments_of_one_key_lose_nothing() {
    let store = spy();
    let app = plain_app(SessionLayer::new(store.clone()));
    let first = ok(&app, get("/hit", None)).await;
    assert_eq!(first.body, "1");
    let cookie = first.cookie();
    assert_eq!(
        store.calls().update_key,
        0,
        "a new session's increment is saved with it"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (app, cookie) = (app.clone(), cookie.clone());
        tasks.spawn(async move {
            for round in 0..ROUNDS {
                let item = (task * ROUNDS + round) as u32;
                ok(&app, get(&format!("/add/{item}"), Some(&cookie))).await;
                ok(&app, get("/hit", Some(&cookie))).await;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task");
    }

    let hits = ok(&app, get("/hit", Some(&cookie))).await;
    assert_eq!(
        hits.body,
        (TASKS * ROUNDS + 2).to_string(),
        "no increment lost"
    );
    let cart = ok(&app, get("/add/999999", Some(&cookie))).await;
    assert_eq!(
        cart.body,
        (TASKS * ROUNDS + 1).to_string(),
        "no update lost"
    );
    let calls = store.calls();
    assert!(
        calls.update_key >= (2 * TASKS * ROUNDS + 2) as u64,
        "each update and increment of a stored session is a store call: {calls:?}"
    );
    assert_eq!(calls.apply, 0, "nothing else was left to save: {calls:?}");
}

#[tokio::test]
async fn a_key_this_request_wrote_counts_in_its_view() {
    let store = spy();
    let app = plain_app(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/hit", None)).await.cookie();
    let before = store.calls();
    let answer = ok(&app, get("/set-then-hit", Some(&cookie))).await;
    assert_eq!(answer.body, "6");
    let calls = store.calls();
    assert_eq!(calls.update_key, before.update_key, "{calls:?}");
    assert_eq!(
        calls.apply,
        before.apply + 1,
        "saved once, with the request"
    );
    assert_eq!(ok(&app, get("/hit", Some(&cookie))).await.body, "7");
}

#[tokio::test]
async fn increment_of_something_else_is_an_error_and_changes_nothing() {
    let app = plain_app(SessionLayer::new(spy()));
    let cookie = ok(&app, get("/set/hits/seven", None)).await.cookie();
    let answer = send(&app, get("/hit", Some(&cookie))).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        ok(&app, get("/get/hits", Some(&cookie))).await.body,
        "seven"
    );
}

/// Request A reads the draft and stalls; request B writes it; A's write then meets B's.
async fn race_on_the_draft(policy: WritePolicy) -> (StatusCode, String) {
    let (gate, reached) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let layer = SessionLayer::new(spy()).with_write_policy("draft", policy);
    let app = key_app(layer, Arc::clone(&gate), Arc::clone(&reached));
    let cookie = ok(&app, get("/set/draft/first", None)).await.cookie();

    let slow = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { send(&app, get("/slow-draft/from-a", Some(&cookie))).await })
    };
    reached.notified().await;
    ok(&app, get("/set/draft/from-b", Some(&cookie))).await;
    gate.notify_one();
    let a = slow.await.expect("request A");
    let draft = ok(&app, get("/get/draft", Some(&cookie))).await.body;
    (a.status, draft)
}

#[tokio::test]
async fn reject_on_conflict_refuses_a_write_from_a_stale_read() {
    let (status, draft) = race_on_the_draft(WritePolicy::RejectOnConflict).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(draft, "from-b", "the first writer's value stays");

    let (status, draft) = race_on_the_draft(WritePolicy::LastWriterWins).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(draft, "from-a", "by default the last writer wins");
}

#[tokio::test]
async fn an_update_after_the_session_ended_goes_on_in_a_new_session() {
    let (gate, reached) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let app = key_app(
        SessionLayer::new(spy()),
        Arc::clone(&gate),
        Arc::clone(&reached),
    );
    let first = ok(&app, get("/hit", None)).await;
    let cookie = first.cookie();
    ok(&app, get("/hit", Some(&cookie))).await;

    let slow = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { send(&app, get("/slow-hit", Some(&cookie))).await })
    };
    reached.notified().await;
    ok(&app, get("/flush", Some(&cookie))).await;
    gate.notify_one();
    let answer = slow.await.expect("request");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "1", "the ended session's count is gone");
    let renewed = answer.cookie();
    assert_ne!(renewed, cookie, "a new session, under a new id");
    assert_eq!(ok(&app, get("/hit", Some(&renewed))).await.body, "2");
    assert_eq!(ok(&app, get("/count", Some(&cookie))).await.body, "0");
}
