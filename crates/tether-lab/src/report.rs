//! The comparison: a table, JSON, and a self-contained HTML page with its charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::chart::{self, escape};
use crate::config::{Kill, LabConfig};
use crate::network::Network;
use crate::operator::OperatorView;
use crate::repeat::Spread;
use crate::scenario::Scenario;
use crate::strategy::Strategy;
use crate::users::{BUCKET, Counts, Latency, Tally};

/// An event's window starts this long before it: what a user saw just before (a node that was
/// already slow) counts too.
pub const WINDOW_BEFORE: Duration = Duration::from_millis(500);
/// An event's window ends this long after it ended: what users saw while the cluster caught up.
pub const WINDOW_AFTER: Duration = Duration::from_secs(1);

/// Something that happened during a run, and the latency users saw around it.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// `kill`, `stop` (a graceful stop, until the node was gone), `restart` (until the node
    /// had started again and rejoined), `pause` (until the node resumed) or `scale-up`.
    pub kind: &'static str,
    /// The node, `node-<i>`.
    pub node: String,
    /// Seconds from the strategy's start.
    pub at_s: f64,
    /// How long it lasted, seconds (0 for a kill).
    pub duration_s: f64,
    /// The 99th percentile latency of the answered requests sent in the event's window (from
    /// [`WINDOW_BEFORE`] before the event began to [`WINDOW_AFTER`] after it ended), ms; `None`
    /// when none was answered.
    pub window_p99_ms: Option<f64>,
    /// The highest latency of the answered requests sent in the event's window, ms.
    pub window_max_ms: Option<f64>,
    #[serde(skip)]
    index: usize,
}

impl Event {
    pub(crate) fn new(kind: &'static str, index: usize, at: Duration, lasted: Duration) -> Self {
        Self {
            kind,
            node: format!("node-{index}"),
            at_s: at.as_secs_f64(),
            duration_s: lasted.as_secs_f64(),
            window_p99_ms: None,
            window_max_ms: None,
            index,
        }
    }

    /// Fills in the window's latencies from `latencies`.
    fn measure_window(&mut self, latencies: &[Latency]) {
        let at = Duration::from_secs_f64(self.at_s);
        let from = at.saturating_sub(WINDOW_BEFORE).as_millis();
        let to = (at + Duration::from_secs_f64(self.duration_s) + WINDOW_AFTER).as_millis();
        let mut window: Vec<u32> = latencies
            .iter()
            .filter(|l| (from..=to).contains(&u128::from(l.sent_ms)))
            .map(|l| l.micros)
            .collect();
        window.sort_unstable();
        if !window.is_empty() {
            self.window_p99_ms = Some(quantile_ms(&window, 0.99));
            self.window_max_ms = Some(quantile_ms(&window, 1.0));
        }
    }
}

/// The `q` quantile of sorted microseconds, in ms (0 for none).
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    let index = ((sorted.len().max(1) - 1) as f64 * q).round() as usize;
    f64::from(sorted.get(index).copied().unwrap_or(0)) / 1000.0
}

/// What users saw over a strategy's measured window, bucket by bucket, of the requests sent in
/// each bucket. Only the buckets wholly inside the window are kept: neither the warm-up nor a
/// last bucket the end of the load cut short shows. Bucket `i` holds the requests sent from
/// [`start_s`](Self::start_s) `+ i *` [`bucket_ms`](Self::bucket_ms) on, in seconds from the
/// end of the warm-up.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Series {
    /// Width of a bucket, ms.
    pub bucket_ms: u64,
    /// The warm-up before the window, seconds: an [`Event::at_s`] minus this is the event's
    /// time in the window.
    pub warmup_s: f64,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// Where the first bucket begins, seconds from the end of the warm-up (0 unless the
    /// warm-up is not a whole number of buckets).
    pub start_s: f64,
    /// Successful answers per second.
    pub answers_per_s: Vec<f64>,
    /// Failed requests (503, 502, no answer) per second.
    pub errors_per_s: Vec<f64>,
    /// Sessions lost from the start of the window to the end of each bucket.
    pub sessions_lost: Vec<u64>,
    /// Updates lost from the start of the window to the end of each bucket.
    pub updates_lost: Vec<u64>,
    /// The 99th percentile latency of each bucket's answered requests, ms; `None` when none
    /// was answered.
    pub p99_ms: Vec<Option<f64>>,
}

