//! Every metric of the layer moves when what it counts happens (feature `metrics`).
#![cfg(feature = "metrics")]

mod common;

use std::time::{Duration, SystemTime};

use axum::http::HeaderName;
use common::{get, get_with, ok, send, spy};
use metrics_util::debugging::DebuggingRecorder;
use tether_sessions::{SessionLayer, deadline_header_value};
use tether_testkit::{Failure, MetricsSnapshot};

// One test: the recorder is global to this test binary.
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
