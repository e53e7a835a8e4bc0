//! The example end to end in a real browser: Debian's headless Chromium, driven through
//! chromedriver by a WebDriver client. Two browser sessions (each with its own profile, so its
//! own cookies) sign in as the same user; the first sees two devices and signs the other out,
//! and the other's next page load shows the login form.
//!
//! Needs `chromium` and `chromedriver` on `PATH` (Debian: `apt-get install chromium
//! chromium-driver`; `bash .ci/run` installs them), or `CHROMIUM_BIN` and `CHROMEDRIVER_BIN`.
//! The app and chromedriver run as child processes on loopback ports and are killed when the
//! test ends, however it ends; every wait is bounded.

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const STARTUP: Duration = Duration::from_secs(30);

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn binary(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

/// Starts the example on a free loopback port and returns its address.
async fn start_app() -> (Process, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_example-login"))
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(STARTUP, lines.next_line())
        .await
        .expect("the example announces its address in time")
        .expect("read its output")
        .expect("it printed a line");
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (Process(child), addr)
}

/// Starts chromedriver on a free loopback port and waits until it answers.
async fn start_chromedriver() -> (Process, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let program = binary("CHROMEDRIVER_BIN", "chromedriver");
    let child = Command::new(&program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "could not start {program} ({e}): install Chromium and its driver \
                 (Debian: apt-get install chromium chromium-driver; bash .ci/run does)"
            )
        });
    let deadline = Instant::now() + STARTUP;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Process(child), port)
}

/// A headless Chromium session with a fresh profile of its own.
async fn browser(driver: u16, profile: &tempfile::TempDir) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary("CHROMIUM_BIN", "/usr/bin/chromium"),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver}"))
        .await
        .expect("a Chromium session through chromedriver")
}

async fn sign_in(browser: &Client, base: &str, user: &str) {
    browser.goto(&format!("{base}/")).await.unwrap();
    let form = browser.find(Locator::Id("login")).await.unwrap();
    form.find(Locator::Css("input[name=user]"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    form.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("any password")
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(browser, "/devices").await;
}

async fn wait_for_path(browser: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        assert!(Instant::now() < deadline, "still on {url}, expected {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The device rows of the devices page: `(handle, row text, is this device)`. Read again when
/// the page was replaced while being read (a form's answer arriving).
async fn device_rows(browser: &Client) -> Vec<(String, String, bool)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match read_device_rows(browser).await {
            Ok(rows) => return rows,
            Err(error) if error.is_stale_element_reference() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("reading the device rows: {error}"),
        }
    }
}

async fn read_device_rows(
    browser: &Client,
) -> Result<Vec<(String, String, bool)>, fantoccini::error::CmdError> {
    let mut rows = Vec::new();
    for row in browser.find_all(Locator::Css("tr.device")).await? {
        let handle = row.attr("data-handle").await?.unwrap_or_default();
        let text = row.text().await?;
        let current = !row.find_all(Locator::Css("td.current")).await?.is_empty();
        rows.push((handle, text, current));
    }
    Ok(rows)
}

/// The device rows once there are `count` of them: after a form posted from the devices page,
/// whose answer brings the browser back to the same page, the old rows show until it arrives.
async fn device_rows_once(browser: &Client, count: usize) -> Vec<(String, String, bool)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = device_rows(browser).await;
        if rows.len() == count {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} device rows, still {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_another_device_out() {
    let (_app, addr) = start_app().await;
    // `localhost`, not the address: browsers take a `Secure` cookie over plain HTTP only from
    // localhost, and the example keeps the secure default.
    let base = format!("http://localhost:{}", addr.port());
    let (_driver, driver_port) = start_chromedriver().await;
    let (profile_a, profile_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let laptop = browser(driver_port, &profile_a).await;
    let phone = browser(driver_port, &profile_b).await;

    sign_in(&laptop, &base, "alice").await;
    sign_in(&phone, &base, "alice").await;

    // The session cookie as the browser holds it.
    let cookies = laptop.get_all_cookies().await.unwrap();
    let sid = cookies
        .iter()
        .find(|c| c.name() == "sid")
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert_eq!(sid.http_only(), Some(true), "HttpOnly");
    assert_eq!(sid.same_site(), Some(cookie::SameSite::Lax), "SameSite=Lax");
    assert_eq!(sid.secure(), Some(true), "Secure, the example's setting");

    laptop.goto(&format!("{base}/devices")).await.unwrap();
    let rows = device_rows(&laptop).await;
    assert_eq!(rows.len(), 2, "alice sees two devices: {rows:?}");
    assert_eq!(rows.iter().filter(|r| r.2).count(), 1, "one is this one");
    for (_, text, _) in &rows {
        assert!(
            text.contains("HeadlessChrome"),
            "the device label is shown: {text}"
        );
        assert!(text.contains("127.0.0.1"), "the address is shown: {text}");
    }
    let (other, _, _) = rows.iter().find(|r| !r.2).unwrap().clone();
    let sid_value = sid.value().to_owned();
    let page = laptop.source().await.unwrap();
    assert!(
        !page.contains(&sid_value),
        "the session id never appears on the page"
    );

    // Sign the phone out from the laptop.
    laptop
        .find(Locator::Css(&format!(
            "tr[data-handle='{other}'] button.sign-out"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&laptop, "/devices").await;
    let rows = device_rows_once(&laptop, 1).await;
    assert!(rows[0].2, "and it is this one");

    // The phone's next page load shows the login form.
    phone.goto(&format!("{base}/devices")).await.unwrap();
    wait_for_path(&phone, "/").await;
    phone
        .find(Locator::Id("login"))
        .await
        .expect("the signed-out device sees the login form");

    // Sign in again on the phone, then "sign out everywhere else" from the laptop.
    sign_in(&phone, &base, "alice").await;
    laptop.goto(&format!("{base}/devices")).await.unwrap();
    assert_eq!(device_rows(&laptop).await.len(), 2);
    laptop
        .find(Locator::Id("sign-out-others"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&laptop, "/devices").await;
    device_rows_once(&laptop, 1).await;
    phone.goto(&format!("{base}/devices")).await.unwrap();
    wait_for_path(&phone, "/").await;
    phone.find(Locator::Id("login")).await.unwrap();

    laptop.close().await.unwrap();
    phone.close().await.unwrap();
}
