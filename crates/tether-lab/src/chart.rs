//! The HTML report's inline SVG charts: what each strategy lost, side by side, and per
//! strategy what its users saw over the measured window.

use std::fmt::Write as _;

use crate::report::{Event, Series, StrategyReport};

/// Width of every chart, in SVG units (the page scales them down to fit).
const WIDTH: f64 = 960.0;
/// Room left of a timeline's plot for the tick labels.
const LEFT: f64 = 66.0;
/// Room right of a timeline's plot for the second scale's tick labels.
const RIGHT: f64 = 66.0;
/// Labels are laid out without measuring text: an average character of the 12 px font.
const CHAR: f64 = 6.4;
/// Tick labels on the time axis are at least this far apart.
const TICK_LABEL_GAP: f64 = 30.0;

const ANSWERS: &str = "#1f6feb";
const ERRORS: &str = "#d1242f";
const SESSIONS: &str = "#8250df";
const UPDATES: &str = "#bc4c00";
const P99: &str = "#2da44e";
const EVENT: &str = "#424a53";
const GRID: &str = "#d0d7de";
const MUTED: &str = "#57606a";

/// `text` made safe inside HTML and SVG text and attributes.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The strategies side by side: per strategy a row, and in it a bar each for sessions lost,
/// updates lost and errors, the number written next to it. Each column has its own linear
/// scale, so that a column of small numbers is not flattened by another of large ones.
pub(crate) fn summary(strategies: &[StrategyReport]) -> String {
    type Metric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&StrategyReport) -> u64,
    );
    const METRICS: [Metric; 3] = [
        ("sessions-lost", "sessions lost", SESSIONS, |r| {
            r.sessions_lost
        }),
        ("updates-lost", "updates lost", UPDATES, |r| r.updates_lost),
        ("errors", "errors (failed requests)", ERRORS, |r| r.errors),
    ];
    const NAMES: f64 = 180.0;
    const HEAD: f64 = 44.0;
    const ROW: f64 = 26.0;
    const BAR: f64 = 14.0;
    let column = (WIDTH - NAMES) / METRICS.len() as f64;
    let longest = column - 80.0;
    let height = HEAD + ROW * strategies.len() as f64 + 8.0;
    let mut svg = format!(
        "<svg class=\"summary\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-label=\"sessions lost, updates lost and errors per strategy\">"
    );
    for (c, (class, title, color, value)) in METRICS.iter().enumerate() {
        let left = NAMES + c as f64 * column;
        let peak = strategies
            .iter()
            .filter(|r| r.skipped.is_none())
            .map(value)
            .max()
            .unwrap_or(0);
        let scale = if peak == 0 {
            "0 for every strategy".to_owned()
        } else {
            format!("linear, 0 to {peak}")
        };
        let peak = peak.max(1);
        let _ = write!(
            svg,
            "<text class=\"axis-label\" x=\"{left}\" y=\"18\" font-weight=\"bold\" fill=\"{color}\">{title}</text>\
             <text x=\"{left}\" y=\"34\" font-size=\"11\" fill=\"{MUTED}\">{scale}</text>\
             <line x1=\"{left}\" y1=\"{HEAD}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"{MUTED}\"/>",
            bottom = height - 6.0,
        );
        for (i, r) in strategies.iter().enumerate() {
            let top = HEAD + i as f64 * ROW + (ROW - BAR) / 2.0;
            let text_y = top + BAR - 2.0;
            if r.skipped.is_some() {
                let _ = write!(
                    svg,
                    "<text x=\"{x}\" y=\"{text_y}\" font-size=\"11\" fill=\"{MUTED}\">skipped</text>",
                    x = left + 5.0,
                );
                continue;
            }
            let count = value(r);
            let length = count as f64 / peak as f64 * longest;
            let _ = write!(
                svg,
                "<g class=\"bar {class}\"><rect x=\"{left}\" y=\"{top}\" width=\"{length:.1}\" height=\"{BAR}\" fill=\"{color}\"/>\
                 <text x=\"{x:.1}\" y=\"{text_y}\">{count}</text></g>",
                x = left + length + 5.0,
            );
        }
    }
    for (i, r) in strategies.iter().enumerate() {
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{y}\">{}</text>",
            escape(r.strategy.name()),
            y = HEAD + i as f64 * ROW + ROW / 2.0 + 4.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal band of a timeline chart.
#[derive(Clone, Copy, Debug)]
struct Panel {
    top: f64,
    height: f64,
}

impl Panel {
    fn bottom(self) -> f64 {
        self.top + self.height
    }

    /// Where `value` lies on a scale from 0 to `scale`.
    fn y(self, value: f64, scale: f64) -> f64 {
        self.bottom() - value.clamp(0.0, scale) / scale * self.height
    }
}

/// A y scale: which side of the plot its tick labels go, their colour and unit.
#[derive(Clone, Copy, Debug)]
struct Scale {
    top: f64,
    right: bool,
    color: &'static str,
    unit: &'static str,
}

/// One strategy's measured window on one time axis, in three stacked panels: good answers
/// and errors per second; sessions and updates lost so far; p99 latency per bucket. Each
/// event is a line where it began and a band while it lasted, labelled above the panels.
pub(crate) fn timeline(report: &StrategyReport) -> String {
    let series = &report.series;
    let window = series.window_s.max(f64::MIN_POSITIVE);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |seconds: f64| LEFT + seconds.clamp(0.0, window) / window * plot;

    let mut legend = String::new();
    let legend_bottom = draw_legend(&mut legend, series);
    let (labels, rows) = event_labels(&report.events, series, &x);
    let first = Panel {
        top: legend_bottom + 8.0 + rows as f64 * 15.0 + 22.0,
        height: 150.0,
    };
    let second = Panel {
        top: first.bottom() + 34.0,
        height: 110.0,
    };
    let third = Panel {
        top: second.bottom() + 34.0,
        height: 110.0,
    };
    let height = third.bottom() + 46.0;

    let mut svg = format!(
        "<svg class=\"strategy\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-label=\"{} over the measured window\">{legend}",
        escape(report.strategy.name())
    );

    let peak_rate = series
        .answers_per_s
        .iter()
        .chain(&series.errors_per_s)
        .copied()
        .fold(0.0, f64::max);
    let rates = Scale {
        top: nice(peak_rate, 1.0),
        right: false,
        color: MUTED,
        unit: "/s",
    };
    let sessions = Scale {
        top: nice(last(&series.sessions_lost), 2.0),
        right: false,
        color: SESSIONS,
        unit: "",
    };
    let updates = Scale {
        top: nice(last(&series.updates_lost), 2.0),
        right: true,
        color: UPDATES,
        unit: "",
    };
    let peak_p99 = series.p99_ms.iter().flatten().copied().fold(0.0, f64::max);
    let latency = Scale {
        top: nice(peak_p99, 1.0),
        right: false,
        color: MUTED,
        unit: " ms",
    };

    let bucket_s = series.bucket_ms as f64 / 1000.0;
    let titles = [
        (
            first,
            "good answers and errors per second (requests sent in each bucket)".to_owned(),
        ),
        (
            second,
            "lost since the window began: sessions (left scale), updates (right scale)".to_owned(),
        ),
        (
            third,
            format!(
                "p99 latency of the answers to the requests sent in each {} ms bucket",
                series.bucket_ms
            ),
        ),
    ];
    for (panel, title) in &titles {
        frame(&mut svg, *panel, window, &x);
        let _ = write!(
            svg,
            "<text class=\"axis-label y\" x=\"{LEFT}\" y=\"{y}\" font-weight=\"bold\">{}</text>",
            escape(title),
            y = panel.top - 8.0,
        );
    }
    y_axis(&mut svg, first, rates);
    y_axis(&mut svg, second, sessions);
    y_axis(&mut svg, second, updates);
    y_axis(&mut svg, third, latency);
    time_axis(&mut svg, third, window, &x);

    // Bands under the lines, labels and start lines over them.
    let over = draw_events(&mut svg, &labels, first.top, third.bottom());
    let middle = |i: usize| x(series.middle_s(i));
    line(
        &mut svg,
        ("answers", ANSWERS, ""),
        series
            .answers_per_s
            .iter()
            .enumerate()
            .map(|(i, v)| (middle(i), first.y(*v, rates.top))),
    );
    line(
        &mut svg,
        ("errors", ERRORS, ""),
        series
            .errors_per_s
            .iter()
            .enumerate()
            .map(|(i, v)| (middle(i), first.y(*v, rates.top))),
    );
    line(
        &mut svg,
        ("sessions-lost", SESSIONS, ""),
        series
            .sessions_lost
            .iter()
            .enumerate()
            .map(|(i, v)| (middle(i), second.y(*v as f64, sessions.top))),
    );
    line(
        &mut svg,
        ("updates-lost", UPDATES, "7 4"),
        series
            .updates_lost
            .iter()
            .enumerate()
            .map(|(i, v)| (middle(i), second.y(*v as f64, updates.top))),
    );
    let bar = (plot / window * bucket_s * 0.7).max(1.0);
    svg.push_str("<g class=\"series p99\">");
    for (i, p99) in series.p99_ms.iter().enumerate() {
        if let Some(p99) = p99 {
            let top = third.y(*p99, latency.top);
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{P99}\"><title>{p99:.1} ms</title></rect>",
                middle(i) - bar / 2.0,
                third.bottom() - top,
            );
        }
    }
    svg.push_str("</g>");
    if series.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\">no full {} ms bucket in the measured window</text>",
            LEFT + plot / 2.0,
            first.top + first.height / 2.0,
            series.bucket_ms,
        );
    }
    svg.push_str(&over);
    svg.push_str("</svg>");
    svg
}

