//! `tether-bench instructions` end to end: each stack served under callgrind, its JSON report.

use std::process::Command;

#[derive(serde::Deserialize, Debug)]
struct Cost {
    stack: String,
    workload: String,
    instructions_per_request: u64,
}

#[test]
fn instructions_per_request_are_reported_for_each_stack() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args([
            "instructions",
            "--stacks",
            "none,tether-memory",
            "--workload",
            "read",
            "--requests",
            "100",
            "--json",
        ])
        .output()
        .expect("tether-bench runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let costs: Vec<Cost> = serde_json::from_slice(&output.stdout).expect("one JSON array");
    let names: Vec<&str> = costs.iter().map(|c| c.stack.as_str()).collect();
    assert_eq!(names, ["none", "tether-memory"]);
    assert!(costs.iter().all(|c| c.workload == "read"));
    let (none, tether) = (
        costs[0].instructions_per_request,
        costs[1].instructions_per_request,
    );
    // An axum request costs thousands of instructions; a session read adds to it.
    assert!(none > 1_000, "{costs:?}");
    assert!(tether > none, "{costs:?}");
}

#[test]
fn a_missing_valgrind_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args([
            "instructions",
            "--stacks",
            "none",
            "--valgrind",
            "/nonexistent/valgrind",
        ])
        .output()
        .expect("tether-bench runs");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("/nonexistent/valgrind") && message.contains("apt-get install valgrind"),
        "{message}"
    );
}
