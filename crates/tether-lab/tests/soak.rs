//! A few seconds of soak: the figures add up, and Redis restarted with its append-only file
//! loses nothing.

use std::time::Duration;

use tether_lab::{Scenario, SoakConfig, SoakStore, soak};

fn short(store: SoakStore) -> SoakConfig {
    let mut config = SoakConfig::new(store);
    config.duration = Duration::from_secs(4);
    config.users = 10;
    config.churn = 20;
    config.fault_every = Duration::from_millis(1500);
    config.downtime = Duration::from_millis(300);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_soak_counts_every_request_and_loses_nothing() {
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let report = soak(&short(SoakStore::Memory), stop).await.unwrap();
    assert!(report.requests > 100, "{report:?}");
    assert_eq!(report.ok, report.requests, "{report:?}");
    assert!(
        report.operator.total_requests() >= report.ok,
        "every answer went through a node's session layer, and its counter: {report:?}"
    );
    assert!(report.operator.store_errors.is_empty(), "{report:?}");
    assert_eq!(report.faults, 0);
    assert_eq!(
        (
            report.sessions_lost,
            report.updates_lost,
            report.wrong_values
        ),
        (0, 0, 0)
    );
    if cfg!(target_os = "linux") {
        assert!(report.peak_rss_kib.is_some_and(|kib| kib > 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarts_answer_503_and_lose_no_session() {
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let report = soak(&short(SoakStore::Redis), stop).await.unwrap();
    assert!(report.faults >= 1, "{report:?}");
    assert!(report.ok > 100, "{report:?}");
    assert_eq!(report.other_errors, 0, "{report:?}");
    assert_eq!(report.sessions_lost, 0, "{report:?}");
    assert_eq!(
        report.ok + report.unavailable + report.unanswered,
        report.requests
    );
    // The operator sees the cause of the 503s: failed store calls, or requests past their
    // deadline while the store hung.
    if report.unavailable > 0 {
        let late = report.operator.requests.get("late").copied().unwrap_or(0);
        assert!(
            !report.operator.store_errors.is_empty() || late > 0,
            "{report:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_soak_under_rolling_restarts_loses_no_session() {
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let mut config = short(SoakStore::Replicated);
    config.scenario = Scenario::Rolling;
    let report = soak(&config, stop).await.unwrap();
    assert_eq!(report.scenario, Scenario::Rolling);
    assert!(report.faults >= 1, "{report:?}");
    assert!(report.ok > 100, "{report:?}");
    assert_eq!(report.sessions_lost, 0, "{report:?}");
    assert_eq!(
        report.ok + report.unavailable + report.unanswered + report.other_errors,
        report.requests
    );
    assert!(report.to_string().starts_with("replicated, rolling: "));
}
