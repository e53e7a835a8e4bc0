//! The gRPC counter server: `Increment` counts the calls of a session whose id travels in the
//! `x-session-id` metadata; sessions are kept in memory.
//!
//! Run with `cargo run -p example-grpc` (listens on 127.0.0.1:50051, or `--addr HOST:PORT`),
//! then call it with `cargo run -p example-grpc --bin client`.

use std::net::SocketAddr;

use tether_memory::MemoryStore;

fn listen_addr() -> Result<SocketAddr, String> {
    let usage = "usage: example-grpc [--addr HOST:PORT]";
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:50051".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "-h" | "--help" => return Err(usage.into()),
            other => return Err(format!("unknown argument {other:?}; {usage}")),
        }
    }
    addr.parse().map_err(|e| format!("--addr {addr:?}: {e}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "gRPC counter listening on http://{}",
        listener.local_addr()?
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    example_grpc::serve(
        listener,
        example_grpc::sessions(MemoryStore::new()),
        shutdown,
    )
    .await?;
    Ok(())
}