impl Series {
    /// The full buckets of the window from `warmup` to `warmup + measure`, out of `counts` (one
    /// per [`BUCKET`] from the start) and `latencies`.
    fn measured(
        counts: &[Counts],
        latencies: &[Latency],
        warmup: Duration,
        measure: Duration,
    ) -> Self {
        let width = BUCKET.as_millis();
        let first = usize::try_from(warmup.as_millis().div_ceil(width)).unwrap_or(usize::MAX);
        let end = usize::try_from((warmup + measure).as_millis() / width).unwrap_or(0);
        let buckets = counts.get(first..end.min(counts.len())).unwrap_or_default();
        let per_second = 1000.0 / width as f64;
        let mut sent: Vec<Vec<u32>> = vec![Vec::new(); buckets.len()];
        for latency in latencies {
            let bucket = usize::try_from(u128::from(latency.sent_ms) / width).unwrap_or(usize::MAX);
            if let Some(slot) = bucket.checked_sub(first).and_then(|i| sent.get_mut(i)) {
                slot.push(latency.micros);
            }
        }
        let cumulative = |of: fn(&Counts) -> u64| -> Vec<u64> {
            buckets
                .iter()
                .scan(0, |total, c| {
                    *total += of(c);
                    Some(*total)
                })
                .collect()
        };
        Self {
            bucket_ms: u64::try_from(width).unwrap_or(u64::MAX),
            warmup_s: warmup.as_secs_f64(),
            window_s: measure.as_secs_f64(),
            start_s: (first as f64 * BUCKET.as_secs_f64() - warmup.as_secs_f64()).max(0.0),
            answers_per_s: buckets.iter().map(|c| c.ok as f64 * per_second).collect(),
            errors_per_s: buckets
                .iter()
                .map(|c| c.errors as f64 * per_second)
                .collect(),
            sessions_lost: cumulative(|c| c.sessions_lost),
            updates_lost: cumulative(|c| c.updates_lost),
            p99_ms: sent
                .iter_mut()
                .map(|micros| {
                    micros.sort_unstable();
                    (!micros.is_empty()).then(|| quantile_ms(micros, 0.99))
                })
                .collect(),
        }
    }

    /// The number of buckets.
    pub fn len(&self) -> usize {
        self.answers_per_s.len()
    }

    /// Whether the window holds no full bucket (a run shorter than one).
    pub fn is_empty(&self) -> bool {
        self.answers_per_s.is_empty()
    }

    /// The middle of bucket `i`, seconds from the end of the warm-up.
    pub fn middle_s(&self, i: usize) -> f64 {
        self.start_s + (i as f64 + 0.5) * self.bucket_ms as f64 / 1000.0
    }
}

/// What one strategy did.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct StrategyReport {
    /// The strategy.
    pub strategy: Strategy,
    /// Why it did not run, if it did not.
    pub skipped: Option<String>,
    /// Successful requests per second in the measured time.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// The highest latency of an answered request, ms.
    pub max_ms: f64,
    /// The highest of the events' window p99 latencies ([`Event::window_p99_ms`]), ms.
    pub event_p99_ms: Option<f64>,
    /// The highest latency in any event's window ([`Event::window_max_ms`]), ms.
    pub event_max_ms: Option<f64>,
    /// Successful requests in the measured time.
    pub requests: u64,
    /// Failed requests (503, 502, no server).
    pub errors: u64,
    /// Of the errors: answered `503` (by the app, whose store could not serve, or by the sticky
    /// router, which had no node to send to).
    pub errors_unavailable: u64,
    /// Of the errors: no answer within the lab's 2 s bound, or no node reachable.
    pub errors_unanswered: u64,
    /// Of the errors, those of requests the front sent to node `i` (the last it tried).
    pub errors_by_node: Vec<u64>,
    /// `pause` only: of the errors, those of requests the front sent to the paused node.
    pub paused_node_errors: Option<u64>,
    /// `pause` only: every other error, of requests served by the live nodes (or sent to none).
    pub live_node_errors: Option<u64>,
    /// Times a user's counter came back reset: sessions lost.
    pub sessions_lost: u64,
    /// Increments lost, reset or stepped back.
    pub updates_lost: u64,
    /// Answers above the expected value.
    pub wrong_values: u64,
    /// Replication bytes between nodes per successful write, where nodes replicate.
    pub bytes_per_write: Option<f64>,
    /// The largest share of requests one node took, by the nodes' own request counters
    /// ([`OperatorView::requests_by_node`]).
    pub max_node_share: f64,
    /// What the nodes' metrics counted: the operator's view of the same run.
    pub operator: OperatorView,
    /// What users saw over the measured window, bucket by bucket.
    pub series: Series,
    /// Kills, restarts, scale-ups.
    pub events: Vec<Event>,
    /// Runs this report stands for (`--repeat`): with more than one, every figure above is
    /// the median over the runs, and the series and events are those of the run of median
    /// throughput.
    pub runs: usize,
    /// With more than one run: the lowest and highest value of each figure, by its name here
    /// (`rps`, `p99_ms`, `sessions_lost`, ...); figures not measured in every run are left
    /// out.
    pub spread: BTreeMap<&'static str, Spread>,
}

