//! The `tether-proxy` binary as a child process in front of real backends.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{
    admin_backends, backend, backend_named, free_port, header, http, spawn_proxy,
    spawn_proxy_logging,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_pins_administers_and_shuts_down_gracefully() {
    let (a, b) = (backend("a").await, backend("b").await);
    let args = vec![
        "--backend".to_owned(),
        format!("a=http://{a}"),
        "--backend".to_owned(),
        format!("b=http://{b}"),
    ];
    let (mut proxy, listen, admin) = tokio::task::spawn_blocking(move || spawn_proxy(&args))
        .await
        .unwrap();

    let get = |cookie: Option<String>| {
        tokio::task::spawn_blocking(move || http(listen, "GET", "/", cookie.as_deref()).unwrap())
    };
    let (status, headers, body) = get(None).await.unwrap();
    assert_eq!(status, 200);
    let (backend, rest) = body.split_once('|').unwrap();
    assert!(
        rest.starts_with("127.0.0.1|"),
        "X-Forwarded-For set: {body}"
    );
    let set_cookie = headers
        .iter()
        .find(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "cache-control" && v == "private")
    );
    let pin = set_cookie.split(';').next().unwrap().to_owned();
    for _ in 0..10 {
        let (_, headers, body) = get(Some(format!("{pin}; app=1"))).await.unwrap();
        let mut fields = body.split('|');
        assert_eq!(fields.next(), Some(backend), "pinned");
        assert_eq!(
            fields.nth(1),
            Some("app=1"),
            "the affinity cookie is stripped, others pass"
        );
        assert!(
            !headers.iter().any(|(n, _)| n == "set-cookie"),
            "Set-Cookie only on change"
        );
    }

    let admin_get = tokio::task::spawn_blocking(move || {
        common::admin(admin, "GET", "/backends", "127.0.0.1", None)
    })
    .await
    .unwrap();
    assert_eq!(admin_get.0, 200);
    assert!(
        admin_get.2.contains("\"pinned\":10") || admin_get.2.contains("\"pinned\": 10"),
        "{}",
        admin_get.2
    );
    // The same requests in the Prometheus text format: every line parses, and the pinned
    // backend counts its 10 pinned requests.
    let (status, headers, text) = tokio::task::spawn_blocking(move || {
        common::admin(admin, "GET", "/metrics", "127.0.0.1", None)
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with("text/plain; version=0.0.4")),
        "{headers:?}"
    );
    let samples = common::prometheus_samples(&text);
    let pinned = format!("tether_sticky_requests_total{{backend=\"{backend}\",reason=\"pinned\"}}");
    assert_eq!(samples.get(&pinned), Some(&10.0), "{text}");
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("tether_sticky_upstream_duration_seconds")),
        "{text}"
    );
    // A client connection held open (its request head not finished) counts as open; closed,
    // it does not.
    let open_connections = move || {
        let (_, _, text) = common::admin(admin, "GET", "/metrics", "127.0.0.1", None);
        common::prometheus_samples(&text)
            .get("tether_proxy_client_connections")
            .copied()
    };
    let reaches = move |expected: f64| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while open_connections() != Some(expected) {
            assert!(
                Instant::now() < deadline,
                "open client connections never reached {expected}: {:?}",
                open_connections()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    tokio::task::spawn_blocking(move || {
        let mut held = std::net::TcpStream::connect(listen).unwrap();
        std::io::Write::write_all(&mut held, b"GET / HTTP/1.1\r\nHost: test\r\n").unwrap();
        reaches(1.0);
        drop(held);
        reaches(0.0);
    })
    .await
    .unwrap();

    let other = if backend == "a" { "b" } else { "a" };
    let drained = tokio::task::spawn_blocking(move || {
        common::admin(
            admin,
            "POST",
            &format!("/backends/{other}/drain"),
            "127.0.0.1",
            Some(common::ADMIN_TOKEN),
        )
    })
    .await
    .unwrap();
    assert_eq!(drained.0, 200);
    for _ in 0..10 {
        let (_, _, body) = get(None).await.unwrap();
        assert!(
            body.starts_with(backend),
            "a drained backend takes no new session"
        );
    }
    let missing = tokio::task::spawn_blocking(move || {
        common::admin(
            admin,
            "POST",
            "/backends/nope/drain",
            "localhost",
            Some(common::ADMIN_TOKEN),
        )
    })
    .await
    .unwrap();
    assert_eq!(missing.0, 404);

    // SIGTERM: the proxy stops accepting and exits cleanly.
    let pid = proxy.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    loop {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn refuses_bad_configuration_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether-proxy"))
        .args(["--backend", "ftp://nowhere:21"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only http://"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_hung_backends_are_bounded() {
    // A backend that never answers in time.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        "response_timeout = \"300ms\"\nmax_header_bytes = 16384\n",
    )
    .unwrap();
    let args = vec![
        "--config".to_owned(),
        config.to_str().unwrap().to_owned(),
        "--backend".to_owned(),
        format!("slow=http://{slow}"),
    ];
    let (_proxy, listen, _) = tokio::task::spawn_blocking(move || spawn_proxy(&args))
        .await
        .unwrap();

    let started = Instant::now();
    let (status, _, _) =
        tokio::task::spawn_blocking(move || http(listen, "GET", "/", None).unwrap())
            .await
            .unwrap();
    assert!(status == 502 || status == 503, "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    // A 100 KiB cookie: refused before it reaches any backend.
    let huge = format!("a={}", "x".repeat(100 * 1024));
    let answer = tokio::task::spawn_blocking(move || http(listen, "GET", "/", Some(&huge)))
        .await
        .unwrap();
    if let Some((status, _, _)) = answer {
        assert_eq!(
            status, 431,
            "an oversized head gets 431 or a closed connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_cache_control_survives_the_affinity_cookie() {
    let a = backend("a").await;
    let args = vec!["--backend".to_owned(), format!("a=http://{a}")];
    let (_proxy, listen, _) = tokio::task::spawn_blocking(move || spawn_proxy(&args))
        .await
        .unwrap();
    let (status, headers, _) =
        tokio::task::spawn_blocking(move || http(listen, "GET", "/no-store", None).unwrap())
            .await
            .unwrap();
    assert_eq!(status, 200);
    assert!(
        header(&headers, "set-cookie").is_some(),
        "a new client is pinned"
    );
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-store, max-age=0"),
        "the backend's directives reach the client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configured_backend_is_listed_before_any_request() {
    let a = backend("a").await;
    let dead = free_port();
    let args = vec![
        "--backend".to_owned(),
        format!("a=http://{a}"),
        "--backend".to_owned(),
        format!("dead=http://127.0.0.1:{dead}"),
    ];
    let (_proxy, _, admin) = tokio::task::spawn_blocking(move || spawn_proxy(&args))
        .await
        .unwrap();
    let backends = tokio::task::spawn_blocking(move || admin_backends(admin))
        .await
        .unwrap();
    assert_eq!(
        backends["backends"].as_array().unwrap().len(),
        2,
        "{backends}"
    );
    for name in ["a", "dead"] {
        let b = backend_named(&backends, name);
        assert_eq!(b["state"], "ready", "{b}");
        assert_eq!(b["health"], "healthy", "not tried yet: {b}");
        assert_eq!(b["failures_in_a_row"], 0, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_backend_shows_as_ejected_and_its_cause_is_logged() {
    let a = backend("a").await;
    let dead = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("proxy.log");
    let args = vec![
        "--backend".to_owned(),
        format!("a=http://{a}"),
        "--backend".to_owned(),
        format!("dead=http://127.0.0.1:{dead}"),
    ];
    let log_path = log.clone();
    let (proxy, listen, admin) =
        tokio::task::spawn_blocking(move || spawn_proxy_logging(&args, &log_path))
            .await
            .unwrap();
    // New clients go to either backend; those sent to the dead one are retried on `a`. Three
    // failures in a row eject it.
    let statuses = tokio::task::spawn_blocking(move || {
        (0..30)
            .map(|_| http(listen, "GET", "/", None).unwrap().0)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let backends = tokio::task::spawn_blocking(move || admin_backends(admin))
        .await
        .unwrap();
    let dead = backend_named(&backends, "dead");
    assert_eq!(dead["state"], "ready", "the operator's state: {dead}");
    assert_eq!(dead["health"], "ejected", "{dead}");
    assert_eq!(dead["ejected"], true, "{dead}");
    let until = dead["ejected_until"].as_str().unwrap_or_default();
    let until = humantime::parse_rfc3339(until).unwrap_or_else(|e| panic!("{dead}: {e}"));
    assert!(
        until > std::time::SystemTime::now(),
        "ejected until a time to come: {dead}"
    );
    assert!(dead["failures"].as_u64().unwrap() >= 3, "{dead}");
    let live = backend_named(&backends, "a");
    assert_eq!(live["health"], "healthy", "{live}");
    assert_eq!(live["ejected_until"], serde_json::Value::Null, "{live}");

    drop(proxy);
    let log = std::fs::read_to_string(&log).unwrap();
    let failed = log
        .lines()
        .find(|l| l.contains("backend request failed"))
        .unwrap_or_else(|| panic!("no failed request logged:\n{log}"));
    assert!(
        failed.contains("dead") && failed.contains("Connection refused"),
        "the cause is logged: {failed}"
    );
    assert!(log.contains("backend ejected"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour in a file:\n{log}");
}

#[test]
fn an_address_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let free = format!("127.0.0.1:{}", free_port());
    for (role, listen, admin) in [("listen", &addr, &free), ("admin", &free, &addr)] {
        let output = Command::new(env!("CARGO_BIN_EXE_tether-proxy"))
            .args(["--backend", "http://127.0.0.1:1", "--listen", listen])
            .args(["--admin", admin])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("cannot bind the {role} address {addr}"))
                && stderr.contains("in use"),
            "{stderr}"
        );
    }
}
