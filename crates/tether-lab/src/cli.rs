//! The command line of the `tether-lab` binary: its arguments, checked before anything starts.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser, Subcommand};
use tether_lab::{Kill, LabConfig, Network, Scenario, Strategy};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Runs tether's session strategies side by side under load and faults"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the comparison and print a table.
    Run(RunArgs),
}

/// The arguments of `tether-lab run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// App nodes per strategy (at least 2).
    #[arg(long, default_value_t = 3, value_parser = counts::<usize>(2))]
    nodes: usize,
    /// Simulated users per strategy.
    #[arg(long, default_value_t = 200, value_parser = counts::<usize>(1))]
    users: usize,
    /// Measured seconds per strategy (at least 2, after one second of warm-up).
    #[arg(long, default_value_t = 7, value_parser = counts::<u64>(2))]
    seconds: u64,
    /// Pause between one user's requests, ms.
    #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
    think_ms: u64,
    /// What happens to the servers: kill (a node dies halfway), restart (it dies and starts
    /// again), rolling (every node in turn stopped gracefully and started again), pause (a node
    /// freezes for 3 s halfway).
    #[arg(long, default_value = "kill")]
    scenario: Scenario,
    /// The node kill, restart and pause pick: busiest, a node index (2 or node-2), or none
    /// (no fault in any scenario).
    #[arg(long, default_value = "busiest")]
    kill: Kill,
    /// Seconds a killed node stays down before it starts again, fractions allowed (kill: not
    /// restarted unless given; restart: 1 s unless given; rolling: 0 unless given).
    #[arg(long, value_parser = seconds, allow_negative_numbers = true)]
    restart_after: Option<Duration>,
    /// Start one more node a quarter of the way through.
    #[arg(long)]
    scale_up: bool,
    /// Comma-separated strategies (default: all): memory-roundrobin, sticky, sticky-replicated,
    /// replicated-alltoall, replicated-backup, redis.
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<Strategy>,
    /// Redis for the redis strategy (default: a private redis-server, if on PATH), as
    /// redis://host:port, rediss://, redis+unix:// or unix://.
    #[arg(long, value_parser = redis_url)]
    redis_url: Option<String>,
    /// Round trip added to every connection between the lab's parts (balancer to app node,
    /// app node to Redis, node to node), as `500us`, `1ms` or `0` (loopback); at most 100ms.
    #[arg(long, default_value = "0", value_parser = network_delay, allow_hyphen_values = true)]
    rtt: Duration,
    /// Up to this much more per round trip, uniformly random (`200us`); at most 100ms.
    #[arg(long, default_value = "0", value_parser = network_delay, allow_hyphen_values = true)]
    rtt_jitter: Duration,
    /// Runs of each strategy (1 to 20): the report gives each figure's median and spread.
    #[arg(long, default_value_t = 1, value_parser = counts::<usize>(1).range(1..=20), allow_negative_numbers = true)]
    repeat: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with a chart per strategy.
    #[arg(long)]
    html: Option<PathBuf>,
}

/// What `tether-lab run` does, its arguments checked.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) config: LabConfig,
    pub(crate) json: bool,
    pub(crate) html: Option<HtmlFile>,
}

/// The HTML report's file, opened (created if need be, not yet emptied) before the run, so
/// that a path that cannot be written is refused before minutes of load.
#[derive(Debug)]
pub(crate) struct HtmlFile {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Whether this run created it (it is removed again when the run fails).
    pub(crate) created: bool,
}

impl RunArgs {
    /// The lab configuration and outputs; refuses a `--kill` index past the last node and an
    /// `--html` path that cannot be created.
    pub(crate) fn plan(self) -> Result<Plan, clap::Error> {
        let nodes = self.nodes + usize::from(self.scale_up);
        if let Kill::Node(index) = self.kill
            && index >= nodes
        {
            let spare = if self.scale_up {
                " (with the scale-up node)"
            } else {
                ""
            };
            return Err(run_error(
                ErrorKind::ValueValidation,
                format!(
                    "--kill {}: there are {nodes} nodes{spare}, node-0 to node-{}",
                    self.kill,
                    nodes - 1
                ),
            ));
        }
        let html = self.html.map(open_html).transpose()?;
        let mut config = LabConfig::default();
        config.nodes = self.nodes;
        config.users = self.users;
        config.measure = Duration::from_secs(self.seconds);
        config.think = Duration::from_millis(self.think_ms);
        config.scenario = self.scenario;
        config.kill = self.kill;
        config.restart_after = self.restart_after;
        config.scale_up = self.scale_up;
        if !self.strategies.is_empty() {
            config.strategies = self.strategies;
        }
        config.redis_url = self.redis_url;
        config.network = Network::new(self.rtt, self.rtt_jitter);
        config.repeat = self.repeat;
        Ok(Plan {
            config,
            json: self.json,
            html,
        })
    }
}