impl StrategyReport {
    pub(crate) fn skipped(strategy: Strategy, reason: String) -> Self {
        Self {
            strategy,
            skipped: Some(reason),
            rps: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            event_p99_ms: None,
            event_max_ms: None,
            requests: 0,
            errors: 0,
            errors_unavailable: 0,
            errors_unanswered: 0,
            errors_by_node: Vec::new(),
            paused_node_errors: None,
            live_node_errors: None,
            sessions_lost: 0,
            updates_lost: 0,
            wrong_values: 0,
            bytes_per_write: None,
            max_node_share: 0.0,
            operator: OperatorView::default(),
            series: Series::default(),
            events: Vec::new(),
            runs: 0,
            spread: BTreeMap::new(),
        }
    }

    pub(crate) fn measured(
        strategy: Strategy,
        tally: &Tally,
        warmup: Duration,
        measure: Duration,
        operator: OperatorView,
        replication_bytes: Option<u64>,
        mut events: Vec<Event>,
    ) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let latencies = tally.latencies();
        for event in &mut events {
            event.measure_window(&latencies);
        }
        let mut sorted: Vec<u32> = latencies.iter().map(|l| l.micros).collect();
        sorted.sort_unstable();
        let at = |q: f64| quantile_ms(&sorted, q);
        let worst = |of: fn(&Event) -> Option<f64>| events.iter().filter_map(of).reduce(f64::max);
        let errors = tally.errors.load(Relaxed);
        let errors_by_node: Vec<u64> = tally
            .errors_by_node
            .iter()
            .map(|n| n.load(Relaxed))
            .collect();
        let paused_node_errors = events
            .iter()
            .find(|e| e.kind == "pause")
            .map(|e| errors_by_node.get(e.index).copied().unwrap_or(0));
        let requests = tally.ok.load(Relaxed);
        let served = &operator.requests_by_node;
        let total_served: u64 = served.iter().sum();
        let all_writes: f64 = tally.timeline().iter().sum::<f64>() * BUCKET.as_secs_f64();
        Self {
            strategy,
            skipped: None,
            rps: requests as f64 / measure.as_secs_f64(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            event_p99_ms: worst(|e| e.window_p99_ms),
            event_max_ms: worst(|e| e.window_max_ms),
            requests,
            errors,
            errors_unavailable: tally.unavailable.load(Relaxed),
            errors_unanswered: tally.unanswered.load(Relaxed),
            errors_by_node,
            paused_node_errors,
            live_node_errors: paused_node_errors.map(|paused| errors.saturating_sub(paused)),
            sessions_lost: tally.sessions_lost.load(Relaxed),
            updates_lost: tally.updates_lost.load(Relaxed),
            wrong_values: tally.wrong_values.load(Relaxed),
            bytes_per_write: replication_bytes.map(|b| b as f64 / all_writes.max(1.0)),
            max_node_share: served.iter().copied().max().unwrap_or(0) as f64
                / total_served.max(1) as f64,
            operator,
            series: Series::measured(&tally.counts(), &latencies, warmup, measure),
            events,
            runs: 1,
            spread: BTreeMap::new(),
        }
    }
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// App nodes per strategy.
    pub nodes: usize,
    /// Simulated users.
    pub users: usize,
    /// Measured seconds per strategy.
    pub measure_s: f64,
    /// What happened to the servers.
    pub scenario: Scenario,
    /// The node the scenario picked (`kill`, `restart`, `pause`); `none`: no fault at all.
    pub kill: Kill,
    /// Pause between one user's requests, ms.
    pub think_ms: u64,
    /// How long a killed node stayed down before it started again, seconds, when set.
    pub restart_after_s: Option<f64>,
    /// Whether one more node started a quarter of the way through.
    pub scale_up: bool,
    /// CPU cores the machine offers this process: every node, the load and the stores share
    /// them, so figures from different machines compare only at equal counts.
    pub cores: usize,
    /// The network between the lab's parts (`--rtt`, `--rtt-jitter`).
    pub network: Network,
    /// How much later than asked the slowed network's delays ended on average, µs (the
    /// machine's timer and scheduler); `None` on loopback.
    pub network_late_us: Option<f64>,
    /// Runs of each strategy (`--repeat`).
    pub repeat: usize,
    /// One entry per strategy.
    pub strategies: Vec<StrategyReport>,
}

