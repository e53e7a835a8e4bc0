//! The session counter on Redis: `GET /` increments a counter in the visitor's session and
//! answers `{"count": N, "server": "<addr>"}`. Every instance pointed at the same Redis sees the
//! same sessions, so a balancer may send each request anywhere.
//!
//! Run with `cargo run -p example-redis` (Redis from `REDIS_URL`, default
//! `redis://127.0.0.1:6379`; listens on 127.0.0.1:3000, or `--addr HOST:PORT`).

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
}

async fn serve(cli: Cli) -> std::result::Result<(), String> {
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
