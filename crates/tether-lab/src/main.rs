//! `tether-lab run`: the strategies side by side, a server killed, what each lost.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tether_lab::{Kill, LabConfig, Progress, Strategy, run};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Runs tether's session strategies side by side under load and faults"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the comparison and print a table.
    Run {
        /// App nodes per strategy.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Simulated users per strategy.
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Measured seconds per strategy (after one second of warm-up).
        #[arg(long, default_value_t = 7)]
        seconds: u64,
        /// Pause between one user's requests, ms.
        #[arg(long, default_value_t = 20)]
        think_ms: u64,
        /// Node to kill halfway: busiest, none, or an index.
        #[arg(long, default_value = "busiest")]
        kill: String,
        /// Restart the killed node this many seconds after the kill.
        #[arg(long)]
        restart_after: Option<f64>,
        /// Start one more node a quarter of the way through.
        #[arg(long)]
        scale_up: bool,
        /// Comma-separated strategies (default: all).
        #[arg(long, value_delimiter = ',')]
        strategies: Vec<Strategy>,
        /// Redis for the redis strategy (default: a private redis-server, if on PATH).
        #[arg(long)]
        redis_url: Option<String>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML report with a chart per strategy.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, strategy: Strategy, total: Duration) {
        self.0.reset();
        self.0.set_length(total.as_millis() as u64);
        self.0.set_prefix(strategy.name());
    }

    fn tick(&self, elapsed: Duration, rps: f64) {
        self.0.set_position(elapsed.as_millis() as u64);
        self.0.set_message(format!("{rps:.0} req/s"));
    }

    fn finish(&self) {
        self.0.set_position(self.0.length().unwrap_or(0));
    }
}

fn kill(text: &str) -> Result<Kill, String> {
    match text {
        "busiest" => Ok(Kill::Busiest),
        "none" => Ok(Kill::Nothing),
        index => index
            .trim_start_matches("node-")
            .parse()
            .map(Kill::Node)
            .map_err(|_| format!("--kill {text:?}: expected busiest, none or a node index")),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Command::Run {
        nodes,
        users,
        seconds,
        think_ms,
        kill: victim,
        restart_after,
        scale_up,
        strategies,
        redis_url,
        json,
        html,
    } = Cli::parse().command;
    let mut config = LabConfig::default();
    config.nodes = nodes.max(2);
    config.users = users.max(1);
    config.measure = Duration::from_secs(seconds.max(2));
    config.think = Duration::from_millis(think_ms);
    config.kill = match kill(&victim) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("tether-lab: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    config.restart_after = restart_after
        .filter(|s| *s >= 0.0)
        .map(Duration::from_secs_f64);
    config.scale_up = scale_up;
    if !strategies.is_empty() {
        config.strategies = strategies;
    }
    config.redis_url = redis_url;

    // Ctrl-C stops the run cleanly: every node, cluster and redis-server it started is stopped.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("tether-lab: interrupted, stopping");
            let _ = stop_tx.send(true);
        }
    });
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{prefix:>20} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = match run(&config, &Bar(bar.clone()), stop_rx.clone()).await {
        Ok(report) => report,
        Err(e) => {
            bar.finish_and_clear();
            eprintln!("tether-lab: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    bar.finish_and_clear();
    if json {
        match report.json() {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("tether-lab: {e}"),
        }
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = html {
        if let Err(e) = std::fs::write(&path, report.html()) {
            eprintln!("tether-lab: writing {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
        eprintln!("tether-lab: wrote {}", path.display());
    }
    if *stop_rx.borrow() {
        return std::process::ExitCode::from(130);
    }
    std::process::ExitCode::SUCCESS
}
