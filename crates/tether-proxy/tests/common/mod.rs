//! What the proxy binary's tests share: backends, raw HTTP exchanges, the proxy as a child.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};

/// Serves `name` on a free port until the test's runtime ends: `GET /` answers
/// `name|x-forwarded-for|cookie`, `POST /upload` the length of the body it read, `GET /no-store`
/// sets its own `Cache-Control`, `GET /hosts` the `Host` headers it got.
pub async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let header = |headers: &HeaderMap, name: &str| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(" & ")
    };
    let app = Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| async move {
                let xff = header(&headers, "x-forwarded-for");
                let cookie = header(&headers, "cookie");
                format!("{name}|{xff}|{cookie}")
            }),
        )
        .route(
            "/upload",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/no-store",
            get(|| async { ([("cache-control", "no-store, max-age=0")], "fresh") }),
        )
        .route(
            "/hosts",
            get(move |headers: HeaderMap| async move { header(&headers, "host") }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Status, headers (lowercased names), body.
pub type Exchange = (u16, Vec<(String, String)>, String);

/// The admin token every proxy started here gets (through `TETHER_PROXY_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// An admin request with `token` as its bearer token, `host` as its `Host`.
pub fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    token: Option<&str>,
) -> Exchange {
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    raw(addr, request.as_bytes()).unwrap()
}

/// One HTTP/1.1 exchange.
pub fn http(addr: SocketAddr, method: &str, path: &str, cookie: Option<&str>) -> Option<Exchange> {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    raw(addr, request.as_bytes())
}

/// Sends `request` as it is, reads until the server closes (at most 5 s) and parses the answer;
/// `None` when there was no complete answer.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Option<Exchange> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request).ok()?;
    read_answer(&mut stream)
}

/// Reads one answer from `stream` until the server closes it.
pub fn read_answer(stream: &mut TcpStream) -> Option<Exchange> {
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers, body.to_owned()))
}

/// The value of header `name` in an exchange's headers.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A running proxy child process, killed on drop.
pub struct Proxy(pub Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the proxy on free ports with `args` and waits until it accepts: the proxy, its
/// listener and its admin listener. A port found free can be taken by a parallel test before
/// the proxy binds it, and the proxy then exits: it is started again on other ports.
pub fn spawn_proxy(args: &[String]) -> (Proxy, SocketAddr, SocketAddr) {
    spawn_proxy_under(None, args)
}

/// [`spawn_proxy`], the proxy started by `sh` after the shell command `setup` (such as a
/// `ulimit`) when one is given.
pub fn spawn_proxy_under(setup: Option<&str>, args: &[String]) -> (Proxy, SocketAddr, SocketAddr) {
    start(setup, args, None, None)
}

/// [`spawn_proxy`], the proxy's stderr (its log) written to the file `log`.
pub fn spawn_proxy_logging(args: &[String], log: &Path) -> (Proxy, SocketAddr, SocketAddr) {
    start(None, args, Some(log), None)
}

/// [`spawn_proxy`], the proxy's stdout (its access log) written to the file `out`.
pub fn spawn_proxy_writing(args: &[String], out: &Path) -> (Proxy, SocketAddr, SocketAddr) {
    start(None, args, None, Some(out))
}

fn start(
    setup: Option<&str>,
    args: &[String],
    log: Option<&Path>,
    out: Option<&Path>,
) -> (Proxy, SocketAddr, SocketAddr) {
    for _ in 0..3 {
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let binary = env!("CARGO_BIN_EXE_tether-proxy");
        let mut command = match setup {
            Some(setup) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("{setup} && exec \"$0\" \"$@\""), binary]);
                sh
            }
            None => Command::new(binary),
        };
        let child = command
            .args([
                "--listen",
                &listen.to_string(),
                "--admin",
                &admin.to_string(),
                "--insecure-cookie",
            ])
            .args(args)
            .env("TETHER_PROXY_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(match out {
                Some(out) => Stdio::from(std::fs::File::create(out).unwrap()),
                None => Stdio::null(),
            })
            .stderr(match log {
                Some(log) => Stdio::from(std::fs::File::create(log).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap();
        let mut proxy = Proxy(child);
        let started = Instant::now();
        let accepting = loop {
            if proxy.0.try_wait().unwrap().is_some() {
                break false;
            }
            if TcpStream::connect(listen).is_ok() && TcpStream::connect(admin).is_ok() {
                break true;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The admin listener is bound after the client one; a proxy that failed to bind it is
        // gone by now.
        std::thread::sleep(Duration::from_millis(50));
        if accepting && proxy.0.try_wait().unwrap().is_none() {
            return (proxy, listen, admin);
        }
    }
    panic!("the proxy exited at start three times");
}

/// `GET /backends` on the admin listener, as JSON.
pub fn admin_backends(admin: SocketAddr) -> serde_json::Value {
    let (status, _, body) = self::admin(admin, "GET", "/backends", "127.0.0.1", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The backend called `name` in an [`admin_backends`] answer.
pub fn backend_named<'a>(backends: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    backends["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {backends}"))
}

/// The samples of a Prometheus text exposition, by series (`name{labels}` as written); panics
/// on a line that is neither a comment, blank, nor `series value [timestamp]`.
pub fn prometheus_samples(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Label values may hold spaces: the series ends at the closing brace, if any.
        let split = match line.rfind('}') {
            Some(brace) => brace + 1,
            None => line
                .find(' ')
                .unwrap_or_else(|| panic!("no value: {line:?}")),
        };
        let (series, rest) = line.split_at(split);
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        if let Some(timestamp) = fields.next() {
            assert!(
                timestamp.parse::<i64>().is_ok(),
                "bad timestamp in {line:?}"
            );
        }
        assert!(fields.next().is_none(), "trailing fields in {line:?}");
        samples.insert(series.to_owned(), value);
    }
    samples
}
