//! One node of a replicated session counter; run one process per node. `GET /` increments the
//! counter of the visitor's session, `GET /count` only reads it; both answer
//! `{"count": N, "node": "a", "members": ["a", "b", "c"]}`, where `members` is the answering
//! node's view of the cluster.
//!
//! Run with `cargo run -p example-cluster -- --name a --listen 127.0.0.1:7001 --http
//! 127.0.0.1:3001 --peer b=127.0.0.1:7002 --peer c=127.0.0.1:7003` and the cluster's shared key
//! in `CLUSTER_KEY`; `README.md` starts three of them behind nginx and kills one. `--metrics
//! ADDR` serves the session layer's metrics for Prometheus at `http://ADDR/metrics`.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{Value, json};
use tether_replicated::{Ack, Membership as _, Mode, Node, NodeConfig, PeerKey};
use tether_sessions::{Result, Session, SessionLayer};

/// The environment variable that holds the cluster's shared key. Not a flag: command lines are
/// visible to every user of the machine.
const KEY_VAR: &str = "CLUSTER_KEY";

/// One node of a replicated session counter.
///
/// The cluster's shared key (at least 32 bytes, the same on every node) is read from the
/// environment variable CLUSTER_KEY.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// This node's name, unique in the cluster.
    #[arg(long)]
    name: String,
    /// Where this node listens for its peers (replication traffic).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Where this node serves the counter app; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    http: SocketAddr,
    /// Another node of the cluster: its name and replication address. Repeat for each.
    #[arg(long = "peer", value_name = "NAME=ADDR", value_parser = peer)]
    peers: Vec<(String, SocketAddr)>,
    /// Which nodes hold each session: `all-to-all`, or `backup-N` (a primary and N backups).
    #[arg(long, default_value_t = Mode::Backup { copies: 1 })]
    mode: Mode,
    /// When a write returns: `sync` (every holder has it) or `async` (the primary has it).
    #[arg(long, default_value_t = Ack::Sync)]
    ack: Ack,
    /// Serve the session layer's metrics for Prometheus at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// Reads `--peer NAME=ADDR`.
fn peer(arg: &str) -> std::result::Result<(String, SocketAddr), String> {
    let (name, addr) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not NAME=ADDR (for instance b=127.0.0.1:7002)"))?;
    if name.is_empty() {
        return Err(format!("{arg:?} has no name before '='"));
    }
    let addr = addr
        .parse()
        .map_err(|e| format!("{addr:?} is not an IP address and port: {e}"))?;
    Ok((name.to_owned(), addr))
}

/// Why the node did not start or stopped.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(
        "{KEY_VAR} is not set: set it to the cluster's shared key, at least 32 bytes and the \
         same on every node (for instance `export {KEY_VAR}=$(openssl rand -hex 32)`)"
    )]
    NoKey,
    #[error("{KEY_VAR} is not valid UTF-8")]
    KeyNotUnicode,
    #[error("{KEY_VAR} is not a usable key")]
    BadKey(#[source] tether_replicated::Error),
    #[error("could not listen for HTTP on {addr}")]
    HttpBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("node {name} did not start")]
    Node {
        name: String,
        #[source]
        source: tether_replicated::Error,
    },
    #[error("could not serve metrics on {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },
    #[error("the HTTP server on {addr} failed")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The cluster's shared key, from the environment.
fn key() -> std::result::Result<PeerKey, Failure> {
    let key = std::env::var(KEY_VAR).map_err(|e| match e {
        std::env::VarError::NotPresent => Failure::NoKey,
        std::env::VarError::NotUnicode(_) => Failure::KeyNotUnicode,
    })?;
    if key.is_empty() {
        return Err(Failure::NoKey);
    }
    PeerKey::new(key.into_bytes()).map_err(Failure::BadKey)
}

/// `GET /`: one more visit in this session.
async fn increment(State(node): State<Node>, session: Session) -> Result<Json<Value>> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", &count).await?;
    Ok(answer(&node, count))
}

/// `GET /count`: the visits so far, without counting this one (a read writes nothing).
async fn read(State(node): State<Node>, session: Session) -> Result<Json<Value>> {
    let count = session.get::<u64>("count").await?.unwrap_or(0);
    Ok(answer(&node, count))
}

fn answer(node: &Node, count: u64) -> Json<Value> {
    let view = node.view();
    Json(json!({ "count": count, "node": node.name(), "members": view.members() }))
}

