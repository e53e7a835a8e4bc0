//! `tether-bench`: side-by-side load benchmarks, all stacks in one run on one machine.
//!
//! ```text
//! tether-bench throughput --stacks none,tether-memory,tower-sessions-memory \
//!     --workload read --seconds 5 --connections 16 --repeat 3
//! tether-bench race --store memory --writers 8 --rounds 200
//! tether-bench instructions --stacks none,tether-memory,tower-sessions-memory --workload read
//! tether-bench pinned --stacks none,tether-memory,tower-sessions-memory --workload read
//! ```
//!
//! `instructions` and `pinned` serve each stack from a process of its own (`serve`), counted by
//! callgrind or pinned to one core and driven by wrk from the other; the other commands run the
//! server (axum 0.8, the same handlers for every stack) and the HTTP/1.1 keep-alive load
//! generator in this process on loopback. See `docs/benchmarks.md` for method and figures.

mod backends;
mod cli;
mod cpu;
mod error;
mod in_process;
mod instructions;
mod invalidation;
mod live_sessions;
mod load;
mod memory;
mod net;
mod pinned;
mod plan;
mod postgres_env;
mod principals;
mod proxy;
mod race;
mod redis_env;
mod replicated;
mod serve;
mod soak;
mod stacks;
mod statements;
mod throughput;
mod websocket;

use std::process::ExitCode;

use clap::Parser as _;
use tether_core::BoxError;

use crate::backends::Backends;
use crate::cli::{Cli, Command, StacksAndWorkload};
use crate::plan::Plan;
use crate::redis_env::RedisEnv;
use crate::stacks::Stack;

