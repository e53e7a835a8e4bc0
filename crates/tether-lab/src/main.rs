//! `tether-lab run`: the strategies side by side, a server killed, what each lost.

mod cli;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use indicatif::{ProgressBar, ProgressStyle};
use tether_lab::{Progress, Strategy, run};

use crate::cli::{Cli, Command, HtmlFile};

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

#[tokio::main]
async fn main() -> ExitCode {
    let Command::Run(args) = Cli::parse().command;
    // Bad arguments and an unwritable --html path end here, before anything starts.
    let plan = args.plan().unwrap_or_else(|e| e.exit());

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
    let report = match run(&plan.config, &Bar(bar.clone()), stop_rx.clone()).await {
        Ok(report) => report,
        Err(e) => {
            bar.finish_and_clear();
            eprintln!("tether-lab: {}", tether_core::error_chain(&e));
            if let Some(html) = plan.html.filter(|html| html.created) {
                let _ = std::fs::remove_file(html.path);
            }
            return ExitCode::FAILURE;
        }
    };
    bar.finish_and_clear();
    if plan.json {
        match report.json() {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("tether-lab: {}", tether_core::error_chain(&e)),
        }
    } else {
        print!("{}", report.table());
    }
    if let Some(HtmlFile { path, mut file, .. }) = plan.html {
        let written = file
            .set_len(0)
            .and_then(|()| file.write_all(report.html().as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "tether-lab: writing {}: {}",
                path.display(),
                tether_core::error_chain(&e)
            );
            return ExitCode::FAILURE;
        }
        eprintln!("tether-lab: wrote {}", path.display());
    }
    if *stop_rx.borrow() {
        return ExitCode::from(130);
    }
    ExitCode::SUCCESS
}
