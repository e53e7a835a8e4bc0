//! `tether-bench`: side-by-side load benchmarks, all stacks in one run on one machine.
//!
//! ```text
//! tether-bench throughput --stacks none,tether-memory,tower-sessions-memory \
//!     --workload read --seconds 5 --connections 16 --repeat 3
//! tether-bench race --store memory --writers 8 --rounds 200
//! ```
//!
//! The server (axum 0.8, the same handlers for every stack) and the HTTP/1.1 keep-alive load
//! generator run in this process on loopback. See `docs/benchmarks.md` for method and figures.

mod load;
mod proxy;
mod redis_env;
mod replicated;
mod stacks;

use std::time::Duration;

use clap::{Parser, Subcommand};
use load::{Client, Sample, Workload};
use redis_env::RedisEnv;
use stacks::Stack;

use tether_core::BoxError;

#[derive(Parser, Debug)]
#[command(version, about = "Side-by-side session middleware benchmarks")]
struct Cli {
    /// Redis for the Redis stacks; by default the bench starts its own redis-server on a free
    /// loopback port (redis-server must be on PATH).
    #[arg(long, global = true)]
    redis_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Requests per second and latency of each stack under one workload.
    Throughput {
        #[command(flatten)]
        what: StacksAndWorkload,
        /// Measured seconds per stack and repetition.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Unmeasured warm-up seconds before each measurement.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Rounds over all stacks, interleaved; the median of each figure is reported.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Per-request cost of each stack without any network: requests go straight into the axum
    /// router on one thread. Isolates the middleware from loopback and scheduling noise.
    Overhead {
        #[command(flatten)]
        what: StacksAndWorkload,
        /// Requests per stack.
        #[arg(long, default_value_t = 200_000)]
        requests: u32,
    },
    /// Redis commands each request sends (round trips), and those its scripts run, recorded with
    /// MONITOR over a fixed number of sequential requests on one session.
    Commands {
        #[command(flatten)]
        what: StacksAndWorkload,
        /// Requests per stack.
        #[arg(long, default_value_t = 1_000)]
        requests: u32,
    },
    /// Replication traffic per write (messages and bytes) by mode and cluster size.
    Traffic {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "3,5,8")]
        nodes: Vec<usize>,
        /// Modes: all-to-all, backup-1, backup-2, ...
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "all-to-all,backup-1,backup-2"
        )]
        modes: Vec<tether_replicated::Mode>,
        /// Writes per measurement.
        #[arg(long, default_value_t = 1_000)]
        writes: u32,
    },
    /// Requests/s of tether-replicated by mode and cluster size, each user's requests spread
    /// over all nodes; tether-memory on one node as the upper bound.
    Cluster {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "3,5,8")]
        nodes: Vec<usize>,
        /// Modes: all-to-all, backup-1, backup-2, ...
        #[arg(long, value_delimiter = ',', default_value = "all-to-all,backup-1")]
        modes: Vec<tether_replicated::Mode>,
        /// read, write or mixed.
        #[arg(long, value_enum, default_value = "mixed")]
        workload: Workload,
        /// Measured seconds per run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Unmeasured warm-up seconds before each run.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Concurrent users.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Runs per configuration; the median is reported.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// tether-proxy against HAProxy (cookie insert, round robin, nbthread 1) on the same
    /// backends: each proxy pinned to core 0, this process to core 1.
    Proxy {
        /// The tether-proxy binary (build it with `cargo build --release -p tether-proxy`).
        #[arg(long, default_value = "target/release/tether-proxy")]
        proxy_bin: std::path::PathBuf,
        /// Backends behind each proxy.
        #[arg(long, default_value_t = 4)]
        backends: usize,
        /// Measured seconds per run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Unmeasured warm-up seconds before each run.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Rounds, interleaved; the median is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Concurrent writers on one session, each bumping its own key: how many updates survive.
    Race {
        /// memory (tether-memory), redis (tether-redis), replicated (3 nodes, each writer on
        /// its own node), tower-sessions-memory or tower-sessions-redis.
        #[arg(long, default_value = "memory")]
        store: String,
        /// Concurrent writers, each on its own connection.
        #[arg(long, default_value_t = 8)]
        writers: u32,
        /// Increments per writer.
        #[arg(long, default_value_t = 200)]
        rounds: u32,
    },
    /// Long mixed load (four reads per write, sessions churning) over each store while Redis
    /// or a replicated node is killed and restarted at intervals: requests, errors by kind,
    /// sessions and updates lost, memory high-water mark.
    Soak {
        /// Minutes per store (fractions allowed).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Stores, one after another: memory, redis, replicated.
        #[arg(long, value_delimiter = ',', default_value = "memory,redis,replicated")]
        stores: Vec<tether_lab::SoakStore>,
        /// Seconds between faults.
        #[arg(long, default_value_t = 60)]
        fault_every: u64,
        /// Simulated users.
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Print one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Which stacks to measure under which workload.
#[derive(clap::Args, Debug)]
struct StacksAndWorkload {
    /// Comma-separated stacks: none, tether-memory, tower-sessions-memory, tether-redis,
    /// tower-sessions-redis.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,tether-memory,tower-sessions-memory"
    )]
    stacks: Vec<Stack>,
    /// read, write or mixed (four reads, then one write).
    #[arg(long, value_enum, default_value = "read")]
    workload: Workload,
}

