//! The HTML report's charts, from a short real run: what they must show, checked in the
//! markup (no browser).

mod common;

use std::time::Duration;

use tether_lab::{Quiet, Report, Scenario, Strategy, StrategyReport, run};

/// 0.5 s warm-up and 2 s measured (see [`common::short`]), in 250 ms buckets.
const FULL_BUCKETS: usize = 8;

const LINES: [&str; 4] = ["answers", "errors", "sessions-lost", "updates-lost"];

/// A restart scenario whose node is down briefly, so that both events fall in the window.
async fn report() -> Report {
    let mut config = common::short(
        Scenario::Restart,
        &[Strategy::MemoryRoundrobin, Strategy::StickyReplicated],
    );
    config.restart_after = Some(Duration::from_millis(300));
    let (_stop, stop) = tokio::sync::watch::channel(false);
    run(&config, &Quiet, stop).await.unwrap()
}

/// The text between `open` (included) and the first `close` after it, for each `open`.
fn elements<'a>(page: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    page.match_indices(open)
        .map(|(at, _)| {
            let rest = &page[at..];
            &rest[..rest.find(close).expect("closed") + close.len()]
        })
        .collect()
}

/// The value of attribute `name` of the element starting at `element`.
fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
    let start = element.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
    let rest = &element[start..];
    &rest[..rest.find('"').unwrap()]
}

