//! `tether-bench pinned` end to end: each stack served by its own pinned process, driven by wrk.

use std::process::Command;

#[derive(serde::Deserialize, Debug)]
struct Report {
    stack: String,
    workload: String,
    median_requests_per_second: f64,
    median_server_cpu_us_per_request: f64,
    rounds: Vec<Round>,
}

#[derive(serde::Deserialize, Debug)]
struct Round {
    requests: u64,
    errors: u64,
    requests_per_second: f64,
    server_cpu_us_per_request: f64,
    server_user_us_per_request: f64,
    server_busy: f64,
}

#[test]
fn each_stack_is_measured_in_every_round_with_its_server_cpu_time() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args([
            "pinned",
            "--stacks",
            "none,tether-memory",
            "--workload",
            "mixed",
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--rounds",
            "2",
            "--connections",
            "4",
            "--json",
        ])
        .output()
        .expect("tether-bench runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<Report> = serde_json::from_slice(&output.stdout).expect("one JSON array");
    let names: Vec<&str> = reports.iter().map(|r| r.stack.as_str()).collect();
    assert_eq!(names, ["none", "tether-memory"]);
    for report in &reports {
        assert_eq!(report.workload, "mixed");
        assert_eq!(report.rounds.len(), 2, "{report:?}");
        assert!(report.median_requests_per_second > 0.0, "{report:?}");
        assert!(report.median_server_cpu_us_per_request > 0.0, "{report:?}");
        for round in &report.rounds {
            // Every session request of the mixed workload was answered 2xx.
            assert_eq!(round.errors, 0, "{report:?}");
            assert!(round.requests > 0 && round.requests_per_second > 0.0);
            // The server did work, and one thread cannot be busier than one core (plus the
            // rounding of clock ticks).
            assert!(round.server_cpu_us_per_request >= round.server_user_us_per_request);
            assert!(
                round.server_busy > 0.0 && round.server_busy < 1.2,
                "{round:?}"
            );
        }
    }
}

#[test]
fn a_missing_wrk_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args([
            "pinned",
            "--stacks",
            "none",
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--rounds",
            "1",
            "--wrk",
            "/nonexistent/wrk",
        ])
        .output()
        .expect("tether-bench runs");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("/nonexistent/wrk") && message.contains("apt-get install wrk"),
        "{message}"
    );
}