fn open_html(path: PathBuf) -> Result<HtmlFile, clap::Error> {
    let created = !path.exists();
    match File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(file) => Ok(HtmlFile {
            path,
            file,
            created,
        }),
        Err(e) => Err(run_error(
            ErrorKind::Io,
            format!("--html {}: cannot write it: {e}", path.display()),
        )),
    }
}

/// Whole numbers from `min` to a billion (clap's own ranged parser), for counts that must not
/// be zero.
fn counts<T>(min: u64) -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    clap::builder::RangedU64ValueParser::<T>::new().range(min..=1_000_000_000)
}

/// An error about the arguments of `tether-lab run`, with its usage line.
fn run_error(kind: ErrorKind, message: String) -> clap::Error {
    let mut command = Cli::command();
    command.build();
    match command.find_subcommand_mut("run") {
        Some(run) => run.error(kind, message),
        None => command.error(kind, message),
    }
}

/// A number of seconds that is not a duration: negative, not a number, too large.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a number of seconds (0 or more, fractions allowed)")]
struct BadSeconds(String);

fn seconds(text: &str) -> Result<Duration, BadSeconds> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| BadSeconds(text.to_owned()))
}

/// A Redis URL whose scheme the Redis client does not speak.
#[derive(Debug, thiserror::Error)]
#[error(
    "'{0}' is not a Redis URL: expected redis://host:port, rediss://, redis+unix:// or unix://"
)]
struct BadRedisUrl(String);

/// A Redis URL of a scheme the client speaks, with something after it; whether a server
/// answers there is found when the redis strategy connects.
fn redis_url(text: &str) -> Result<String, BadRedisUrl> {
    match text.split_once("://") {
        Some(("redis" | "rediss" | "redis+unix" | "unix", rest)) if !rest.is_empty() => {
            Ok(text.to_owned())
        }
        _ => Err(BadRedisUrl(text.to_owned())),
    }
}

/// The longest `--rtt` and `--rtt-jitter`: a round trip across a continent, far under the
/// lab's 2 s bound on a request.
const MAX_NETWORK_DELAY: Duration = Duration::from_millis(100);

/// A network delay that is not one: not a duration, or above [`MAX_NETWORK_DELAY`].
#[derive(Debug, thiserror::Error)]
enum BadNetworkDelay {
    #[error("'{text}' is not a duration such as 500us, 1ms or 0: {source}")]
    Unreadable {
        text: String,
        source: humantime::DurationError,
    },
    #[error("'{0}' is more than the 100ms a lab network may add")]
    TooLong(String),
}

