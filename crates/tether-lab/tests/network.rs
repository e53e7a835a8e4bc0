//! `--rtt` and `--repeat` on a short real run: the round trip is paid on every hop, a kill
//! stays invisible over the slow network, and repeated runs report medians with their spread.

mod common;

use std::time::Duration;

use tether_lab::{Network, Quiet, Scenario, Strategy, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_pays_the_round_trip_and_a_kill_stays_invisible() {
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let rtt = Duration::from_millis(2);
    let mut config = common::short(
        Scenario::Kill,
        &[
            Strategy::Sticky,
            Strategy::ReplicatedBackup,
            Strategy::Redis,
        ],
    );
    config.network = Network::new(rtt, Duration::from_micros(500));
    let report = run(&config, &Quiet, stop).await.unwrap();
    assert_eq!(report.network, config.network);
    assert!(report.network_late_us.is_some(), "{report:?}");
    let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
    assert_eq!(json["network"]["rtt_ms"], 2.0);
    assert!(report.table().contains("network: round trip 2ms"));

    let median =
        |s: Strategy| common::get(&report, s).map(|r| Duration::from_secs_f64(r.p50_ms / 1000.0));
    // Balancer to node: one round trip. The memory store adds none.
    let sticky = median(Strategy::Sticky).unwrap();
    assert!(sticky >= rtt, "sticky p50 {sticky:?}");
    // A replicated write goes from its node to the session's holders and back, unless the
    // node holds it; a Redis request pays a round trip per command (a load, then a save).
    let backup = median(Strategy::ReplicatedBackup).unwrap();
    assert!(backup >= rtt * 2, "replicated-backup p50 {backup:?}");
    if let Some(redis) = median(Strategy::Redis) {
        assert!(redis >= rtt * 3, "redis p50 {redis:?}");
    }
    // Nothing lost, nothing counted twice, no error, as on loopback.
    for r in report.strategies.iter().filter(|r| r.skipped.is_none()) {
        if r.strategy == Strategy::Sticky {
            continue;
        }
        let seen = (r.sessions_lost, r.updates_lost, r.wrong_values, r.errors);
        assert_eq!(seen, (0, 0, 0, 0), "{r:?}");
    }
}

/// `--repeat`, `--rtt` and a scenario together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_runs_report_medians_and_their_spread() {
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let mut config = common::short(
        Scenario::Restart,
        &[Strategy::MemoryRoundrobin, Strategy::ReplicatedBackup],
    );
    config.repeat = 3;
    config.network = Network::new(Duration::from_millis(1), Duration::ZERO);
    let report = run(&config, &Quiet, stop).await.unwrap();
    assert_eq!(report.repeat, 3);
    let replicated = &report.strategies[1];
    assert_eq!(replicated.runs, 3);
    assert!(
        replicated.events.iter().any(|e| e.kind == "restart"),
        "{replicated:?}"
    );
    for figure in ["sessions_lost", "updates_lost", "wrong_values", "errors"] {
        assert_eq!(
            replicated.spread[figure].max, 0.0,
            "{figure}: {replicated:?}"
        );
    }
    let r = &report.strategies[0];
    assert_eq!(r.runs, 3);
    let rps = r.spread["rps"];
    assert!(rps.min <= r.rps && r.rps <= rps.max, "{r:?}");
    let lost = r.spread["sessions_lost"];
    assert!(
        lost.max > 0.0,
        "round robin over memory loses sessions in every run: {r:?}"
    );
    let table = report.table();
    assert!(table.contains("spread over 3 runs"), "{table}");
    assert!(table.contains("median of 3 runs"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
    assert!(
        json["strategies"][0]["spread"]["errors"]["max"].is_number(),
        "{json}"
    );
}
