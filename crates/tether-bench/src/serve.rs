//! `serve`: one stack as a server of its own, for a load generator in another process (`wrk`,
//! or this bench's `instructions`). It runs until its standard input closes or it gets Ctrl-C,
//! then shuts down gracefully and exits, so a profiler wrapping it writes its results.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;

use tether_core::BoxError;

use crate::backends::Backends;
use crate::error::Doing as _;
use crate::stacks::Stack;

/// The line `serve` prints once it accepts connections, followed by the address.
pub(crate) const LISTENING: &str = "listening on ";

/// Serves `stack` at `listen` (port 0: any free port) until stdin closes or Ctrl-C.
pub(crate) async fn run(
    stack: Stack,
    listen: SocketAddr,
    backends: &Backends,
) -> Result<(), BoxError> {
    if stack.records_metrics() {
        install_recorder()?;
    }
    let app = stack.router(backends).await?;
    let listener = TcpListener::bind(listen)
        .await
        .doing(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    println!("{LISTENING}{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await
        .doing(|| format!("serving {stack} at {addr}"))?;
    Ok(())
}

/// Resolves when stdin reaches its end (the parent closed it or exited) or on Ctrl-C.
async fn stopped() {
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 64];
        while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = stdin_closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(feature = "metrics")]
fn install_recorder() -> Result<(), BoxError> {
    // The recorder as an application would install it; nothing scrapes it during a run.
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .doing(|| "installing the Prometheus recorder".to_owned())?;
    Ok(())
}

#[cfg(not(feature = "metrics"))]
fn install_recorder() -> Result<(), BoxError> {
    Err("this stack needs tether-bench built with --features metrics".into())
}