fn network_delay(text: &str) -> Result<Duration, BadNetworkDelay> {
    let delay = humantime::parse_duration(text).map_err(|source| BadNetworkDelay::Unreadable {
        text: text.to_owned(),
        source,
    })?;
    if delay > MAX_NETWORK_DELAY {
        return Err(BadNetworkDelay::TooLong(text.to_owned()));
    }
    Ok(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["tether-lab", "run"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Run(args) => args,
        })
    }

    fn refused(args: &[&str]) -> String {
        run(args).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let plan = run(&[]).unwrap().plan().unwrap();
        let default = LabConfig::default();
        assert_eq!(plan.config.nodes, default.nodes);
        assert_eq!(plan.config.users, default.users);
        assert_eq!(plan.config.measure, default.measure);
        assert_eq!(plan.config.think, default.think);
        assert_eq!(plan.config.kill, Kill::Busiest);
        assert_eq!(plan.config.scenario, Scenario::Kill);
        assert_eq!(plan.config.strategies, Strategy::ALL);
        assert!(!plan.json && plan.html.is_none());
    }

    #[test]
    fn zero_and_too_small_counts_are_refused() {
        for (flag, value) in [
            ("--nodes", "0"),
            ("--nodes", "1"),
            ("--users", "0"),
            ("--seconds", "0"),
            ("--seconds", "1"),
        ] {
            let message = refused(&[flag, value]);
            assert!(
                message.contains(flag) && message.contains(&format!("'{value}'")),
                "{flag} {value}: {message}"
            );
            assert!(message.contains("is not in"), "{message}");
        }
        assert_eq!(run(&["--nodes", "2", "--seconds", "2"]).unwrap().nodes, 2);
    }

    #[test]
    fn a_bad_kill_names_the_accepted_values() {
        let message = refused(&["--kill", "everyone"]);
        assert!(message.contains("'everyone'"), "{message}");
        assert!(
            message.contains("busiest, none or a node index"),
            "{message}"
        );
        assert_eq!(
            run(&["--kill", "node-1"])
                .unwrap()
                .plan()
                .unwrap()
                .config
                .kill,
            Kill::Node(1)
        );
        assert_eq!(run(&["--kill", "none"]).unwrap().kill, Kill::None);
    }

    #[test]
    fn a_kill_index_past_the_last_node_is_refused() {
        let message = run(&["--kill", "3"])
            .unwrap()
            .plan()
            .unwrap_err()
            .to_string();
        assert!(message.contains("--kill node-3"), "{message}");
        assert!(message.contains("node-0 to node-2"), "{message}");
        // With --scale-up there is one more node to kill.
        let plan = run(&["--kill", "3", "--scale-up"]).unwrap().plan().unwrap();
        assert_eq!(plan.config.kill, Kill::Node(3));
        assert!(run(&["--kill", "4", "--scale-up"]).unwrap().plan().is_err());
    }

    #[test]
    fn the_help_lists_every_strategy() {
        let help = Cli::command()
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for strategy in Strategy::ALL {
            assert!(help.contains(strategy.name()), "{strategy}: {help}");
        }
    }

    #[test]
    fn a_bad_strategy_names_the_accepted_ones() {
        let message = refused(&["--strategies", "sticky,sticky+replicated"]);
        assert!(message.contains("'sticky+replicated'"), "{message}");
        assert!(
            message.contains("expected one of memory-roundrobin, sticky, sticky-replicated,"),
            "{message}"
        );
        let args = run(&["--strategies", "sticky-replicated,redis"]).unwrap();
        assert_eq!(
            args.strategies,
            [Strategy::StickyReplicated, Strategy::Redis]
        );
    }

    #[test]
    fn scenarios_are_read_by_name() {
        for scenario in Scenario::ALL {
            let plan = run(&["--scenario", scenario.name()])
                .unwrap()
                .plan()
                .unwrap();
            assert_eq!(plan.config.scenario, scenario);
        }
        let message = refused(&["--scenario", "reboot"]);
        assert!(message.contains("'reboot'"), "{message}");
        assert!(
            message.contains("expected kill, restart, rolling or pause"),
            "{message}"
        );
    }

    #[test]
    fn restart_after_must_be_a_duration() {
        assert!(refused(&["--restart-after", "-1"]).contains("'-1' is not a number of seconds"));
        assert!(refused(&["--restart-after", "soon"]).contains("'soon'"));
        let args = run(&["--restart-after", "1.5"]).unwrap();
        assert_eq!(args.restart_after, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn network_delays_are_durations_up_to_100ms() {
        for flag in ["--rtt", "--rtt-jitter"] {
            for (bad, why) in [
                ("fast", "is not a duration"),
                ("-1ms", "is not a duration"),
                ("1", "is not a duration"),
                ("101ms", "more than the 100ms"),
                ("1s", "more than the 100ms"),
            ] {
                let message = refused(&[flag, bad]);
                assert!(
                    message.contains(flag) && message.contains(&format!("'{bad}'")),
                    "{flag} {bad}: {message}"
                );
                assert!(message.contains(why), "{flag} {bad}: {message}");
            }
        }
        let plan = run(&["--rtt", "500us", "--rtt-jitter", "0.2ms"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(
            plan.config.network,
            Network::new(Duration::from_micros(500), Duration::from_micros(200))
        );
        let plan = run(&["--rtt", "0"]).unwrap().plan().unwrap();
        assert!(plan.config.network.is_loopback());
    }

    #[test]
    fn a_redis_url_must_be_one() {
        for bad in ["localhost:6379", "http://127.0.0.1:6379", "redis://", ""] {
            let message = refused(&["--redis-url", bad]);
            assert!(
                message.contains("--redis-url") && message.contains("is not a Redis URL"),
                "{bad}: {message}"
            );
        }
        let args = run(&["--redis-url", "redis://127.0.0.1:6390/1"]).unwrap();
        assert_eq!(args.redis_url.as_deref(), Some("redis://127.0.0.1:6390/1"));
    }

    #[test]
    fn repeat_is_1_to_20_runs() {
        for bad in ["0", "21", "many", "-1"] {
            let message = refused(&["--repeat", bad]);
            assert!(
                message.contains("--repeat") && message.contains(&format!("'{bad}'")),
                "{bad}: {message}"
            );
        }
        assert_eq!(
            run(&["--repeat", "3"])
                .unwrap()
                .plan()
                .unwrap()
                .config
                .repeat,
            3
        );
        assert_eq!(run(&[]).unwrap().plan().unwrap().config.repeat, 1);
    }

    #[test]
    fn think_time_is_a_whole_number_of_ms() {
        for bad in ["-5", "soon", "1.5"] {
            let message = refused(&["--think-ms", bad]);
            assert!(
                message.contains("--think-ms") && message.contains(&format!("'{bad}'")),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn an_html_path_that_cannot_be_written_is_refused_before_the_run() {
        let dir = std::env::temp_dir().join(format!("tether-lab-cli-{}", std::process::id()));
        let missing = dir.join("no-such-dir").join("report.html");
        let message = run(&["--html", missing.to_str().unwrap()])
            .unwrap()
            .plan()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--html") && message.contains("report.html"),
            "{message}"
        );
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.html");
        let plan = run(&["--html", path.to_str().unwrap()])
            .unwrap()
            .plan()
            .unwrap();
        assert!(plan.html.is_some_and(|html| html.created));
        assert!(path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
