//! Three nodes of the example as processes of their own on loopback ports, one visitor's
//! session counted through one node and read through another, then one process killed
//! (SIGKILL on unix): the count is still there on the two others, and counts on.
//!
//! Every child is killed when the test ends, however it ends (`Cluster` kills them on drop),
//! and every wait is bounded.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const KEY: &str = "a key for the example's process test, 32+ bytes";
const NAMES: [&str; 3] = ["a", "b", "c"];
/// Joining is bounded by about 7 s with the default failure timeout; a slow machine gets more.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// The failure timeout is 1.2 s by default: the survivors agree long before this.
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at a cluster whose replication ports were all free when it started.
const ATTEMPTS: usize = 5;

/// A running node: its process and what it told us.
struct NodeProcess {
    name: &'static str,
    child: Child,
    http: SocketAddr,
    /// Where it serves its metrics (`--metrics`), for the node started with them.
    metrics: Option<SocketAddr>,
    /// Everything the process wrote to stderr so far, shown when the test fails.
    stderr: Arc<Mutex<String>>,
}

/// The children; all are killed and reaped on drop, so none outlives the test.
struct Cluster {
    nodes: Vec<NodeProcess>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        if thread::panicking() {
            for node in &self.nodes {
                let log = node.stderr.lock().map(|s| s.clone()).unwrap_or_default();
                eprintln!("--- stderr of node {} ---\n{log}", node.name);
            }
        }
    }
}

impl Cluster {
    fn node(&self, name: &str) -> &NodeProcess {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// Kills node `name` (SIGKILL on unix: no goodbye to its peers) and reaps it.
    fn kill(&mut self, name: &str) {
        let index = self.nodes.iter().position(|n| n.name == name).unwrap();
        let mut node = self.nodes.remove(index);
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }
}

/// What a child's output reader saw.
enum Event {
    Ready(usize, SocketAddr),
    Exited(usize),
}

/// Replication addresses free a moment ago. Peers must know them before the nodes start, so
/// they cannot be bound to port 0 by the nodes themselves; a port taken in between makes that
/// node exit with "could not listen on ...", and `start` tries again with new ones.
fn free_addrs() -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = NAMES
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Starts the three nodes and waits until each serves; returns `None` when a replication port
/// was taken meanwhile.
fn try_start() -> Option<Cluster> {
    let addrs = free_addrs();
    let (events, ready) = mpsc::channel();
    let mut cluster = Cluster { nodes: Vec::new() };
    for (i, name) in NAMES.iter().enumerate() {
        let mut command = Command::new(env!("CARGO_BIN_EXE_example-cluster"));
        command
            .args(["--name", name, "--http", "127.0.0.1:0", "--listen"])
            .arg(addrs[i].to_string())
            .env("CLUSTER_KEY", KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (j, peer) in NAMES.iter().enumerate().filter(|(j, _)| *j != i) {
            command.arg("--peer").arg(format!("{peer}={}", addrs[j]));
        }
        // One node serves its metrics, on a port free a moment ago (taken meanwhile: the node
        // exits, and `start` tries again).
        let metrics = (*name == METRICS_NODE).then(|| {
            let port = TcpListener::bind("127.0.0.1:0").unwrap();
            port.local_addr().unwrap()
        });
        if let Some(addr) = metrics {
            command.arg("--metrics").arg(addr.to_string());
        }
        let mut child = command.spawn().expect("the example binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let events = events.clone();
        thread::spawn(move || watch_stdout(i, stdout, &events));
        let log = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut chunk) {
                if let Ok(mut log) = log.lock() {
                    log.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }
        });
        cluster.nodes.push(NodeProcess {
            name,
            child,
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics,
            stderr,
        });
    }
    wait_ready(&mut cluster, &ready).then_some(cluster)
}

/// Sends `Ready` with the HTTP address the node printed, or `Exited` when its stdout closes
/// first.
fn watch_stdout(index: usize, stdout: impl std::io::Read, events: &mpsc::Sender<Event>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let addr = line
            .split_once("http://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .and_then(|(addr, _)| addr.parse().ok());
        if let Some(addr) = addr {
            let _ = events.send(Event::Ready(index, addr));
        }
    }
    let _ = events.send(Event::Exited(index));
}

/// True once every node serves; false when one could not bind its replication port.
fn wait_ready(cluster: &mut Cluster, events: &Receiver<Event>) -> bool {
    let deadline = Instant::now() + READY_WITHIN;
    let mut waiting = cluster.nodes.len();
    while waiting > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Ready(i, addr)) => {
                cluster.nodes[i].http = addr;
                waiting -= 1;
            }
            Ok(Event::Exited(i)) => {
                let node = &mut cluster.nodes[i];
                // The reader may see the end of stdout before stderr is all read.
                let _ = node.child.wait();
                thread::sleep(Duration::from_millis(100));
                let log = node.stderr.lock().unwrap().clone();
                if log.contains("could not listen on") && log.contains("in use") {
                    return false;
                }
                panic!("node {} exited before it served:\n{log}", node.name);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                panic!("the nodes did not all serve within {READY_WITHIN:?}")
            }
        }
    }
    true
}

