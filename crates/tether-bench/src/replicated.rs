//! Benchmarks of tether-replicated: traffic per write, throughput by cluster size and mode,
//! lost updates across nodes. All nodes run in this process (a `LocalCluster` on loopback).

use std::net::SocketAddr;
use std::time::Duration;

use tether_core::BoxError;
use tether_core::{Changes, Codec, Expiry, Id, Record, SessionStore, Timestamp};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode, PeerTls};
use tether_sessions::SessionLayer;
use tether_testkit::TestCa;

use crate::backends::Backends;
use crate::error::Doing as _;
use crate::load::{self, Sample, Workload};
use crate::net::bind_loopback;
use crate::plan::{Plan, median, ms};
use crate::race::{Keys, race_on};
use crate::stacks::{Stack, session_routes};

async fn start(nodes: usize, mode: Mode) -> Result<LocalCluster, BoxError> {
    start_over(nodes, mode, false).await
}

/// A cluster whose nodes speak TLS to each other (certificates from a CA made for the run)
/// when `tls`, plain TCP otherwise.
async fn start_over(nodes: usize, mode: Mode, tls: bool) -> Result<LocalCluster, BoxError> {
    let ca = TestCa::new("tether-bench CA");
    let mut certified = Vec::new();
    if tls {
        for i in 0..nodes {
            let (cert, key) = ca.node(&format!("node-{i}"));
            certified.push(PeerTls::from_pem(
                ca.pem().as_bytes(),
                cert.as_bytes(),
                key.as_bytes(),
            )?);
        }
    }
    LocalCluster::start(nodes, |c| {
        let index = c
            .name()
            .strip_prefix("node-")
            .and_then(|i| i.parse::<usize>().ok());
        let c = c.with_mode(mode).with_ack(Ack::Sync);
        match index.and_then(|i| certified.get(i)) {
            Some(tls) => c.with_tls(tls.clone()),
            None => c,
        }
    })
    .await
    .doing(|| format!("starting a {mode} cluster of {nodes} nodes"))
}

fn total_traffic(cluster: &LocalCluster) -> (u64, u64) {
    (0..cluster.len())
        .filter_map(|i| cluster.node(i))
        .map(|n| n.stats())
        .fold((0, 0), |(m, b), s| (m + s.messages_sent, b + s.bytes_sent))
}

/// Replication messages and bytes per write, for writes sent to the session's primary (as
/// sticky routing does) and to any node in turn (round robin).
pub(crate) async fn traffic(nodes: &[usize], modes: &[Mode], writes: u32) -> Result<(), BoxError> {
    println!("{writes} writes of one 8-byte value each, Sync acknowledgements");
    println!(
        "{:<12} {:>5}  {:>14} {:>14}  {:>14} {:>14}",
        "mode", "nodes", "msgs/write(P)", "bytes/write(P)", "msgs/write(RR)", "bytes/write(RR)"
    );
    for &n in nodes {
        for mode in modes {
            let cluster = start(n, *mode).await?;
            let stores: Vec<_> = (0..n).filter_map(|i| cluster.store(i)).collect();
            let now = Timestamp::now();
            let mut ids = Vec::new();
            for _ in 0..100 {
                let record = Record::new(
                    Id::random()?,
                    Expiry::new(now, Duration::from_secs(600), None),
                    now,
                );
                if stores[0].create(&record).await? != tether_core::Created::Created {
                    return Err("session id taken".into());
                }
                ids.push(record);
            }
            let view = cluster.node(0).ok_or("node 0")?.view();
            let primary_of = |id: &Id| -> usize {
                view.primary(id)
                    .and_then(|name| name.strip_prefix("node-"))
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0)
            };
            let measure = |round_robin: bool| {
                let stores = stores.clone();
                let ids = ids.clone();
                let primaries: Vec<usize> = ids.iter().map(|r| primary_of(&r.id)).collect();
                async move {
                    for k in 0..writes as usize {
                        let record = &ids[k % ids.len()];
                        let node = if round_robin {
                            k % stores.len()
                        } else {
                            primaries[k % ids.len()]
                        };
                        let mut changes = Changes::new();
                        changes.insert("counter", Codec::default().encode(&(k as u64))?);
                        let applied = stores[node]
                            .apply(&record.id, &changes, &record.expiry)
                            .await?;
                        if applied != tether_core::Applied::Applied {
                            return Err("a session vanished during the measurement".into());
                        }
                    }
                    Ok::<_, BoxError>(())
                }
            };
            let before = total_traffic(&cluster);
            measure(false).await?;
            let primary = total_traffic(&cluster);
            measure(true).await?;
            let after = total_traffic(&cluster);
            let per = |(m, b): (u64, u64), (m0, b0): (u64, u64)| {
                (
                    (m - m0) as f64 / f64::from(writes),
                    (b - b0) as f64 / f64::from(writes),
                )
            };
            let (pm, pb) = per(primary, before);
            let (rm, rb) = per(after, primary);
            println!(
                "{:<12} {:>5}  {:>14.2} {:>14.0}  {:>14.2} {:>14.0}",
                mode.to_string(),
                n,
                pm,
                pb,
                rm,
                rb
            );
        }
    }
    Ok(())
}

