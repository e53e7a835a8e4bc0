//! Running the strategies one after another on the same simulated load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_conformance::RedisServer;
use tokio::sync::watch;

use crate::Error;
use crate::config::{Kill, LabConfig};
use crate::network::Delays;
use crate::repeat;
use crate::report::{Event, Report, StrategyReport};
use crate::scenario::{Scenario, Timing};
use crate::strategy::{Deployment, Strategy};
use crate::users::{BUCKET, Load, Tally, spawn_users};

/// How long past the end of the load a fault under way may take to complete.
const FAULT_OVERTIME: Duration = Duration::from_secs(10);

/// Progress shown while a strategy runs; the binary draws a bar, tests nothing.
pub trait Progress: Send + Sync {
    /// A strategy starts; it lasts `total`.
    fn start(&self, strategy: Strategy, total: Duration);
    /// Time passed and the latest throughput.
    fn tick(&self, elapsed: Duration, rps: f64);
    /// The strategy finished.
    fn finish(&self);
}

/// No progress display.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: Strategy, _: Duration) {}
    fn tick(&self, _: Duration, _: f64) {}
    fn finish(&self) {}
}

/// Runs every configured strategy and reports. Stops early, returning what it has, when
/// `stop` turns true (Ctrl-C). Every server it started is stopped before it returns.
///
/// # Errors
///
/// When a strategy's servers cannot be started, or a killed one started again. A Redis that
/// cannot be had (no `redis-server` on PATH) skips the `redis` strategy instead.
pub async fn run(
    config: &LabConfig,
    progress: &dyn Progress,
    mut stop: watch::Receiver<bool>,
) -> Result<Report, Error> {
    let mut reports = Vec::new();
    let mut redis: Option<RedisServer> = None;
    let delays = Delays::start(config.network)
        .map_err(Error::Timer)?
        .map(Arc::new);
    for &strategy in &config.strategies {
        if *stop.borrow() {
            break;
        }
        let url = if strategy == Strategy::Redis {
            match redis_url(config, &mut redis) {
                Ok(url) => Some(url),
                Err(reason) => {
                    reports.push(StrategyReport::skipped(strategy, reason));
                    continue;
                }
            }
        } else {
            None
        };
        let mut runs = Vec::with_capacity(config.repeat);
        for _ in 0..config.repeat.max(1) {
            if *stop.borrow() && !runs.is_empty() {
                break;
            }
            let deployed = Deployed {
                redis_url: url.as_deref(),
                delays: delays.as_ref(),
            };
            runs.push(run_strategy(config, strategy, deployed, progress, &mut stop).await?);
        }
        reports.extend(repeat::combine(runs));
    }
    drop(redis);
    let lateness = delays.as_ref().and_then(|d| d.mean_lateness());
    Ok(Report::new(config, reports, lateness))
}

/// The Redis to use: the configured URL, or a private `redis-server`.
fn redis_url(config: &LabConfig, redis: &mut Option<RedisServer>) -> Result<String, String> {
    if let Some(url) = &config.redis_url {
        return Ok(url.clone());
    }
    if redis.is_none() {
        let server = RedisServer::start().map_err(|e| format!("skipped: {e}"))?;
        if let Some(pid) = server.pid() {
            eprintln!("lab: started redis-server (pid {pid}) on {}", server.url());
        }
        *redis = Some(server);
    }
    redis
        .as_ref()
        .map(RedisServer::url)
        .ok_or_else(|| "no redis".to_owned())
}

/// What a strategy's deployment is given: the Redis to use, the network's delays.
#[derive(Clone, Copy)]
struct Deployed<'a> {
    redis_url: Option<&'a str>,
    delays: Option<&'a Arc<Delays>>,
}

