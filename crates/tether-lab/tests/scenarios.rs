//! A short lab run per scenario: what the replicated strategies and Redis show, as invariants
//! (counts), never timings. A zero not shown is `false` in the scenario's [`Zeros`], with why.

mod common;

use std::time::Duration;

use common::{INVISIBLE, Zeros, assert_invisible, get, short};
use tether_lab::{Quiet, Report, Scenario, Strategy, run};

/// The scenarios load both cores: one at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `restart`: the busiest node killed halfway and started again 0.5 s later.
const RESTART: Zeros = Zeros {
    sessions_lost: true,
    updates_lost: true,
    wrong_values: true,
    errors: true,
};

/// `rolling`: every node stopped gracefully and started again, in turn.
const ROLLING: Zeros = Zeros {
    sessions_lost: true,
    updates_lost: true,
    wrong_values: true,
    errors: true,
};

/// `pause`: the busiest node frozen for 1 s (past the failure timeout: it is declared dead
/// and must rejoin). `errors`: those of requests served by the live nodes.
const PAUSE: Zeros = Zeros {
    sessions_lost: true,
    updates_lost: true,
    // Requests the paused server had begun may complete after their users gave up; the users
    // send them again with the same id (the app is idempotent per id), and the front's
    // deadline keeps the server from applying those it reads only after it resumes.
    wrong_values: true,
    errors: true,
};

async fn lab(config: tether_lab::LabConfig) -> Report {
    let (_stop, stop) = tokio::sync::watch::channel(false);
    run(&config, &Quiet, stop).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loses_nothing() {
    let _alone = ALONE.lock().await;
    let mut config = short(Scenario::Restart, &INVISIBLE);
    config.restart_after = Some(Duration::from_millis(500));
    let report = lab(config).await;
    assert_invisible(&report, RESTART, &["kill", "restart"]);
    // The table says what happened to each strategy's nodes, and what its columns mean.
    let table = report.table();
    for r in &report.strategies {
        let kill = r.events.iter().find(|e| e.kind == "kill").unwrap();
        assert!(
            table.contains(&format!("{} killed at {:.1} s", kill.node, kill.at_s)),
            "{table}"
        );
    }
    assert!(table.contains("started again at"), "{table}");
    assert!(
        table.contains("columns:") && table.contains("updates lost  "),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
    assert!(json["cores"].as_u64().is_some_and(|c| c >= 1), "{json}");
    assert_eq!(json["restart_after_s"], 0.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restarts_every_node_and_sticky_loses_the_sessions_of_each() {
    let _alone = ALONE.lock().await;
    let mut strategies = INVISIBLE.to_vec();
    strategies.push(Strategy::Sticky);
    let report = lab(short(Scenario::Rolling, &strategies)).await;
    assert_invisible(&report, ROLLING, &["stop", "restart"]);
    for strategy in &strategies {
        let Some(r) = get(&report, *strategy) else {
            continue;
        };
        for node in ["node-0", "node-1", "node-2"] {
            for kind in ["stop", "restart"] {
                assert!(
                    r.events.iter().any(|e| e.kind == kind && e.node == node),
                    "{strategy}: {node} had no {kind}: {:?}",
                    r.events
                );
            }
        }
        // A graceful stop finishes the requests in flight: none fails for a memory node.
        if *strategy == Strategy::Sticky {
            // Each restarted node comes back empty: its users start again.
            assert!(r.sessions_lost > 0, "{r:?}");
            assert!(r.sessions_lost <= 3 * 20, "{r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_loses_nothing_and_its_errors_are_counted_apart() {
    let _alone = ALONE.lock().await;
    let mut config = short(Scenario::Pause, &INVISIBLE);
    config.pause = Duration::from_secs(1);
    let report = lab(config).await;
    assert_invisible(&report, PAUSE, &["pause"]);
    let table = report.table();
    assert!(
        table.contains("scenario pause") && table.contains("paused/live"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
    assert_eq!(json["scenario"], "pause");
    assert!(
        json["strategies"][0]["paused_node_errors"].is_u64(),
        "{json}"
    );
    for strategy in INVISIBLE {
        let Some(r) = get(&report, strategy) else {
            continue;
        };
        let (Some(paused), Some(live)) = (r.paused_node_errors, r.live_node_errors) else {
            panic!("{strategy}: pause errors not split: {r:?}");
        };
        assert_eq!(paused + live, r.errors, "{r:?}");
        assert!(r.errors_by_node.iter().sum::<u64>() <= r.errors, "{r:?}");
    }
}
