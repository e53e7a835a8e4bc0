//! The real client address from a PROXY protocol header (v1, v2) on connections from trusted
//! sources, and the access log, through the proxy binary.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{backend, spawn_proxy, spawn_proxy_writing};

/// Sends `prefix` then a `GET /` on one connection; the answer's body, or what happened.
fn exchange(proxy: SocketAddr, prefix: &[u8]) -> Result<String, String> {
    let mut stream = TcpStream::connect(proxy).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(prefix).map_err(|e| e.to_string())?;
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        Some((head, _)) => Err(head.lines().next().unwrap_or_default().to_owned()),
        None if answer.is_empty() => Err("closed".to_owned()),
        None => Err(answer),
    }
}

fn v2_header(client: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(client) = client else {
        panic!("IPv4 only here")
    };
    let addresses = ppp::v2::IPv4::new(
        *client.ip(),
        std::net::Ipv4Addr::LOCALHOST,
        client.port(),
        8080,
    );
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_sources_name_the_client_and_must_send_a_header() {
    let app = backend("app").await;
    let (_proxy, listen, _) = spawn_proxy(&[
        "--backend".to_owned(),
        format!("app=http://{app}"),
        "--proxy-protocol-from".to_owned(),
        "127.0.0.0/8".to_owned(),
    ]);
    let seen = tokio::task::spawn_blocking(move || {
        let v1 = exchange(listen, b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n");
        let v2 = exchange(listen, &v2_header("198.51.100.9:40000".parse().unwrap()));
        let unknown = exchange(listen, b"PROXY UNKNOWN\r\n");
        let missing = exchange(listen, b"");
        let garbage = exchange(listen, b"PROXY TCP4 not-an-address\r\n");
        (v1, v2, unknown, missing, garbage)
    })
    .await
    .unwrap();
    // The backend answers `name|x-forwarded-for|cookie`.
    assert_eq!(seen.0.unwrap(), "app|203.0.113.7|");
    assert_eq!(seen.1.unwrap(), "app|198.51.100.9|");
    assert_eq!(
        seen.2.unwrap(),
        "app|127.0.0.1|",
        "UNKNOWN: the connection's own"
    );
    assert_eq!(
        seen.3,
        Err("closed".to_owned()),
        "a trusted source must send one"
    );
    assert_eq!(seen.4, Err("closed".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_source_cannot_claim_another_address() {
    let app = backend("app").await;
    let (_proxy, listen, _) = spawn_proxy(&[
        "--backend".to_owned(),
        format!("app=http://{app}"),
        "--proxy-protocol-from".to_owned(),
        "10.0.0.0/8".to_owned(),
    ]);
    let seen = tokio::task::spawn_blocking(move || {
        (
            exchange(listen, b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n"),
            exchange(listen, b""),
        )
    })
    .await
    .unwrap();
    let spoofed = seen.0.unwrap_err();
    assert!(spoofed.contains("400") || spoofed == "closed", "{spoofed}");
    assert_eq!(seen.1.unwrap(), "app|127.0.0.1|");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_a_line_per_request_with_its_backend() {
    let app = backend("app").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("access.log");
    let (proxy, listen, _) = spawn_proxy_writing(
        &[
            "--backend".to_owned(),
            format!("app=http://{app}"),
            "--proxy-protocol-from".to_owned(),
            "127.0.0.1".to_owned(),
            "--access-log".to_owned(),
            "json".to_owned(),
        ],
        &out,
    );
    tokio::task::spawn_blocking(move || {
        // Two requests on one connection: the backend has no /first (404), then `GET /`.
        let _ = exchange(
            listen,
            b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\nGET /first?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        // No Host: the proxy answers 400 itself.
        let mut stream = TcpStream::connect(listen).unwrap();
        stream
            .write_all(b"PROXY TCP4 203.0.113.8 127.0.0.1 51001 8080\r\nGET /bad HTTP/1.1\r\n\r\n")
            .unwrap();
        let _ = stream.read(&mut [0u8; 256]);
    })
    .await
    .unwrap();
    let started = Instant::now();
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        if lines.len() >= 3 || started.elapsed() > Duration::from_secs(5) {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(proxy);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["uri"], "/first?x=1");
    assert_eq!(lines[0]["client"], "203.0.113.7:51000");
    assert_eq!(lines[0]["backend"], "app");
    assert_eq!(lines[0]["status"], 404);
    assert_eq!(lines[1]["uri"], "/");
    assert_eq!(lines[1]["status"], 200);
    let refused = lines.iter().find(|l| l["uri"] == "/bad").unwrap();
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["backend"], serde_json::Value::Null);
    assert_eq!(refused["client"], "203.0.113.8:51001");
}
