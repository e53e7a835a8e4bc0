//! Every metric of the router moves when what it counts happens (features `metrics`, `client`).
#![cfg(all(feature = "metrics", feature = "client"))]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Empty;
use metrics_util::debugging::DebuggingRecorder;
use tether_sticky::{
    KeyRing, Sticky, StickyConfig, Upstream, UpstreamBody, backends, box_body, cookie::Key,
};
use tether_testkit::MetricsSnapshot;
use tower::ServiceExt as _;

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

    let snapshot = MetricsSnapshot::take(&snapshotter);
    let requests = snapshot.counter(
        "tether_sticky_requests_total",
        &[("backend", "live"), ("reason", "new")],
    ) + snapshot.counter(
        "tether_sticky_requests_total",
        &[("backend", "live"), ("reason", "redispatched")],
    );
    assert!(requests >= 21, "{snapshot:?}");
    assert_eq!(
        snapshot.counter(
            "tether_sticky_backend_failures_total",
            &[("backend", "dead")]
        ),
        1,
        "ejected after its first failure, then never tried again: {snapshot:?}"
    );
    assert_eq!(
        snapshot.counter("tether_sticky_ejections_total", &[("backend", "dead")]),
        1
    );
    assert_eq!(
        snapshot.counter("tether_sticky_ejections_total", &[("backend", "gone")]),
        1
    );
    assert_eq!(
        snapshot.gauge("tether_sticky_backend_ejected", &[("backend", "dead")]),
        Some(1.0),
        "{snapshot:?}"
    );
    assert_eq!(snapshot.counter("tether_sticky_invalid_pins_total", &[]), 1);
    assert_eq!(
        snapshot.counter("tether_sticky_refused_total", &[("status", "503")]),
        1,
        "{snapshot:?}"
    );
    assert!(
        snapshot.samples(
            "tether_sticky_upstream_duration_seconds",
            &[("backend", "live")]
        ) >= 21
    );
    assert_eq!(
        snapshot.gauge("tether_sticky_in_flight", &[("backend", "live")]),
        Some(0.0),
        "all answered"
    );
}
