//! Long runs: mixed load on one store for minutes, with the store's server restarted at
//! intervals, counting what went wrong and how much memory it took.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tether_conformance::RedisServer;
use tokio::sync::watch;

use crate::Error;
use crate::operator::OperatorView;
use crate::scenario::{Scenario, Timing};
use crate::strategy::{Deployment, Strategy, names};
use crate::users::{Load, Tally, spawn_users};

/// In a rolling restart, the time from one node's stop to the next one's, at least: a deploy
/// waits for the node it restarted to pass health checks, and the front balancer takes a node
/// that refused a connection for down for half a second.
const ROLLING_STEP: Duration = Duration::from_secs(1);

/// The store a soak runs over. Reads, prints and serialises as its [`name`](Self::name).
///
/// ```
/// use tether_lab::SoakStore;
///
/// assert_eq!("redis".parse::<SoakStore>().unwrap(), SoakStore::Redis);
/// assert_eq!(SoakStore::Replicated.to_string(), "replicated");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoakStore {
    /// `tether-memory` on each node behind cookie-sticky routing. No fault: a memory store
    /// cannot outlive its process.
    Memory,
    /// `tether-redis` on a private `redis-server` (append-only file, fsync always), killed and
    /// restarted at intervals.
    Redis,
    /// `tether-replicated` (primary and one backup), one node killed and restarted at
    /// intervals, in turn.
    Replicated,
}

impl SoakStore {
    /// Every store, in the order soaks run them by default.
    pub const ALL: [Self; 3] = [Self::Memory, Self::Redis, Self::Replicated];

    /// The store's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Replicated => "replicated",
        }
    }

    fn strategy(self) -> Strategy {
        match self {
            Self::Memory => Strategy::Sticky,
            Self::Redis => Strategy::Redis,
            Self::Replicated => Strategy::ReplicatedBackup,
        }
    }
}

impl std::fmt::Display for SoakStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SoakStore {
    type Err = ParseSoakStoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|store| store.name() == s)
            .ok_or_else(|| ParseSoakStoreError {
                input: s.to_owned(),
            })
    }
}

impl serde::Serialize for SoakStore {
    /// As its [`name`](Self::name).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A [`SoakStore`] that could not be read: not one of [`SoakStore::ALL`]'s names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown store '{input}': expected {}", names(&SoakStore::ALL.map(SoakStore::name)))]
pub struct ParseSoakStoreError {
    input: String,
}

/// How a soak goes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SoakConfig {
    /// The store under load.
    pub store: SoakStore,
    /// How long the load runs.
    pub duration: Duration,
    /// App nodes.
    pub nodes: usize,
    /// Simulated users; each sends four reads per write.
    pub users: usize,
    /// Pause between one user's requests.
    pub think: Duration,
    /// A user starts a new session after this many requests, abandoning the old one to expire.
    pub churn: u64,
    /// Sessions' idle timeout: abandoned sessions must go away after it.
    pub idle_timeout: Duration,
    /// The fault injected every [`fault_every`](Self::fault_every) (none for the memory store:
    /// it cannot outlive its process). `kill` and `restart` are the same here, since a soak
    /// starts again what it killed: the server (`redis-server` for Redis, one app node and its
    /// replication node in turn for the replicated store) is killed and started again after
    /// [`downtime`](Self::downtime). `rolling` stops every app node gracefully and starts it
    /// again, one after the other, a second apart; `pause` freezes one node in turn for
    /// [`PAUSE`](crate::PAUSE).
    pub scenario: Scenario,
    /// Time between faults.
    pub fault_every: Duration,
    /// How long a killed server stays down.
    pub downtime: Duration,
}

impl SoakConfig {
    /// Defaults for `store`: ten minutes, 3 nodes, 50 users, a fault every minute.
    pub fn new(store: SoakStore) -> Self {
        Self {
            store,
            duration: Duration::from_secs(600),
            nodes: 3,
            users: 50,
            think: Duration::from_millis(10),
            churn: 500,
            idle_timeout: Duration::from_secs(30),
            scenario: Scenario::Restart,
            fault_every: Duration::from_secs(60),
            downtime: Duration::from_secs(2),
        }
    }
}

