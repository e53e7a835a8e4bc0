//! `pinned`: requests per second of each stack with its server alone on one core.
//!
//! Each stack is served by a process of its own (`serve`, one thread), pinned with `taskset` to
//! the server core; `wrk` (one thread, pinned to the load core) drives it over keep-alive
//! connections, rotating over sessions made before the run. The server's own CPU time (user
//! and system, from `/proc/<pid>/stat`) over the measured seconds gives its cost per request,
//! and whether it was saturated: a server busy for less than [`SATURATED`] of the time was
//! waiting for the load generator or the machine, so its requests per second say little about
//! it, and the report says so. Rounds interleave the stacks, so a disturbance of the machine
//! touches every stack alike, and a stack whose rounds spread further than [`STEADY`] from
//! their median is reported as disturbed. A redis-server the bench started for the Redis stacks
//! is pinned to the load core, so the server under test has its core to itself.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hyper::header::HeaderValue;
use tokio::process::{Child, Command};

use tether_core::BoxError;

use crate::backends::Backends;
use crate::cpu::{CpuTime, clock_ticks, cpu_time, pin};
use crate::error::Doing as _;
use crate::load::{Client, Workload};
use crate::plan::median;
use crate::redis_env::RedisEnv;
use crate::serve::{listening, serve_under};
use crate::stacks::Stack;

/// Sessions the requests rotate over.
const SESSIONS: u64 = 64;
/// Share of the measured time the server must have spent on the CPU to count as saturated.
pub(crate) const SATURATED: f64 = 0.95;
/// Largest distance of a round's requests per second from the median, as a share of it, for
/// the figure to count as steady.
pub(crate) const STEADY: f64 = 0.05;
/// Longest wait for a server to start, beyond a run's own seconds for wrk to finish.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where the servers and the load generator run.
pub(crate) struct Setup<'a> {
    pub(crate) backends: &'a Backends,
    pub(crate) postgres_url: &'a str,
    pub(crate) wrk: &'a Path,
    pub(crate) server_core: usize,
    pub(crate) load_core: usize,
    /// Sessions each server makes at its start, beside those the load uses: each stack is
    /// served once per count.
    pub(crate) live_sessions: &'a [u64],
}

/// How long and how hard each round drives each server.
pub(crate) struct Rounds {
    pub(crate) seconds: u64,
    pub(crate) warmup: u64,
    pub(crate) connections: usize,
    pub(crate) rounds: usize,
}

/// What one round of one stack measured.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Round {
    pub(crate) requests: u64,
    /// Connection errors and timeouts, and answers that were not 2xx or 3xx.
    pub(crate) errors: u64,
    pub(crate) requests_per_second: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    /// The server's CPU time (user and system) per request, in microseconds.
    pub(crate) server_cpu_us_per_request: f64,
    /// The user-space part of it.
    pub(crate) server_user_us_per_request: f64,
    /// The server's CPU time as a share of the measured time.
    pub(crate) server_busy: f64,
}

/// All rounds of one stack and the figures drawn from them.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Report {
    pub(crate) stack: &'static str,
    /// Sessions the server held beside those the load used.
    pub(crate) live_sessions: u64,
    pub(crate) workload: &'static str,
    pub(crate) median_requests_per_second: f64,
    /// Largest distance of a round from the median, as a share of the median.
    pub(crate) spread: f64,
    pub(crate) median_server_cpu_us_per_request: f64,
    /// Every round kept the server busy for at least [`SATURATED`] of the time.
    pub(crate) saturated: bool,
    /// Every round is within [`STEADY`] of the median.
    pub(crate) steady: bool,
    pub(crate) rounds: Vec<Round>,
}

impl Report {
    fn new(stack: Stack, live_sessions: u64, workload: Workload, rounds: Vec<Round>) -> Self {
        let rps = median(rounds.iter().map(|r| r.requests_per_second));
        let spread = rounds
            .iter()
            .map(|r| (r.requests_per_second - rps).abs() / rps.max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max);
        Self {
            stack: stack.name(),
            live_sessions,
            workload: workload.name(),
            median_requests_per_second: rps,
            spread,
            median_server_cpu_us_per_request: median(
                rounds.iter().map(|r| r.server_cpu_us_per_request),
            ),
            saturated: rounds.iter().all(|r| r.server_busy >= SATURATED),
            steady: spread <= STEADY,
            rounds,
        }
    }
}

