//! The session counter on SQL: `GET /` increments a counter in the visitor's session and
//! answers `{"count": N, "server": "<addr>"}`. On PostgreSQL every instance pointed at the same
//! database sees the same sessions; on SQLite one instance keeps its sessions across restarts.
//!
//! Run with `cargo run -p example-sql` (PostgreSQL from `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), or `cargo run -p example-sql -- --sqlite
//! sessions.db`; listens on 127.0.0.1:3000, or `--addr HOST:PORT`.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{Value, json};
use tether_sessions::core::SessionStore;
use tether_sessions::{Result, Session, SessionLayer};
use tether_sql::{PostgresStore, SqliteStore, Sweeper};
use tracing_subscriber::EnvFilter;

async fn count(State(server): State<SocketAddr>, session: Session) -> Result<Json<Value>> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", &count).await?;
    Ok(Json(
        json!({ "count": count, "server": server.to_string() }),
    ))
}

fn app(store: impl SessionStore, addr: SocketAddr) -> Router {
    // Plain HTTP demo: browsers and curl drop `Secure` cookies outside localhost. Keep the
    // secure default in production, behind TLS.
    let sessions = SessionLayer::new(store).with_secure(false);
    Router::new()
        .route("/", get(count))
        .layer(sessions)
        .with_state(addr)
}

/// The session counter on PostgreSQL or SQLite.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// The PostgreSQL database.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// PostgreSQL schema of the session tables (default: the search path).
    #[arg(long)]
    schema: Option<String>,
    /// Keep sessions in this SQLite file instead of PostgreSQL.
    #[arg(long, value_name = "FILE")]
    sqlite: Option<PathBuf>,
    /// How often expired sessions are deleted.
    #[arg(long, default_value = "60s", value_parser = humantime_secs)]
    sweep_every: Duration,
}

fn humantime_secs(text: &str) -> std::result::Result<Duration, String> {
    let secs = text.strip_suffix('s').unwrap_or(text);
    secs.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{text:?} is not a number of seconds such as 60s"))
}

fn describe(error: &tether_sql::Error) -> String {
    tether_sessions::core::error_chain(error).to_string()
}

/// Opens the store the command line names, creates its tables and starts its sweeper.
async fn open(cli: &Cli, addr: SocketAddr) -> std::result::Result<(Router, Sweeper), String> {
    Ok(match &cli.sqlite {
        Some(path) => {
            let store = SqliteStore::open(path).await.map_err(|e| describe(&e))?;
            store.migrate().await.map_err(|e| describe(&e))?;
            println!("sessions in SQLite file {}", path.display());
            (
                app(store.clone(), addr),
                store.spawn_sweeper(cli.sweep_every),
            )
        }
        None => {
            let mut builder = PostgresStore::builder();
            if let Some(schema) = &cli.schema {
                builder = builder.with_schema(schema);
            }
            let store = builder
                .connect(&cli.database_url)
                .await
                .map_err(|e| describe(&e))?;
            store.migrate().await.map_err(|e| describe(&e))?;
            println!("sessions in PostgreSQL table {}", store.sessions_table());
            (
                app(store.clone(), addr),
                store.spawn_sweeper(cli.sweep_every),
            )
        }
    })
}

async fn serve(cli: Cli) -> std::result::Result<(), String> {
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|e| format!("could not listen on {}: {e}", cli.addr))?;
    let addr = listener.local_addr().unwrap_or(cli.addr);
    let (app, sweeper) = open(&cli, addr).await?;
    println!("counter listening on http://{addr}");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("serving on {addr}: {e}"));
    sweeper.stop().await;
    served
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
            eprintln!("example-sql: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt as _;

    use super::*;

    /// Sends `GET /` with the cookie, keeps a new cookie, and answers the count.
    async fn visit(app: &Router, cookie: &mut Option<String>) -> u64 {
        let mut request = Request::get("/");
        if let Some(cookie) = cookie.as_deref() {
            request = request.header(header::COOKIE, cookie);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            *cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        value["count"].as_u64().unwrap()
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("example-sql").chain(args.iter().copied()))
    }

    /// SQLite: the count goes on after the server restarts on the same file.
    #[tokio::test]
    async fn sqlite_keeps_sessions_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let cli = cli(&["--sqlite", path.to_str().unwrap()]);
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut cookie = None;
        let (first, sweeper) = open(&cli, addr).await.unwrap();
        assert_eq!(visit(&first, &mut cookie).await, 1);
        assert_eq!(visit(&first, &mut cookie).await, 2);
        sweeper.stop().await;
        drop(first);
        let (restarted, sweeper) = open(&cli, addr).await.unwrap();
        assert_eq!(visit(&restarted, &mut cookie).await, 3);
        sweeper.stop().await;
    }

    /// PostgreSQL: two instances on one database continue one session, alternately. The tables
    /// live in a schema of this test's own, dropped at the end.
    #[tokio::test]
    async fn postgres_instances_share_sessions() {
        let url = std::env::var("TETHER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("example_sql_{}", std::process::id());
        let cli = cli(&["--database-url", &url, "--schema", &schema]);
        let (a, sweeper_a) = open(&cli, "127.0.0.1:1".parse().unwrap()).await.unwrap();
        let (b, sweeper_b) = open(&cli, "127.0.0.1:2".parse().unwrap()).await.unwrap();
        let mut cookie = None;
        let mut counts = Vec::new();
        for instance in [&a, &b, &a, &b] {
            counts.push(visit(instance, &mut cookie).await);
        }
        sweeper_a.stop().await;
        sweeper_b.stop().await;
        let store = PostgresStore::connect(&url).await.unwrap();
        tether_sql::sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(counts, [1, 2, 3, 4]);
    }
}