#[derive(Debug, serde::Serialize)]
struct Row {
    stack: String,
    workload: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Proxy { .. }) {
        // Before the runtime starts its threads, so they inherit the affinity.
        proxy::pin_self(1)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let redis_url = cli.redis_url;
    // Started only when a Redis stack runs; stopped when this function returns.
    let redis_for = |stacks: &[Stack]| -> Result<Option<RedisEnv>, BoxError> {
        if stacks.iter().any(|s| s.uses_redis()) {
            RedisEnv::new(redis_url.clone()).map(Some)
        } else {
            Ok(None)
        }
    };
    match cli.command {
        Command::Throughput {
            what: StacksAndWorkload { stacks, workload },
            seconds,
            warmup,
            connections,
            repeat,
            json,
        } => {
            let redis = redis_for(&stacks)?;
            let plan = Plan::new(seconds, warmup, connections, repeat);
            throughput(&stacks, workload, &plan, redis.as_ref(), json).await
        }
        Command::Overhead {
            what: StacksAndWorkload { stacks, workload },
            requests,
        } => {
            let redis = redis_for(&stacks)?;
            overhead(&stacks, workload, requests, redis.as_ref()).await
        }
        Command::Commands {
            what: StacksAndWorkload { stacks, workload },
            requests,
        } => {
            let redis = RedisEnv::new(redis_url.clone())?;
            commands(&stacks, workload, requests, &redis).await
        }
        Command::Traffic {
            nodes,
            modes,
            writes,
        } => replicated::traffic(&nodes, &modes, writes.max(1)).await,
        Command::Cluster {
            nodes,
            modes,
            workload,
            seconds,
            warmup,
            connections,
            repeat,
        } => {
            let plan = Plan::new(seconds, warmup, connections, repeat);
            replicated::throughput(&nodes, &modes, workload, &plan).await
        }
        Command::Proxy {
            proxy_bin,
            backends,
            seconds,
            warmup,
            connections,
            repeat,
        } => {
            let plan = Plan::new(seconds, warmup, connections, repeat);
            proxy::compare(&proxy_bin, backends.max(1), &plan).await
        }
        Command::Race {
            store,
            writers,
            rounds,
        } if store == "replicated" => replicated::race(writers, rounds).await,
        Command::Race {
            store,
            writers,
            rounds,
        } => {
            let stack = match store.as_str() {
                "memory" => Stack::TetherMemory,
                "redis" => Stack::TetherRedis,
                other => other.parse()?,
            };
            let redis = redis_for(&[stack])?;
            race(stack, writers, rounds, redis.as_ref()).await
        }
        Command::Soak {
            minutes,
            stores,
            fault_every,
            users,
            json,
        } => soak(&stores, minutes, fault_every, users, json).await,
    }
}

