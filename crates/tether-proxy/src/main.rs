//! The `tether-proxy` binary. See the library docs, or `tether-proxy --help`.

use std::io::IsTerminal as _;

use clap::Parser as _;
use metrics_exporter_prometheus::PrometheusBuilder;
use tether_core::error_chain;
use tether_proxy::{Cli, Environment, Settings, run, shutdown_signal};

fn main() -> std::process::ExitCode {
    // One core (the usual deployment of a proxy pinned with taskset, and HAProxy's nbthread 1)
    // runs best on a single-threaded runtime: no work stealing, no cross-thread wake-ups.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(runtime) => runtime.block_on(run_main()),
        Err(e) => {
            eprintln!("tether-proxy: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_main() -> std::process::ExitCode {
    // Logs go to stderr, coloured only when a person watches it: a file or a journal gets no
    // escape codes.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let settings = match Settings::load(Cli::parse(), Environment::from_process()) {
        Ok(settings) => match PrometheusBuilder::new().install_recorder() {
            Ok(metrics) => settings.with_metrics(metrics),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "no metrics: the Prometheus recorder could not be installed");
                settings
            }
        },
        Err(e) => {
            eprintln!("tether-proxy: {}", error_chain(&e));
            return std::process::ExitCode::from(2);
        }
    };
    match run(settings, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-proxy: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