async fn run_strategy(
    config: &LabConfig,
    strategy: Strategy,
    deployed: Deployed<'_>,
    progress: &dyn Progress,
    stop: &mut watch::Receiver<bool>,
) -> Result<StrategyReport, Error> {
    let mut deployment = Deployment::start(
        strategy,
        config.nodes,
        config.scale_up,
        deployed.redis_url,
        tether_sessions::DEFAULT_IDLE_TIMEOUT,
        deployed.delays,
    )
    .await?;
    let total = config.warmup + config.measure;
    let start = Instant::now();
    let deadline = start + total;
    let tally = Arc::new(Tally::new(
        start,
        config.warmup,
        total,
        deployment.nodes.len(),
    ));
    let load = Load {
        users: config.users,
        think: config.think,
        deadline,
        mixed: false,
        churn: None,
    };
    let mut users = spawn_users(load, &deployment.front, &tally, stop);

    progress.start(strategy, total);
    let bytes_before_measure = deployment.replication_bytes();
    let mut events = Vec::new();
    // The faults run beside the progress display. A fault under way at the deadline is
    // completed (a node paused or being started again), within a bound; Ctrl-C ends both.
    let faults = async {
        let bound = deadline + FAULT_OVERTIME;
        tokio::select! {
            done = faults(&mut deployment, config, start, &mut events) => done,
            () = tokio::time::sleep_until(bound.into()) => Ok(()),
        }
    };
    let ticks = tick(&tally, progress, start, total);
    let mut stopped = stop.clone();
    tokio::select! {
        (done, ()) = async { tokio::join!(faults, ticks) } => done?,
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    while users.join_next().await.is_some() {}
    progress.finish();

    let operator = deployment.operator_view();
    let bytes = match (deployment.replication_bytes(), bytes_before_measure) {
        (Some(after), Some(_)) => Some(after),
        _ => None,
    };
    let report = StrategyReport::measured(
        strategy,
        &tally,
        config.warmup,
        config.measure,
        operator,
        bytes,
        events,
    );
    drop(deployment);
    Ok(report)
}

/// Shows progress once a timeline bucket until `total` has passed.
async fn tick(tally: &Tally, progress: &dyn Progress, start: Instant, total: Duration) {
    let mut tick = tokio::time::interval(BUCKET);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= total {
            return;
        }
        let timeline = tally.timeline();
        let bucket = (elapsed.as_millis() / BUCKET.as_millis()) as usize;
        progress.tick(
            elapsed,
            bucket
                .checked_sub(1)
                .and_then(|b| timeline.get(b))
                .copied()
                .unwrap_or(0.0),
        );
    }
}

/// What happens to the servers, in order: the scale-up node started a quarter of the way
/// through, then the scenario: halfway for `kill`, `restart` and `pause`; `rolling` stops the
/// first node once a share of the measured time has passed and each next one a share later
/// (for 3 nodes at a quarter, a half and three quarters).
async fn faults(
    deployment: &mut Deployment,
    config: &LabConfig,
    start: Instant,
    events: &mut Vec<Event>,
) -> Result<(), Error> {
    let at = |offset: Duration| tokio::time::sleep_until((start + offset).into());
    if config.scale_up {
        at(config.warmup + config.measure / 4).await;
        let began = start.elapsed();
        deployment.restart(config.nodes).await?;
        events.push(Event::new(
            "scale-up",
            config.nodes,
            began,
            start.elapsed() - began,
        ));
    }
    let running = deployment.nodes.iter().filter(|n| n.is_running()).count();
    let step = config.measure / u32::try_from(running + 1).unwrap_or(u32::MAX);
    let timing = Timing {
        start,
        down_for: config.restart_after,
        step,
        pause: config.pause,
        until: Some(start + config.warmup + config.measure),
    };
    match config.scenario {
        Scenario::Rolling => at(config.warmup + step).await,
        _ => at(config.warmup + config.measure / 2).await,
    }
    if config.kill == Kill::None {
        return Ok(());
    }
    let Some(victim) = victim(deployment, config) else {
        return Ok(());
    };
    config
        .scenario
        .play(deployment, victim, timing, events)
        .await
}

/// The node to kill, if any: the configured one, or the busiest running one.
fn victim(deployment: &Deployment, config: &LabConfig) -> Option<usize> {
    match config.kill {
        Kill::None => None,
        Kill::Node(i) => (i < deployment.nodes.len()).then_some(i),
        Kill::Busiest => deployment
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_running())
            .max_by_key(|(_, n)| n.metrics.requests())
            .map(|(i, _)| i),
    }
}
