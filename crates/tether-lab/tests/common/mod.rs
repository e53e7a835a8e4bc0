//! What the lab tests share: a short run, and the zeros a scenario must show.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tether_lab::{LabConfig, Report, Scenario, Strategy, StrategyReport};

/// The strategies that must make a fault invisible: replication (with and without sticky
/// routing) and a shared Redis.
pub const INVISIBLE: [Strategy; 4] = [
    Strategy::StickyReplicated,
    Strategy::ReplicatedAlltoall,
    Strategy::ReplicatedBackup,
    Strategy::Redis,
];

/// A 2.5 s run (0.5 s warm-up, 2 s measured) of 20 users.
pub fn short(scenario: Scenario, strategies: &[Strategy]) -> LabConfig {
    let mut config = LabConfig::default();
    config.users = 20;
    config.warmup = Duration::from_millis(500);
    config.measure = Duration::from_secs(2);
    config.think = Duration::from_millis(10);
    config.scenario = scenario;
    config.strategies = strategies.to_vec();
    config
}

/// Which figures must be zero for every strategy of [`INVISIBLE`] (for `pause`, `errors`
/// means the errors of requests served by the live nodes). Where a field is `false`, the
/// scenario does not show that zero, and its definition says why.
#[derive(Clone, Copy, Debug)]
pub struct Zeros {
    pub sessions_lost: bool,
    pub updates_lost: bool,
    pub wrong_values: bool,
    pub errors: bool,
}

/// The report of `strategy`; `None` when it was skipped (only Redis may be: no
/// `redis-server` on PATH).
pub fn get(report: &Report, strategy: Strategy) -> Option<&StrategyReport> {
    let r = report
        .strategies
        .iter()
        .find(|r| r.strategy == strategy)
        .unwrap_or_else(|| panic!("{strategy} did not run"));
    if r.skipped.is_some() {
        assert_eq!(
            strategy,
            Strategy::Redis,
            "only redis may be skipped: {r:?}"
        );
        return None;
    }
    Some(r)
}

/// Asserts the zeros for every strategy of [`INVISIBLE`] in `report`, and that each served
/// requests and went through the scenario's events (`kinds`).
pub fn assert_invisible(report: &Report, zeros: Zeros, kinds: &[&str]) {
    for strategy in INVISIBLE {
        let Some(r) = get(report, strategy) else {
            continue;
        };
        eprintln!(
            "{} {strategy}: errors {} (503 {}, unanswered {}, by node {:?}, paused {:?}, live {:?}), wrong {}, sessions lost {}, updates lost {}, p99 {:.1} ms, max {:.1} ms, event p99 {:?} ms, event max {:?} ms",
            report.scenario,
            r.errors,
            r.errors_unavailable,
            r.errors_unanswered,
            r.errors_by_node,
            r.paused_node_errors,
            r.live_node_errors,
            r.wrong_values,
            r.sessions_lost,
            r.updates_lost,
            r.p99_ms,
            r.max_ms,
            r.event_p99_ms,
            r.event_max_ms,
        );
        assert!(r.requests > 0, "{r:?}");
        for kind in kinds {
            assert!(
                r.events.iter().any(|e| e.kind == *kind),
                "{strategy}: no {kind} event: {:?}",
                r.events
            );
        }
        // Every event saw answered requests around it.
        assert!(r.events.iter().all(|e| e.window_max_ms.is_some()), "{r:?}");
        if zeros.sessions_lost {
            assert_eq!(r.sessions_lost, 0, "{strategy}: {r:?}");
        }
        if zeros.updates_lost {
            assert_eq!(r.updates_lost, 0, "{strategy}: {r:?}");
        }
        if zeros.wrong_values {
            assert_eq!(r.wrong_values, 0, "{strategy}: {r:?}");
        }
        if zeros.errors {
            // Under pause: the errors of requests a live node served. Requests the balancer
            // answered itself without trying a node are the balancer's, and are printed above.
            let paused = r
                .events
                .iter()
                .find(|e| e.kind == "pause")
                .and_then(|e| e.node.strip_prefix("node-")?.parse::<usize>().ok());
            let errors = match paused {
                Some(paused) => r
                    .errors_by_node
                    .iter()
                    .enumerate()
                    .filter(|(node, _)| *node != paused)
                    .map(|(_, errors)| *errors)
                    .sum(),
                None => r.errors,
            };
            assert_eq!(errors, 0, "{strategy}: {r:?}");
        }
    }
}