/// Soaks each store in turn; Ctrl-C ends the current one early and reports what it has.
async fn soak(
    stores: &[tether_lab::SoakStore],
    minutes: f64,
    fault_every: u64,
    users: usize,
    json: bool,
) -> Result<(), BoxError> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let mut reports = Vec::new();
    for &store in stores {
        let mut config = tether_lab::SoakConfig::new(store);
        config.duration = Duration::from_secs_f64(minutes.clamp(0.1, 24.0 * 60.0) * 60.0);
        config.fault_every = Duration::from_secs(fault_every.max(5));
        config.users = users.max(1);
        eprintln!("soak: {} for {minutes} min", store.name());
        let report = tether_lab::soak(&config, stop.clone()).await?;
        if !json {
            print!("{report}");
        }
        reports.push(report);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

/// How long and how hard a throughput run drives each stack.
pub(crate) struct Plan {
    pub(crate) measure: Duration,
    pub(crate) warmup: Duration,
    pub(crate) connections: usize,
    pub(crate) repeat: usize,
}

impl Plan {
    /// From the command line's figures: at least one measured second and one round.
    fn new(seconds: u64, warmup: u64, connections: usize, repeat: usize) -> Self {
        Self {
            measure: Duration::from_secs(seconds.max(1)),
            warmup: Duration::from_secs(warmup),
            connections,
            repeat: repeat.max(1),
        }
    }
}

/// Serves `stack` on a fresh app; a Redis stack starts from an empty database.
async fn serve(
    stack: Stack,
    redis: Option<&RedisEnv>,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), BoxError> {
    if let (true, Some(redis)) = (stack.uses_redis(), redis) {
        redis.flush().await?;
    }
    stack.serve(redis).await
}

async fn throughput(
    stacks: &[Stack],
    workload: Workload,
    plan: &Plan,
    redis: Option<&RedisEnv>,
    json: bool,
) -> Result<(), BoxError> {
    let repeat = plan.repeat;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); stacks.len()];
    for round in 0..repeat {
        for (i, stack) in stacks.iter().enumerate() {
            let (addr, server) = serve(*stack, redis).await?;
            let sample = load::run(
                &[addr],
                workload,
                plan.connections,
                plan.warmup,
                plan.measure,
            )
            .await;
            server.abort();
            let sample = sample?;
            if !json {
                eprintln!(
                    "round {}/{repeat} {:<22} {:>10.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
                    round + 1,
                    stack.name(),
                    sample.rps,
                    ms(sample.p50),
                    ms(sample.p99),
                    sample.errors,
                );
            }
            if sample.errors > 0 {
                return Err(format!("{stack}: {} requests failed", sample.errors).into());
            }
            samples[i].push(sample);
        }
    }
    let rows: Vec<Row> = stacks
        .iter()
        .zip(&samples)
        .map(|(stack, runs)| Row {
            stack: stack.name().to_owned(),
            workload: format!("{workload:?}").to_lowercase(),
            rps: median(runs.iter().map(|s| s.rps)),
            p50_ms: median(runs.iter().map(|s| ms(s.p50))),
            p99_ms: median(runs.iter().map(|s| ms(s.p99))),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        print_table(&rows, plan);
    }
    Ok(())
}

fn print_table(rows: &[Row], plan: &Plan) {
    let rps_of = |name: &str| rows.iter().find(|r| r.stack == name).map(|r| r.rps);
    let baseline = rps_of("none");
    // Each tether stack is compared with tower-sessions on the same store.
    let peer = |stack: &str| {
        stack
            .strip_prefix("tether-")
            .and_then(|store| rps_of(&format!("tower-sessions-{store}")))
            .or_else(|| {
                stack
                    .starts_with("tower-sessions-")
                    .then_some(1.0)
                    .and(rps_of(stack))
            })
    };
    let ratio =
        |rps: f64, base: Option<f64>| base.map_or("-".to_owned(), |b| format!("{:.2}x", rps / b));
    println!(
        "median of {} run(s), {}s each, {} connections, workload {}",
        plan.repeat,
        plan.measure.as_secs(),
        plan.connections,
        rows.first().map_or("", |r| r.workload.as_str())
    );
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>8} {:>16}",
        "stack", "req/s", "p50 ms", "p99 ms", "vs none", "vs tower-sessions"
    );
    for row in rows {
        println!(
            "{:<22} {:>10.0} {:>9.3} {:>9.3} {:>8} {:>16}",
            row.stack,
            row.rps,
            row.p50_ms,
            row.p99_ms,
            ratio(row.rps, baseline),
            ratio(row.rps, peer(&row.stack))
        );
    }
}