fn main() -> ExitCode {
    // Bad arguments end here, with clap's message and exit code 2.
    let cli = Cli::parse();
    match start(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-bench: {}", tether_core::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> Result<(), BoxError> {
    if matches!(
        cli.command,
        Command::Proxy { .. } | Command::Websocket { .. }
    ) {
        // Before the runtime starts its threads, so they inherit the affinity.
        cpu::pin(std::process::id(), 1)?;
    }
    let runtime = if matches!(cli.command, Command::Serve { .. }) {
        // The server under test on one thread, as on the one core it is measured on.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(run(cli))
}

/// Runs the subcommand.
async fn run(cli: Cli) -> Result<(), BoxError> {
    let redis_url = cli.redis_url;
    let postgres_url = cli.postgres_url;
    // Started or reached only when a stack needs them; a Redis started here stops when this
    // function returns.
    let backends_for =
        |stacks: &[Stack]| Backends::for_stacks(stacks, redis_url.clone(), &postgres_url);
    match cli.command {
        Command::Throughput {
            what: StacksAndWorkload { stacks, workload },
            seconds,
            warmup,
            connections,
            repeat,
            json,
        } => {
            Stack::check_in_process(&stacks)?;
            let backends = backends_for(&stacks)?;
            let plan = Plan::new(seconds, warmup, connections, repeat);
            throughput::run(&stacks, workload, &plan, &backends, json).await
        }
        Command::Principals {
            topologies,
            listed,
            revoked,
            runs,
        } => {
            let sizes = principals::Sizes {
                listed,
                revoked,
                runs,
            };
            principals::run(&topologies, sizes).await
        }
        Command::Overhead {
            what: StacksAndWorkload { stacks, workload },
            requests,
        } => {
            Stack::check_in_process(&stacks)?;
            let backends = backends_for(&stacks)?;
            in_process::overhead(&stacks, workload, requests, &backends).await
        }
        Command::Instructions {
            what: StacksAndWorkload { stacks, workload },
            requests,
            valgrind,
            callgrind_control,
            json,
        } => {
            let backends = backends_for(&stacks)?;
            let servers = instructions::Servers {
                backends: &backends,
                postgres_url: &postgres_url,
                valgrind: &valgrind,
                callgrind_control: &callgrind_control,
            };
            instructions::run(&stacks, workload, requests, &servers, json).await
        }
        Command::Pinned {
            what: StacksAndWorkload { stacks, workload },
            seconds,
            warmup,
            connections,
            rounds,
            server_core,
            load_core,
            live_sessions,
            wrk,
            json,
        } => {
            let backends = backends_for(&stacks)?;
            let setup = pinned::Setup {
                backends: &backends,
                postgres_url: &postgres_url,
                wrk: &wrk,
                server_core,
                load_core,
                live_sessions: &live_sessions,
            };
            let rounds = pinned::Rounds {
                seconds,
                warmup,
                connections,
                rounds,
            };
            pinned::run(&stacks, workload, &rounds, &setup, json).await
        }
        Command::Memory {
            stores,
            sessions,
            written,
            json,
        } => memory::run(&stores, &sessions, written, json).await,
        Command::MemoryFill {
            store,
            sessions,
            written,
        } => memory::fill(store, sessions, written).await,
        Command::Serve {
            stack,
            listen,
            live_sessions,
        } => {
            let backends = backends_for(&[stack])?;
            serve::run(stack, listen, &backends, live_sessions).await
        }
        Command::Commands {
            what: StacksAndWorkload { stacks, workload },
            requests,
            renewal_due,
        } => {
            Stack::check_in_process(&stacks)?;
            let backends = backends_for(&stacks)?;
            in_process::commands(&stacks, workload, requests, renewal_due, &backends).await
        }
        Command::Invalidation {
            sessions,
            cache_readers,
            redis_readers,
            writes,
            seconds,
            sentinel,
        } => {
            let plan = invalidation::Plan {
                sessions,
                cache_readers,
                redis_readers,
                writes,
                limit: std::time::Duration::from_secs(seconds),
            };
            if sentinel {
                if redis_url.is_some() {
                    return Err("--sentinel starts its own Redis servers: drop --redis-url".into());
                }
                invalidation::run_behind_sentinel(&plan).await
            } else {
                let redis = RedisEnv::new(redis_url.clone())?;
                invalidation::run(&plan, &redis).await
            }
        }
        Command::Traffic {
            nodes,
            modes,
            writes,
        } => replicated::traffic(&nodes, &modes, writes).await,
        Command::Cluster {
            nodes,
            modes,
            workload,
            seconds,
            warmup,
            connections,
            repeat,
            tls,
        } => {
            let plan = Plan::new(seconds, warmup, connections, repeat);
            replicated::throughput(&nodes, &modes, workload, &plan, tls).await
        }
        Command::Proxy {
            proxy_bin,
            backends,
            seconds,
            warmup,
            connections,
            repeat,
            instructions,
            valgrind,
            callgrind_control,
            tls,
            wrk,
        } => match instructions {
            Some(requests) => {
                proxy::instructions(
                    &proxy_bin,
                    backends,
                    requests,
                    &valgrind,
                    &callgrind_control,
                )
                .await
            }
            None if tls => {
                let plan = Plan::new(seconds, warmup, connections, repeat);
                proxy::compare_tls(&proxy_bin, backends, &plan, &wrk).await
            }
            None => {
                let plan = Plan::new(seconds, warmup, connections, repeat);
                proxy::compare(&proxy_bin, backends, &plan).await
            }
        },
        Command::Websocket {
            proxy_bin,
            seconds,
            warmup,
            connections,
            window,
            repeat,
        } => {
            let plan = Plan::new(seconds, warmup, connections, repeat);
            websocket::compare(&proxy_bin, &plan, window).await
        }
        Command::Race {
            store,
            writers,
            rounds,
            same_key,
        } => {
            let keys = same_key.map_or(race::Keys::Own, race::Keys::Same);
            race::run(store, keys, writers, rounds, redis_url, &postgres_url).await
        }
        Command::Soak {
            minutes,
            stores,
            scenario,
            fault_every,
            users,
            json,
        } => soak::run(&stores, scenario, minutes, fault_every, users, json).await,
    }
}
