//! What happens to the servers during a run: the scenarios, and the one piece of code that
//! plays them on a deployment, for the lab run and the soak alike.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::Error;
use crate::report::Event;
use crate::strategy::{Deployment, names};

/// How long [`Scenario::Pause`] freezes its node unless told otherwise.
pub const PAUSE: Duration = Duration::from_secs(3);

/// How long [`Scenario::Restart`] keeps its node down when no time is given.
pub const RESTART_AFTER: Duration = Duration::from_secs(1);

/// What happens to the servers while the users run.
///
/// Reads, prints and serialises as its [`name`](Self::name) (`kill`, `restart`, `rolling`,
/// `pause`).
///
/// ```
/// use tether_lab::Scenario;
///
/// assert_eq!("rolling".parse::<Scenario>().unwrap(), Scenario::Rolling);
/// assert_eq!(Scenario::Pause.to_string(), "pause");
/// assert!("reboot".parse::<Scenario>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// One node dies (its process crashes: every socket closes at once); it is started again
    /// only when a restart time is given.
    #[default]
    Kill,
    /// One node dies and is started again a moment later ([`RESTART_AFTER`] unless a time is
    /// given).
    Restart,
    /// Every node in turn is stopped gracefully (it stops accepting, finishes its requests in
    /// flight, a replication node leaves the cluster) and started again, the next only after
    /// the previous one has rejoined: a rolling deploy.
    Rolling,
    /// One node freezes for a while ([`PAUSE`] unless told otherwise: a GC-like stall, a VM migration): its tasks stop
    /// answering and its heartbeats stop while its sockets stay open; then it resumes.
    Pause,
}

impl Scenario {
    /// Every scenario, in the order the docs list them.
    pub const ALL: [Self; 4] = [Self::Kill, Self::Restart, Self::Rolling, Self::Pause];

    /// The scenario's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Restart => "restart",
            Self::Rolling => "rolling",
            Self::Pause => "pause",
        }
    }

    /// What happens, in a few words, for the table's header; `node` is the chosen node.
    pub(crate) fn describe(self, node: &str) -> String {
        match self {
            Self::Kill => format!("{node} is killed halfway"),
            Self::Restart => format!("{node} is killed halfway and started again"),
            Self::Rolling => "every node is stopped gracefully and started again, in turn".into(),
            Self::Pause => format!("{node} is paused halfway"),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = ParseScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scenario| scenario.name() == s)
            .ok_or_else(|| ParseScenarioError {
                input: s.to_owned(),
            })
    }
}

impl serde::Serialize for Scenario {
    /// As its [`name`](Self::name).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A [`Scenario`] that could not be read: not one of [`Scenario::ALL`]'s names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario '{input}': expected {}", names(&Scenario::ALL.map(Scenario::name)))]
pub struct ParseScenarioError {
    input: String,
}

/// How one playing of a scenario is timed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// The run's start: events are stamped from it.
    pub(crate) start: Instant,
    /// How long a killed node stays down before it is started again: `None` for never
    /// (`kill` only; `restart` then waits [`RESTART_AFTER`], `rolling` starts each node again
    /// at once).
    pub(crate) down_for: Option<Duration>,
    /// `rolling`: time from one node's stop to the next one's, at least (the next one also
    /// waits until the previous one has rejoined).
    pub(crate) step: Duration,
    /// `pause`: how long the node stands still.
    pub(crate) pause: Duration,
    /// `rolling`: no node is stopped after this (the load is over).
    pub(crate) until: Option<Instant>,
}

impl Scenario {
    /// Plays the scenario once on `deployment`: on node `victim` (`kill`, `restart`, `pause`)
    /// or on every running node in turn (`rolling`). Returns when it is over: the node started
    /// again, resumed, or (`kill` without a restart time) killed. What happened is pushed onto
    /// `events` as it happens, so that a caller that stops waiting keeps what happened so far.
    ///
    /// # Errors
    ///
    /// When a node cannot be started again.
    pub(crate) async fn play(
        self,
        deployment: &mut Deployment,
        victim: usize,
        timing: Timing,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let now = || timing.start.elapsed();
        // An event from `began` until now.
        let lasted = |kind, node, began: Duration| Event::new(kind, node, began, now() - began);
        match self {
            Self::Kill | Self::Restart => {
                deployment.kill(victim);
                events.push(Event::new("kill", victim, now(), Duration::ZERO));
                let down_for = match self {
                    Self::Restart => Some(timing.down_for.unwrap_or(RESTART_AFTER)),
                    _ => timing.down_for,
                };
                if let Some(down_for) = down_for {
                    tokio::time::sleep(down_for).await;
                    let began = now();
                    deployment.restart(victim).await?;
                    events.push(lasted("restart", victim, began));
                }
            }
            Self::Rolling => {
                let running: Vec<usize> = (0..deployment.nodes.len())
                    .filter(|&i| deployment.nodes.get(i).is_some_and(|n| n.is_running()))
                    .collect();
                let mut next = tokio::time::Instant::now();
                for node in running {
                    tokio::time::sleep_until(next).await;
                    if timing.until.is_some_and(|until| Instant::now() >= until) {
                        break;
                    }
                    next = tokio::time::Instant::now() + timing.step;
                    let began = now();
                    deployment.stop_gracefully(node).await;
                    events.push(lasted("stop", node, began));
                    if let Some(down_for) = timing.down_for {
                        tokio::time::sleep(down_for).await;
                    }
                    let began = now();
                    deployment.restart(node).await?;
                    events.push(lasted("restart", node, began));
                }
            }
            Self::Pause => {
                let began = now();
                if deployment.pause(victim, timing.pause) {
                    tokio::time::sleep(timing.pause).await;
                    events.push(lasted("pause", victim, began));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_read_print_and_serialise_as_their_names() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.name().parse::<Scenario>(), Ok(scenario));
            assert_eq!(scenario.to_string(), scenario.name());
            assert_eq!(
                serde_json::to_value(scenario).unwrap(),
                serde_json::Value::from(scenario.name())
            );
        }
        assert_eq!(Scenario::default(), Scenario::Kill);
        assert_eq!(
            "reboot".parse::<Scenario>().unwrap_err().to_string(),
            "unknown scenario 'reboot': expected kill, restart, rolling or pause"
        );
    }
}
