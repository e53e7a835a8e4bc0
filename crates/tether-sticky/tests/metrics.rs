//! Every metric of the router moves when what it counts happens (features `metrics`, `client`).
#![cfg(all(feature = "metrics", feature = "client"))]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Empty;
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tether_sticky::{
    KeyRing, Sticky, StickyConfig, Upstream, UpstreamBody, backends, box_body, cookie::Key,
};
use tower::ServiceExt as _;

type Snapshot = Vec<(CompositeKey, DebugValue)>;

fn value<'a>(
    snapshot: &'a Snapshot,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot.iter().find_map(|(key, value)| {
        let key = key.key();
        let mut found: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        found.sort_unstable();
        let mut wanted = labels.to_vec();
        wanted.sort_unstable();
        (key.name() == name && found == wanted).then_some(value)
    })
}

fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snapshot, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{name} {labels:?} is not a counter: {other:?}"),
    }
}

async fn live_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/", get(|| async { "live" })))
            .await
            .unwrap();
    });
    addr
}

/// An address nothing listens on.
fn dead_backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn router(named: &[(&str, SocketAddr)]) -> Sticky<tether_sticky::Backends<String, Upstream>> {
    let upstreams: Vec<(String, Upstream)> = named
        .iter()
        .map(|(name, addr)| {
            let uri = format!("http://{addr}").parse().unwrap();
            let upstream = Upstream::new(uri, false, Duration::from_millis(500)).unwrap();
            ((*name).to_owned(), upstream)
        })
        .collect();
    let layer = StickyConfig::new(KeyRing::new(Key::from(&[7; 64])))
        .with_secure(false)
        .with_cookie_name("route")
        .with_passive_health(1, Duration::from_secs(60));
    Sticky::new(&layer, backends(upstreams))
}

async fn send(
    router: &Sticky<tether_sticky::Backends<String, Upstream>>,
    cookie: Option<&str>,
) -> StatusCode {
    let mut request = Request::get("/");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request: Request<UpstreamBody> = request.body(box_body(Empty::<Bytes>::new())).unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

// One test: the recorder is global to this test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_failures_ejections_refusals_and_bad_pins_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");

    let live = live_backend().await;
    let both = router(&[("live", live), ("dead", dead_backend())]);
    // Until the dead one has been tried once (and ejected), some go there first: each is
    // retried on the live one.
    for _ in 0..20 {
        assert_eq!(send(&both, None).await, StatusCode::OK);
    }
    assert_eq!(send(&both, Some("route=forged")).await, StatusCode::OK);
    let none_left = router(&[("gone", dead_backend())]);
    assert!(send(&none_left, None).await.is_server_error());

    let snapshot: Snapshot = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    let requests = counter(
        &snapshot,
        "tether_sticky_requests_total",
        &[("backend", "live"), ("reason", "new")],
    ) + counter(
        &snapshot,
        "tether_sticky_requests_total",
        &[("backend", "live"), ("reason", "redispatched")],
    );
    assert!(requests >= 21, "{snapshot:?}");
    assert_eq!(
        counter(
            &snapshot,
            "tether_sticky_backend_failures_total",
            &[("backend", "dead")]
        ),
        1,
        "ejected after its first failure, then never tried again: {snapshot:?}"
    );
    assert_eq!(
        counter(
            &snapshot,
            "tether_sticky_ejections_total",
            &[("backend", "dead")]
        ),
        1
    );
    assert_eq!(
        counter(
            &snapshot,
            "tether_sticky_ejections_total",
            &[("backend", "gone")]
        ),
        1
    );
    assert_eq!(
        counter(&snapshot, "tether_sticky_invalid_pins_total", &[]),
        1
    );
    assert_eq!(
        counter(
            &snapshot,
            "tether_sticky_refused_total",
            &[("status", "503")]
        ),
        1,
        "{snapshot:?}"
    );
    match value(
        &snapshot,
        "tether_sticky_upstream_duration_seconds",
        &[("backend", "live")],
    ) {
        Some(DebugValue::Histogram(times)) => assert!(times.len() >= 21),
        other => panic!("no upstream times: {other:?}"),
    }
    match value(&snapshot, "tether_sticky_in_flight", &[("backend", "live")]) {
        Some(DebugValue::Gauge(now)) => assert_eq!(now.into_inner(), 0.0, "all answered"),
        other => panic!("no in-flight gauge: {other:?}"),
    }
}
