//! How a lab run goes: the configuration the runner reads and the report repeats.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::network::Network;
use crate::scenario::Scenario;
use crate::strategy::Strategy;

/// Which node the scenario picks (the one killed, restarted or paused halfway through each
/// strategy's measured time); `none` runs without any fault, whatever the scenario.
///
/// Reads and prints as `busiest`, `none`, or a node index (`2` or `node-2`; printed `node-2`).
///
/// ```
/// use tether_lab::Kill;
///
/// assert_eq!("busiest".parse::<Kill>().unwrap(), Kill::Busiest);
/// assert_eq!("2".parse::<Kill>().unwrap(), Kill::Node(2));
/// assert_eq!("node-2".parse::<Kill>().unwrap().to_string(), "node-2");
/// assert!("everything".parse::<Kill>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// The node whose session layer counted the most requests so far.
    Busiest,
    /// Node `node-<i>`.
    Node(usize),
    /// None: a run without fault.
    None,
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busiest => f.write_str("busiest"),
            Self::Node(i) => write!(f, "node-{i}"),
            Self::None => f.write_str("none"),
        }
    }
}

impl FromStr for Kill {
    type Err = ParseKillError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "busiest" => Ok(Self::Busiest),
            "none" => Ok(Self::None),
            index => index
                .strip_prefix("node-")
                .unwrap_or(index)
                .parse()
                .map(Self::Node)
                .map_err(|_| ParseKillError {
                    input: s.to_owned(),
                }),
        }
    }
}

impl serde::Serialize for Kill {
    /// As [`Display`](fmt::Display) prints it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A [`Kill`] that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown node to kill '{input}': expected busiest, none or a node index (2 or node-2)")]
pub struct ParseKillError {
    input: String,
}

/// How a lab run goes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LabConfig {
    /// App nodes per strategy.
    pub nodes: usize,
    /// Simulated users per strategy.
    pub users: usize,
    /// Unmeasured warm-up at the start of each strategy.
    pub warmup: Duration,
    /// Measured time per strategy.
    pub measure: Duration,
    /// Pause between one user's requests.
    pub think: Duration,
    /// What happens to the servers: see [`Scenario`].
    pub scenario: Scenario,
    /// Which node `kill`, `restart` and `pause` pick, halfway through the measured time;
    /// [`Kill::None`]: no fault in any scenario.
    pub kill: Kill,
    /// How long a killed node stays down: `kill` restarts it only when this is set, `restart`
    /// waits [`RESTART_AFTER`](crate::RESTART_AFTER) when it is not, `rolling` starts each
    /// stopped node again after it (at once when not set).
    pub restart_after: Option<Duration>,
    /// How long `pause` freezes its node.
    pub pause: Duration,
    /// Start one more node a quarter of the way through.
    pub scale_up: bool,
    /// The strategies, in order.
    pub strategies: Vec<Strategy>,
    /// Redis for the `redis` strategy; without it the lab starts `redis-server` if it is on PATH.
    pub redis_url: Option<String>,
    /// The network between the lab's parts: loopback, or slowed to a round trip (see
    /// [`Network`]).
    pub network: Network,
    /// Runs of each strategy (at least 1): the report gives each figure's median and spread.
    pub repeat: usize,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            users: 200,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(7),
            think: Duration::from_millis(20),
            scenario: Scenario::Kill,
            kill: Kill::Busiest,
            restart_after: None,
            pause: crate::PAUSE,
            scale_up: false,
            strategies: Strategy::ALL.to_vec(),
            redis_url: None,
            network: Network::default(),
            repeat: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_reads_what_it_prints() {
        for kill in [Kill::Busiest, Kill::None, Kill::Node(0), Kill::Node(12)] {
            assert_eq!(kill.to_string().parse::<Kill>(), Ok(kill));
        }
        assert_eq!("3".parse::<Kill>(), Ok(Kill::Node(3)));
        let err = "node-x".parse::<Kill>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown node to kill 'node-x': expected busiest, none or a node index (2 or node-2)"
        );
        assert!("-1".parse::<Kill>().is_err());
        // The JSON report says it as the command line does.
        assert_eq!(
            serde_json::to_value(Kill::Node(2)).unwrap(),
            serde_json::Value::from("node-2")
        );
        assert!("".parse::<Kill>().is_err());
    }
}
