//! `throughput`: requests per second and latency of each stack over loopback HTTP/1.1.

use crate::backends::Backends;
use crate::load::{self, Sample, Workload};
use crate::plan::{Plan, median, ms};
use crate::stacks::Stack;
use tether_core::BoxError;

/// One stack's figures, medians over the rounds.
#[derive(Debug, serde::Serialize)]
struct Row {
    stack: String,
    workload: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Measures every stack `plan.repeat` times, interleaved, and prints a table (or JSON).
pub(crate) async fn run(
    stacks: &[Stack],
    workload: Workload,
    plan: &Plan,
    backends: &Backends,
    json: bool,
) -> Result<(), BoxError> {
    let repeat = plan.repeat;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); stacks.len()];
    for round in 0..repeat {
        for (i, stack) in stacks.iter().enumerate() {
            let (addr, server) = stack.serve_fresh(backends).await?;
            let sample = load::run(
                &[addr],
                workload,
                plan.connections,
                plan.warmup,
                plan.measure,
            )
            .await;
            server.abort();
            let sample = sample?;
            if !json {
                eprintln!(
                    "round {}/{repeat} {:<22} {:>10.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
                    round + 1,
                    stack.name(),
                    sample.rps,
                    ms(sample.p50),
                    ms(sample.p99),
                    sample.errors,
                );
            }
            if sample.errors > 0 {
                return Err(format!("{stack}: {} requests failed", sample.errors).into());
            }
            samples[i].push(sample);
        }
    }
    let rows: Vec<Row> = stacks
        .iter()
        .zip(&samples)
        .map(|(stack, runs)| Row {
            stack: stack.name().to_owned(),
            workload: workload.to_string(),
            rps: median(runs.iter().map(|s| s.rps)),
            p50_ms: median(runs.iter().map(|s| ms(s.p50))),
            p99_ms: median(runs.iter().map(|s| ms(s.p99))),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        print_table(&rows, plan);
    }
    Ok(())
}

fn print_table(rows: &[Row], plan: &Plan) {
    let rps_of = |name: &str| rows.iter().find(|r| r.stack == name).map(|r| r.rps);
    let baseline = rps_of("none");
    // Each tether stack is compared with tower-sessions on the same store.
    let peer = |stack: &str| {
        stack
            .strip_prefix("tether-")
            .and_then(|store| rps_of(&format!("tower-sessions-{store}")))
            .or_else(|| {
                stack
                    .starts_with("tower-sessions-")
                    .then_some(1.0)
                    .and(rps_of(stack))
            })
    };
    let ratio =
        |rps: f64, base: Option<f64>| base.map_or("-".to_owned(), |b| format!("{:.2}x", rps / b));
    println!(
        "median of {} run(s), {}s each, {} connections, workload {}",
        plan.repeat,
        plan.measure.as_secs(),
        plan.connections,
        rows.first().map_or("", |r| r.workload.as_str())
    );
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>8} {:>16}",
        "stack", "req/s", "p50 ms", "p99 ms", "vs none", "vs tower-sessions"
    );
    for row in rows {
        println!(
            "{:<22} {:>10.0} {:>9.3} {:>9.3} {:>8} {:>16}",
            row.stack,
            row.rps,
            row.p50_ms,
            row.p99_ms,
            ratio(row.rps, baseline),
            ratio(row.rps, peer(&row.stack))
        );
    }
}