/// What each column of the table means, in its order.
const LEGEND: [(&str, &str); 12] = [
    (
        "req/s",
        "successful answers per second over the measured time",
    ),
    (
        "p50/p99/max ms",
        "latency of the successful answers (median, 99th percentile, highest)",
    ),
    (
        "event p99/max ms",
        "the same, for requests sent from shortly before a fault to shortly after it ended",
    ),
    (
        "sessions lost",
        "times a user's session came back empty: its counter restarted at 1",
    ),
    (
        "updates lost",
        "increments a user made that the session no longer shows",
    ),
    (
        "wrong values",
        "answers above the value the user expects: a write applied twice, or stale data",
    ),
    (
        "errors",
        "requests with no successful answer (503, 502, or none within 2 s); each is retried",
    ),
    (
        "errors paused/live",
        "pause only: errors of requests sent to the paused node / all others",
    ),
    (
        "bytes/write",
        "bytes nodes sent each other per successful write, where they replicate",
    ),
    (
        "max share",
        "the largest share of requests one node took, by its session layer's request counter",
    ),
    ("-", "not applicable, or nothing measured"),
    (
        "what happened",
        "each run's faults as they happened; seconds from its start, warm-up included",
    ),
];

/// The table's columns: heading, second heading line, width.
const COLUMNS: [(&str, &str, usize); 13] = [
    ("strategy", "", 20),
    ("req/s", "", 7),
    ("p50 ms", "", 7),
    ("p99 ms", "", 7),
    ("max ms", "", 7),
    ("event", "p99 ms", 7),
    ("event", "max ms", 7),
    ("sessions", "lost", 8),
    ("updates", "lost", 7),
    ("wrong", "values", 6),
    ("errors", "", 11),
    ("bytes/write", "(replic.)", 11),
    ("max share", "(1 node)", 9),
];

impl Report {
    pub(crate) fn new(
        config: &LabConfig,
        strategies: Vec<StrategyReport>,
        network_late: Option<Duration>,
    ) -> Self {
        Self {
            nodes: config.nodes,
            users: config.users,
            measure_s: config.measure.as_secs_f64(),
            scenario: config.scenario,
            kill: config.kill,
            think_ms: u64::try_from(config.think.as_millis()).unwrap_or(u64::MAX),
            restart_after_s: config.restart_after.map(|d| d.as_secs_f64()),
            scale_up: config.scale_up,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            network: config.network,
            network_late_us: network_late.map(|late| late.as_secs_f64() * 1e6),
            repeat: config.repeat,
            strategies,
        }
    }

    /// What happened, in a few words.
    fn what_happened(&self) -> String {
        let node = match self.kill {
            Kill::Busiest => "the busiest node".to_owned(),
            Kill::Node(i) => format!("node-{i}"),
            Kill::None => return "no fault".to_owned(),
        };
        self.scenario.describe(&node)
    }

    /// The network and the runs: `network: round trip 1ms (delays ended 52 µs late on
    /// average); median of 3 runs per strategy`.
    fn conditions(&self) -> String {
        let mut line = format!("network: {}", self.network);
        if let Some(late) = self.network_late_us {
            let _ = write!(line, " (delays ended {late:.0} µs late on average)");
        }
        if self.repeat > 1 {
            let _ = write!(
                line,
                "; every figure is the median of {} runs per strategy",
                self.repeat
            );
        }
        line
    }