/// The x coordinates of a polyline's points.
fn xs(polyline: &str) -> Vec<f64> {
    attribute(polyline, "points")
        .split(' ')
        .map(|point| point.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// The x of the time axis tick labelled `label`.
fn tick_x(svg: &str, label: &str) -> f64 {
    let tick = elements(svg, "<text class=\"tick\"", "</text>")
        .into_iter()
        .find(|t| t.ends_with(&format!(">{label}</text>")))
        .unwrap_or_else(|| panic!("no tick {label}"));
    attribute(tick, "x").parse().unwrap()
}

/// The numbers written next to the summary's bars of `class`, in order.
fn bar_numbers(summary: &str, class: &str) -> Vec<u64> {
    elements(summary, &format!("<g class=\"bar {class}\">"), "</g>")
        .into_iter()
        .map(|bar| {
            let text = &bar[bar.find("<text").unwrap()..];
            let number = &text[text.find('>').unwrap() + 1..text.find("</text>").unwrap()];
            number.parse().unwrap()
        })
        .collect()
}

/// Asserts one strategy's chart against its report.
fn assert_timeline(svg: &str, r: &StrategyReport) {
    let name = r.strategy.name();
    assert!(svg.contains("<g class=\"legend\">"), "{name}: no legend");
    assert_eq!(
        svg.matches("class=\"axis-label y\"").count(),
        3,
        "{name}: a y label per panel"
    );
    assert_eq!(svg.matches("class=\"axis-label x\"").count(), 1, "{name}");
    for label in ["0/s", "0 ms", "0 s", "1 s", "2 s"] {
        assert!(
            svg.contains(&format!(">{label}</text>")),
            "{name}: no tick {label}"
        );
    }

    let series = &r.series;
    assert_eq!(series.bucket_ms, 250, "{name}");
    assert_eq!(series.len(), FULL_BUCKETS, "{name}: {series:?}");
    assert_eq!(series.p99_ms.len(), FULL_BUCKETS, "{name}");
    assert!(series.sessions_lost.is_sorted() && series.updates_lost.is_sorted());
    assert!(
        series
            .sessions_lost
            .last()
            .is_some_and(|l| *l <= r.sessions_lost)
    );

    // Every point lies inside the measured window: after 0 s, before its end.
    let (start, end) = (tick_x(svg, "0 s"), tick_x(svg, "2 s"));
    for class in LINES {
        let lines = elements(svg, &format!("<polyline class=\"series {class}\""), "/>");
        assert_eq!(lines.len(), 1, "{name}: one {class} line");
        let xs = xs(lines[0]);
        assert_eq!(
            xs.len(),
            FULL_BUCKETS,
            "{name} {class}: a point per full bucket"
        );
        assert!(xs.is_sorted(), "{name} {class}: {xs:?}");
        assert!(
            xs.iter().all(|x| *x > start && *x < end),
            "{name} {class}: a point outside the window ({start}..{end}): {xs:?}"
        );
    }
    let p99 = elements(svg, "<g class=\"series p99\">", "</g>");
    assert_eq!(p99.len(), 1, "{name}");
    let answered = series.p99_ms.iter().flatten().count();
    assert!(answered > 0, "{name}: {series:?}");
    assert_eq!(
        p99[0].matches("<rect ").count(),
        answered,
        "{name}: a bar per answered bucket"
    );

    // Each event that began in the window: a line and a label; a band when it lasted.
    let inside: Vec<_> = r
        .events
        .iter()
        .filter(|e| (0.0..=series.window_s).contains(&(e.at_s - series.warmup_s)))
        .collect();
    assert!(
        inside.iter().any(|e| e.kind == "kill"),
        "{name}: {:?}",
        r.events
    );
    let markers = elements(svg, "<g class=\"event ", "</g>");
    assert_eq!(markers.len(), inside.len(), "{name}: {:?}", r.events);
    for event in &inside {
        let at = event.at_s - series.warmup_s;
        let label = format!("{} {} at {at:.2} s", event.kind, event.node);
        assert!(
            markers
                .iter()
                .any(|m| m.contains(&format!("class=\"event {}\"", event.kind))
                    && m.contains(&label)
                    && m.contains("<line ")),
            "{name}: no marker labelled {label:?}"
        );
    }
    let bands = inside.iter().filter(|e| e.duration_s >= 0.005).count();
    assert_eq!(
        svg.matches("<rect class=\"band ").count(),
        bands,
        "{name}: {:?}",
        r.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_charts_what_users_lost_inside_the_measured_window() {
    let report = report().await;
    let ran: Vec<&StrategyReport> = report
        .strategies
        .iter()
        .filter(|r| r.skipped.is_none())
        .collect();
    assert_eq!(ran.len(), 2, "{:?}", report.strategies);
    let rr = ran[0];
    assert!(
        rr.sessions_lost > 0,
        "round robin over memory stores loses sessions: {rr:?}"
    );
    assert!(
        rr.series.sessions_lost.last().is_some_and(|l| *l > 0),
        "{:?}",
        rr.series
    );

    let page = report.html();
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing external, not even an SVG namespace"
    );
    assert!(
        !page.contains("<script") && !page.contains("<link"),
        "no scripts, no stylesheets"
    );
    assert_eq!(page.matches("<svg ").count(), ran.len() + 1);
    assert_eq!(page.matches("</svg>").count(), ran.len() + 1);

    let summary = elements(&page, "<svg class=\"summary\"", "</svg>");
    assert_eq!(summary.len(), 1);
    // The summary comes first, and writes every number, zeros included.
    assert!(page.find("<svg class=\"summary\"") < page.find("<svg class=\"strategy\""));
    let of = |figure: fn(&StrategyReport) -> u64| ran.iter().map(|r| figure(r)).collect::<Vec<_>>();
    assert_eq!(
        bar_numbers(summary[0], "sessions-lost"),
        of(|r| r.sessions_lost)
    );
    assert_eq!(
        bar_numbers(summary[0], "updates-lost"),
        of(|r| r.updates_lost)
    );
    assert_eq!(bar_numbers(summary[0], "errors"), of(|r| r.errors));

    let charts = elements(&page, "<svg class=\"strategy\"", "</svg>");
    assert_eq!(charts.len(), ran.len());
    for (svg, r) in charts.iter().zip(&ran) {
        assert!(svg.contains(&format!("aria-label=\"{}", r.strategy.name())));
        assert_timeline(svg, r);
    }

    let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
    let series = &json["strategies"][0]["series"];
    assert_eq!(
        series["answers_per_s"].as_array().unwrap().len(),
        FULL_BUCKETS
    );
    assert_eq!(series["p99_ms"].as_array().unwrap().len(), FULL_BUCKETS);
    assert!(json["strategies"][0].get("timeline").is_none());
}
