//! The `tether-proxy` binary against clients that misbehave: broken bodies, slow uploads.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Exchange, backend, http, raw, read_answer, spawn_proxy, spawn_proxy_under};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// The proxy in front of one backend `a`, with a short response timeout.
async fn proxy_with_one_backend(
    toml: &str,
) -> (common::Proxy, SocketAddr, SocketAddr, tempfile::TempDir) {
    let a = backend("a").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, toml).unwrap();
    let args = vec![
        "--config".to_owned(),
        config.to_str().unwrap().to_owned(),
        "--backend".to_owned(),
        format!("a=http://{a}"),
    ];
    let (proxy, listen, admin) = blocking(move || spawn_proxy(&args)).await;
    (proxy, listen, admin, dir)
}

/// Sends `head` and `body`, then closes the sending side and reads what comes back.
fn send_and_close(addr: SocketAddr, head: &str, body: &[u8]) -> Option<Exchange> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    stream.shutdown(Shutdown::Write).ok()?;
    read_answer(&mut stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_request_bodies_do_not_eject_the_backend() {
    let (_proxy, listen, admin, _dir) =
        proxy_with_one_backend("response_timeout = \"300ms\"\n").await;
    for _ in 0..3 {
        // A malformed chunk size.
        let answer = blocking(move || {
            raw(
                listen,
                b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            )
        })
        .await;
        if let Some((status, _, _)) = answer {
            assert!(
                status < 500,
                "a broken chunk is the client's fault: {status}"
            );
        }
        // A body cut short: 5 of 100 bytes, then the client closes.
        let answer = blocking(move || {
            send_and_close(
                listen,
                "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n",
                b"hello",
            )
        })
        .await;
        if let Some((status, _, _)) = answer {
            assert!(status < 500, "a short body is the client's fault: {status}");
        }
    }
    let (status, _, body) = blocking(move || http(listen, "GET", "/", None).unwrap()).await;
    assert_eq!(status, 200, "the backend still serves: {body}");
    let (_, _, backends) =
        blocking(move || common::admin(admin, "GET", "/backends", "127.0.0.1", None)).await;
    assert!(
        backends.contains("\"failures\":0") && backends.contains("\"ejected\":false"),
        "client errors are not backend failures: {backends}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_not_cut_by_the_response_timeout() {
    let (_proxy, listen, admin, _dir) =
        proxy_with_one_backend("response_timeout = \"300ms\"\n").await;
    // Ten bytes over a second, more than three times the response timeout.
    let (status, _, body) = blocking(move || {
        let mut stream = TcpStream::connect(listen).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(
                b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(100));
            if stream.write_all(b"x").is_err() {
                break; // the proxy gave up on the upload: its answer says why
            }
        }
        read_answer(&mut stream).unwrap()
    })
    .await;
    assert_eq!((status, body.as_str()), (200, "10"));
    let (_, _, backends) =
        blocking(move || common::admin(admin, "GET", "/backends", "127.0.0.1", None)).await;
    assert!(backends.contains("\"failures\":0"), "{backends}");
}

/// Whether the proxy closes `stream` (end of file or reset) within `within`.
fn closed_by_the_proxy(mut stream: TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn limits_of(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_cannot_lock_clients_out() {
    let a = backend("a").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, "header_read_timeout = \"500ms\"\n").unwrap();
    let args = vec![
        "--config".to_owned(),
        config.to_str().unwrap().to_owned(),
        "--backend".to_owned(),
        format!("a=http://{a}"),
    ];
    // 256 descriptors in all, as a small `ulimit -n` leaves; 300 silent clients would take
    // every one of them if nothing bounded connections.
    let (proxy, listen, _admin) =
        blocking(move || spawn_proxy_under(Some("ulimit -Sn 128 && ulimit -Hn 256"), &args)).await;
    let (soft, hard) = limits_of(proxy.0.id());
    assert_eq!(
        soft, hard,
        "the proxy raises its descriptor limit to the hard limit"
    );

    let (silent_closed, partial_closed, served_in) = blocking(move || {
        let silent: Vec<TcpStream> = (0..300)
            .map(|_| TcpStream::connect(listen).unwrap())
            .collect();
        // One byte of what could be an HTTP/2 preface, then nothing.
        let mut partial = TcpStream::connect(listen).unwrap();
        partial.write_all(b"P").unwrap();
        let started = Instant::now();
        let answer = http(listen, "GET", "/", None);
        let served_in = answer
            .filter(|(status, ..)| *status == 200)
            .map(|_| started.elapsed());
        let partial_closed = closed_by_the_proxy(partial, Duration::from_secs(3));
        let silent_closed = silent
            .into_iter()
            .take(20)
            .filter(|s| closed_by_the_proxy(s.try_clone().unwrap(), Duration::from_secs(3)))
            .count();
        (silent_closed, partial_closed, served_in)
    })
    .await;
    assert!(
        served_in.is_some_and(|t| t < Duration::from_secs(5)),
        "a real client behind 300 silent ones is served: {served_in:?}"
    );
    assert!(
        partial_closed,
        "a connection stuck in its first bytes is closed"
    );
    assert_eq!(silent_closed, 20, "silent connections are closed");
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_two_hosts_or_none_are_refused() {
    let (_proxy, listen, _admin, _dir) = proxy_with_one_backend("").await;
    let two = blocking(move || {
        raw(
            listen,
            b"GET /hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
    })
    .await;
    assert_eq!(two.0, 400, "two Host headers: {two:?}");
    let none =
        blocking(move || raw(listen, b"GET /hosts HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap())
            .await;
    assert_eq!(none.0, 400, "no Host header: {none:?}");
    // HTTP/1.0 has no Host requirement; one Host header passes unchanged.
    let old = blocking(move || raw(listen, b"GET /hosts HTTP/1.0\r\n\r\n").unwrap()).await;
    assert_eq!(old.0, 200, "{old:?}");
    let one = blocking(move || {
        raw(
            listen,
            b"GET /hosts HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
    })
    .await;
    assert_eq!((one.0, one.2.as_str()), (200, "a.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_routing_trusts_only_the_entries_its_proxies_wrote() {
    // Four backends, source routing behind one trusted proxy.
    let mut args = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let addr = backend(name).await;
        args.push("--backend".to_owned());
        args.push(format!("{name}=http://{addr}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, "pinning = \"source\"\ntrusted_hops = 1\n").unwrap();
    args.push("--config".to_owned());
    args.push(config.to_str().unwrap().to_owned());
    let (_proxy, listen, _admin) = blocking(move || spawn_proxy(&args)).await;
    let backend_for = |xff: String| {
        blocking(move || {
            let request = format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n"
            );
            let (status, _, body) = raw(listen, request.as_bytes()).unwrap();
            assert_eq!(status, 200, "{body}");
            body.split('|').next().unwrap().to_owned()
        })
    };
    // One client behind the trusted proxy, forging a different leftmost entry every time: it
    // always lands on the same backend, the one of the address the proxy saw.
    let mut landed = std::collections::HashSet::new();
    for i in 0..24 {
        landed.insert(backend_for(format!("10.9.{i}.{i}, 203.0.113.50")).await);
    }
    assert_eq!(
        landed.len(),
        1,
        "forged entries moved the client: {landed:?}"
    );
    // Different real clients spread over the backends.
    let mut spread = std::collections::HashSet::new();
    for i in 0..24 {
        spread.insert(backend_for(format!("203.0.113.{i}")).await);
    }
    assert!(spread.len() > 1, "{spread:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_refuses_foreign_hosts_origins_and_missing_tokens() {
    let (_proxy, _listen, admin, _dir) = proxy_with_one_backend("").await;
    let drain = "/backends/a/drain";
    let token = Some(common::ADMIN_TOKEN);
    let ask = move |method: &'static str,
                    path: &'static str,
                    host: &'static str,
                    token: Option<&'static str>| {
        blocking(move || common::admin(admin, method, path, host, token).0)
    };
    // DNS rebinding: a foreign name that resolves to loopback.
    assert_eq!(
        ask("GET", "/backends", "evil.example:9901", None).await,
        403
    );
    assert_eq!(ask("POST", drain, "evil.example", token).await, 403);
    // No token, or a wrong one.
    assert_eq!(ask("POST", drain, "127.0.0.1", None).await, 401);
    assert_eq!(
        ask("POST", drain, "127.0.0.1", Some("wrong-token-0123456789")).await,
        401
    );
    // A cross-site form post from a local browser.
    let cross_site = blocking(move || {
        let request = format!(
            "POST {drain} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            common::ADMIN_TOKEN
        );
        raw(admin, request.as_bytes()).unwrap().0
    })
    .await;
    assert_eq!(cross_site, 403);
    let (_, _, backends) =
        blocking(move || common::admin(admin, "GET", "/backends", "127.0.0.1", None)).await;
    assert!(
        backends.contains("\"state\":\"ready\""),
        "nothing refused changed anything: {backends}"
    );
    assert_eq!(ask("POST", drain, "127.0.0.1", token).await, 200);

    // A proxy started without a token refuses every state change.
    let a = backend("a").await;
    let args = vec!["--backend".to_owned(), format!("a=http://{a}")];
    let (_open, _, admin) =
        blocking(move || spawn_proxy_under(Some("unset TETHER_PROXY_ADMIN_TOKEN"), &args)).await;
    let refused = blocking(move || common::admin(admin, "POST", drain, "127.0.0.1", token)).await;
    assert_eq!(refused.0, 403, "{refused:?}");
    assert!(refused.2.contains("admin_token"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_ended_without_ejecting_the_backend() {
    let (_proxy, listen, admin, _dir) =
        proxy_with_one_backend("body_idle_timeout = \"300ms\"\n").await;
    // Five of ten bytes, then nothing, with the connection left open.
    let (answer, waited) = blocking(move || {
        let mut stream = TcpStream::connect(listen).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
            .unwrap();
        let started = Instant::now();
        (read_answer(&mut stream), started.elapsed())
    })
    .await;
    assert!(
        waited < Duration::from_secs(3),
        "the stall was bounded: {waited:?}"
    );
    if let Some((status, _, body)) = &answer {
        assert_eq!(*status, 400, "{body}");
    }
    let (_, _, backends) =
        blocking(move || common::admin(admin, "GET", "/backends", "127.0.0.1", None)).await;
    assert!(
        backends.contains("\"failures\":0") && backends.contains("\"ejected\":false"),
        "{backends}"
    );
}
