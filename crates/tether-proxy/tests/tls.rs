//! TLS termination through the proxy binary: certificates made by rcgen at test time, chosen by
//! SNI, ALPN `h2` and `http/1.1`, reloaded on SIGHUP, bad files refused with their name.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tether_testkit::TestCa;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use common::{backend, spawn_proxy};

/// Writes `name`'s certificate and key, issued by `ca`, into `dir`; returns their paths and
/// the certificate's DER.
fn issue(ca: &TestCa, dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let (cert, key) = ca.node(name);
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let der = CertificateDer::from_pem_slice(cert.as_bytes())
        .unwrap()
        .to_vec();
    (cert_path, key_path, der)
}

fn connector(ca: &TestCa, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `proxy` for `name` (verified against the test CA).
async fn connect(
    connector: &TlsConnector,
    proxy: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(proxy).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn tls_args(backend: SocketAddr, pairs: &[(&Path, &Path)]) -> Vec<String> {
    let mut args = vec!["--backend".to_owned(), format!("app=http://{backend}")];
    for (cert, key) in pairs {
        args.extend([
            "--tls-cert".to_owned(),
            cert.display().to_string(),
            "--tls-key".to_owned(),
            key.display().to_string(),
        ]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_tls_by_sni_with_h2_and_http11_and_reloads_certificates_on_sighup() {
    let ca = TestCa::new("proxy test CA");
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key, a_der) = issue(&ca, dir.path(), "a.test");
    let (b_cert, b_key, b_der) = issue(&ca, dir.path(), "b.test");
    let app = backend("app").await;
    let (proxy, listen, _) = spawn_proxy(&tls_args(app, &[(&a_cert, &a_key), (&b_cert, &b_key)]));

    // SNI picks the certificate; the client verifies it for its name.
    let h2 = connector(&ca, &[b"h2", b"http/1.1"]);
    let to_b = connect(&h2, listen, "b.test").await.unwrap();
    assert_eq!(presented(&to_b), b_der);
    assert_eq!(to_b.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // HTTP/2 over TLS, through to the backend.
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(to_b))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("https://b.test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"app|127.0.0.1|"), "{body:?}");

    // HTTP/1.1 when the client offers only that.
    let http1 = connector(&ca, &[b"http/1.1"]);
    let mut to_a = connect(&http1, listen, "a.test").await.unwrap();
    assert_eq!(presented(&to_a), a_der);
    assert_eq!(to_a.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    to_a.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = to_a.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Routed and pinned as over plain HTTP.
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("set-cookie: tether-route="),
        "{answer}"
    );

    // New files and SIGHUP: new handshakes get the new certificate, without a restart.
    let (_, _, renewed_der) = issue(&ca, dir.path(), "a.test");
    assert_ne!(renewed_der, a_der);
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &proxy.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hangup();
    let started = Instant::now();
    loop {
        let stream = connect(&http1, listen, "a.test").await.unwrap();
        if presented(&stream) == renewed_der {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file at reload: the certificates in use stay, the proxy goes on.
    let mut key = std::fs::File::create(&a_key).unwrap();
    key.write_all(b"not a key").unwrap();
    drop(key);
    hangup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = connect(&http1, listen, "a.test").await.unwrap();
    assert_eq!(presented(&stream), renewed_der);
    let stream = connect(&http1, listen, "b.test").await.unwrap();
    assert_eq!(presented(&stream), b_der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_at_the_head_timeout() {
    let ca = TestCa::new("proxy test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = issue(&ca, dir.path(), "a.test");
    let app = backend("app").await;
    let mut args = tls_args(app, &[(&cert, &key)]);
    args.extend(["--header-read-timeout".to_owned(), "500ms".to_owned()]);
    let (_proxy, listen, _) = spawn_proxy(&args);

    let mut stream = TcpStream::connect(listen).await.unwrap();
    // The first bytes of a ClientHello record, and then nothing.
    stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "closed, not left open: {read:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn unusable_certificate_files_are_named_at_start() {
    let ca = TestCa::new("proxy test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = issue(&ca, dir.path(), "a.test");
    let (_, other_key, _) = issue(&ca, dir.path(), "b.test");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "no PEM here").unwrap();
    let missing = dir.path().join("missing.pem");
    let backend: SocketAddr = ([127, 0, 0, 1], 9).into();
    for (cert, key, says, names) in [
        (&cert, &garbage, "holds no private key", &garbage),
        (&garbage, &key, "holds no certificate", &garbage),
        (&missing, &key, "cannot read", &missing),
        (
            &cert,
            &other_key,
            "does not fit its certificate",
            &other_key,
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tether-proxy"))
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(tls_args(backend, &[(cert, key)]))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains(says) && stderr.contains(&names.display().to_string()),
            "{says}: {stderr}"
        );
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tether-proxy"))
        .args(["--backend", "http://127.0.0.1:9", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1 --tls-cert and 0 --tls-key"), "{stderr}");
}
