//! The `tether-proxy` binary against clients that misbehave: broken bodies, slow uploads.

mod common;

use std::io::Write as _;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use common::{Exchange, backend, http, raw, read_answer, spawn_proxy};

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
    let (_proxy, listen, admin, _dir) = proxy_with_one_backend("response_timeout_ms = 300\n").await;
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
    let (_, _, backends) = blocking(move || http(admin, "GET", "/backends", None).unwrap()).await;
    assert!(
        backends.contains("\"failures\":0") && backends.contains("\"ejected\":false"),
        "client errors are not backend failures: {backends}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_not_cut_by_the_response_timeout() {
    let (_proxy, listen, admin, _dir) = proxy_with_one_backend("response_timeout_ms = 300\n").await;
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
    let (_, _, backends) = blocking(move || http(admin, "GET", "/backends", None).unwrap()).await;
    assert!(backends.contains("\"failures\":0"), "{backends}");
}
