//! The comparison: a table, JSON, and a self-contained HTML page with one chart per strategy.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Kill, LabConfig};
use crate::strategy::Strategy;
use crate::users::{BUCKET, Tally};

/// Something that happened during a run: a kill, a restart, a scale-up.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// `kill`, `restart` or `scale-up`.
    pub kind: &'static str,
    /// The node.
    pub node: String,
    /// Seconds from the strategy's start.
    pub at_s: f64,
}

impl Event {
    pub(crate) fn new(kind: &'static str, node: String, at: Duration) -> Self {
        Self {
            kind,
            node,
            at_s: at.as_secs_f64(),
        }
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
    /// Successful requests in the measured time.
    pub requests: u64,
    /// Failed requests (503, 502, no server).
    pub errors: u64,
    /// Times a user's counter came back reset: sessions lost.
    pub sessions_lost: u64,
    /// Increments lost, reset or stepped back.
    pub updates_lost: u64,
    /// Answers above the expected value.
    pub wrong_values: u64,
    /// Replication bytes between nodes per successful write, where nodes replicate.
    pub bytes_per_write: Option<f64>,
    /// The largest share of requests one node served.
    pub max_node_share: f64,
    /// Successful requests per second, per quarter second from the start.
    pub timeline: Vec<f64>,
    /// Width of a timeline point, ms.
    pub bucket_ms: u64,
    /// Kills, restarts, scale-ups.
    pub events: Vec<Event>,
}

impl StrategyReport {
    pub(crate) fn skipped(strategy: Strategy, reason: String) -> Self {
        Self {
            strategy,
            skipped: Some(reason),
            rps: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            requests: 0,
            errors: 0,
            sessions_lost: 0,
            updates_lost: 0,
            wrong_values: 0,
            bytes_per_write: None,
            max_node_share: 0.0,
            timeline: Vec::new(),
            bucket_ms: BUCKET.as_millis() as u64,
            events: Vec::new(),
        }
    }