async fn overhead(
    stacks: &[Stack],
    workload: Workload,
    requests: u32,
    redis: Option<&RedisEnv>,
) -> Result<(), BoxError> {
    println!("{:<22} {:>12} {:>10}", "stack", "ns/request", "vs none");
    let mut baseline = None;
    for stack in stacks {
        if let (true, Some(redis)) = (stack.uses_redis(), redis) {
            redis.flush().await?;
        }
        let nanos = load::in_process(stack.router(redis).await?, workload, requests).await?;
        let base = *baseline.get_or_insert(if *stack == Stack::None {
            nanos
        } else {
            f64::NAN
        });
        println!(
            "{:<22} {:>12.0} {:>9.2}x",
            stack.name(),
            nanos,
            nanos / base
        );
    }
    Ok(())
}

async fn commands(
    stacks: &[Stack],
    workload: Workload,
    requests: u32,
    redis: &RedisEnv,
) -> Result<(), BoxError> {
    println!("{requests} sequential {workload:?} requests on one session");
    println!(
        "{:<22} {:>14}  {:<40} run by its scripts, per request",
        "stack", "commands/req", "sent by the app, per request"
    );
    for stack in stacks.iter().filter(|s| s.uses_redis()) {
        redis.flush().await?;
        let router = stack.router(Some(redis)).await?;
        // The session is created before recording starts.
        let session = load::in_process_session(&router).await?;
        let monitor = redis.monitor()?;
        load::in_process_requests(&router, workload, requests, session.as_ref()).await?;
        let counts = monitor.finish(redis).await?;
        let per_request = |table: &std::collections::BTreeMap<String, u64>| {
            table
                .iter()
                .map(|(name, n)| format!("{name} {:.2}", *n as f64 / f64::from(requests)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{:<22} {:>14.2}  {:<40} {}",
            stack.name(),
            counts.client_total() as f64 / f64::from(requests),
            per_request(&counts.from_clients),
            per_request(&counts.from_scripts),
        );
    }
    Ok(())
}

async fn race(
    stack: Stack,
    writers: u32,
    rounds: u32,
    redis: Option<&RedisEnv>,
) -> Result<(), BoxError> {
    if stack == Stack::None {
        return Err("the none stack has no session to race on".into());
    }
    let (addr, server) = serve(stack, redis).await?;
    let result = race_on(&[addr], writers, rounds, stack.name()).await;
    server.abort();
    result
}

/// Writers share one session, each bumping its own key `rounds` times; writer `i` sends its
/// requests to `addrs[i % len]`. Prints `lost <n>/<total>` last.
pub(crate) async fn race_on(
    addrs: &[std::net::SocketAddr],
    writers: u32,
    rounds: u32,
    label: &str,
) -> Result<(), BoxError> {
    let first_addr = *addrs.first().ok_or("no server")?;
    let mut first = Client::connect(first_addr).await?;
    first.get("/write").await?;
    let cookie = first.cookie().ok_or("the server set no session cookie")?;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let cookie = cookie.clone();
        let addr = addrs[writer as usize % addrs.len()];
        tasks.spawn(async move {
            let mut client = Client::connect(addr).await?.with_cookie(Some(cookie));
            let path = format!("/bump/{writer}");
            for _ in 0..rounds {
                let (status, body) = client.get(&path).await?;
                if status != 200 {
                    return Err(format!("{path}: {status} {body:?}").into());
                }
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let (_, body) = first.get(&format!("/sum/{writers}")).await?;
    let seen: serde_json::Value = serde_json::from_slice(&body)?;
    let seen = seen["count"].as_u64().ok_or("no count in /sum answer")?;
    let total = u64::from(writers) * u64::from(rounds);
    println!("stack {label}: {writers} writers x {rounds} rounds on one session");
    println!("lost {}/{total}", total.saturating_sub(seen));
    Ok(())
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
