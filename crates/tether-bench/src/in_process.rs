//! `overhead` and `commands`: requests straight into each stack's router, no network.

use std::collections::BTreeMap;

use axum::Router;
use hyper::header::HeaderValue;
use tracing::instrument::WithSubscriber as _;

use crate::backends::Backends;
use crate::load::{self, Workload};
use crate::stacks::Stack;
use crate::statements::StatementCount;
use tether_core::BoxError;

/// Time between two requests of `commands --renewal-due`: more than the millisecond a stored
/// deadline must move by before a renewal is worth a write.
const RENEWAL_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// Prints the mean nanoseconds per request of each stack, and its ratio to the `none` stack
/// when that one runs first.
pub(crate) async fn overhead(
    stacks: &[Stack],
    workload: Workload,
    requests: u32,
    backends: &Backends,
) -> Result<(), BoxError> {
    println!("{:<22} {:>12} {:>10}", "stack", "ns/request", "vs none");
    let mut baseline = None;
    for stack in stacks {
        backends.reset_for(*stack).await?;
        let nanos = load::in_process(stack.router(backends).await?, workload, requests).await?;
        let base = *baseline.get_or_insert(if *stack == Stack::None {
            nanos
        } else {
            f64::NAN
        });
        println!(
            "{:<22} {:>12.0} {:>9.2}x",
            stack.name(),
            nanos,
            nanos / base
        );
    }
    Ok(())
}

/// Prints the round trips per request of each Redis or PostgreSQL stack: for Redis, the
/// commands the app sends and those its scripts run, recorded with `MONITOR`; for PostgreSQL,
/// the statements the app runs, as sqlx reports them.
/// With `renewal_due`, every request finds its session due for renewal (see
/// [`Stack::router_renewing`]), and requests are [`RENEWAL_PAUSE`] apart.
pub(crate) async fn commands(
    stacks: &[Stack],
    workload: Workload,
    requests: u32,
    renewal_due: bool,
    backends: &Backends,
) -> Result<(), BoxError> {
    let due = if renewal_due {
        ", each finding its session due for renewal"
    } else {
        ""
    };
    println!("{requests} sequential {workload} requests on one session{due}");
    let per_request = |n: u64| n as f64 / f64::from(requests);
    if let Some(redis) = backends.redis() {
        println!(
            "{:<22} {:>15} {:>14}  {:<40} run by its scripts, per request",
            "stack", "round trips/req", "commands/req", "sent by the app, per request"
        );
        for stack in stacks.iter().filter(|s| s.uses_redis()) {
            let (router, session) = prepared(*stack, renewal_due, backends).await?;
            let monitor = redis.monitor()?;
            send(&router, workload, requests, renewal_due, session.as_ref()).await?;
            let counts = monitor.finish(redis).await?;
            let listed = |table: &BTreeMap<String, u64>| {
                table
                    .iter()
                    .map(|(name, n)| format!("{name} {:.2}", per_request(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "{:<22} {:>15.2} {:>14.2}  {:<40} {}",
                stack.name(),
                per_request(counts.round_trips()),
                per_request(counts.client_total()),
                listed(&counts.from_clients),
                listed(&counts.from_scripts),
            );
        }
    }
    if backends.postgres().is_some() {
        println!("{:<22} {:>15}", "stack", "statements/req");
        for stack in stacks.iter().filter(|s| s.uses_postgres()) {
            let (router, session) = prepared(*stack, renewal_due, backends).await?;
            let statements = StatementCount::new();
            send(&router, workload, requests, renewal_due, session.as_ref())
                .with_subscriber(statements.dispatch())
                .await?;
            println!(
                "{:<22} {:>15.2}",
                stack.name(),
                per_request(statements.get())
            );
        }
    }
    Ok(())
}

/// The app of `stack` on emptied backends, and a session it made already.
async fn prepared(
    stack: Stack,
    renewal_due: bool,
    backends: &Backends,
) -> Result<(Router, Option<HeaderValue>), BoxError> {
    backends.reset_for(stack).await?;
    let router = if renewal_due {
        stack.router_renewing(backends).await?
    } else {
        stack.router(backends).await?
    };
    let session = load::in_process_session(&router).await?;
    Ok((router, session))
}

/// `requests` sequential requests of `workload` on `session`, [`RENEWAL_PAUSE`] apart with
/// `renewal_due`.
async fn send(
    router: &Router,
    workload: Workload,
    requests: u32,
    renewal_due: bool,
    session: Option<&HeaderValue>,
) -> Result<(), BoxError> {
    if renewal_due {
        for n in 0..requests {
            tokio::time::sleep(RENEWAL_PAUSE).await;
            load::in_process_request(router, workload, n, session).await?;
        }
        Ok(())
    } else {
        load::in_process_requests(router, workload, requests, session).await
    }
}
