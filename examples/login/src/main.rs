//! Sessions by user: a login form, a "your devices" page listing every session of the signed-in
//! user (device, address, when it signed in, when it was last seen), a button to sign out each
//! other device, and "sign out everywhere else".
//!
//! Run with `cargo run -p example-login` (listens on 127.0.0.1:3000, or `--addr HOST:PORT`),
//! open <http://localhost:3000/> in two browsers (or a normal and a private window), sign in as
//! `alice` in both (any password), and sign one out from the other's devices page.
//!
//! Sessions live in this process's memory (`tether-memory`); any other tether store gives the
//! same pages across many servers.

mod app;
mod page;

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tether_memory::MemoryStore;
use tracing_subscriber::EnvFilter;

/// A login form and a "your devices" page on tether's principal index.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Send the session cookie without `Secure`, for plain HTTP on another host than
    /// `localhost` (browsers accept a `Secure` cookie over plain HTTP only from `localhost`).
    #[arg(long)]
    insecure_cookie: bool,
}

async fn serve(cli: Cli) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|e| format!("could not listen on {}: {e}", cli.addr))?;
    let addr = listener.local_addr().unwrap_or(cli.addr);
    println!("login example listening on http://{addr}");
    let app = app::app(MemoryStore::new(), !cli.insecure_cookie);
    // The peer address feeds the devices page's address column.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
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
            eprintln!("example-login: {error}");
            ExitCode::FAILURE
        }
    }
}