    pub(crate) fn measured(
        strategy: Strategy,
        tally: &Tally,
        measure: Duration,
        served: &[u64],
        replication_bytes: Option<u64>,
        events: Vec<Event>,
    ) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let latencies = tally.latencies();
        let at = |q: f64| {
            let index = ((latencies.len().max(1) - 1) as f64 * q).round() as usize;
            f64::from(latencies.get(index).copied().unwrap_or(0)) / 1000.0
        };
        let requests = tally.ok.load(Relaxed);
        let total_served: u64 = served.iter().sum();
        let all_writes: f64 = tally.timeline().iter().sum::<f64>() * BUCKET.as_secs_f64();
        Self {
            strategy,
            skipped: None,
            rps: requests as f64 / measure.as_secs_f64(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            requests,
            errors: tally.errors.load(Relaxed),
            sessions_lost: tally.sessions_lost.load(Relaxed),
            updates_lost: tally.updates_lost.load(Relaxed),
            wrong_values: tally.wrong_values.load(Relaxed),
            bytes_per_write: replication_bytes.map(|b| b as f64 / all_writes.max(1.0)),
            max_node_share: served.iter().copied().max().unwrap_or(0) as f64
                / total_served.max(1) as f64,
            timeline: tally.timeline(),
            bucket_ms: BUCKET.as_millis() as u64,
            events,
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
    /// Which node was killed halfway.
    pub kill: Kill,
    /// One entry per strategy.
    pub strategies: Vec<StrategyReport>,
}

impl Report {
    pub(crate) fn new(config: &LabConfig, strategies: Vec<StrategyReport>) -> Self {
        Self {
            nodes: config.nodes,
            users: config.users,
            measure_s: config.measure.as_secs_f64(),
            kill: config.kill,
            strategies,
        }
    }

    /// The report as a text table.
    pub fn table(&self) -> String {
        let killed = match self.kill {
            Kill::Busiest => "the busiest node is killed halfway".to_owned(),
            Kill::Node(i) => format!("node-{i} is killed halfway"),
            Kill::None => "no node is killed".to_owned(),
        };
        let mut out = format!(
            "{} nodes, {} users, {:.0}s measured per strategy; {killed}\n",
            self.nodes, self.users, self.measure_s
        );
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>11} {:>9}",
            "strategy",
            "req/s",
            "p50 ms",
            "p99 ms",
            "sessions",
            "updates",
            "wrong",
            "errors",
            "bytes/write",
            "max share"
        );
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>11} {:>9}",
            "", "", "", "", "lost", "lost", "values", "", "(replic.)", "(1 node)"
        );
        for r in &self.strategies {
            if let Some(reason) = &r.skipped {
                let _ = writeln!(out, "{:<20} {reason}", r.strategy.name());
                continue;
            }
            let [
                name,
                rps,
                p50,
                p99,
                sessions,
                updates,
                wrong,
                errors,
                bytes,
                share,
            ] = r.cells();
            let _ = writeln!(
                out,
                "{name:<20} {rps:>8} {p50:>8} {p99:>8} {sessions:>8} {updates:>8} {wrong:>8} {errors:>7} {bytes:>11} {share:>9}",
            );
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

    /// A self-contained HTML page: the table and one SVG throughput chart per strategy, the
    /// kill marked. No external assets.
    pub fn html(&self) -> String {
        let mut page = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>tether lab report</title>\n\
             <style>body{font-family:sans-serif;margin:2em;max-width:960px}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}\
             .chart{margin:1em 0 2em}</style>\n</head>\n<body>\n<h1>tether lab report</h1>\n",
        );
        let _ = writeln!(
            page,
            "<p>{} nodes, {} users, {:.0} s measured per strategy.</p>",
            self.nodes, self.users, self.measure_s
        );
        page.push_str("<table>\n<tr><th>strategy</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>sessions lost</th><th>updates lost</th><th>wrong values</th><th>errors</th><th>bytes/write</th><th>max node share</th></tr>\n");
        for r in &self.strategies {
            match &r.skipped {
                Some(reason) => {
                    let _ = writeln!(
                        page,
                        "<tr><td>{}</td><td colspan=\"9\">{}</td></tr>",
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
        for r in self.strategies.iter().filter(|r| r.skipped.is_none()) {
            let _ = writeln!(
                page,
                "<h2>{}</h2>\n<div class=\"chart\">{}</div>",
                r.strategy.name(),
                chart(r)
            );
        }
        page.push_str("</body>\n</html>\n");
        page
    }
}

impl StrategyReport {
    /// The table row, formatted, in column order; the text and HTML tables both show it.
    fn cells(&self) -> [String; 10] {
        [
            self.strategy.name().to_owned(),
            format!("{:.0}", self.rps),
            format!("{:.2}", self.p50_ms),
            format!("{:.2}", self.p99_ms),
            self.sessions_lost.to_string(),
            self.updates_lost.to_string(),
            self.wrong_values.to_string(),
            self.errors.to_string(),
            self.bytes_per_write
                .map_or("-".to_owned(), |b| format!("{b:.0}")),
            format!("{:.0}%", self.max_node_share * 100.0),
        ]
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Throughput over time as an SVG line chart, events as vertical lines.
fn chart(report: &StrategyReport) -> String {
    let (width, height, pad) = (900.0_f64, 220.0_f64, 40.0_f64);
    let points = report.timeline.len().max(2);
    let peak = report.timeline.iter().copied().fold(1.0_f64, f64::max);
    let x = |i: f64| pad + i / (points - 1) as f64 * (width - 2.0 * pad);
    let y = |v: f64| height - pad - v / peak * (height - 2.0 * pad);
    let line: Vec<String> = report
        .timeline
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", x(i as f64), y(*v)))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"throughput\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{} requests per second over time\">",
        report.strategy.name()
    );
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#888\"/>\
         <text x=\"4\" y=\"{pad}\" font-size=\"11\">{peak:.0}/s</text><text x=\"{r}\" y=\"{t}\" font-size=\"11\" text-anchor=\"end\">{secs:.1} s</text>",
        b = height - pad,
        r = width - pad,
        t = height - pad + 16.0,
        secs = report.timeline.len() as f64 * report.bucket_ms as f64 / 1000.0,
    );
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\" points=\"{}\"/>",
        line.join(" ")
    );
    for event in &report.events {
        let position = x(event.at_s * 1000.0 / report.bucket_ms as f64);
        let color = if event.kind == "kill" {
            "#d1242f"
        } else {
            "#1a7f37"
        };
        let _ = write!(
            svg,
            "<line class=\"event {kind}\" x1=\"{position:.1}\" y1=\"{pad}\" x2=\"{position:.1}\" y2=\"{b}\" stroke=\"{color}\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"11\" fill=\"{color}\">{kind} {node}</text>",
            kind = event.kind,
            b = height - pad,
            tx = position + 4.0,
            ty = pad + 12.0,
            node = escape(&event.node),
        );
    }
    svg.push_str("</svg>");
    svg
}
