//! Every metric of the layer moves when what it counts happens (feature `metrics`).
#![cfg(feature = "metrics")]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, StatusCode};
use axum::routing::get as route_get;
use common::{get, get_with, ok, send, spy};
use metrics_util::debugging::DebuggingRecorder;
use tether_sessions::{Session, SessionLayer, WritePolicy, deadline_header_value};
use tether_testkit::{Failure, MetricsSnapshot};
use tokio::sync::Notify;

// The only test with a global recorder in this binary.
#[tokio::test]
async fn every_outcome_store_call_error_and_size_is_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");

    let store = spy();
    let deadline = HeaderName::from_static("x-request-deadline");
    let app = common::app(
        SessionLayer::new(store.clone())
            .with_secure(false)
            .with_deadline_header(deadline.clone()),
    );
    ok(&app, get("/untouched", None)).await;
    let cookie = ok(&app, get("/incr", None)).await.cookie();
    ok(&app, get("/count", Some(&cookie))).await;
    ok(&app, get("/incr", Some(&cookie))).await;
    let cookie = ok(&app, get("/cycle", Some(&cookie))).await.cookie();
    assert_eq!(send(&app, get("/fail", Some(&cookie))).await.status, 500);
    ok(&app, get("/flush", Some(&cookie))).await;

    let late = deadline_header_value(SystemTime::now() - Duration::from_secs(1));
    let answer = send(
        &app,
        get_with("/incr", &[(deadline.as_str(), late.as_bytes())]),
    )
    .await;
    assert_eq!(answer.status, 503);

    let cookie = ok(&app, get("/incr", None)).await.cookie();
    store.fail_with(Some(Failure::Applies));
    assert_eq!(send(&app, get("/incr", Some(&cookie))).await.status, 503);
    store.fail_with(None);

    let touching = common::app(
        SessionLayer::new(store.clone())
            .with_secure(false)
            .with_touch_threshold(0.0),
    );
    // Deadlines are kept to the second: one must pass before there is anything to extend.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ok(&touching, get("/count", Some(&cookie))).await;

    let snapshot = MetricsSnapshot::take(&snapshotter);
    let requests =
        |outcome: &str| snapshot.counter("tether_session_requests_total", &[("outcome", outcome)]);
    assert_eq!(requests("no_session"), 1);
    assert_eq!(requests("created"), 2);
    assert_eq!(requests("loaded"), 1);
    assert_eq!(requests("changed"), 1);
    assert_eq!(requests("cycled"), 1);
    assert_eq!(requests("discarded"), 1);
    assert_eq!(requests("revoked"), 1);
    assert_eq!(requests("late"), 1);
    assert_eq!(requests("save_failed"), 1);
    assert_eq!(requests("touched"), 1);

    let calls = |operation: &str| {
        snapshot.samples(
            "tether_session_store_duration_seconds",
            &[("operation", operation)],
        )
    };
    for operation in ["load", "create", "apply", "touch", "cycle", "delete"] {
        assert!(calls(operation) > 0, "no {operation} timed: {snapshot:?}");
    }
    assert_eq!(
        snapshot.counter(
            "tether_session_store_errors_total",
            &[("operation", "apply"), ("kind", "unavailable")]
        ),
        1
    );
    // The creates, the change and the cycle saved data; the failed apply had its size taken too.
    assert!(snapshot.samples("tether_session_size_bytes", &[]) >= 4);
}

/// Routes on top of the common ones, each reading `draft`, then waiting for `gate` (after
/// telling `reached`) so that another request can change it, then writing it:
/// `/slow-insert/{v}` with `insert` (under `RejectOnConflict`), `/slow-update/{v}` with
/// `update`.
fn racing_app(layer: SessionLayer, gate: Arc<Notify>, reached: Arc<Notify>) -> Router {
    let insert_gate = (Arc::clone(&gate), Arc::clone(&reached));
    common::routes()
        .route(
            "/slow-insert/{v}",
            common::gated_draft_insert(insert_gate.0, insert_gate.1),
        )
        .route(
            "/slow-update/{v}",
            route_get(move |s: Session, Path(v): Path<String>| {
                let (gate, reached) = (Arc::clone(&gate), Arc::clone(&reached));
                async move {
                    let _seen: Option<String> = s.get("draft").await?;
                    reached.notify_one();
                    gate.notified().await;
                    s.update("draft", |_: Option<String>| Some(v.clone()))
                        .await
                        .map(|_| ())
                }
            }),
        )
        .layer(layer)
}

/// Runs `uri` until it waits at the gate, sets `draft` to `meanwhile`, then lets it go on.
async fn race_on_draft(
    app: &Router,
    cookie: &str,
    uri: &str,
    meanwhile: &str,
    gate: &Notify,
    reached: &Notify,
) -> StatusCode {
    let slow = {
        let (app, cookie, uri) = (app.clone(), cookie.to_owned(), uri.to_owned());
        tokio::spawn(async move { send(&app, get(&uri, Some(&cookie))).await })
    };
    reached.notified().await;
    ok(app, get(&format!("/set/draft/{meanwhile}"), Some(cookie))).await;
    gate.notify_one();
    slow.await.expect("the slow request").status
}

// The layer registers its handles when it is built, so a recorder set for that moment only
// (here a local one, as in a process that keeps one recorder per layer) gets every count.
#[tokio::test]
async fn refused_writes_and_update_retries_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        SessionLayer::new(spy())
            .with_secure(false)
            .with_max_size(1_000)
            .with_max_keys(3)
            .with_write_policy("draft", WritePolicy::RejectOnConflict)
    });
    let (gate, reached) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let app = racing_app(layer, Arc::clone(&gate), Arc::clone(&reached));

    let cookie = ok(&app, get("/set/draft/first", None)).await.cookie();
    assert_eq!(
        send(&app, get("/big/2000", Some(&cookie))).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    ok(&app, get("/set/a/1", Some(&cookie))).await;
    ok(&app, get("/set/b/2", Some(&cookie))).await;
    assert_eq!(
        send(&app, get("/set/c/3", Some(&cookie))).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let refused = race_on_draft(&app, &cookie, "/slow-insert/late", "b1", &gate, &reached).await;
    assert_eq!(refused, StatusCode::CONFLICT);
    let retried = race_on_draft(&app, &cookie, "/slow-update/later", "b2", &gate, &reached).await;
    assert_eq!(retried, StatusCode::OK);
    assert_eq!(
        ok(&app, get("/get/draft", Some(&cookie))).await.body,
        "later"
    );

    let snapshot = MetricsSnapshot::take(&snapshotter);
    let rejected =
        |reason: &str| snapshot.counter("tether_session_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("too_large"), 1, "{snapshot:?}");
    assert_eq!(rejected("too_many_keys"), 1);
    assert_eq!(rejected("conflict"), 1);
    assert_eq!(
        snapshot.counter("tether_session_update_retries_total", &[]),
        1
    );
    assert_eq!(
        snapshot.counter("tether_session_requests_total", &[("outcome", "created")]),
        1,
        "the request counts reach the same recorder"
    );
}
