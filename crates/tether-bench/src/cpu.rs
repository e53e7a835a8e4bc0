//! Where a process runs and what it spent: its threads pinned to a core with `taskset`, its CPU
//! time (user and kernel) from `/proc`.

use std::process::Stdio;

use tokio::process::Command;

use tether_core::BoxError;

use crate::error::Doing as _;

/// Moves every thread of process `pid` to `core`; threads it starts later stay there too.
pub(crate) fn pin(pid: u32, core: usize) -> Result<(), BoxError> {
    let at = || format!("pinning process {pid} to core {core}: running taskset (util-linux)");
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .doing(at)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{}: {status}", at()).into())
    }
}

/// CPU time a process has used, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CpuTime {
    pub(crate) user: f64,
    pub(crate) system: f64,
}

impl CpuTime {
    /// Both parts together.
    pub(crate) fn total(self) -> f64 {
        self.user + self.system
    }

    pub(crate) fn minus(self, earlier: Self) -> Self {
        Self {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// The CPU time of process `pid`, every thread included.
pub(crate) fn cpu_time(pid: u32, ticks: f64) -> Result<CpuTime, BoxError> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).doing(|| format!("reading {path}"))?;
    parse_stat(&stat, ticks).ok_or_else(|| format!("{path}: no utime and stime in {stat:?}").into())
}

/// utime and stime, fields 14 and 15 of `/proc/<pid>/stat`, counted after the command name
/// (field 2, in parentheses, which may hold spaces and parentheses itself).
fn parse_stat(stat: &str, ticks: f64) -> Option<CpuTime> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(CpuTime {
        user: user as f64 / ticks,
        system: system as f64 / ticks,
    })
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s times.
pub(crate) async fn clock_ticks() -> Result<f64, BoxError> {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .await
        .doing(|| "running getconf CLK_TCK".into())?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|t| *t > 0.0)
        .ok_or_else(|| format!("getconf CLK_TCK printed {text:?}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_the_command_name() {
        let stat = "4242 (tether (bench) x) S 1 4242 4242 0 -1 4194304 900 0 0 0 250 75 0 0 20 0 2 0 100 0 0";
        assert_eq!(
            parse_stat(stat, 100.0),
            Some(CpuTime {
                user: 2.5,
                system: 0.75
            })
        );
        assert_eq!(parse_stat("4242 (short) S 1 2", 100.0), None);
        assert_eq!(parse_stat("garbage", 100.0), None);
    }
}
