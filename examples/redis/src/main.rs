//! The session counter on Redis: `GET /` increments a counter in the visitor's session and
//! answers `{"count": N, "server": "<addr>"}`. Every instance pointed at the same Redis sees the
//! same sessions, so a balancer may send each request anywhere.
//!
//! Run with `cargo run -p example-redis` (Redis from `REDIS_URL`, default
//! `redis://127.0.0.1:6379`; listens on 127.0.0.1:3000, or `--addr HOST:PORT`; `--metrics
//! 127.0.0.1:9000` serves the session layer's metrics for Prometheus at `/metrics`).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{Value, json};
use tether_redis::RedisStore;
use tether_sessions::{Result, Session, SessionLayer};
use tracing_subscriber::EnvFilter;

async fn count(State(server): State<SocketAddr>, session: Session) -> Result<Json<Value>> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", &count).await?;
    Ok(Json(
        json!({ "count": count, "server": server.to_string() }),
    ))
}

fn app(store: RedisStore, addr: SocketAddr) -> Router {
    // Plain HTTP demo: browsers and curl drop `Secure` cookies outside localhost. Keep the
    // secure default in production, behind TLS.
    let sessions = SessionLayer::new(store).with_secure(false);
    Router::new()
        .route("/", get(count))
        .layer(sessions)
        .with_state(addr)
}

/// The session counter on Redis: every instance on the same Redis shares the sessions.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// The Redis server.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Serve the session layer's metrics for Prometheus at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// Records metrics and serves them for Prometheus at `http://{addr}/metrics`.
fn serve_metrics(addr: SocketAddr) -> std::result::Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("could not serve metrics on {addr}: {e}"))?;
    println!("metrics on http://{addr}/metrics");
    Ok(())
}

async fn serve(cli: Cli) -> std::result::Result<(), String> {
    if let Some(addr) = cli.metrics {
        serve_metrics(addr)?;
    }
    let store = RedisStore::connect(&cli.redis_url)
        .await
        .map_err(|e| tether_sessions::core::error_chain(&e).to_string())?;
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|e| format!("could not listen on {}: {e}", cli.addr))?;
    let addr = listener.local_addr().unwrap_or(cli.addr);
    println!("counter on Redis listening on http://{addr}");
    axum::serve(listener, app(store, addr))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("serving on {addr}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match serve(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("example-redis: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tether_testkit::RedisServer;
    use tower::ServiceExt as _;

    use super::*;

    /// `--metrics`: a scrape of `/metrics` shows the layer's counts in Prometheus' text format.
    #[tokio::test]
    async fn metrics_are_served_for_prometheus() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        serve_metrics(port).unwrap();
        let redis = RedisServer::start().unwrap();
        let app = app(
            RedisStore::connect(redis.url()).await.unwrap(),
            "127.0.0.1:1".parse().unwrap(),
        );
        let response = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(response.status().is_success());

        let mut scrape = String::new();
        for _ in 0..50 {
            if let Ok(mut socket) = tokio::net::TcpStream::connect(port).await {
                socket
                    .write_all(
                        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    )
                    .await
                    .unwrap();
                socket.read_to_string(&mut scrape).await.unwrap();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
        let created = scrape
            .lines()
            .find(|l| l.starts_with("tether_session_requests_total{outcome=\"created\"}"))
            .unwrap_or_else(|| panic!("no created count: {scrape}"));
        // The recorder is the process's: the other test's sessions may be counted too.
        let count: f64 = created.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= 1.0, "{created}");
        assert!(
            scrape.contains("tether_session_store_duration_seconds"),
            "{scrape}"
        );
        assert!(
            scrape.contains("tether_redis_round_trips_total{operation=\"create\"}"),
            "{scrape}"
        );
    }

    /// Two instances on one Redis: alternating between them continues one session.
    #[tokio::test]
    async fn two_instances_share_sessions() {
        let redis = RedisServer::start().unwrap();
        let a = app(
            RedisStore::connect(redis.url()).await.unwrap(),
            "127.0.0.1:1".parse().unwrap(),
        );
        let b = app(
            RedisStore::connect(redis.url()).await.unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut cookie: Option<String> = None;
        for (n, instance) in [&a, &b, &a, &b].into_iter().enumerate() {
            let mut request = Request::get("/");
            if let Some(cookie) = &cookie {
                request = request.header(header::COOKIE, cookie);
            }
            let response = instance
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
            assert_eq!(value["count"], n as u64 + 1);
        }
    }
}
