//! TLS to backends through the proxy binary: an `https://` backend whose certificate (made by
//! rcgen at test time) chains to `--backend-ca` is proxied to; without that CA it is not.

mod common;

use common::{http, spawn_proxy};
use tether_testkit::{TestCa, https_backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_is_reached_when_its_ca_is_given() {
    let ca = TestCa::new("backends CA");
    let backend = https_backend(&ca, "localhost", "secure").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("backends-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = format!("tls=https://localhost:{}", backend.port());

    let args = vec![
        "--backend".to_owned(),
        url.clone(),
        "--backend-ca".to_owned(),
        ca_file.display().to_string(),
    ];
    let answer = tokio::task::spawn_blocking(move || {
        let (_proxy, listen, _) = spawn_proxy(&args);
        http(listen, "GET", "/over-tls", None)
    })
    .await
    .unwrap()
    .expect("an answer");
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(answer.2, "secure /over-tls");

    // The default roots do not include the test CA: the backend's certificate is refused and
    // the request fails as at a dead backend (502, or 503 once passive health took its only
    // backend out).
    let args = vec!["--backend".to_owned(), url];
    let answer = tokio::task::spawn_blocking(move || {
        let (_proxy, listen, _) = spawn_proxy(&args);
        http(listen, "GET", "/over-tls", None)
    })
    .await
    .unwrap()
    .expect("an answer");
    assert!(matches!(answer.0, 502 | 503), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_new_ca_file_reaches_the_backend() {
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let backend = https_backend(&new_ca, "localhost", "renewed").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("backends-ca.pem");
    std::fs::write(&ca_file, old_ca.pem()).unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "backend_ca = {ca_file:?}\n[[backends]]\nname = \"tls\"\nurl = \"https://localhost:{}\"\n",
            backend.port()
        ),
    )
    .unwrap();
    let args = vec!["--config".to_owned(), config.display().to_string()];
    let ca_pem = new_ca.pem().to_owned();
    tokio::task::spawn_blocking(move || {
        let (proxy, listen, _) = spawn_proxy(&args);
        let status = |path| http(listen, "GET", path, None).map(|answer| answer.0);
        assert!(matches!(status("/before"), Some(502 | 503)));

        std::fs::write(&ca_file, ca_pem).unwrap();
        let hangup = std::process::Command::new("kill")
            .args(["-HUP", &proxy.0.id().to_string()])
            .status()
            .unwrap();
        assert!(hangup.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(answer) = http(listen, "GET", "/after", None)
                && answer.0 == 200
            {
                assert_eq!(answer.2, "renewed /after");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the new CA file was not taken at reload"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
}
