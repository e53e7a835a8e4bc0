//! The command line: every subcommand and its arguments, checked by clap before anything runs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tether_lab::{Scenario, SoakStore};
use tether_replicated::Mode;

use crate::live_sessions::InMemory;
use crate::load::Workload;
use crate::race;
use crate::stacks::Stack;

#[derive(Parser, Debug)]
#[command(version, about = "Side-by-side session middleware benchmarks")]
pub(crate) struct Cli {
    /// Redis for the Redis stacks; by default the bench starts its own redis-server on a free
    /// loopback port (redis-server must be on PATH).
    #[arg(long, global = true)]
    pub(crate) redis_url: Option<String>,
    /// PostgreSQL for the SQL stacks (a schema `tether_bench` is dropped and created there
    /// before each run).
    #[arg(long, global = true, default_value = crate::postgres_env::DEFAULT_POSTGRES_URL)]
    pub(crate) postgres_url: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Requests per second and latency of each stack under one workload.
    Throughput {
        #[command(flatten)]
        what: StacksAndWorkload,
        /// Measured seconds per stack and repetition.
        #[arg(long, default_value_t = 5, value_parser = counts::<u64>(1))]
        seconds: u64,
        /// Unmeasured warm-up seconds before each measurement.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 16, value_parser = counts::<usize>(1))]
        connections: usize,
        /// Rounds over all stacks, interleaved; the median of each figure is reported.
        #[arg(long, default_value_t = 1, value_parser = counts::<usize>(1))]
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
        #[arg(long, default_value_t = 200_000, value_parser = counts::<u32>(1))]
        requests: u32,
    },
    /// User-space instructions per request of each stack, counted by callgrind: each stack is
    /// served by a process of its own under valgrind; only the measured requests are counted,
    /// after its sessions are made and a warm-up.
    Instructions {
        #[command(flatten)]
        what: StacksAndWorkload,
        /// Measured requests per stack.
        #[arg(long, default_value_t = 2_000, value_parser = counts::<u64>(1))]
        requests: u64,
        /// The valgrind program.
        #[arg(long, default_value = "valgrind")]
        valgrind: PathBuf,
        /// callgrind's control program, which zeroes and dumps the counts of a running server.
        #[arg(long, default_value = "callgrind_control")]
        callgrind_control: PathBuf,
        /// Print one JSON array of {"stack", "workload", "instructions_per_request"}.
        #[arg(long)]
        json: bool,
    },
    /// Requests per second of each stack with its server alone on one core: each stack served
    /// by a process of its own pinned to `--server-core`, driven by wrk pinned to
    /// `--load-core`, in interleaved rounds; with the server's CPU time per request, and runs
    /// where the server was not saturated or the rounds spread past 5% flagged.
    Pinned {
        #[command(flatten)]
        what: StacksAndWorkload,
        /// Measured seconds per stack and round.
        #[arg(long, default_value_t = 10, value_parser = counts::<u64>(1))]
        seconds: u64,
        /// Unmeasured warm-up seconds per stack, before the first round.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Concurrent keep-alive connections from wrk.
        #[arg(long, default_value_t = 32, value_parser = counts::<usize>(1))]
        connections: usize,
        /// Rounds over all stacks, interleaved; medians and spread are reported.
        #[arg(long, default_value_t = 3, value_parser = counts::<usize>(1))]
        rounds: usize,
        /// The core the servers are pinned to.
        #[arg(long, default_value_t = 0)]
        server_core: usize,
        /// The core wrk is pinned to.
        #[arg(long, default_value_t = 1)]
        load_core: usize,
        /// Sessions each server holds beside those the load uses, made at its start (the
        /// in-memory stacks only). With several counts, each stack is served once per count,
        /// all in the same interleaved rounds: reads among a million sessions against reads
        /// among a few.
        #[arg(long, value_delimiter = ',', default_value = "0", value_parser = counts::<u64>(0))]
        live_sessions: Vec<u64>,
        /// The wrk program (Debian: apt-get install wrk).
        #[arg(long, default_value = "wrk")]
        wrk: PathBuf,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Memory one stored session costs: each in-memory store filled with one-key sessions in a
    /// fresh process of its own, its resident set size read before and after.
    Memory {
        /// The stores.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "tether-memory,tower-sessions-memory"
        )]
        stores: Vec<InMemory>,
        /// Session counts, each measured in a fresh process.
        #[arg(long, value_delimiter = ',', default_value = "1000000", value_parser = counts::<u64>(1))]
        sessions: Vec<u64>,
        /// Also change each session's key once after its first read, and read it again.
        #[arg(long)]
        written: bool,
        /// Print one JSON array of {"store", "sessions", "resident_bytes_grown", "bytes_per_session"}.
        #[arg(long)]
        json: bool,
    },
    /// One measurement of `memory`, in this process: prints its resident bytes before and
    /// after filling the store.
    #[command(hide = true)]
    MemoryFill {
        /// The store.
        #[arg(long, value_enum)]
        store: InMemory,
        /// Sessions to make.
        #[arg(long, value_parser = counts::<u64>(1))]
        sessions: u64,
        /// Change each session's key once after its first read.
        #[arg(long)]
        written: bool,
    },
    /// One stack as a server of its own, for a load generator in another process (wrk):
    /// prints `listening on ADDR`, serves until its standard input closes or Ctrl-C.
    Serve {
        /// The stack.
        #[arg(long, value_enum, default_value = "tether-memory")]
        stack: Stack,
        /// The address to listen at; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Sessions made at start, beside those the load makes (the in-memory stacks only).
        #[arg(long, default_value_t = 0, value_parser = counts::<u64>(0))]
        live_sessions: u64,
    },
    /// Store calls per request over a fixed number of sequential requests on one session: the
    /// Redis commands each request sends and those its scripts run (recorded with MONITOR), and
    /// the PostgreSQL statements it runs (as sqlx reports them; its pool's pings not counted).
    Commands {
        #[command(flatten)]
        what: StacksAndWorkload,
        /// Requests per stack.
        #[arg(long, default_value_t = 1_000, value_parser = counts::<u32>(1))]
        requests: u32,
        /// Make every request find its session due for renewal: tether's stacks run with a
        /// touch threshold of 0, and requests are 2 ms apart (deadlines are kept in
        /// milliseconds, so a renewal must move one).
        #[arg(long)]
        renewal_due: bool,
    },
    /// How long after a write on node A node B's near cache drops its copy (tether-redis,
    /// CLIENT TRACKING), while readers keep node B and Redis busy: p50/p90/p99/max.
    Invalidation {
        /// Sessions the readers spread over; the measured writes go to these too.
        #[arg(long, default_value_t = 1_000, value_parser = counts::<usize>(1))]
        sessions: usize,
        /// Tasks reading through node B's near cache without pause.
        #[arg(long, default_value_t = 4)]
        cache_readers: usize,
        /// Tasks reading straight from Redis without pause.
        #[arg(long, default_value_t = 4)]
        redis_readers: usize,
        /// Measured writes, one at a time.
        #[arg(long, default_value_t = 2_000, value_parser = counts::<u32>(1))]
        writes: u32,
        /// Upper bound of the whole run, in seconds (each of the two runs with `--sentinel`).
        #[arg(long, default_value_t = 60, value_parser = counts::<u64>(1))]
        seconds: u64,
        /// Measure behind Sentinel instead: the bench starts a master, a replica and a
        /// Sentinel on loopback, every node finds the master through the Sentinel; it measures,
        /// kills the master, waits for the replica's promotion and measures again.
        #[arg(long)]
        sentinel: bool,
    },
    /// Replication traffic per write (messages and bytes) by mode and cluster size.
    Traffic {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "3,5,8", value_parser = counts::<usize>(1))]
        nodes: Vec<usize>,
        /// Modes: all-to-all, backup-1, backup-2, ...
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "all-to-all,backup-1,backup-2"
        )]
        modes: Vec<Mode>,
        /// Writes per measurement.
        #[arg(long, default_value_t = 1_000, value_parser = counts::<u32>(1))]
        writes: u32,
    },
    /// Requests/s of tether-replicated by mode and cluster size, each user's requests spread
    /// over all nodes; tether-memory on one node as the upper bound.
    Cluster {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "3,5,8", value_parser = counts::<usize>(1))]
        nodes: Vec<usize>,
        /// Modes: all-to-all, backup-1, backup-2, ...
        #[arg(long, value_delimiter = ',', default_value = "all-to-all,backup-1")]
        modes: Vec<Mode>,
        /// The requests: read, write or mixed.
        #[arg(long, value_enum, default_value = "mixed")]
        workload: Workload,
        /// Measured seconds per run.
        #[arg(long, default_value_t = 3, value_parser = counts::<u64>(1))]
        seconds: u64,
        /// Unmeasured warm-up seconds before each run.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Concurrent users.
        #[arg(long, default_value_t = 16, value_parser = counts::<usize>(1))]
        connections: usize,
        /// Runs per configuration; the median is reported.
        #[arg(long, default_value_t = 1, value_parser = counts::<usize>(1))]
        repeat: usize,
        /// Also run each configuration with mutual TLS between the nodes, alternating with the
        /// plain-TCP run.
        #[arg(long)]
        tls: bool,
    },
    /// tether-proxy against HAProxy (cookie insert, round robin, nbthread 1) on the same
    /// backends: each proxy pinned to core 0, this process to core 1.
    Proxy {
        /// The tether-proxy binary (build it with `cargo build --release -p tether-proxy`).
        #[arg(long, default_value = "target/release/tether-proxy")]
        proxy_bin: PathBuf,
        /// Backends behind each proxy.
        #[arg(long, default_value_t = 4, value_parser = counts::<usize>(1))]
        backends: usize,
        /// Measured seconds per run.
        #[arg(long, default_value_t = 3, value_parser = counts::<u64>(1))]
        seconds: u64,
        /// Unmeasured warm-up seconds before each run.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 16, value_parser = counts::<usize>(1))]
        connections: usize,
        /// Rounds, interleaved; the median is reported.
        #[arg(long, default_value_t = 3, value_parser = counts::<usize>(1))]
        repeat: usize,
        /// Both proxies serve TLS (one ECDSA P-256 certificate made at run time), driven by
        /// wrk over keep-alive HTTPS connections.
        #[arg(long, conflicts_with = "instructions")]
        tls: bool,
        /// The wrk program (with `--tls`).
        #[arg(long, default_value = "wrk")]
        wrk: PathBuf,
        /// Instead of requests per second, count each proxy's user-space instructions per
        /// proxied request under callgrind, over this many requests.
        #[arg(long, value_name = "REQUESTS", value_parser = counts::<u64>(1))]
        instructions: Option<u64>,
        /// The valgrind program (with `--instructions`).
        #[arg(long, default_value = "valgrind")]
        valgrind: PathBuf,
        /// callgrind's control program (with `--instructions`).
        #[arg(long, default_value = "callgrind_control")]
        callgrind_control: PathBuf,
    },
    /// WebSocket echo messages per second straight to a backend, through tether-proxy and
    /// through HAProxy (each pinned to core 0; this process to core 1), in interleaved rounds.
    Websocket {
        /// The tether-proxy binary (build it with `cargo build --release -p tether-proxy`).
        #[arg(long, default_value = "target/release/tether-proxy")]
        proxy_bin: PathBuf,
        /// Measured seconds per run.
        #[arg(long, default_value_t = 3, value_parser = counts::<u64>(1))]
        seconds: u64,
        /// Unmeasured warm-up seconds before each run.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Concurrent WebSockets.
        #[arg(long, default_value_t = 16, value_parser = counts::<usize>(1))]
        connections: usize,
        /// Messages in flight on each WebSocket: 1 measures round trips, more measures how
        /// many messages a path carries.
        #[arg(long, default_value_t = 1, value_parser = counts::<usize>(1))]
        window: usize,
        /// Rounds, interleaved; the median is reported.
        #[arg(long, default_value_t = 3, value_parser = counts::<usize>(1))]
        repeat: usize,
    },
    /// What the principal index costs on Redis (standalone, and a 3-master Cluster the bench
    /// starts): round trips of a login that binds its session, of listing a principal's
    /// sessions and of revoking them all (counted by MONITOR on every server), and the time of
    /// the latter two.
    Principals {
        /// Topologies, one after another.
        #[arg(long, value_delimiter = ',', default_value = "standalone,cluster")]
        topologies: Vec<crate::principals::Topology>,
        /// Sessions of the principal that are listed.
        #[arg(long, default_value_t = 100, value_parser = counts::<usize>(1))]
        listed: usize,
        /// Sessions of the principal that are revoked at once.
        #[arg(long, default_value_t = 1_000, value_parser = counts::<usize>(1))]
        revoked: usize,
        /// Timed repetitions of each; the median is reported.
        #[arg(long, default_value_t = 11, value_parser = counts::<usize>(1))]
        runs: usize,
    },
    /// Concurrent writers on one session, each bumping its own key: how many updates survive.
    Race {
        /// The store.
        #[arg(long, value_enum, default_value = "memory")]
        store: race::Store,
        /// Concurrent writers, each on its own connection.
        #[arg(long, default_value_t = 8, value_parser = counts::<u32>(1))]
        writers: u32,
        /// Increments per writer.
        #[arg(long, default_value_t = 200, value_parser = counts::<u32>(1))]
        rounds: u32,
        /// All writers bump one key, by: insert (read, then insert), increment
        /// (`Session::increment`) or update (`Session::update`); without it each writer bumps
        /// its own key.
        #[arg(long, value_enum)]
        same_key: Option<race::SameKey>,
    },
    /// Long mixed load (four reads per write, sessions churning) over each store while a fault
    /// comes at intervals: Redis or a replicated node killed and restarted, a rolling restart of
    /// every node, or a node paused. Reports requests, errors by kind, sessions and updates
    /// lost, memory high-water mark.
    Soak {
        /// Minutes per store, fractions allowed: 0.1 (6 s) to 1440 (a day).
        #[arg(long, default_value_t = 10.0, value_parser = minutes)]
        minutes: f64,
        /// Stores, one after another: memory, redis, replicated.
        #[arg(long, value_delimiter = ',', default_value = "memory,redis,replicated")]
        stores: Vec<SoakStore>,
        /// The fault: restart (kill and restart; kill is the same), rolling (every app node
        /// stopped gracefully and started again, in turn), pause (one node frozen for 3 s).
        /// The memory store gets none.
        #[arg(long, default_value = "restart")]
        scenario: Scenario,
        /// Seconds between faults (at least 5).
        #[arg(long, default_value_t = 60, value_parser = counts::<u64>(5))]
        fault_every: u64,
        /// Simulated users.
        #[arg(long, default_value_t = 50, value_parser = counts::<usize>(1))]
        users: usize,
        /// Print one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Which stacks to measure under which workload.
#[derive(clap::Args, Debug)]
pub(crate) struct StacksAndWorkload {
    /// Comma-separated stacks.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,tether-memory,tower-sessions-memory"
    )]
    pub(crate) stacks: Vec<Stack>,
    /// The requests: read, write or mixed (four reads, then one write).
    #[arg(long, value_enum, default_value = "read")]
    pub(crate) workload: Workload,
}