    /// The report as a text table. With `pause`, the errors column reads `paused/live`: the
    /// errors of requests the front sent to the paused node, and all others.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} nodes, {} users, {:.0}s measured per strategy; scenario {}: {}; event \
             windows from {:.1} s before each event to {:.1} s after its end\n",
            self.nodes,
            self.users,
            self.measure_s,
            self.scenario,
            self.what_happened(),
            WINDOW_BEFORE.as_secs_f64(),
            WINDOW_AFTER.as_secs_f64(),
        );
        let _ = writeln!(out, "{}", self.conditions());
        let paused = self.scenario == Scenario::Pause;
        let line = |cells: &[String]| {
            let mut row = String::new();
            for (cell, (_, _, width)) in cells.iter().zip(COLUMNS) {
                if row.is_empty() {
                    let _ = write!(row, "{cell:<width$}");
                } else {
                    let _ = write!(row, " {cell:>width$}");
                }
            }
            row.trim_end().to_owned()
        };
        let heads: Vec<String> = COLUMNS.iter().map(|c| c.0.to_owned()).collect();
        let subs: Vec<String> = COLUMNS
            .iter()
            .map(|c| match c.0 {
                "errors" if paused => "paused/live".to_owned(),
                _ => c.1.to_owned(),
            })
            .collect();
        let _ = writeln!(out, "{}", line(&heads));
        let _ = writeln!(out, "{}", line(&subs));
        for r in &self.strategies {
            if let Some(reason) = &r.skipped {
                let _ = writeln!(out, "{:<20} {reason}", r.strategy.name());
                continue;
            }
            let _ = writeln!(out, "{}", line(&r.cells()));
        }
        if self.repeat > 1 {
            let _ = writeln!(out, "\nspread over {} runs (lowest-highest):", self.repeat);
            for r in self.strategies.iter().filter(|r| r.skipped.is_none()) {
                let _ = writeln!(out, "  {:<20} {}", r.strategy.name(), r.spread_line());
            }
        }
        let _ = writeln!(out, "\nwhat happened:");
        for r in self.strategies.iter().filter(|r| r.skipped.is_none()) {
            let _ = writeln!(out, "  {:<20} {}", r.strategy.name(), r.what_happened());
        }
        let _ = writeln!(
            out,
            "\nwhat the nodes' metrics counted (an operator's view, warm-up included):"
        );
        for r in self.strategies.iter().filter(|r| r.skipped.is_none()) {
            let _ = writeln!(out, "  {:<20} {}", r.strategy.name(), r.operator.line());
        }
        let _ = writeln!(out, "\ncolumns:");
        let width = LEGEND.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, meaning) in LEGEND {
            let _ = writeln!(out, "  {name:<width$}  {meaning}");
        }
        out
    }

    /// The report as JSON.
    ///
    /// # Errors
    ///
    /// Never in practice: every field serializes.
    pub fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// A self-contained HTML page: a chart of what each strategy lost, the table, and per
    /// strategy a chart of what its users saw over the measured window (answers and errors per
    /// second, sessions and updates lost, p99 latency), the faults marked. No external assets.
    pub fn html(&self) -> String {
        let mut page = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>tether lab report</title>\n\
             <style>body{font-family:sans-serif;margin:2em;max-width:1000px;color:#1f2328}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}\
             .chart{margin:1em 0 2em}.chart svg{max-width:100%;height:auto;font-family:sans-serif;font-size:12px}\
             figure{margin:0}figcaption,.note{color:#57606a;font-size:14px}</style>\n</head>\n<body>\n<h1>tether lab report</h1>\n",
        );
        let _ = writeln!(
            page,
            "<p>{} nodes, {} users, {:.0} s measured per strategy.</p>",
            self.nodes, self.users, self.measure_s
        );
        let _ = writeln!(
            page,
            "<p>Scenario {}: {}.</p>",
            self.scenario,
            escape(&self.what_happened())
        );
        let _ = writeln!(page, "<p>{}.</p>", escape(&self.conditions()));
        let _ = writeln!(
            page,
            "<h2>What users lost</h2>\n<figure class=\"chart\">{}<figcaption>The table's totals per \
             strategy (counted over the whole run, warm-up included). Each column has its own \
             linear scale; the numbers are exact.</figcaption></figure>",
            chart::summary(&self.strategies)
        );
        let errors = if self.scenario == Scenario::Pause {
            "errors (paused/live)"
        } else {
            "errors"
        };
        let _ = writeln!(
            page,
            "<table>\n<tr><th>strategy</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>event p99 ms</th><th>event max ms</th><th>sessions lost</th><th>updates lost</th><th>wrong values</th><th>{errors}</th><th>bytes/write</th><th>max node share</th></tr>"
        );
        for r in &self.strategies {
            match &r.skipped {
                Some(reason) => {
                    let _ = writeln!(
                        page,
                        "<tr><td>{}</td><td colspan=\"12\">{}</td></tr>",
                        r.strategy.name(),
                        escape(reason)
                    );
                }
                None => {
                    let row: String = r.cells().iter().map(|c| format!("<td>{c}</td>")).collect();
                    let _ = writeln!(page, "<tr>{row}</tr>");
                }
            }
        }
        page.push_str("</table>\n");
        let _ = writeln!(
            page,
            "<h2>What the nodes' metrics counted</h2>\n<p class=\"note\">The session layers' own \
             counters (<code>tether_session_requests_total</code>, \
             <code>tether_session_store_errors_total</code>), summed over the nodes, warm-up \
             included: what an operator's dashboard showed of the same run.</p>\n<ul>"
        );
        for r in self.strategies.iter().filter(|r| r.skipped.is_none()) {
            let _ = writeln!(
                page,
                "<li>{}: {}</li>",
                escape(r.strategy.name()),
                escape(&r.operator.line())
            );
        }
        page.push_str("</ul>\n");
        let _ = writeln!(
            page,
            "<h2>What users saw, over time</h2>\n<p class=\"note\">Each point is one {} ms bucket \
             of the requests sent in it; only the buckets wholly inside the measured window are \
             drawn. Time runs from the end of the warm-up; the fault lists below count from the \
             strategy's start, warm-up ({:.1} s) included.</p>",
            BUCKET.as_millis(),
            self.strategies
                .iter()
                .find(|r| r.skipped.is_none())
                .map_or(0.0, |r| r.series.warmup_s),
        );
        for r in self.strategies.iter().filter(|r| r.skipped.is_none()) {
            let _ = writeln!(
                page,
                "<h3>{}</h3>\n<p class=\"note\">{}</p>\n<div class=\"chart\">{}</div>",
                escape(r.strategy.name()),
                escape(&r.what_happened()),
                chart::timeline(r)
            );
        }
        page.push_str("</body>\n</html>\n");
        page
    }
}

