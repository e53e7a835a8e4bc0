//! `overhead` and `commands`: requests straight into each stack's router, no network.

use std::collections::BTreeMap;

use crate::backends::Backends;
use crate::load::{self, Workload};
use crate::redis_env::RedisEnv;
use crate::stacks::Stack;
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

/// Prints the Redis commands per request of each Redis stack: those the app sends and those
/// its scripts run, recorded with `MONITOR`.
/// With `renewal_due`, every request finds its session due for renewal (see
/// [`Stack::router_renewing`]), and requests are [`RENEWAL_PAUSE`] apart.
pub(crate) async fn commands(
    stacks: &[Stack],
    workload: Workload,
    requests: u32,
    renewal_due: bool,
    redis: RedisEnv,
) -> Result<(), BoxError> {
    let backends = Backends::with_redis(redis);
    let redis = backends.redis().ok_or("no Redis")?;
    let due = if renewal_due {
        ", each finding its session due for renewal"
    } else {
        ""
    };
    println!("{requests} sequential {workload} requests on one session{due}");
    println!(
        "{:<22} {:>15} {:>14}  {:<40} run by its scripts, per request",
        "stack", "round trips/req", "commands/req", "sent by the app, per request"
    );
    for stack in stacks.iter().filter(|s| s.uses_redis()) {
        redis.flush().await?;
        let router = if renewal_due {
            stack.router_renewing(&backends).await?
        } else {
            stack.router(&backends).await?
        };
        // The session is created before recording starts.
        let session = load::in_process_session(&router).await?;
        let monitor = redis.monitor()?;
        if renewal_due {
            for n in 0..requests {
                tokio::time::sleep(RENEWAL_PAUSE).await;
                load::in_process_request(&router, workload, n, session.as_ref()).await?;
            }
        } else {
            load::in_process_requests(&router, workload, requests, session.as_ref()).await?;
        }
        let counts = monitor.finish(redis).await?;
        let per_request = |table: &BTreeMap<String, u64>| {
            table
                .iter()
                .map(|(name, n)| format!("{name} {:.2}", *n as f64 / f64::from(requests)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{:<22} {:>15.2} {:>14.2}  {:<40} {}",
            stack.name(),
            counts.round_trips() as f64 / f64::from(requests),
            counts.client_total() as f64 / f64::from(requests),
            per_request(&counts.from_clients),
            per_request(&counts.from_scripts),
        );
    }
    Ok(())
}