fn app(node: Node) -> Router {
    // Plain HTTP demo: curl and browsers drop `Secure` cookies outside localhost. Keep the
    // secure default in production, behind TLS.
    let sessions = SessionLayer::new(node.store()).with_secure(false);
    Router::new()
        .route("/", get(increment))
        .route("/count", get(read))
        .layer(sessions)
        .with_state(node)
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(args: Args) -> std::result::Result<(), Failure> {
    let key = key()?;
    let config = args.peers.iter().fold(
        NodeConfig::new(args.name.clone(), args.listen, key)
            .with_mode(args.mode)
            .with_ack(args.ack),
        |config, (name, addr)| config.with_peer(name.clone(), *addr),
    );
    // The HTTP port first: a taken port fails at once, not after joining the cluster.
    let http = tokio::net::TcpListener::bind(args.http)
        .await
        .map_err(|source| Failure::HttpBind {
            addr: args.http,
            source,
        })?;
    let http_addr = http.local_addr().map_err(|source| Failure::HttpBind {
        addr: args.http,
        source,
    })?;
    if let Some(addr) = args.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|source| Failure::Metrics { addr, source })?;
        tracing::info!(%addr, "metrics for Prometheus at /metrics");
    }
    tracing::info!(node = %args.name, peers = args.peers.len(), "joining the cluster");
    let node = Node::start(config).await.map_err(|source| Failure::Node {
        name: args.name.clone(),
        source,
    })?;
    // One line on stdout once the node serves; the logs go to stderr.
    println!(
        "{}: http://{http_addr}/ (replication on {}, {}, ack {}, members {})",
        node.name(),
        node.local_addr(),
        args.mode,
        args.ack,
        node.view().members().join(" "),
    );
    let served = axum::serve(http, app(node.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    // The HTTP server has drained its requests: hand the sessions over, then leave.
    let handover = node.shutdown().await;
    tracing::info!(
        node = %args.name,
        sessions = handover.sessions,
        peers_told = handover.peers_told,
        complete = handover.complete,
        "left the cluster"
    );
    served.map_err(|source| Failure::Serve {
        addr: http_addr,
        source,
    })
}

/// The error and its causes on one line: `could not ...: because ...: because ...`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", chain(&error));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn parses_a_node_and_its_peers() {
        let args = Args::try_parse_from([
            "example-cluster",
            "--name",
            "a",
            "--listen",
            "127.0.0.1:7001",
            "--http",
            "127.0.0.1:3001",
            "--peer",
            "b=127.0.0.1:7002",
            "--peer",
            "c=127.0.0.1:7003",
            "--mode",
            "backup-2",
            "--ack",
            "async",
        ])
        .unwrap();
        assert_eq!(args.name, "a");
        assert_eq!(args.listen, SocketAddr::from(([127, 0, 0, 1], 7001)));
        assert_eq!(
            args.peers,
            [
                ("b".to_owned(), SocketAddr::from(([127, 0, 0, 1], 7002))),
                ("c".to_owned(), SocketAddr::from(([127, 0, 0, 1], 7003))),
            ]
        );
        assert_eq!(args.mode, Mode::Backup { copies: 2 });
        assert_eq!(args.ack, Ack::Async);
    }

    #[test]
    fn defaults_to_one_backup_and_sync_acks() {
        let args = Args::try_parse_from([
            "example-cluster",
            "--name",
            "a",
            "--listen",
            "127.0.0.1:7001",
            "--http",
            "127.0.0.1:3001",
        ])
        .unwrap();
        assert!(args.peers.is_empty());
        assert_eq!(args.mode, Mode::Backup { copies: 1 });
        assert_eq!(args.ack, Ack::Sync);
    }

    #[test]
    fn bad_values_are_refused_with_what_was_wrong() {
        let base = [
            "example-cluster",
            "--name",
            "a",
            "--listen",
            "127.0.0.1:7001",
            "--http",
            "127.0.0.1:3001",
        ];
        let refused = |extra: &[&str], says: &str| {
            let error = Args::try_parse_from(base.iter().chain(extra)).unwrap_err();
            let text = error.to_string();
            assert!(text.contains(says), "{extra:?}: {text}");
        };
        refused(&["--peer", "b"], "is not NAME=ADDR");
        refused(&["--peer", "=127.0.0.1:7002"], "has no name");
        refused(&["--peer", "b=localhost"], "is not an IP address and port");
        refused(&["--mode", "ring"], "expected all-to-all or backup-N");
        refused(&["--mode", "backup-0"], "backup-0");
        refused(&["--ack", "maybe"], "expected sync or async");
        assert!(Args::try_parse_from(["example-cluster", "--name", "a"]).is_err());
    }

    #[test]
    fn an_error_prints_its_causes() {
        let error = Failure::HttpBind {
            addr: SocketAddr::from(([127, 0, 0, 1], 3001)),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(
            chain(&error),
            "could not listen for HTTP on 127.0.0.1:3001: address in use"
        );
    }
}