/// What a soak saw.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct SoakReport {
    /// The store.
    pub store: SoakStore,
    /// The fault injected at intervals.
    pub scenario: Scenario,
    /// Seconds the load ran.
    pub seconds: f64,
    /// Requests sent.
    pub requests: u64,
    /// Answered with the expected value.
    pub ok: u64,
    /// Answered 503: the store could not be reached.
    pub unavailable: u64,
    /// No answer within the lab's 2 s bound, or no node reachable.
    pub unanswered: u64,
    /// Any other failed answer.
    pub other_errors: u64,
    /// Sessions that came back empty after having a value.
    pub sessions_lost: u64,
    /// Increments that vanished.
    pub updates_lost: u64,
    /// Counters that jumped ahead of what the user was told.
    pub wrong_values: u64,
    /// Faults injected (a server killed and restarted, a rolling restart of every node, a
    /// pause).
    pub faults: u64,
    /// Peak resident memory of this process (app nodes, stores, users) during this soak, in KiB:
    /// the larger of the kernel's high-water mark and a once-a-second sample.
    pub peak_rss_kib: Option<u64>,
    /// Resident memory of this process, sampled once a minute, in KiB.
    pub rss_kib_by_minute: Vec<u64>,
    /// Peak resident memory of `redis-server` sampled once a second, in KiB (Redis only).
    pub redis_peak_rss_kib: Option<u64>,
    /// What the nodes' metrics counted: requests by outcome, store errors by operation and
    /// kind (the cause of the 503s above, as an operator sees it).
    pub operator: OperatorView,
}

/// Runs one soak; stops early, returning what it has, when `stop` turns true.
///
/// # Errors
///
/// When the servers cannot be started, or a killed one cannot be started again.
pub async fn soak(
    config: &SoakConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<SoakReport, Error> {
    let mut redis = match config.store {
        SoakStore::Redis => Some(
            RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
                .map_err(Error::RedisServer)?,
        ),
        _ => None,
    };
    let url = redis.as_ref().map(RedisServer::url);
    let mut deployment = Deployment::start(
        config.store.strategy(),
        config.nodes,
        false,
        url.as_deref(),
        config.idle_timeout,
        None,
    )
    .await?;

    reset_peak_rss();
    let start = Instant::now();
    let deadline = start + config.duration;
    let tally = Arc::new(Tally::counting_only(start, deployment.nodes.len()));
    let load = Load {
        users: config.users,
        think: config.think,
        deadline,
        mixed: true,
        churn: Some(config.churn.max(1)),
    };
    let mut users = spawn_users(load, &deployment.front, &tally, &stop);

    let mut faults = 0u64;
    let mut next_fault = start + config.fault_every;
    let mut rss_by_minute = Vec::new();
    let mut next_sample = start;
    let mut redis_peak = None::<u64>;
    let mut self_peak = None::<u64>;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        let now = Instant::now();
        if now >= deadline || *stop.borrow() {
            break;
        }
        if let Some(server) = &redis {
            let rss = server
                .pid()
                .and_then(|pid| status_kib(&pid.to_string(), "VmRSS"));
            redis_peak = redis_peak.max(rss);
        }
        let rss = status_kib("self", "VmRSS");
        self_peak = self_peak.max(rss);
        if now >= next_sample {
            rss_by_minute.extend(rss);
            next_sample += Duration::from_secs(60);
        }
        if config.store != SoakStore::Memory && now >= next_fault {
            let victim = (faults as usize) % config.nodes.max(1);
            let timing = Timing {
                start,
                down_for: Some(config.downtime),
                step: ROLLING_STEP,
                pause: crate::PAUSE,
                until: None,
            };
            fault(
                config.scenario,
                &mut deployment,
                redis.as_mut(),
                victim,
                timing,
            )
            .await?;
            faults += 1;
            next_fault = Instant::now() + config.fault_every;
        }
    }
    while users.join_next().await.is_some() {}
    let seconds = start.elapsed().as_secs_f64();
    rss_by_minute.extend(status_kib("self", "VmRSS"));
    let operator = deployment.operator_view();
    drop(deployment);
    drop(redis.take());

    let count = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    let errors = count(&tally.errors);
    let (unavailable, unanswered) = (count(&tally.unavailable), count(&tally.unanswered));
    Ok(SoakReport {
        store: config.store,
        scenario: config.scenario,
        seconds,
        requests: count(&tally.ok) + errors,
        ok: count(&tally.ok),
        unavailable,
        unanswered,
        other_errors: errors.saturating_sub(unavailable + unanswered),
        sessions_lost: count(&tally.sessions_lost),
        updates_lost: count(&tally.updates_lost),
        wrong_values: count(&tally.wrong_values),
        faults,
        // VmHWM was seen to trail a sampled RSS: the kernel updates it lazily.
        peak_rss_kib: self_peak.max(status_kib("self", "VmHWM")),
        rss_kib_by_minute: rss_by_minute,
        redis_peak_rss_kib: redis_peak,
        operator,
    })
}