/// Whole numbers from `min` to a billion (clap's own ranged parser), for counts that must not
/// be zero.
fn counts<T>(min: u64) -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    clap::builder::RangedU64ValueParser::<T>::new().range(min..=1_000_000_000)
}

/// Soak minutes outside 0.1 to 1440.
#[derive(Debug, thiserror::Error)]
#[error("expected minutes from 0.1 to 1440")]
struct BadMinutes;

fn minutes(text: &str) -> Result<f64, BadMinutes> {
    text.parse()
        .ok()
        .filter(|m| (0.1..=1440.0).contains(m))
        .ok_or(BadMinutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once(&"tether-bench").chain(args))
    }

    fn refused(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn zero_counts_are_refused() {
        for args in [
            &["race", "--writers", "0"][..],
            &["race", "--rounds", "0"],
            &["throughput", "--seconds", "0"],
            &["throughput", "--connections", "0"],
            &["throughput", "--repeat", "0"],
            &["overhead", "--requests", "0"],
            &["commands", "--requests", "0"],
            &["instructions", "--requests", "0"],
            &["pinned", "--seconds", "0"],
            &["pinned", "--connections", "0"],
            &["pinned", "--rounds", "0"],
            &["traffic", "--nodes", "3,0"],
            &["traffic", "--writes", "0"],
            &["cluster", "--seconds", "0"],
            &["cluster", "--connections", "0"],
            &["cluster", "--repeat", "0"],
            &["proxy", "--backends", "0"],
            &["proxy", "--repeat", "0"],
            &["soak", "--users", "0"],
            &["soak", "--fault-every", "4"],
        ] {
            let message = refused(args);
            let (flag, value) = (args[1], args[2]);
            assert!(
                message.contains(flag)
                    && message.contains(&format!("'{}'", value.rsplit(',').next().unwrap()))
                    && message.contains("is not in"),
                "{args:?}: {message}"
            );
        }
        assert!(parse(&["race", "--writers", "1", "--rounds", "1"]).is_ok());
        assert!(
            parse(&["throughput", "--warmup", "0"]).is_ok(),
            "no warm-up is fine"
        );
    }

    #[test]
    fn soak_minutes_are_bounded() {
        assert!(refused(&["soak", "--minutes", "0"]).contains("expected minutes from 0.1 to 1440"));
        assert!(refused(&["soak", "--minutes", "2000"]).contains("'2000'"));
        assert!(parse(&["soak", "--minutes", "0.5"]).is_ok());
    }

    #[test]
    fn a_bad_store_lists_exactly_the_accepted_names() {
        let message = refused(&["race", "--store", "tether-memory"]);
        assert!(
            message.contains(
                "[possible values: memory, redis, replicated, tower-sessions-memory, tower-sessions-redis, postgres, tower-sessions-postgres, tower-sessions-tether-redis]"
            ),
            "{message}"
        );
        for name in [
            "memory",
            "redis",
            "replicated",
            "tower-sessions-memory",
            "tower-sessions-redis",
            "postgres",
            "tower-sessions-postgres",
            "tower-sessions-tether-redis",
        ] {
            assert!(parse(&["race", "--store", name]).is_ok(), "{name}");
        }
    }

    #[test]
    fn a_bad_stack_lists_exactly_the_stack_names() {
        let message = refused(&["throughput", "--stacks", "none,tether"]);
        let names: Vec<&str> = <Stack as clap::ValueEnum>::value_variants()
            .iter()
            .map(|s| s.name())
            .collect();
        assert!(
            message.contains(&format!("[possible values: {}]", names.join(", "))),
            "{message}"
        );
        let Command::Throughput { what, .. } = parse(&[
            "throughput",
            "--stacks",
            "tether-redis,tower-sessions-redis",
        ])
        .unwrap()
        .command
        else {
            panic!("not throughput");
        };
        assert_eq!(what.stacks, [Stack::TetherRedis, Stack::TowerSessionsRedis]);
    }

    #[test]
    fn modes_and_soak_stores_read_with_their_own_parsers() {
        let message = refused(&["traffic", "--modes", "backup-0"]);
        assert!(message.contains("'backup-0'"), "{message}");
        let message = refused(&["soak", "--stores", "memory,disk"]);
        assert!(
            message.contains("unknown store 'disk': expected memory, redis or replicated"),
            "{message}"
        );
        let message = refused(&["soak", "--scenario", "reboot"]);
        assert!(
            message.contains("unknown scenario 'reboot': expected kill, restart, rolling or pause"),
            "{message}"
        );
        let Command::Soak { scenario, .. } =
            parse(&["soak", "--scenario", "rolling"]).unwrap().command
        else {
            panic!("not soak");
        };
        assert_eq!(scenario, Scenario::Rolling);
    }
}
