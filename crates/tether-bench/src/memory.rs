//! `memory`: what one stored session costs in memory. Each store and session count is measured
//! in a fresh process of its own (`memory-fill`), which reads its resident set size, makes the
//! sessions through the store's API, runs the store's pending maintenance and reads it again:
//! the growth over the count is the cost of a session, the store's tables and the allocator's
//! spare room included, as the operating system sees it.

use std::process::Stdio;

use tokio::process::Command;

use tether_core::BoxError;

use crate::error::Doing as _;
use crate::live_sessions::{self, InMemory};

/// The line `memory-fill` prints: resident bytes before and after.
const GREW: &str = "resident bytes ";

/// One measurement.
struct Measured {
    store: InMemory,
    sessions: u64,
    grown: u64,
}

impl Measured {
    fn per_session(&self) -> f64 {
        self.grown as f64 / self.sessions as f64
    }
}

/// Measures each store at each session count, one fresh process per measurement.
pub(crate) async fn run(
    stores: &[InMemory],
    counts: &[u64],
    written: bool,
    json: bool,
) -> Result<(), BoxError> {
    let exe = std::env::current_exe().doing(|| "finding this program's path".into())?;
    let mut results = Vec::new();
    for &sessions in counts {
        for &store in stores {
            let mut fill = Command::new(&exe);
            fill.args([
                "memory-fill",
                "--store",
                store.name(),
                "--sessions",
                &sessions.to_string(),
            ]);
            if written {
                fill.arg("--written");
            }
            let output = fill
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .doing(|| format!("running memory-fill of {store}"))?;
            if !output.status.success() {
                return Err(format!(
                    "memory-fill of {store} with {sessions} sessions failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )
                .into());
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            let grown = parse_growth(&stdout)
                .ok_or_else(|| format!("memory-fill of {store} printed no growth: {stdout:?}"))?;
            results.push(Measured {
                store,
                sessions,
                grown,
            });
        }
    }
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|m| {
                serde_json::json!({
                    "store": m.store.name(),
                    "sessions": m.sessions,
                    "written": written,
                    "resident_bytes_grown": m.grown,
                    "bytes_per_session": m.per_session().round(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        if written {
            println!("each session written once after its first read");
        }
        println!(
            "{:<24} {:>10} {:>14} {:>18}",
            "store", "sessions", "RSS grew (MiB)", "bytes per session"
        );
        for m in &results {
            println!(
                "{:<24} {:>10} {:>14.1} {:>18.0}",
                m.store.name(),
                m.sessions,
                m.grown as f64 / f64::from(1u32 << 20),
                m.per_session()
            );
        }
    }
    Ok(())
}

/// The child's part: fills a fresh store and prints how much its resident set grew.
pub(crate) async fn fill(store: InMemory, sessions: u64, written: bool) -> Result<(), BoxError> {
    let before = resident_bytes()?;
    let filled = live_sessions::filled(store, sessions, written).await?;
    let after = resident_bytes()?;
    if let Some(held) = filled.held().filter(|&held| held != sessions) {
        return Err(format!("{store} holds {held} sessions of the {sessions} made").into());
    }
    println!("{GREW}{before} {after}");
    Ok(())
}

/// The growth in a `memory-fill` output.
fn parse_growth(output: &str) -> Option<u64> {
    let line = output.lines().find_map(|l| l.strip_prefix(GREW))?;
    let (before, after) = line.split_once(' ')?;
    let before: u64 = before.trim().parse().ok()?;
    let after: u64 = after.trim().parse().ok()?;
    Some(after.saturating_sub(before))
}

/// This process's resident set size (`VmRSS` of `/proc/self/status`), in bytes.
fn resident_bytes() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .doing(|| "reading /proc/self/status".into())?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or("/proc/self/status has no VmRSS line")?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_childs_line() {
        assert_eq!(parse_growth("resident bytes 1000 5096\n"), Some(4096));
        assert_eq!(parse_growth("noise\nresident bytes 10 4\n"), Some(0));
        assert_eq!(parse_growth("resident bytes ten 4\n"), None);
        assert_eq!(parse_growth(""), None);
    }

    #[test]
    fn reads_its_own_resident_set() {
        assert!(resident_bytes().unwrap() > 0);
    }
}
