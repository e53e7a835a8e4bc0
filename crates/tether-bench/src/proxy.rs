//! tether-proxy against HAProxy on the same backends, each proxy pinned to core 0 with
//! `taskset`; this process (load generator and backends) runs on core 1. The proxy's CPU time
//! (from `/proc`) over each run, warm-up included, gives its cost per proxied request and
//! whether it was saturated.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

use tether_core::BoxError;

use crate::cpu::{clock_ticks, cpu_time};
use crate::error::Doing as _;
use crate::load::{self, Sample, Workload};
use crate::net::{bind_loopback, free_addr};
use crate::pinned::SATURATED;
use crate::plan::{Plan, median, ms};

/// A backend that answers with its index and counts what it served.
async fn backend(index: usize, served: Arc<AtomicU64>) -> Result<SocketAddr, BoxError> {
    let (listener, addr) = bind_loopback().await?;
    let answer = move || {
        let served = Arc::clone(&served);
        async move {
            served.fetch_add(1, Ordering::Relaxed);
            format!("backend {index}")
        }
    };
    let app = Router::new()
        .route("/read", get(answer.clone()))
        .route("/write", get(answer));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// A proxy child process, killed on drop.
pub(crate) struct Proxy {
    /// What it is, for error messages.
    name: String,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a proxy may take to listen: valgrind starts programs slowly.
const START_PATIENCE: Duration = Duration::from_secs(60);

pub(crate) async fn wait_listening(addr: SocketAddr, proxy: &mut Proxy) -> Result<(), BoxError> {
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = proxy.child.try_wait()? {
            return Err(format!("{}: exited at start: {status}", proxy.name).into());
        }
        if started.elapsed() > START_PATIENCE {
            return Err(format!(
                "{}: not listening on {addr} after {START_PATIENCE:?}",
                proxy.name
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// What a proxy runs under: pinned to core 0 with taskset, or counted by callgrind into a file.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Under<'a> {
    Taskset,
    Callgrind { valgrind: &'a Path, out: &'a Path },
}

impl Under<'_> {
    /// The command that starts `program` under this.
    fn command(self, program: &Path) -> Command {
        match self {
            Self::Taskset => {
                let mut command = Command::new("taskset");
                command.args(["-c", "0"]).arg(program);
                command
            }
            // Also on one core: the proxy sizes its runtime to the cores it may use.
            Self::Callgrind { valgrind, out } => {
                let mut command = Command::new("taskset");
                command
                    .args(["-c", "0"])
                    .arg(valgrind)
                    .arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", out.display()))
                    .arg(program);
                command
            }
        }
    }
}

pub(crate) fn start_tether(
    under: Under<'_>,
    bin: &Path,
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> Result<Proxy, BoxError> {
    start_tether_with(under, bin, listen, backends, None)
}

/// [`start_tether`], serving TLS with `tls` (certificate and key files) when given.
fn start_tether_with(
    under: Under<'_>,
    bin: &Path,
    listen: SocketAddr,
    backends: &[SocketAddr],
    tls: Option<&TlsFiles>,
) -> Result<Proxy, BoxError> {
    let mut command = under.command(bin);
    if let Some(tls) = tls {
        command
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key);
    }
    command
        .args([
            "--listen",
            &listen.to_string(),
            "--admin",
            &free_addr()?.to_string(),
            "--insecure-cookie",
        ])
        .env("RUST_LOG", "warn")
        .env("TETHER_PROXY_KEYS", "ab".repeat(64));
    for (i, addr) in backends.iter().enumerate() {
        command.args(["--backend", &format!("b{i}=http://{addr}")]);
    }
    let name = format!("{} (on {listen})", bin.display());
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .doing(|| format!("starting {name} under {under:?}"))?;
    Ok(Proxy {
        name,
        child,
        _dir: None,
    })
}

pub(crate) fn start_haproxy(
    under: Under<'_>,
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> Result<Proxy, BoxError> {
    start_haproxy_with(under, listen, backends, None)
}

/// [`start_haproxy`], serving TLS with `tls` (its combined PEM) when given.
fn start_haproxy_with(
    under: Under<'_>,
    listen: SocketAddr,
    backends: &[SocketAddr],
    tls: Option<&TlsFiles>,
) -> Result<Proxy, BoxError> {
    let bind = match tls {
        Some(tls) => format!("{listen} ssl crt {} alpn http/1.1", tls.combined.display()),
        None => listen.to_string(),
    };
    let dir = tempfile::tempdir().doing(|| "creating a directory for haproxy.cfg".to_owned())?;
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("    server b{i} {addr} cookie b{i}\n"))
        .collect();
    let config = format!(
        "global\n    nbthread 1\n    maxconn 4000\n\
         defaults\n    mode http\n    option http-keep-alive\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind {bind}\n    default_backend be\n\
         backend be\n    balance roundrobin\n    cookie SRV insert indirect nocache\n{servers}"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).doing(|| format!("writing {}", path.display()))?;
    let child = under
        .command(Path::new("haproxy"))
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .doing(|| {
            format!("starting haproxy under {under:?} (install it: apt-get install haproxy)")
        })?;
    Ok(Proxy {
        name: format!("haproxy (on {listen})"),
        child,
        _dir: Some(dir),
    })
}

/// Runs both proxies `plan.repeat` times, interleaved, and prints a table.
pub(crate) async fn compare(bin: &Path, backends: usize, plan: &Plan) -> Result<(), BoxError> {
    let counters: Vec<Arc<AtomicU64>> =
        (0..backends).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut addrs = Vec::new();
    for (i, counter) in counters.iter().enumerate() {
        addrs.push(backend(i, Arc::clone(counter)).await?);
    }
    let names = ["tether-proxy", "haproxy"];
    let ticks = clock_ticks().await?;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(), Vec::new()];
    // The proxy's CPU microseconds per request, and its CPU time as a share of the run's.
    let mut costs: Vec<Vec<(f64, f64)>> = vec![Vec::new(), Vec::new()];
    let mut shares: Vec<Vec<u64>> = vec![vec![0; backends], vec![0; backends]];
    for round in 0..plan.repeat {
        for (i, name) in names.iter().enumerate() {
            let listen = free_addr()?;
            let mut proxy = if i == 0 {
                start_tether(Under::Taskset, bin, listen, &addrs)?
            } else {
                start_haproxy(Under::Taskset, listen, &addrs)?
            };
            wait_listening(listen, &mut proxy).await?;
            let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            let pid = proxy.child.id();
            let cpu_before = cpu_time(pid, ticks)?;
            let started = Instant::now();
            let sample = load::run(
                &[listen],
                Workload::Read,
                plan.connections,
                plan.warmup,
                plan.measure,
            )
            .await?;
            let cpu = cpu_time(pid, ticks)?.minus(cpu_before).total();
            let wall = started.elapsed().as_secs_f64();
            let served: u64 = counters
                .iter()
                .zip(&before)
                .map(|(c, b)| c.load(Ordering::Relaxed) - b)
                .sum();
            let cost = (
                cpu * 1e6 / served.max(1) as f64,
                cpu / wall.max(f64::MIN_POSITIVE),
            );
            for (b, counter) in counters.iter().enumerate() {
                if let (Some(share), Some(before)) = (shares[i].get_mut(b), before.get(b)) {
                    *share += counter.load(Ordering::Relaxed) - before;
                }
            }
            drop(proxy);
            eprintln!(
                "round {}/{} {name:<13} {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}  proxy {:.1} us/req, busy {:.0}%",
                round + 1,
                plan.repeat,
                sample.rps,
                ms(sample.p50),
                ms(sample.p99),
                sample.errors,
                cost.0,
                cost.1 * 100.0
            );
            if sample.errors > 0 {
                return Err(format!("{name}: {} requests failed", sample.errors).into());
            }
            samples[i].push(sample);
            costs[i].push(cost);
        }
    }
    println!(
        "{} backends, {} keep-alive connections storing cookies, median of {} run(s) of {}s; proxy on core 0, load and backends on core 1",
        backends,
        plan.connections,
        plan.repeat,
        plan.measure.as_secs()
    );
    println!(
        "{:<13} {:>10} {:>9} {:>9} {:>10} {:>12} {:>6}  per-backend share",
        "proxy", "req/s", "p50 ms", "p99 ms", "vs haproxy", "proxy us/req", "busy"
    );
    let haproxy_rps = median(samples[1].iter().map(|s| s.rps));
    for (i, name) in names.iter().enumerate() {
        let rps = median(samples[i].iter().map(|s| s.rps));
        let total: u64 = shares[i].iter().sum();
        let share: Vec<String> = shares[i]
            .iter()
            .map(|n| format!("{:.0}%", 100.0 * *n as f64 / total.max(1) as f64))
            .collect();
        let busy = costs[i].iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
        println!(
            "{:<13} {:>10.0} {:>9.3} {:>9.3} {:>9.2}x {:>12.1} {:>5.0}%  {}{}",
            name,
            rps,
            median(samples[i].iter().map(|s| ms(s.p50))),
            median(samples[i].iter().map(|s| ms(s.p99))),
            rps / haproxy_rps,
            median(costs[i].iter().map(|c| c.0)),
            busy * 100.0,
            share.join(" "),
            if busy < SATURATED {
                "  (not saturated)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Keep-alive connections the counted requests rotate over, each with its own pin.
const CLIENTS: u64 = 16;

/// Counts each proxy's user-space instructions per proxied request under callgrind: 16
/// keep-alive clients, each pinned by its first answer, a warm-up, then `requests` counted
/// between callgrind's zero and dump, so start-up and shutdown stay out.
pub(crate) async fn instructions(
    bin: &Path,
    backends: usize,
    requests: u64,
    valgrind: &Path,
    callgrind_control: &Path,
) -> Result<(), BoxError> {
    let mut addrs = Vec::new();
    for i in 0..backends {
        addrs.push(backend(i, Arc::new(AtomicU64::new(0))).await?);
    }
    let dir = tempfile::tempdir().doing(|| "creating a directory for callgrind's output".into())?;
    println!(
        "{backends} backends, {requests} requests over {CLIENTS} keep-alive connections storing cookies, under callgrind"
    );
    println!("{:<13} {:>22}", "proxy", "instructions/request");
    for name in ["tether-proxy", "haproxy"] {
        let out = dir.path().join(format!("{name}.callgrind"));
        let under = Under::Callgrind {
            valgrind,
            out: &out,
        };
        let listen = free_addr()?;
        let mut proxy = if name == "tether-proxy" {
            start_tether(under, bin, listen, &addrs)?
        } else {
            start_haproxy(under, listen, &addrs)?
        };
        wait_listening(listen, &mut proxy).await?;
        let pid = proxy.child.id();
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(load::Client::connect(listen).await?);
        }
        let mut send = async |count: u64| {
            for n in 0..count {
                let client = clients
                    .get_mut(usize::try_from(n % CLIENTS).unwrap_or_default())
                    .ok_or("no client")?;
                let (status, _) = client.get("/read").await?;
                if !status.is_success() {
                    return Err(format!("{name} answered {status}").into());
                }
            }
            Ok::<_, BoxError>(())
        };
        send(requests / 10 + CLIENTS).await?;
        crate::instructions::control(callgrind_control, "--zero", pid).await?;
        send(requests).await?;
        crate::instructions::control(callgrind_control, "--dump", pid).await?;
        drop(proxy);
        let total = crate::instructions::total(&out.with_extension("callgrind.1"))?;
        println!("{name:<13} {:>22}", total / requests.max(1));
    }
    Ok(())
}

/// One ECDSA P-256 certificate for `localhost`, made at run time: its chain and key for
/// tether-proxy, both in one file for HAProxy.
struct TlsFiles {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    combined: std::path::PathBuf,
}

impl TlsFiles {
    fn new() -> Result<Self, BoxError> {
        let dir = tempfile::tempdir().doing(|| "creating a directory for certificates".into())?;
        let ca = tether_testkit::TestCa::new("bench CA");
        let (cert, key) = ca.node("localhost");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).doing(|| format!("writing {}", path.display()))?;
            Ok::<_, BoxError>(path)
        };
        Ok(Self {
            cert: write("cert.pem", &cert)?,
            key: write("key.pem", &key)?,
            combined: write("combined.pem", &format!("{cert}{key}"))?,
            _dir: dir,
        })
    }
}

/// Runs both proxies serving TLS (one ECDSA P-256 certificate), driven by `wrk` over
/// keep-alive HTTPS connections pinned to core 1, `plan.repeat` times, interleaved; prints a
/// table of requests per second and each proxy's CPU time per request.
pub(crate) async fn compare_tls(
    bin: &Path,
    backends: usize,
    plan: &Plan,
    wrk: &Path,
) -> Result<(), BoxError> {
    let mut addrs = Vec::new();
    for i in 0..backends {
        addrs.push(backend(i, Arc::new(AtomicU64::new(0))).await?);
    }
    let tls = TlsFiles::new()?;
    let scripts = tempfile::tempdir().doing(|| "creating a directory for wrk's script".into())?;
    let script = scripts.path().join("summary.lua");
    std::fs::write(&script, crate::pinned::WRK_SUMMARY)
        .doing(|| format!("writing {}", script.display()))?;
    let ticks = clock_ticks().await?;
    let names = ["tether-proxy", "haproxy"];
    let mut rounds: Vec<Vec<crate::pinned::Round>> = vec![Vec::new(), Vec::new()];
    for round in 0..plan.repeat {
        for (i, name) in names.iter().enumerate() {
            let listen = free_addr()?;
            let mut proxy = if i == 0 {
                start_tether_with(Under::Taskset, bin, listen, &addrs, Some(&tls))?
            } else {
                start_haproxy_with(Under::Taskset, listen, &addrs, Some(&tls))?
            };
            wait_listening(listen, &mut proxy).await?;
            let pid = proxy.child.id();
            let load = crate::pinned::Wrk {
                program: wrk,
                core: 1,
                connections: plan.connections,
                seconds: plan.measure.as_secs() + plan.warmup.as_secs(),
                script: &script,
            };
            let before = cpu_time(pid, ticks)?;
            let summary = load.run(&format!("https://{listen}/read")).await;
            let cpu = cpu_time(pid, ticks)?.minus(before);
            drop(proxy);
            let summary = summary.doing(|| format!("{name} under wrk"))?;
            let measured = summary.round(cpu);
            eprintln!(
                "round {}/{} {name:<13} {:>8.0} req/s  p99 {:.3} ms  errors {}  proxy {:.1} us/req, busy {:.0}%",
                round + 1,
                plan.repeat,
                measured.requests_per_second,
                measured.p99_us as f64 / 1e3,
                measured.errors,
                measured.server_cpu_us_per_request,
                measured.server_busy * 100.0
            );
            if measured.errors > 0 {
                return Err(format!("{name}: {} requests failed", measured.errors).into());
            }
            if let Some(samples) = rounds.get_mut(i) {
                samples.push(measured);
            }
        }
    }
    println!(
        "TLS (ECDSA P-256, keep-alive), {backends} backends, {} wrk connections, median of {} run(s) of {}s; proxy on core 0, wrk on core 1",
        plan.connections,
        plan.repeat,
        plan.measure.as_secs() + plan.warmup.as_secs()
    );
    println!(
        "{:<13} {:>10} {:>9} {:>10} {:>12} {:>6}",
        "proxy", "req/s", "p99 ms", "vs haproxy", "proxy us/req", "busy"
    );
    let rps = |i: usize| {
        rounds
            .get(i)
            .map_or(0.0, |r| median(r.iter().map(|r| r.requests_per_second)))
    };
    for (i, name) in names.iter().enumerate() {
        let samples = rounds.get(i).map(Vec::as_slice).unwrap_or_default();
        let busy = samples
            .iter()
            .map(|r| r.server_busy)
            .fold(f64::INFINITY, f64::min);
        println!(
            "{name:<13} {:>10.0} {:>9.3} {:>9.2}x {:>12.1} {:>5.0}%{}",
            rps(i),
            median(samples.iter().map(|r| r.p99_us as f64 / 1e3)),
            rps(i) / rps(1).max(f64::MIN_POSITIVE),
            median(samples.iter().map(|r| r.server_cpu_us_per_request)),
            busy * 100.0,
            if busy < SATURATED {
                "  (not saturated)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