/// Serves one app per node of `cluster` on loopback; returns their addresses.
async fn serve(
    cluster: &LocalCluster,
) -> Result<(Vec<SocketAddr>, tokio::task::JoinSet<()>), BoxError> {
    let mut servers = tokio::task::JoinSet::new();
    let mut addrs = Vec::new();
    for i in 0..cluster.len() {
        let store = cluster.store(i).ok_or("node not running")?;
        let (listener, addr) = bind_loopback().await?;
        addrs.push(addr);
        let app = session_routes().layer(SessionLayer::new(store).with_secure(false));
        servers.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    Ok((addrs, servers))
}

/// Requests per second with every user's requests spread over all nodes, by cluster size and
/// mode; tether-memory on one node first, as the upper bound. With `tls`, each configuration
/// also runs with TLS between the nodes, the two alternating run by run.
pub(crate) async fn throughput(
    nodes: &[usize],
    modes: &[Mode],
    workload: Workload,
    plan: &Plan,
    tls: bool,
) -> Result<(), BoxError> {
    println!(
        "{} connections, {}s per run after {}s warm-up, median of {} run(s), workload {workload}, all nodes in this process",
        plan.connections,
        plan.measure.as_secs(),
        plan.warmup.as_secs(),
        plan.repeat
    );
    println!(
        "{:<26} {:>5} {:>10} {:>9} {:>9}",
        "stack", "nodes", "req/s", "p50 ms", "p99 ms"
    );
    let print = |name: &str, n: usize, samples: &[Sample]| {
        let median_of = |f: fn(&Sample) -> f64| median(samples.iter().map(f));
        println!(
            "{:<26} {:>5} {:>10.0} {:>9.3} {:>9.3}",
            name,
            n,
            median_of(|s| s.rps),
            median_of(|s| ms(s.p50)),
            median_of(|s| ms(s.p99))
        );
    };
    let mut memory = Vec::new();
    for _ in 0..plan.repeat {
        let (addr, server) = Stack::TetherMemory.serve(&Backends::default()).await?;
        memory.push(
            load::run(
                &[addr],
                workload,
                plan.connections,
                plan.warmup,
                plan.measure,
            )
            .await?,
        );
        server.abort();
    }
    print("tether-memory", 1, &memory);
    let transports: &[bool] = if tls { &[false, true] } else { &[false] };
    for &n in nodes {
        for mode in modes {
            let mut samples = vec![Vec::new(); transports.len()];
            for _ in 0..plan.repeat {
                for (&over_tls, samples) in transports.iter().zip(&mut samples) {
                    let cluster = start_over(n, *mode, over_tls).await?;
                    let (addrs, mut servers) = serve(&cluster).await?;
                    let sample = load::run(
                        &addrs,
                        workload,
                        plan.connections,
                        plan.warmup,
                        plan.measure,
                    )
                    .await;
                    servers.abort_all();
                    drop(cluster);
                    let sample = sample?;
                    if sample.errors > 0 {
                        return Err(format!(
                            "{mode} on {n} nodes: {} requests failed",
                            sample.errors
                        )
                        .into());
                    }
                    samples.push(sample);
                }
            }
            for (&over_tls, samples) in transports.iter().zip(&samples) {
                let name = if over_tls {
                    format!("replicated {mode} tls")
                } else {
                    format!("replicated {mode}")
                };
                print(&name, n, samples);
            }
        }
    }
    Ok(())
}

/// `race` across nodes: each writer sends its requests to its own node.
pub(crate) async fn race(keys: Keys, writers: u32, rounds: u32) -> Result<(), BoxError> {
    let cluster = start(3, Mode::Backup { copies: 1 }).await?;
    let (addrs, mut servers) = serve(&cluster).await?;
    let result = race_on(
        &addrs,
        keys,
        writers,
        rounds,
        "tether-replicated (3 nodes, backup-1)",
    )
    .await;
    servers.abort_all();
    result
}
