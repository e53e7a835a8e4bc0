//! `Upstream::https` against a real TLS backend (rustls, a certificate made by rcgen at test
//! time): requests pass when the backend's certificate chains to the given roots and names its
//! host, and fail as a backend failure otherwise (feature `client-tls`).
#![cfg(feature = "client-tls")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};
use tether_sticky::{Upstream, UpstreamError, box_body};
use tether_testkit::{TestCa, https_backend};
use tower::ServiceExt as _;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client settings trusting `ca` only.
fn trusting(ca: &TestCa) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn get(upstream: &Upstream, path: &str) -> Result<(StatusCode, String), UpstreamError> {
    let request = Request::get(path)
        .body(box_body(Empty::<Bytes>::new()))
        .unwrap();
    let response = upstream.clone().oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn a_backend_whose_certificate_chains_to_the_roots_is_reached_over_tls() {
    let ca = TestCa::new("backends CA");
    let addr = https_backend(&ca, "localhost", "secure").await;
    let uri = format!("https://localhost:{}", addr.port())
        .parse()
        .unwrap();
    let upstream = Upstream::https(uri, trusting(&ca), Duration::from_secs(2)).unwrap();
    for _ in 0..3 {
        let (status, body) = get(&upstream, "/hello").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "secure /hello"));
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_or_for_another_name_fails_the_request() {
    let (ca, other) = (TestCa::new("backends CA"), TestCa::new("someone else"));
    let addr = https_backend(&ca, "localhost", "secure").await;
    let uri: http::Uri = format!("https://localhost:{}", addr.port())
        .parse()
        .unwrap();
    let untrusted = Upstream::https(uri, trusting(&other), Duration::from_secs(2)).unwrap();
    assert!(matches!(
        get(&untrusted, "/").await,
        Err(UpstreamError::Client(_))
    ));

    let misnamed = https_backend(&ca, "elsewhere.test", "secure").await;
    let uri = format!("https://localhost:{}", misnamed.port())
        .parse()
        .unwrap();
    let upstream = Upstream::https(uri, trusting(&ca), Duration::from_secs(2)).unwrap();
    assert!(matches!(
        get(&upstream, "/").await,
        Err(UpstreamError::Client(_))
    ));
}

#[test]
fn only_https_urls_are_taken() {
    let ca = TestCa::new("backends CA");
    let plain = "http://127.0.0.1:1".parse().unwrap();
    assert!(Upstream::https(plain, trusting(&ca), Duration::from_secs(1)).is_err());
    let tls = "https://127.0.0.1:1".parse().unwrap();
    assert!(Upstream::new(tls, false, Duration::from_secs(1)).is_err());
}
