//! `instructions`: user-space instructions per request of each stack, counted by callgrind.
//!
//! Each stack runs as a server of its own (`serve`) under `valgrind --tool=callgrind`. Once its
//! sessions are made and a warm-up has run, `callgrind_control --zero` resets the counts; after
//! the measured requests, `callgrind_control --dump` writes what they cost, and nothing else:
//! start-up, calibration loops of clock libraries, set-up and shutdown stay out. Instruction
//! counts do not depend on the machine's load, so the figure repeats from run to run where
//! timings on a shared machine do not.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use tether_core::BoxError;

use crate::backends::Backends;
use crate::error::Doing as _;
use crate::load::{Client, Workload};
use crate::serve::{listening, serve_under};
use crate::stacks::Stack;

/// Sessions the requests rotate over, each on its own keep-alive connection.
const SESSIONS: u64 = 16;
/// Longest wait for a server under callgrind to start or to finish.
const PATIENCE: Duration = Duration::from_secs(120);

/// What one stack costs.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Cost {
    pub(crate) stack: &'static str,
    pub(crate) workload: &'static str,
    pub(crate) instructions_per_request: u64,
}

/// Where the servers' command line comes from.
pub(crate) struct Servers<'a> {
    pub(crate) backends: &'a Backends,
    pub(crate) postgres_url: &'a str,
    pub(crate) valgrind: &'a Path,
    pub(crate) callgrind_control: &'a Path,
}

/// Measures every stack; prints a table, or one JSON array with `json`.
pub(crate) async fn run(
    stacks: &[Stack],
    workload: Workload,
    requests: u64,
    servers: &Servers<'_>,
    json: bool,
) -> Result<(), BoxError> {
    let dir = tempfile::tempdir().doing(|| "creating a directory for callgrind's output".into())?;
    let mut costs = Vec::new();
    if !json {
        println!(
            "{requests} and {} {workload} requests over {SESSIONS} sessions, under callgrind",
            requests * 2
        );
        println!("{:<26} {:>22}", "stack", "instructions/request");
    }
    for &stack in stacks {
        let short = measure(
            stack,
            workload,
            requests,
            servers,
            &dir.path().join("short"),
        )
        .await?;
        let long = measure(
            stack,
            workload,
            requests * 2,
            servers,
            &dir.path().join("long"),
        )
        .await?;
        let per_request = long.saturating_sub(short) / requests;
        if !json {
            println!("{:<26} {:>22}", stack.name(), per_request);
        }
        costs.push(Cost {
            stack: stack.name(),
            workload: workload.name(),
            instructions_per_request: per_request,
        });
    }
    if json {
        println!("{}", serde_json::to_string(&costs)?);
    }
    Ok(())
}

/// Instructions the server of `stack` spent on `requests` requests, warm-up excluded.
async fn measure(
    stack: Stack,
    workload: Workload,
    requests: u64,
    servers: &Servers<'_>,
    out: &Path,
) -> Result<u64, BoxError> {
    servers.backends.reset_for(stack).await?;
    let mut server = start(stack, servers, out).await?;
    let at = || format!("{stack} under callgrind");
    let (addr, stdout) = listening(&mut server, PATIENCE).await.doing(at)?;
    let pid = server.id().ok_or("the server exited")?;
    let load = async {
        let mut clients = Vec::new();
        for _ in 0..SESSIONS {
            let mut client = Client::connect(addr).await?;
            expect_ok(client.get("/write").await?.0, stack)?;
            clients.push(client);
        }
        let mut send = async |count: u64| {
            for n in 0..count {
                let client = &mut clients[(n % SESSIONS) as usize];
                expect_ok(client.get(workload.path(n)).await?.0, stack)?;
            }
            Ok::<_, BoxError>(())
        };
        send(requests / 10 + SESSIONS).await?;
        control(servers.callgrind_control, "--zero", pid).await?;
        send(requests).await?;
        control(servers.callgrind_control, "--dump", pid).await
    };
    let loaded = tokio::time::timeout(PATIENCE, load).await;
    // Closing stdin stops the server.
    drop(server.stdin.take());
    drop(stdout);
    let status = tokio::time::timeout(PATIENCE, server.wait()).await;
    match (loaded, status) {
        (Ok(Ok(())), Ok(Ok(status))) if status.success() => {
            // callgrind numbers its dumps: the first is `<out>.1`.
            total(&out.with_extension("1")).doing(at)
        }
        (Ok(Err(error)), _) => Err(error).doing(at),
        (Err(_), _) => {
            let _ = server.kill().await;
            Err(format!("{}: the requests took longer than {PATIENCE:?}", at()).into())
        }
        (_, Ok(Ok(status))) => Err(format!("{}: the server exited with {status}", at()).into()),
        (_, Ok(Err(error))) => Err(error).doing(at),
        (_, Err(_)) => {
            let _ = server.kill().await;
            Err(format!("{}: the server did not stop within {PATIENCE:?}", at()).into())
        }
    }
}

/// Sends callgrind's `command` (`--zero`, `--dump`) to the process `pid` and waits until done.
pub(crate) async fn control(program: &Path, command: &str, pid: u32) -> Result<(), BoxError> {
    let at = || format!("{} {command} {pid}", program.display());
    let status = Command::new(program)
        .args([command, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .doing(at)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{}: {status}", at()).into())
    }
}

fn expect_ok(status: hyper::StatusCode, stack: Stack) -> Result<(), BoxError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{stack} answered {status}").into())
    }
}

/// Starts `serve` of `stack` under callgrind, its profile going to `out`.
async fn start(stack: Stack, servers: &Servers<'_>, out: &Path) -> Result<Child, BoxError> {
    let mut valgrind = Command::new(servers.valgrind);
    valgrind
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()));
    let mut command = serve_under(valgrind, stack, servers.backends, servers.postgres_url)?;
    command.stderr(Stdio::null());
    command.spawn().doing(|| {
        format!(
            "starting {} (install valgrind: apt-get install valgrind)",
            servers.valgrind.display()
        )
    })
}

/// The instruction total callgrind wrote to `out` (its `summary:` line).
pub(crate) fn total(out: &Path) -> Result<u64, BoxError> {
    let text = std::fs::read_to_string(out).doing(|| format!("reading {}", out.display()))?;
    summary(&text).ok_or_else(|| format!("no summary line in {}", out.display()).into())
}

fn summary(profile: &str) -> Option<u64> {
    profile
        .lines()
        .find_map(|line| line.strip_prefix("summary:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_the_total() {
        let profile =
            "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 123456\ntotals: 123456\n";
        assert_eq!(summary(profile), Some(123_456));
        assert_eq!(summary("events: Ir\n"), None);
    }
}