fn start() -> Cluster {
    for _ in 0..ATTEMPTS {
        if let Some(cluster) = try_start() {
            return cluster;
        }
    }
    panic!("no free replication ports in {ATTEMPTS} attempts");
}

/// An answer of the app.
struct Answer {
    status: u16,
    set_cookie: Option<String>,
    body: Option<Value>,
}

/// `GET path` over HTTP/1.1, one connection per request, bounded in time.
fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let cookie = cookie
        .map(|c| format!("cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\n{cookie}connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let set_cookie = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .and_then(|(_, value)| value.trim().split(';').next())
        .map(str::to_owned);
    Ok(Answer {
        status,
        set_cookie,
        body: serde_json::from_str(body).ok(),
    })
}

/// The node started with `--metrics`.
const METRICS_NODE: &str = "b";

/// The text of `GET /metrics` at `addr`, bounded in time.
fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// One visitor with a cookie jar of one cookie.
#[derive(Default)]
struct Visitor {
    cookie: Option<String>,
}

impl Visitor {
    /// `GET path` through `node`; the answer's body, which must come with a 200.
    fn visit(&mut self, node: &NodeProcess, path: &str) -> Value {
        let answer = get(node.http, path, self.cookie.as_deref())
            .unwrap_or_else(|e| panic!("GET {path} on node {} ({}): {e}", node.name, node.http));
        assert_eq!(answer.status, 200, "GET {path} on node {}", node.name);
        if answer.set_cookie.is_some() {
            self.cookie = answer.set_cookie;
        }
        answer.body.expect("a JSON body")
    }

    /// Reads the count through `node` until its view lists exactly `members` (it has noticed a
    /// death); the last answer. Answers other than 200 meanwhile are retried: reads are safe
    /// to repeat.
    fn read_once_agreed(&self, node: &NodeProcess, members: &[&str]) -> Value {
        let deadline = Instant::now() + FAILOVER_WITHIN;
        loop {
            let last = match get(node.http, "/count", self.cookie.as_deref()) {
                Ok(answer) if answer.status == 200 => {
                    let body = answer.body.expect("a JSON body");
                    if body["members"] == serde_json::json!(members) {
                        return body;
                    }
                    format!("{body}")
                }
                Ok(answer) => format!("status {}", answer.status),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "node {} did not see members {members:?} within {FAILOVER_WITHIN:?}; last: {last}",
                node.name
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_count_survives_a_killed_node() {
    let mut cluster = start();
    let mut visitor = Visitor::default();

    // Counted through a, read through b; the others count on.
    for n in 1..=3 {
        let body = visitor.visit(cluster.node("a"), "/");
        assert_eq!(body["count"], n);
        assert_eq!(body["node"], "a");
    }
    assert!(visitor.cookie.is_some(), "the first count set a cookie");
    let body = visitor.visit(cluster.node("b"), "/count");
    assert_eq!(body["count"], 3);
    assert_eq!(body["members"], serde_json::json!(NAMES));
    assert_eq!(visitor.visit(cluster.node("c"), "/")["count"], 4);
    assert_eq!(visitor.visit(cluster.node("b"), "/")["count"], 5);

    // b read once and counted once; its metrics say so, for Prometheus.
    let metrics = cluster.node(METRICS_NODE).metrics.unwrap();
    let text = scrape(metrics).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for line in [
        "tether_session_requests_total{outcome=\"loaded\"} 1",
        "tether_session_requests_total{outcome=\"changed\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }

    // The node that took most of the writes dies without a word.
    cluster.kill("a");
    for survivor in ["b", "c"] {
        let body = visitor.read_once_agreed(cluster.node(survivor), &["b", "c"]);
        assert_eq!(body["count"], 5, "read through {survivor} after a died");
    }
    assert_eq!(visitor.visit(cluster.node("c"), "/")["count"], 6);
    assert_eq!(visitor.visit(cluster.node("b"), "/count")["count"], 6);
}

#[test]
fn a_node_without_a_key_refuses_to_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_example-cluster"))
        .args([
            "--name",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .env_remove("CLUSTER_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CLUSTER_KEY is not set"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI codes off a terminal: {stderr}"
    );
}

#[test]
fn a_taken_port_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    for flag in ["--http", "--listen"] {
        let other = if flag == "--http" {
            "--listen"
        } else {
            "--http"
        };
        let output = Command::new(env!("CARGO_BIN_EXE_example-cluster"))
            .args(["--name", "a", flag, &addr.to_string(), other, "127.0.0.1:0"])
            .env("CLUSTER_KEY", KEY)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag} on a taken port");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("could not listen"), "{flag}: {stderr}");
        assert!(stderr.contains(&addr.to_string()), "{flag}: {stderr}");
        assert!(stderr.contains("in use"), "{flag}: {stderr}");
        assert!(
            !stderr.contains('\u{1b}'),
            "no ANSI codes off a terminal: {stderr}"
        );
    }
}