/// One stack's server, pinned, with the script that drives it.
struct Server {
    stack: Stack,
    live_sessions: u64,
    child: Child,
    pid: u32,
    addr: SocketAddr,
    script: PathBuf,
    /// The cookie of the first session made before the run; `None` for the no-session stack.
    first_session: Option<HeaderValue>,
    /// The server's output, open while it runs.
    _stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl Server {
    /// Fails when the first session made before the run is gone: every request would have
    /// measured a read of a missing session.
    async fn sessions_kept(&self) -> Result<(), BoxError> {
        let Some(cookie) = &self.first_session else {
            return Ok(());
        };
        let mut client = Client::connect(self.addr)
            .await?
            .with_cookie(Some(cookie.clone()));
        let (status, body) = client.get("/read").await?;
        let count = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|body| body.get("count").and_then(serde_json::Value::as_u64));
        match count {
            Some(count) if status.is_success() && count >= 1 => Ok(()),
            _ => Err(format!(
                "{}: a session made before the run was gone after it ({status}, {})",
                self.stack,
                String::from_utf8_lossy(&body)
            )
            .into()),
        }
    }
}

/// Measures every stack in interleaved rounds; prints a table, or one JSON array with `json`.
pub(crate) async fn run(
    stacks: &[Stack],
    workload: Workload,
    rounds: &Rounds,
    setup: &Setup<'_>,
    json: bool,
) -> Result<(), BoxError> {
    found(setup.wrk).await?;
    if let Some(pid) = setup.backends.redis().and_then(RedisEnv::pid) {
        // The stores' server shares the load core, off the server under test's core.
        pin(pid, setup.load_core)?;
    }
    let dir = tempfile::tempdir().doing(|| "creating a directory for wrk's scripts".into())?;
    let ticks = clock_ticks().await?;
    // Every store is emptied before the first server starts: emptying one between two starts
    // would take the sessions the earlier server made (they share the Redis and PostgreSQL),
    // and its requests would measure reads of missing sessions.
    for &stack in stacks {
        setup.backends.reset_for(stack).await?;
    }
    let mut servers = Vec::new();
    for &live in setup.live_sessions {
        for &stack in stacks {
            let script = dir.path().join(format!("{stack}-{live}.lua"));
            servers.push(start(stack, live, workload, setup, script).await?);
        }
    }
    for server in &servers {
        if rounds.warmup > 0 {
            drive(server, setup, rounds, rounds.warmup, ticks).await?;
        }
    }
    let mut measured: Vec<Vec<Round>> = vec![Vec::new(); servers.len()];
    for _ in 0..rounds.rounds {
        for (server, samples) in servers.iter().zip(&mut measured) {
            samples.push(drive(server, setup, rounds, rounds.seconds, ticks).await?);
        }
    }
    for server in &servers {
        server.sessions_kept().await?;
    }
    for server in &mut servers {
        // Closing stdin stops the server; kill_on_drop covers one that does not.
        drop(server.child.stdin.take());
        let _ = tokio::time::timeout(PATIENCE, server.child.wait()).await;
    }
    let reports: Vec<Report> = servers
        .iter()
        .zip(measured)
        .map(|(server, rounds)| Report::new(server.stack, server.live_sessions, workload, rounds))
        .collect();
    if json {
        println!("{}", serde_json::to_string(&reports)?);
    } else {
        print!("{}", table(&reports, workload, rounds, setup));
    }
    Ok(())
}

/// Fails, naming the program and how to install it, when `wrk` cannot be started.
async fn found(wrk: &Path) -> Result<(), BoxError> {
    // Any exit status will do: wrk has no flag that only prints its version and succeeds.
    Command::new(wrk)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .doing(|| {
            format!(
                "running {} (install it: apt-get install wrk)",
                wrk.display()
            )
        })?;
    Ok(())
}

