//! A short lab run asserts what each strategy is known for, not timings.

mod common;

use std::time::Duration;

use common::{Zeros, assert_invisible};
use tether_lab::{Quiet, Scenario, Strategy, run};

/// `kill` (the default): the busiest node killed halfway. Where a field is `false`, the
/// scenario does not show that zero yet for every strategy of [`common::INVISIBLE`].
const KILL: Zeros = Zeros {
    sessions_lost: true,
    updates_lost: true,
    wrong_values: true,
    errors: true,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_strategy_loses_what_it_is_known_to_lose() {
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let report = run(&common::short(Scenario::Kill, &Strategy::ALL), &Quiet, stop)
        .await
        .unwrap();
    let get = |s: Strategy| report.strategies.iter().find(|r| r.strategy == s).unwrap();

    let rr = get(Strategy::MemoryRoundrobin);
    assert!(
        rr.sessions_lost > 0,
        "round robin over memory stores loses sessions: {rr:?}"
    );

    let sticky = get(Strategy::Sticky);
    assert!(sticky.requests > 0);
    // Only the users pinned to the killed node lose their session, once each.
    assert!(sticky.sessions_lost <= 20, "{sticky:?}");
    assert!(sticky.sessions_lost < rr.sessions_lost, "{sticky:?}");

    assert_invisible(&report, KILL, &["kill"]);
    for strategy in [
        Strategy::StickyReplicated,
        Strategy::ReplicatedAlltoall,
        Strategy::ReplicatedBackup,
    ] {
        assert!(get(strategy).bytes_per_write.is_some_and(|b| b > 0.0));
    }

    // The HTML report is one well-formed page with one chart per strategy that ran.
    let html = report.html();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    let ran = report
        .strategies
        .iter()
        .filter(|r| r.skipped.is_none())
        .count();
    // One summary chart, and one per strategy that ran.
    assert_eq!(html.matches("<svg ").count(), ran + 1);
    assert_eq!(html.matches("</svg>").count(), ran + 1);
    assert_eq!(html.matches("class=\"event kill\"").count(), ran);
    assert!(
        !html.contains("http://") || html.contains("xmlns=\"http://www.w3.org/2000/svg\""),
        "no external assets"
    );
    // The nodes' own counters saw at least every answer the users got (theirs include the
    // warm-up), and the table's max node share comes from them.
    for r in report.strategies.iter().filter(|r| r.skipped.is_none()) {
        let operator = &r.operator;
        assert!(operator.total_requests() >= r.requests, "{r:?}");
        assert_eq!(
            operator.requests_by_node.iter().sum::<u64>(),
            operator.total_requests()
        );
        let busiest = operator.requests_by_node.iter().max().copied().unwrap_or(0);
        let share = busiest as f64 / operator.total_requests() as f64;
        assert!((share - r.max_node_share).abs() < 1e-9, "{r:?}");
    }
    assert!(html.contains("What the nodes' metrics counted"));
    let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
    assert_eq!(json["strategies"].as_array().unwrap().len(), 6);
}

/// Ctrl-C in the middle of a run: the lab exits, and the redis-server it started is gone.
#[test]
fn an_interrupted_lab_leaves_nothing_running() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    let mut lab = Command::new(env!("CARGO_BIN_EXE_tether-lab"))
        .args([
            "run",
            "--users",
            "10",
            "--seconds",
            "20",
            "--strategies",
            "redis,memory-roundrobin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(lab.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let Some(pid) = line
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
    else {
        let _ = lab.kill();
        panic!("no redis-server started (is it installed?): {line:?}");
    };
    let redis = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(redis.exists(), "redis-server runs during the lab");
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        Command::new("kill")
            .args(["-INT", &lab.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = lab.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the lab did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "interrupted runs exit with 130");
    // A zombie entry may linger until reaped by init; it must not be running.
    let running = std::fs::read_to_string(redis.join("stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false);
    assert!(!running, "redis-server {pid} outlived the lab");
}
