//! `soak`: long mixed load over each store while its server is killed and restarted.

use std::time::Duration;

use tether_core::BoxError;
use tether_lab::{Scenario, SoakConfig, SoakStore};

/// Soaks each store in turn under `scenario`; Ctrl-C ends the current one early and reports
/// what it has.
pub(crate) async fn run(
    stores: &[SoakStore],
    scenario: Scenario,
    minutes: f64,
    fault_every: u64,
    users: usize,
    json: bool,
) -> Result<(), BoxError> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let mut reports = Vec::new();
    for &store in stores {
        let mut config = SoakConfig::new(store);
        config.duration = Duration::from_secs_f64(minutes * 60.0);
        config.fault_every = Duration::from_secs(fault_every);
        config.users = users;
        config.scenario = scenario;
        eprintln!("soak: {store}, {scenario}, for {minutes} min");
        let report = tether_lab::soak(&config, stop.clone()).await?;
        if !json {
            print!("{report}");
        }
        reports.push(report);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}