/// The last value of a cumulative count, as a float.
fn last(values: &[u64]) -> f64 {
    values.last().copied().unwrap_or(0) as f64
}

/// The smallest round number (1, 2, 4, 6 or 8 times a power of ten) at least `value` and
/// `least`: a scale's top, whose half is round too.
fn nice(value: f64, least: f64) -> f64 {
    let value = value.max(least);
    let power = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|f| f * power)
        .find(|top| *top >= value * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// A tick label: whole numbers as such, others with one decimal, or two below 1.
fn number(value: f64) -> String {
    let text = if value >= 10.0 || value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// The legend along the top, in as many rows as it needs; returns its bottom.
fn draw_legend(svg: &mut String, series: &Series) -> f64 {
    const ROW: f64 = 20.0;
    let p99 = format!("p99 ms per {} ms", series.bucket_ms);
    let items: [(&str, &str, &str); 6] = [
        ("line", ANSWERS, "good answers/s"),
        ("line", ERRORS, "errors/s"),
        ("line", SESSIONS, "sessions lost, total"),
        ("dashed", UPDATES, "updates lost, total"),
        ("bar", P99, &p99),
        ("event", EVENT, "fault: start (line), duration (band)"),
    ];
    svg.push_str("<g class=\"legend\">");
    const FROM: f64 = 8.0;
    let (mut left, mut top) = (FROM, 0.0);
    for (kind, color, text) in items {
        let width = 25.0 + text.len() as f64 * CHAR;
        if left > FROM && left + width > WIDTH - 4.0 {
            (left, top) = (FROM, top + ROW);
        }
        let middle = top + 12.0;
        let swatch = match kind {
            "bar" => format!(
                "<rect x=\"{left}\" y=\"{}\" width=\"16\" height=\"10\" fill=\"{color}\"/>",
                middle - 5.0
            ),
            "event" => format!(
                "<rect x=\"{left}\" y=\"{y1}\" width=\"18\" height=\"16\" fill=\"{EVENT}\" fill-opacity=\"0.15\"/>\
                 <line x1=\"{left}\" y1=\"{y1}\" x2=\"{left}\" y2=\"{y2}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"3 2\"/>",
                y1 = middle - 8.0,
                y2 = middle + 8.0,
            ),
            _ => format!(
                "<line x1=\"{left}\" y1=\"{middle}\" x2=\"{}\" y2=\"{middle}\" stroke=\"{color}\" stroke-width=\"2.5\"{}/>",
                left + 20.0,
                if kind == "dashed" {
                    " stroke-dasharray=\"7 4\""
                } else {
                    ""
                },
            ),
        };
        let _ = write!(
            svg,
            "{swatch}<text x=\"{}\" y=\"{}\">{}</text>",
            left + 25.0,
            middle + 4.0,
            escape(text),
        );
        left += width + 12.0;
    }
    svg.push_str("</g>");
    top + ROW + 4.0
}

/// An event as drawn: where it begins and ends on the plot, its label and the label's place.
#[derive(Debug)]
struct Label<'a> {
    event: &'a Event,
    from: f64,
    to: f64,
    text: String,
    /// The label's row above the plot, from the top.
    row: usize,
    anchor_end: bool,
}

/// The events that began inside the measured window, each labelled, the labels spread over
/// as few rows as keep them apart; and the number of rows.
fn event_labels<'a>(
    events: &'a [Event],
    series: &Series,
    x: &dyn Fn(f64) -> f64,
) -> (Vec<Label<'a>>, usize) {
    let right_edge = WIDTH - 4.0;
    let mut rows: Vec<f64> = Vec::new();
    let mut labels = Vec::new();
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    for event in sorted {
        let at = event.at_s - series.warmup_s;
        if !(0.0..=series.window_s).contains(&at) {
            continue;
        }
        // Durations shorter than the label shows are not worth a band.
        let lasted = if event.duration_s >= 0.005 {
            event.duration_s
        } else {
            0.0
        };
        let text = if lasted > 0.0 {
            format!(
                "{} {} at {at:.2} s, {:.2} s",
                event.kind, event.node, lasted
            )
        } else {
            format!("{} {} at {at:.2} s", event.kind, event.node)
        };
        let from = x(at);
        let width = text.len() as f64 * CHAR;
        let anchor_end = from + 4.0 + width > right_edge;
        let (start, end) = if anchor_end {
            (from - 4.0 - width, from)
        } else {
            (from, from + 4.0 + width)
        };
        let row = rows
            .iter()
            .position(|taken| *taken + 8.0 < start)
            .unwrap_or(rows.len());
        if let Some(taken) = rows.get_mut(row) {
            *taken = end;
        } else {
            rows.push(end);
        }
        labels.push(Label {
            event,
            from,
            to: x(at + lasted),
            text,
            row,
            anchor_end,
        });
    }
    let count = rows.len();
    (labels, count)
}

