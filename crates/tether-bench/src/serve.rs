//! `serve`: one stack as a server of its own, for a load generator in another process (`wrk`,
//! or this bench's `instructions` and `pinned`). It runs until its standard input closes or it gets Ctrl-C,
//! then shuts down gracefully and exits, so a profiler wrapping it writes its results.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdout, Command};

use tether_core::BoxError;

use crate::backends::Backends;
use crate::error::Doing as _;
use crate::stacks::Stack;

/// The line `serve` prints once it accepts connections, followed by the address.
const LISTENING: &str = "listening on ";

/// Serves `stack` at `listen` (port 0: any free port) until stdin closes or Ctrl-C, with
/// `live_sessions` sessions made at its start.
pub(crate) async fn run(
    stack: Stack,
    listen: SocketAddr,
    backends: &Backends,
    live_sessions: u64,
) -> Result<(), BoxError> {
    if stack.records_metrics() {
        install_recorder()?;
    }
    let app = if live_sessions == 0 {
        stack.router(backends).await?
    } else {
        stack.router_with_live_sessions(live_sessions).await?
    };
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

/// `command`, a wrapper program with its own arguments (valgrind, taskset), completed with this
/// program's `serve` of `stack` on a free loopback port, given the addresses of `backends`:
/// stdin and stdout piped (closing stdin stops it), killed when dropped.
pub(crate) fn serve_under(
    mut command: Command,
    stack: Stack,
    backends: &Backends,
    postgres_url: &str,
) -> Result<Command, BoxError> {
    let exe = std::env::current_exe().doing(|| "finding this program's path".into())?;
    command.arg(exe).args(["--postgres-url", postgres_url]);
    if let Some(redis) = backends.redis() {
        command.args(["--redis-url", redis.url()]);
    }
    command
        // Arguments of `serve` may follow.
        .args(["serve", "--stack", stack.name(), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

/// Waits for the address line of `server`, a child running `serve`: its address, and the rest
/// of its output, which must be kept open while it runs.
pub(crate) async fn listening(
    server: &mut Child,
    patience: Duration,
) -> Result<(SocketAddr, BufReader<ChildStdout>), BoxError> {
    let stdout = server.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout);
    let wait = async {
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Err::<SocketAddr, BoxError>("the server exited before listening".into());
            }
            if let Some(addr) = line.trim().strip_prefix(LISTENING) {
                return Ok(addr.parse()?);
            }
        }
    };
    let addr = tokio::time::timeout(patience, wait)
        .await
        .map_err(|_| format!("the server did not listen within {patience:?}"))??;
    Ok((addr, lines))
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
