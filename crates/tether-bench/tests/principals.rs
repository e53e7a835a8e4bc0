//! `tether-bench principals` end to end on a redis-server it starts: the round trips it reports
//! for standalone Redis are the ones the store is built to make.

use std::process::Command;

#[test]
fn standalone_redis_binds_lists_and_revokes_in_one_round_trip_each() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args([
            "principals",
            "--topologies",
            "standalone",
            "--listed",
            "20",
            "--revoked",
            "50",
            "--runs",
            "1",
        ])
        .output()
        .expect("tether-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row: Vec<&str> = stdout
        .lines()
        .find(|line| line.starts_with("standalone"))
        .unwrap_or_else(|| panic!("no standalone row in {stdout}"))
        .split_whitespace()
        .collect();
    // topology, write, login, create bound, list trips, list ms, revoke trips, revoke ms
    assert_eq!(row.len(), 8, "{row:?}");
    assert_eq!(
        [row[1], row[2], row[3], row[4], row[6]],
        ["1", "1", "1", "1", "1"],
        "one round trip for each: {stdout}"
    );
}