/// Draws the events' bands into `svg` (under what follows), and returns their start lines
/// and labels, to be drawn over the series.
fn draw_events(svg: &mut String, labels: &[Label<'_>], plot_top: f64, plot_bottom: f64) -> String {
    let mut over = String::new();
    let rows = labels.iter().map(|l| l.row + 1).max().unwrap_or(0);
    for label in labels {
        let kind = escape(label.event.kind);
        if label.to > label.from {
            let _ = write!(
                svg,
                "<rect class=\"band {kind}\" x=\"{:.1}\" y=\"{plot_top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{EVENT}\" fill-opacity=\"0.13\"/>",
                label.from,
                label.to - label.from,
                plot_bottom - plot_top,
            );
        }
        // Row 0 is the top one.
        let text_y = plot_top - 24.0 - (rows - 1 - label.row) as f64 * 15.0;
        let (text_x, anchor) = if label.anchor_end {
            (label.from - 4.0, "end")
        } else {
            (label.from + 4.0, "start")
        };
        let _ = write!(
            over,
            "<g class=\"event {kind}\"><line x1=\"{x:.1}\" y1=\"{y1:.1}\" x2=\"{x:.1}\" y2=\"{plot_bottom:.1}\" stroke=\"{EVENT}\" stroke-width=\"1.5\" stroke-dasharray=\"3 2\"/>\
             <text class=\"event-label\" x=\"{text_x:.1}\" y=\"{text_y:.1}\" text-anchor=\"{anchor}\" fill=\"{EVENT}\" \
             stroke=\"#fff\" stroke-width=\"4\" paint-order=\"stroke\">{}</text></g>",
            escape(&label.text),
            x = label.from,
            y1 = text_y - 10.0,
        );
    }
    over
}

/// A panel's outline and a grid line each second.
fn frame(svg: &mut String, panel: Panel, window: f64, x: &dyn Fn(f64) -> f64) {
    for second in seconds(window) {
        let at = x(second);
        let _ = write!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{}\" x2=\"{at:.1}\" y2=\"{}\" stroke=\"{GRID}\" stroke-width=\"0.6\"/>",
            panel.top,
            panel.bottom(),
        );
    }
    let _ = write!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{MUTED}\"/>",
        panel.top,
        WIDTH - LEFT - RIGHT,
        panel.height,
    );
}

