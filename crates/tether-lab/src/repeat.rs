//! Repeated runs of one strategy: the median of every figure, and its spread.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::StrategyReport;

/// The lowest and highest value of a figure over repeated runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Spread {
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

/// A figure of a report: its name (as in the JSON), how to read it (`None`: not measured), and
/// how to set it to the median.
struct Figure {
    name: &'static str,
    read: fn(&StrategyReport) -> Option<f64>,
    write: fn(&mut StrategyReport, f64),
}

/// A whole count from a median, which is a half for an even number of runs.
fn count(value: f64) -> u64 {
    value.round().max(0.0) as u64
}

const FIGURES: [Figure; 16] = [
    Figure {
        name: "rps",
        read: |r| Some(r.rps),
        write: |r, v| r.rps = v,
    },
    Figure {
        name: "p50_ms",
        read: |r| Some(r.p50_ms),
        write: |r, v| r.p50_ms = v,
    },
    Figure {
        name: "p99_ms",
        read: |r| Some(r.p99_ms),
        write: |r, v| r.p99_ms = v,
    },
    Figure {
        name: "max_ms",
        read: |r| Some(r.max_ms),
        write: |r, v| r.max_ms = v,
    },
    Figure {
        name: "event_p99_ms",
        read: |r| r.event_p99_ms,
        write: |r, v| r.event_p99_ms = Some(v),
    },
    Figure {
        name: "event_max_ms",
        read: |r| r.event_max_ms,
        write: |r, v| r.event_max_ms = Some(v),
    },
    Figure {
        name: "requests",
        read: |r| Some(r.requests as f64),
        write: |r, v| r.requests = count(v),
    },
    Figure {
        name: "errors",
        read: |r| Some(r.errors as f64),
        write: |r, v| r.errors = count(v),
    },
    Figure {
        name: "errors_unavailable",
        read: |r| Some(r.errors_unavailable as f64),
        write: |r, v| r.errors_unavailable = count(v),
    },
    Figure {
        name: "errors_unanswered",
        read: |r| Some(r.errors_unanswered as f64),
        write: |r, v| r.errors_unanswered = count(v),
    },
    Figure {
        name: "paused_node_errors",
        read: |r| r.paused_node_errors.map(|e| e as f64),
        write: |r, v| r.paused_node_errors = Some(count(v)),
    },
    Figure {
        name: "live_node_errors",
        read: |r| r.live_node_errors.map(|e| e as f64),
        write: |r, v| r.live_node_errors = Some(count(v)),
    },
    Figure {
        name: "sessions_lost",
        read: |r| Some(r.sessions_lost as f64),
        write: |r, v| r.sessions_lost = count(v),
    },
    Figure {
        name: "updates_lost",
        read: |r| Some(r.updates_lost as f64),
        write: |r, v| r.updates_lost = count(v),
    },
    Figure {
        name: "wrong_values",
        read: |r| Some(r.wrong_values as f64),
        write: |r, v| r.wrong_values = count(v),
    },
    Figure {
        name: "bytes_per_write",
        read: |r| r.bytes_per_write,
        write: |r, v| r.bytes_per_write = Some(v),
    },
];

/// The median of sorted values: the middle one, or the mean of the middle two.
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// One report for several runs of a strategy: every figure is the median over the runs, with
/// its spread in [`StrategyReport::spread`]; the series, the events and what the table shows
/// of them come from the run of median throughput. `None` for no runs.
pub(crate) fn combine(mut runs: Vec<StrategyReport>) -> Option<StrategyReport> {
    if runs.len() <= 1 {
        return runs.pop();
    }
    let mut by_rps: Vec<usize> = (0..runs.len()).collect();
    by_rps.sort_by(|&a, &b| runs[a].rps.total_cmp(&runs[b].rps));
    let typical = by_rps[(runs.len() - 1) / 2];
    let mut combined = runs.swap_remove(typical);
    runs.push(combined.clone());
    let mut spread = BTreeMap::new();
    for figure in &FIGURES {
        let mut values: Vec<f64> = runs.iter().filter_map(figure.read).collect();
        if values.len() < runs.len() {
            // Not measured in every run (no event window in one, say): left as that run has it.
            continue;
        }
        values.sort_by(f64::total_cmp);
        (figure.write)(&mut combined, median(&values));
        if let (Some(&min), Some(&max)) = (values.first(), values.last()) {
            spread.insert(figure.name, Spread { min, max });
        }
    }
    let mut shares: Vec<f64> = runs.iter().map(|r| r.max_node_share).collect();
    shares.sort_by(f64::total_cmp);
    combined.max_node_share = median(&shares);
    if let (Some(&min), Some(&max)) = (shares.first(), shares.last()) {
        spread.insert("max_node_share", Spread { min, max });
    }
    combined.runs = runs.len();
    combined.spread = spread;
    Some(combined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Strategy;

    fn run(rps: f64, errors: u64, sessions_lost: u64, event_p99_ms: Option<f64>) -> StrategyReport {
        let mut report = StrategyReport::skipped(Strategy::Redis, String::new());
        report.skipped = None;
        report.runs = 1;
        report.rps = rps;
        report.errors = errors;
        report.sessions_lost = sessions_lost;
        report.event_p99_ms = event_p99_ms;
        report
    }

    #[test]
    fn every_figure_is_the_median_of_the_runs_with_its_spread() {
        let combined = combine(vec![
            run(900.0, 4, 0, Some(3.0)),
            run(1000.0, 0, 7, Some(9.0)),
            run(1100.0, 1, 1, None),
        ])
        .unwrap();
        assert_eq!(combined.runs, 3);
        assert!((combined.rps - 1000.0).abs() < f64::EPSILON);
        assert_eq!((combined.errors, combined.sessions_lost), (1, 1));
        assert_eq!(combined.spread["errors"], Spread { min: 0.0, max: 4.0 });
        assert_eq!(
            combined.spread["rps"],
            Spread {
                min: 900.0,
                max: 1100.0
            }
        );
        // Not measured in one run: the median run's own value, and no spread.
        assert_eq!(combined.event_p99_ms, Some(9.0));
        assert!(!combined.spread.contains_key("event_p99_ms"));

        let even = combine(vec![run(1.0, 1, 0, None), run(2.0, 2, 0, None)]).unwrap();
        assert!((even.rps - 1.5).abs() < f64::EPSILON);
        assert_eq!(even.errors, 2, "a half rounds away from zero");
    }

    #[test]
    fn one_run_is_reported_as_it_is() {
        let single = combine(vec![run(5.0, 3, 2, None)]).unwrap();
        assert_eq!((single.runs, single.errors), (1, 3));
        assert!(single.spread.is_empty());
        assert!(combine(Vec::new()).is_none());
    }
}