impl StrategyReport {
    /// The faults of this run, as they happened (`node-1 killed at 4.0 s, node-1 started again
    /// at 4.5 s (0.48 s)`), or that nothing happened.
    fn what_happened(&self) -> String {
        if self.events.is_empty() {
            return "no fault: every node ran throughout".to_owned();
        }
        let events: Vec<String> = self
            .events
            .iter()
            .map(|e| {
                let verb = match e.kind {
                    "kill" => "killed",
                    "stop" => "stopped gracefully",
                    "restart" => "started again",
                    "pause" => "paused",
                    "scale-up" => "added",
                    other => other,
                };
                if e.duration_s > 0.0 {
                    format!(
                        "{} {verb} at {:.1} s ({:.2} s)",
                        e.node, e.at_s, e.duration_s
                    )
                } else {
                    format!("{} {verb} at {:.1} s", e.node, e.at_s)
                }
            })
            .collect();
        events.join(", ")
    }

    /// The spread of the main figures over the runs: `req/s 2010-2150, p99 ms 3.10-4.02, ...`.
    fn spread_line(&self) -> String {
        const SHOWN: [(&str, &str); 7] = [
            ("rps", "req/s"),
            ("p99_ms", "p99 ms"),
            ("event_p99_ms", "event p99 ms"),
            ("sessions_lost", "sessions lost"),
            ("updates_lost", "updates lost"),
            ("wrong_values", "wrong values"),
            ("errors", "errors"),
        ];
        let shown: Vec<String> = SHOWN
            .iter()
            .filter_map(|(key, label)| {
                let Spread { min, max } = *self.spread.get(key)?;
                Some(if key.ends_with("_ms") {
                    format!("{label} {min:.2}-{max:.2}")
                } else {
                    format!("{label} {min:.0}-{max:.0}")
                })
            })
            .collect();
        shown.join(", ")
    }