/// Every whole second from 0 to `window`.
fn seconds(window: f64) -> impl Iterator<Item = f64> {
    let last = window.max(0.0).floor() as u64;
    (0..=last).map(|s| s as f64)
}

/// Ticks at 0, the middle and the top of `scale`, labelled with its unit; grid lines for
/// the left-hand scale.
fn y_axis(svg: &mut String, panel: Panel, scale: Scale) {
    let (tick, label, anchor) = if scale.right {
        let edge = WIDTH - RIGHT;
        (edge + 4.0, edge + 7.0, "start")
    } else {
        (LEFT - 4.0, LEFT - 7.0, "end")
    };
    for value in [0.0, scale.top / 2.0, scale.top] {
        let y = panel.y(value, scale.top);
        let edge = if scale.right { WIDTH - RIGHT } else { LEFT };
        if !scale.right && value > 0.0 {
            let _ = write!(
                svg,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"{GRID}\" stroke-width=\"0.6\"/>",
                WIDTH - RIGHT,
            );
        }
        let _ = write!(
            svg,
            "<line x1=\"{tick}\" y1=\"{y:.1}\" x2=\"{edge}\" y2=\"{y:.1}\" stroke=\"{MUTED}\"/>\
             <text class=\"tick\" x=\"{label}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"11\" fill=\"{}\">{}{}</text>",
            y + 4.0,
            scale.color,
            number(value),
            scale.unit,
        );
    }
}

