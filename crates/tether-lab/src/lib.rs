//! The tether strategy lab: the three known answers to sessions on many servers (shared store,
//! replication, sticky routing), side by side on the same simulated users, with a server killed,
//! restarted, redeployed or paused (see [`Scenario`]), and what each lost.
//!
//! `cargo run --release -p tether-lab -- run` runs every strategy on embedded defaults (Redis is
//! used when `redis-server` is on PATH or `--redis-url` is given, and is reported as skipped
//! otherwise) and prints a table; `--json` and `--html report.html` write the same for machines
//! and browsers.

mod chart;
mod config;
mod error;
mod front;
mod network;
mod node;
mod operator;
mod relay;
mod repeat;
mod report;
mod run;
mod scenario;
mod soak;
mod strategy;
mod timer;
mod users;

pub use config::{Kill, LabConfig, ParseKillError};
pub use error::Error;
pub use network::Network;
pub use operator::OperatorView;
pub use repeat::Spread;
pub use report::{Event, Report, Series, StrategyReport, WINDOW_AFTER, WINDOW_BEFORE};
pub use run::{Progress, Quiet, run};
pub use scenario::{PAUSE, ParseScenarioError, RESTART_AFTER, Scenario};
pub use soak::{ParseSoakStoreError, SoakConfig, SoakReport, SoakStore, soak};
pub use strategy::{ParseStrategyError, Strategy};
