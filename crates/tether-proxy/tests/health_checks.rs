//! Active health checks through the proxy binary: backends whose health path fails are out
//! before clients see them, and back once it passes again.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use common::{admin_backends, backend_named, header, http, spawn_proxy};

/// A backend whose `/health` answers the status in `health` and counts its calls; `/`
/// answers its name.
struct Backend {
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    checks: Arc<AtomicUsize>,
}

async fn backend(name: &'static str, status: StatusCode) -> Backend {
    let health = Arc::new(AtomicU16::new(status.as_u16()));
    let checks = Arc::new(AtomicUsize::new(0));
    let (answer, counted) = (Arc::clone(&health), Arc::clone(&checks));
    let app = Router::new()
        .route("/", get(move || async move { name }))
        .route(
            "/health",
            get(move || async move {
                counted.fetch_add(1, Ordering::Relaxed);
                StatusCode::from_u16(answer.load(Ordering::Relaxed)).unwrap()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Backend {
        addr,
        health,
        checks,
    }
}

/// Who answers `GET /` for `n` new clients, and the pin of the last one `name` answered.
async fn answers(
    proxy: SocketAddr,
    n: usize,
    cookie: Option<String>,
) -> Vec<(String, Option<String>)> {
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| {
                let (status, headers, body) = http(proxy, "GET", "/", cookie.as_deref()).unwrap();
                assert_eq!(status, 200, "{body}");
                let pin =
                    header(&headers, "set-cookie").map(|c| c.split(';').next().unwrap().to_owned());
                (body, pin)
            })
            .collect()
    })
    .await
    .unwrap()
}

/// Waits (at most 10 s) until `GET /backends` shows `name`'s active check with `status`.
async fn wait_for_check(admin: SocketAddr, name: &str, status: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let name = name.to_owned();
        let backend = tokio::task::spawn_blocking(move || {
            backend_named(&admin_backends(admin), &name).clone()
        })
        .await
        .unwrap();
        if backend["check"]["status"] == status {
            return backend;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{backend} never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_its_health_path_is_out_before_clients_see_it_and_back_when_it_passes() {
    let good = backend("good", StatusCode::OK).await;
    let broken = backend("broken", StatusCode::INTERNAL_SERVER_ERROR).await;
    let args: Vec<String> = [
        "--backend".to_owned(),
        format!("good=http://{}", good.addr),
        "--backend".to_owned(),
        format!("broken=http://{}", broken.addr),
        "--check-path".to_owned(),
        "/health".to_owned(),
        "--check-interval".to_owned(),
        "200ms".to_owned(),
        "--check-rise".to_owned(),
        "2".to_owned(),
        "--check-fall".to_owned(),
        "2".to_owned(),
    ]
    .into();
    let (_proxy, listen, admin) = spawn_proxy(&args);

    // The first round ran before the proxy served: no client ever reaches the broken one.
    let first = answers(listen, 40, None).await;
    assert!(first.iter().all(|(who, _)| who == "good"), "{first:?}");
    let shown = wait_for_check(admin, "broken", "down").await;
    assert_eq!(shown["check"]["last"], "status 500");
    assert_eq!(
        shown["health"], "healthy",
        "passive health is apart: {shown}"
    );
    assert_eq!(
        shown["new"], 0,
        "checks are not counted as requests: {shown}"
    );
    assert_eq!(
        wait_for_check(admin, "good", "up").await["check"]["last"],
        "status 200"
    );
    assert!(broken.checks.load(Ordering::Relaxed) >= 1);

    // Healthy again: back after two passes in a row, and new clients reach it.
    broken.health.store(200, Ordering::Relaxed);
    wait_for_check(admin, "broken", "up").await;
    let later = answers(listen, 40, None).await;
    assert!(later.iter().any(|(who, _)| who == "broken"), "{later:?}");

    // A pinned backend whose health path fails is left: its clients fail over, unharmed.
    let pin = later
        .iter()
        .find(|(who, _)| who == "good")
        .and_then(|(_, pin)| pin.clone())
        .expect("a client pinned to good");
    good.health.store(503, Ordering::Relaxed);
    let down = wait_for_check(admin, "good", "down").await;
    assert_eq!(down["check"]["last"], "status 503");
    let moved = answers(listen, 5, Some(pin)).await;
    assert!(moved.iter().all(|(who, _)| who == "broken"), "{moved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_refusing_health_path_fails_its_checks_with_the_cause() {
    let good = backend("good", StatusCode::OK).await;
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let refusing = common::free_port();
    let args: Vec<String> = [
        "--backend".to_owned(),
        format!("good=http://{}", good.addr),
        "--backend".to_owned(),
        format!("silent=http://{silent_addr}"),
        "--backend".to_owned(),
        format!("refusing=http://127.0.0.1:{refusing}"),
        "--check-path".to_owned(),
        "/health".to_owned(),
        "--check-timeout".to_owned(),
        "300ms".to_owned(),
    ]
    .into();
    let (_proxy, listen, admin) = spawn_proxy(&args);
    let silent = wait_for_check(admin, "silent", "down").await;
    assert_eq!(silent["check"]["last"], "timed out after 300ms");
    let refused = wait_for_check(admin, "refusing", "down").await;
    let cause = refused["check"]["last"].as_str().unwrap();
    assert!(cause.contains("onnect"), "{cause}");
    let served = answers(listen, 20, None).await;
    assert!(served.iter().all(|(who, _)| who == "good"), "{served:?}");
}
