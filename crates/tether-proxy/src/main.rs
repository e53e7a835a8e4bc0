//! The `tether-proxy` binary. See the library docs, or `tether-proxy --help`.

use clap::Parser as _;
use tether_proxy::{Cli, Settings, run, shutdown_signal};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = match Settings::load(Cli::parse(), std::env::var("TETHER_PROXY_KEYS").ok()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("tether-proxy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(settings, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
