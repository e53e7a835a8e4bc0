//! A per-session counter: `GET /` increments a counter kept in the visitor's session and
//! answers `{"count": N}`.
//!
//! Run with `cargo run -p example-counter` (listens on 127.0.0.1:3000, or `--addr HOST:PORT`),
//! then: `curl -c jar -b jar http://127.0.0.1:3000/` a few times.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tether_memory::MemoryStore;
use tether_sessions::{Result, Session, SessionLayer};

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

fn listen_addr() -> std::result::Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:3000".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "-h" | "--help" => return Err("usage: example-counter [--addr HOST:PORT]".into()),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: example-counter [--addr HOST:PORT]"
                ));
            }
        }
    }
    addr.parse().map_err(|e| format!("--addr {addr:?}: {e}"))
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("counter listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
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