/// Starts `serve` of `stack`, holding `live_sessions` more, on the server core and makes its
/// sessions.
async fn start(
    stack: Stack,
    live_sessions: u64,
    workload: Workload,
    setup: &Setup<'_>,
    script: PathBuf,
) -> Result<Server, BoxError> {
    let mut taskset = Command::new("taskset");
    taskset.args(["-c", &setup.server_core.to_string()]);
    let mut command = serve_under(taskset, stack, setup.backends, setup.postgres_url)?;
    command.args(["--live-sessions", &live_sessions.to_string()]);
    command.stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .doing(|| format!("starting {stack} with taskset (util-linux)"))?;
    let at = || format!("{stack} pinned to core {}", setup.server_core);
    // taskset execs the server: the pid is the server's.
    let pid = child.id().ok_or("the server exited")?;
    let (addr, stdout) = listening(&mut child, PATIENCE).await.doing(at)?;
    let mut cookies = Vec::new();
    let mut first_session = None;
    for _ in 0..SESSIONS {
        let mut client = Client::connect(addr).await?;
        let (status, _) = client.get("/write").await?;
        match client.cookie() {
            Some(cookie) if status.is_success() => {
                cookies.push(cookie.to_str()?.to_owned());
                first_session.get_or_insert(cookie);
            }
            _ if stack == Stack::None => cookies.push(String::new()),
            _ => return Err(format!("{stack}: /write answered {status} without a cookie").into()),
        }
    }
    std::fs::write(&script, wrk_script(workload, &cookies))
        .doing(|| format!("writing {}", script.display()))?;
    Ok(Server {
        stack,
        live_sessions,
        child,
        pid,
        addr,
        script,
        first_session,
        _stdout: stdout,
    })
}

/// One wrk run of `seconds` against `server`, with the server's CPU time over it.
async fn drive(
    server: &Server,
    setup: &Setup<'_>,
    rounds: &Rounds,
    seconds: u64,
    ticks: f64,
) -> Result<Round, BoxError> {
    let at = || format!("{} under wrk", server.stack);
    let before = cpu_time(server.pid, ticks).doing(at)?;
    let load = Wrk {
        program: setup.wrk,
        core: setup.load_core,
        connections: rounds.connections,
        seconds,
        script: &server.script,
    };
    let summary = load
        .run(&format!("http://{}/", server.addr))
        .await
        .doing(at)?;
    let after = cpu_time(server.pid, ticks).doing(at)?;
    Ok(summary.round(after.minus(before)))
}

/// One run of wrk (one thread) pinned to a core, with a script whose `done` prints a
/// [`WrkSummary`].
pub(crate) struct Wrk<'a> {
    pub(crate) program: &'a Path,
    pub(crate) core: usize,
    pub(crate) connections: usize,
    pub(crate) seconds: u64,
    pub(crate) script: &'a Path,
}

impl Wrk<'_> {
    /// Runs it against `url` and reads its summary.
    pub(crate) async fn run(&self, url: &str) -> Result<WrkSummary, BoxError> {
        let run = Command::new("taskset")
            .args(["-c", &self.core.to_string()])
            .arg(self.program)
            .args(["-t1", &format!("-c{}", self.connections)])
            .args([&format!("-d{}s", self.seconds), "--timeout", "5s", "-s"])
            .arg(self.script)
            .arg(url)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(self.seconds) + PATIENCE, run)
            .await
            .map_err(|_| "wrk did not finish".to_owned())?
            .doing(|| format!("running {} with taskset", self.program.display()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("wrk {}: {}", output.status, stderr.trim()).into());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .rev()
            .find(|line| line.starts_with('{'))
            .ok_or_else(|| format!("no summary line from wrk in {stdout:?}"))
            .and_then(|line| serde_json::from_str(line).map_err(|e| format!("wrk's summary: {e}")))
            .map_err(Into::into)
    }
}

/// What the `done` function of the script prints.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct WrkSummary {
    requests: u64,
    duration_us: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
}

impl WrkSummary {
    pub(crate) fn round(&self, cpu: CpuTime) -> Round {
        let seconds = self.duration_us as f64 / 1e6;
        let requests = self.requests.max(1) as f64;
        Round {
            requests: self.requests,
            errors: self.errors,
            requests_per_second: self.requests as f64 / seconds.max(f64::MIN_POSITIVE),
            p50_us: self.p50_us,
            p99_us: self.p99_us,
            server_cpu_us_per_request: cpu.total() * 1e6 / requests,
            server_user_us_per_request: cpu.user * 1e6 / requests,
            server_busy: cpu.total() / seconds.max(f64::MIN_POSITIVE),
        }
    }
}

