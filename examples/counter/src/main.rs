//! A per-session counter: `GET /` increments a counter kept in the visitor's session and
//! answers `{"count": N}`.
//!
//! Run with `cargo run -p example-counter` (listens on 127.0.0.1:3000, or `--addr HOST:PORT`),
//! then: `curl -c jar -b jar http://127.0.0.1:3000/` a few times.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{Value, json};
use tether_memory::MemoryStore;
use tether_sessions::{Result, Session, SessionLayer};
use tracing_subscriber::EnvFilter;

async fn count(session: Session) -> Result<Json<Value>> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", &count).await?;
    Ok(Json(json!({ "count": count })))
}

fn app() -> Router {
    // This demo serves plain HTTP, where browsers and curl drop `Secure` cookies for anything
    // but localhost. Keep the secure default in production, behind TLS.
    let sessions = SessionLayer::new(MemoryStore::new()).with_secure(false);
    Router::new().route("/", get(count)).layer(sessions)
}

/// A per-session counter on axum with tether's memory store.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
}

async fn serve(cli: Cli) -> std::result::Result<(), String> {
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|e| format!("could not listen on {}: {e}", cli.addr))?;
    let addr = listener.local_addr().unwrap_or(cli.addr);
    println!("counter listening on http://{addr}");
    axum::serve(listener, app())
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
            eprintln!("example-counter: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn counts_per_session() {
        let app = super::app();
        let first = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let cookie = first.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut last = 0;
        for _ in 0..3 {
            let request = Request::get("/")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            last = value["count"].as_u64().unwrap();
        }
        assert_eq!(last, 4);
    }
}
