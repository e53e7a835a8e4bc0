//! N nodes of the session counter on one machine, replicating sessions to each other: `GET /` on
//! any node increments the counter of the visitor's session and answers
//! `{"count": N, "node": "node-i"}`.
//!
//! Run with `cargo run -p example-cluster -- --nodes 3 --mode backup --copies 1` and then, with
//! one cookie jar, alternate between the nodes' HTTP ports (3001, 3002, ...):
//! `curl -c jar -b jar http://127.0.0.1:3002/`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tether_replicated::{Ack, LocalCluster, Mode, ReplicatedStore};
use tether_sessions::{Result, Session, SessionLayer};

const USAGE: &str = "usage: example-cluster [--nodes N] [--mode backup|all-to-all] [--copies C] \
                     [--ack sync|async] [--http-port FIRST_PORT]";

#[derive(Debug, PartialEq)]
struct Options {
    nodes: usize,
    mode: Mode,
    ack: Ack,
    http_port: u16,
}

fn options(args: impl IntoIterator<Item = String>) -> std::result::Result<Options, String> {
    let mut args = args.into_iter();
    let (mut nodes, mut all_to_all, mut copies, mut ack, mut http_port) =
        (3, false, 1, Ack::Sync, 3001);
    let value = |flag: &str, args: &mut dyn Iterator<Item = String>| {
        args.next().ok_or(format!("{flag} needs a value; {USAGE}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nodes" => {
                nodes = value("--nodes", &mut args)?
                    .parse()
                    .map_err(|e| format!("--nodes: {e}"))?
            }
            "--copies" => {
                copies = value("--copies", &mut args)?
                    .parse()
                    .map_err(|e| format!("--copies: {e}"))?
            }
            "--http-port" => {
                http_port = value("--http-port", &mut args)?
                    .parse()
                    .map_err(|e| format!("--http-port: {e}"))?;
            }
            "--mode" => match value("--mode", &mut args)?.as_str() {
                "backup" => all_to_all = false,
                "all-to-all" => all_to_all = true,
                other => return Err(format!("--mode {other:?}: expected backup or all-to-all")),
            },
            "--ack" => match value("--ack", &mut args)?.as_str() {
                "sync" => ack = Ack::Sync,
                "async" => ack = Ack::Async,
                other => return Err(format!("--ack {other:?}: expected sync or async")),
            },
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    if nodes == 0 || copies == 0 {
        return Err(format!("--nodes and --copies must be at least 1; {USAGE}"));
    }
    let mode = if all_to_all {
        Mode::AllToAll
    } else {
        Mode::Backup { copies }
    };
    Ok(Options {
        nodes,
        mode,
        ack,
        http_port,
    })
}

async fn count(State(node): State<String>, session: Session) -> Result<Json<Value>> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", &count).await?;
    Ok(Json(json!({ "count": count, "node": node })))
}

fn app(store: ReplicatedStore, node: String) -> Router {
    // Plain HTTP demo: keep the `Secure` default in production, behind TLS.
    let sessions = SessionLayer::new(store).with_secure(false);
    Router::new()
        .route("/", get(count))
        .layer(sessions)
        .with_state(node)
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = options(std::env::args().skip(1))?;
    let cluster = LocalCluster::start(options.nodes, |config| {
        config.with_mode(options.mode).with_ack(options.ack)
    })
    .await?;
    let mut servers = tokio::task::JoinSet::new();
    for i in 0..cluster.len() {
        let (Some(node), Some(store)) = (cluster.node(i), cluster.store(i)) else {
            continue;
        };
        let port = options.http_port + u16::try_from(i)?;
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!(
            "{}: http://127.0.0.1:{port}/  (replication on {})",
            node.name(),
            node.local_addr()
        );
        let app = app(store, node.name().to_owned());
        servers.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
        });
    }
    println!("{:?}, {:?}; Ctrl-C to stop", options.mode, options.ack);
    while let Some(done) = servers.join_next().await {
        done??;
    }
    drop(cluster);
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt as _;

    use super::*;

    #[test]
    fn parses_flags() {
        let args = ["--nodes", "5", "--mode", "backup", "--copies", "2"].map(String::from);
        let parsed = options(args).unwrap();
        assert_eq!(parsed.nodes, 5);
        assert_eq!(parsed.mode, Mode::Backup { copies: 2 });
        assert!(options(["--mode", "ring"].map(String::from)).is_err());
        assert!(options(["--nodes"].map(String::from)).is_err());
        assert!(options(["--nodes", "0"].map(String::from)).is_err());
    }

    /// One visitor alternating over three nodes keeps one counting session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_follow_the_visitor_across_nodes() {
        let cluster = LocalCluster::start(3, |c| c.with_mode(Mode::Backup { copies: 1 }))
            .await
            .unwrap();
        let apps: Vec<Router> = (0..3)
            .map(|i| app(cluster.store(i).unwrap(), format!("node-{i}")))
            .collect();
        let mut cookie: Option<String> = None;
        for n in 1..=6u64 {
            let mut request = Request::get("/");
            if let Some(cookie) = &cookie {
                request = request.header(header::COOKIE, cookie);
            }
            let response = apps[(n % 3) as usize]
                .clone()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            if let Some(set) = response.headers().get(header::SET_COOKIE) {
                cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
            }
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            let value: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value["count"], n);
        }
    }
}