/// One fault: Redis (when there is one) killed and started again after the downtime, for
/// `kill` and `restart`; otherwise the scenario played on the app nodes, on node `victim`.
async fn fault(
    scenario: Scenario,
    deployment: &mut Deployment,
    redis: Option<&mut RedisServer>,
    victim: usize,
    timing: Timing,
) -> Result<(), Error> {
    match (scenario, redis) {
        (Scenario::Kill | Scenario::Restart, Some(server)) => {
            server.kill();
            tokio::time::sleep(timing.down_for.unwrap_or_default()).await;
            server.restart().map_err(Error::RedisServer)?;
        }
        // Events are not reported by a soak.
        _ => {
            // A soak starts again what it killed; only a killed node waits out the downtime.
            let (scenario, down_for) = match scenario {
                Scenario::Kill | Scenario::Restart => (Scenario::Restart, timing.down_for),
                other => (other, None),
            };
            let timing = Timing { down_for, ..timing };
            scenario
                .play(deployment, victim, timing, &mut Vec::new())
                .await?;
        }
    }
    Ok(())
}

/// Resets this process's resident-memory high-water mark (`VmHWM`), so that soaks run one
/// after another in one process each report their own peak. Linux only; a no-op elsewhere.
fn reset_peak_rss() {
    // Where this fails, the reported peak also covers earlier soaks: an overestimate.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A `kB` field of `/proc/<pid>/status` (Linux only; `None` elsewhere).
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib =
            |kib: Option<u64>| kib.map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        writeln!(
            f,
            "{}, {}: {:.0} s, {} requests ({:.0}/s), {} faults",
            self.store.name(),
            self.scenario,
            self.seconds,
            self.requests,
            self.requests as f64 / self.seconds.max(f64::EPSILON),
            self.faults
        )?;
        writeln!(
            f,
            "  errors: {} unavailable (503), {} unanswered, {} other",
            self.unavailable, self.unanswered, self.other_errors
        )?;
        writeln!(
            f,
            "  lost: {} sessions, {} updates; {} wrong values",
            self.sessions_lost, self.updates_lost, self.wrong_values
        )?;
        let by_minute: Vec<String> = self
            .rss_kib_by_minute
            .iter()
            .map(|k| mib(Some(*k)))
            .collect();
        writeln!(
            f,
            "  memory: peak {} MiB; by minute {} MiB; redis-server peak {} MiB",
            mib(self.peak_rss_kib),
            by_minute.join(" "),
            mib(self.redis_peak_rss_kib)
        )?;
        writeln!(f, "  the nodes' metrics: {}", self.operator.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_read_print_and_serialise_as_their_names() {
        for store in SoakStore::ALL {
            assert_eq!(store.name().parse::<SoakStore>(), Ok(store));
            assert_eq!(store.to_string(), store.name());
            assert_eq!(
                serde_json::to_value(store).unwrap(),
                serde_json::Value::from(store.name())
            );
        }
        assert_eq!(
            "disk".parse::<SoakStore>().unwrap_err().to_string(),
            "unknown store 'disk': expected memory, redis or replicated"
        );
    }
}