/// The time axis under `panel`: a tick each second, labelled as often as there is room.
fn time_axis(svg: &mut String, panel: Panel, window: f64, x: &dyn Fn(f64) -> f64) {
    let per_second = (WIDTH - LEFT - RIGHT) / window;
    let every = (TICK_LABEL_GAP / per_second).ceil().max(1.0) as u64;
    let bottom = panel.bottom();
    for (i, second) in seconds(window).enumerate() {
        let at = x(second);
        let _ = write!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{bottom}\" x2=\"{at:.1}\" y2=\"{}\" stroke=\"{MUTED}\"/>",
            bottom + 5.0,
        );
        if (i as u64).is_multiple_of(every) {
            let _ = write!(
                svg,
                "<text class=\"tick\" x=\"{at:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"{MUTED}\">{} s</text>",
                bottom + 18.0,
                number(second),
            );
        }
    }
    let _ = write!(
        svg,
        "<text class=\"axis-label x\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds of the measured window (0 = end of the warm-up)</text>",
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        bottom + 38.0,
    );
}

/// A series as a line through its points; `dash` empty for a solid one.
fn line(
    svg: &mut String,
    (class, color, dash): (&str, &str, &str),
    points: impl Iterator<Item = (f64, f64)>,
) {
    let points: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let dash = if dash.is_empty() {
        String::new()
    } else {
        format!(" stroke-dasharray=\"{dash}\"")
    };
    let _ = write!(
        svg,
        "<polyline class=\"series {class}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" \
         stroke-linejoin=\"round\"{dash} points=\"{}\"/>",
        points.join(" "),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_end_on_round_numbers_whose_halves_are_round() {
        assert!((nice(0.0, 2.0) - 2.0).abs() < 1e-9);
        assert!((nice(3.0, 2.0) - 4.0).abs() < 1e-9);
        assert!((nice(1234.0, 1.0) - 2000.0).abs() < 1e-9);
        assert!((nice(0.35, 0.1) - 0.4).abs() < 1e-9);
        assert!((nice(9.0, 1.0) - 10.0).abs() < 1e-9);
        assert_eq!(number(1000.0), "1000");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(0.2), "0.2");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