/// The wrk script: every request is prepared once, each with its session's cookie; `done`
/// prints one JSON line.
fn wrk_script(workload: Workload, cookies: &[String]) -> String {
    let mut script = String::from("local raw = {\n");
    // Five requests per session cover the mixed workload's four reads and one write.
    for n in 0..SESSIONS * 5 {
        let cookie = cookies
            .get((n % SESSIONS) as usize)
            .map_or("", String::as_str);
        let _ = writeln!(script, "  {{ \"{}\", \"{cookie}\" }},", workload.path(n));
    }
    script.push_str(
        r#"}
local requests = {}
local next = 0

init = function(args)
  for i, r in ipairs(raw) do
    local headers = {}
    if r[2] ~= "" then headers["Cookie"] = r[2] end
    requests[i] = wrk.format("GET", r[1], headers)
  end
end

request = function()
  next = next % #requests + 1
  return requests[next]
end
"#,
    );
    script.push_str(WRK_SUMMARY);
    script
}

/// The `done` function of a wrk script: one JSON line, a [`WrkSummary`].
pub(crate) const WRK_SUMMARY: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// The report as a table, ratios against the first stack.
fn table(reports: &[Report], workload: Workload, rounds: &Rounds, setup: &Setup<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{workload}: {} rounds of {} s, {} connections over {SESSIONS} sessions; server on core {}, wrk on core {}",
        rounds.rounds, rounds.seconds, rounds.connections, setup.server_core, setup.load_core
    );
    if setup.live_sessions.iter().any(|&live| live > 0) {
        let _ = writeln!(
            out,
            "+N: the server also held N live sessions the load did not use"
        );
    }
    let _ = writeln!(
        out,
        "{:<26} {:>10} {:>8} {:>9} {:>13} {:>12} {:>8} {:>6}  notes",
        "stack", "req/s", "spread", "vs first", "server us/req", "user us/req", "p99 ms", "busy"
    );
    let first = reports
        .first()
        .map_or(1.0, |r| r.median_requests_per_second);
    for report in reports {
        let user = median(report.rounds.iter().map(|r| r.server_user_us_per_request));
        let p99 = median(report.rounds.iter().map(|r| r.p99_us as f64)) / 1e3;
        let busy = report
            .rounds
            .iter()
            .map(|r| r.server_busy)
            .fold(f64::INFINITY, f64::min);
        let errors: u64 = report.rounds.iter().map(|r| r.errors).sum();
        let mut notes = Vec::new();
        if !report.saturated {
            notes.push("not saturated".to_owned());
        }
        if !report.steady {
            notes.push("disturbed".to_owned());
        }
        if errors > 0 {
            notes.push(format!("{errors} errors"));
        }
        let label = match report.live_sessions {
            0 => report.stack.to_owned(),
            live => format!("{} +{live}", report.stack),
        };
        let _ = writeln!(
            out,
            "{:<26} {:>10.0} {:>7.1}% {:>8.2}x {:>13.1} {:>12.1} {:>8.2} {:>5.0}%  {}",
            label,
            report.median_requests_per_second,
            report.spread * 100.0,
            report.median_requests_per_second / first.max(f64::MIN_POSITIVE),
            report.median_server_cpu_us_per_request,
            user,
            p99,
            busy * 100.0,
            notes.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_rotates_over_every_session_and_the_workload() {
        let cookies: Vec<String> = (0..SESSIONS).map(|i| format!("sid=s{i}")).collect();
        let script = wrk_script(Workload::Mixed, &cookies);
        assert_eq!(script.matches("\"/write\"").count() as u64, SESSIONS);
        assert_eq!(script.matches("\"/read\"").count() as u64, SESSIONS * 4);
        for cookie in &cookies {
            assert!(script.contains(&format!("\"{cookie}\"")), "{cookie}");
        }
    }

    #[test]
    fn rounds_off_the_median_mark_the_report_disturbed() {
        let round = |rps: f64, busy: f64| Round {
            requests: 1000,
            errors: 0,
            requests_per_second: rps,
            p50_us: 100,
            p99_us: 900,
            server_cpu_us_per_request: 20.0,
            server_user_us_per_request: 5.0,
            server_busy: busy,
        };
        let steady = Report::new(
            Stack::None,
            0,
            Workload::Read,
            vec![round(100.0, 0.99), round(103.0, 0.99), round(98.0, 0.97)],
        );
        assert!(steady.steady && steady.saturated, "{steady:?}");
        assert_eq!(steady.median_requests_per_second, 100.0);
        let disturbed = Report::new(
            Stack::None,
            1_000,
            Workload::Read,
            vec![round(100.0, 0.99), round(120.0, 0.99), round(99.0, 0.5)],
        );
        assert!(!disturbed.steady && !disturbed.saturated, "{disturbed:?}");
        assert!((disturbed.spread - 0.2).abs() < 1e-9);
    }
}