    /// The table row, formatted, in column order; the text and HTML tables both show it.
    fn cells(&self) -> [String; 13] {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let errors = match (self.paused_node_errors, self.live_node_errors) {
            (Some(paused), Some(live)) => format!("{paused}/{live}"),
            _ => self.errors.to_string(),
        };
        [
            self.strategy.name().to_owned(),
            format!("{:.0}", self.rps),
            format!("{:.2}", self.p50_ms),
            format!("{:.2}", self.p99_ms),
            format!("{:.1}", self.max_ms),
            ms(self.event_p99_ms),
            ms(self.event_max_ms),
            self.sessions_lost.to_string(),
            self.updates_lost.to_string(),
            self.wrong_values.to_string(),
            errors,
            self.bytes_per_write
                .map_or("-".to_owned(), |b| format!("{b:.0}")),
            format!("{:.0}%", self.max_node_share * 100.0),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(sent_ms: u32, ms: u32) -> Latency {
        Latency {
            sent_ms,
            micros: ms * 1000,
        }
    }

    #[test]
    fn a_series_holds_only_the_full_buckets_of_the_measured_window() {
        // A 600 ms warm-up and 1 s measured: the window is 600..1600 ms, and only the buckets
        // from 750 ms to 1500 ms (3, 4 and 5) lie wholly inside it.
        let counts: Vec<Counts> = (0..9)
            .map(|i| Counts {
                ok: 10 + i,
                errors: i % 2,
                sessions_lost: u64::from(i == 4),
                updates_lost: if i == 4 { 7 } else { i },
            })
            .collect();
        let latencies = [
            latency(700, 50),
            latency(800, 3),
            latency(1_100, 5),
            latency(1_550, 9),
        ];
        let series = Series::measured(
            &counts,
            &latencies,
            Duration::from_millis(600),
            Duration::from_secs(1),
        );
        assert_eq!(series.len(), 3);
        assert!((series.start_s - 0.15).abs() < 1e-9, "{series:?}");
        assert!((series.middle_s(0) - 0.275).abs() < 1e-9);
        assert_eq!(series.answers_per_s, [52.0, 56.0, 60.0]);
        assert_eq!(series.errors_per_s, [4.0, 0.0, 4.0]);
        assert_eq!(series.sessions_lost, [0, 1, 1]);
        assert_eq!(series.updates_lost, [3, 10, 15]);
        assert_eq!(series.p99_ms, [Some(3.0), Some(5.0), None]);
        assert!((series.warmup_s - 0.6).abs() < 1e-9 && (series.window_s - 1.0).abs() < 1e-9);

        let short = Series::measured(&counts, &[], Duration::ZERO, Duration::from_millis(200));
        assert!(short.is_empty() && short.p99_ms.is_empty());
    }

    #[test]
    fn an_event_window_spans_half_a_second_before_to_a_second_after_its_end() {
        // A pause at 2 s that lasted 1 s: its window is 1.5 s to 4 s.
        let mut event = Event::new("pause", 1, Duration::from_secs(2), Duration::from_secs(1));
        let mut latencies = vec![latency(1_499, 900), latency(4_001, 800)];
        latencies.extend((0..99).map(|i| latency(1_500 + i * 25, 2)));
        latencies.push(latency(4_000, 300));
        event.measure_window(&latencies);
        assert_eq!(event.window_max_ms, Some(300.0));
        assert_eq!(event.window_p99_ms, Some(2.0));
        assert_eq!(event.node, "node-1");

        let mut empty = Event::new("kill", 0, Duration::from_secs(9), Duration::ZERO);
        empty.measure_window(&latencies);
        assert_eq!((empty.window_p99_ms, empty.window_max_ms), (None, None));
        let json = serde_json::to_value(&empty).unwrap();
        assert_eq!(json["kind"], "kill");
        assert!(json.get("index").is_none(), "{json}");
    }
}
