//! `invalidation`: how long after a write on one node another node's near cache drops its copy,
//! under load.
//!
//! Node A is a `RedisStore` without a near cache; node B one with it; both in this process, each
//! on its own connection to the Redis the bench starts (or, with `--sentinel`, through the
//! Sentinel of a master and a replica it starts, before and after a failover). While reader tasks keep node B's cache
//! and Redis busy, A writes one session at a time, which B has just read (so Redis tracks it for
//! B). The delay runs from the start of A's write to the moment B's push handler applied the
//! invalidation, seen as B's invalidation counter moving: A's measured writes are the only
//! writes, so every invalidation B counts is one of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::{
    Applied, BoxError, Changes, Created, Expiry, Id, Record, SessionStore as _, Timestamp,
};
use tether_redis::{RedisStore, RedisStoreBuilder};
use tether_testkit::SentinelSetup;
use tether_testkit::redis::SENTINEL_MASTER;

use crate::error::Doing as _;
use crate::redis_env::RedisEnv;

/// A measured write whose invalidation takes longer than this counts as never applied.
const GIVE_UP: Duration = Duration::from_secs(2);
/// How long the nodes may take to write and read through a promoted master.
const FAILOVER_REACH: Duration = Duration::from_secs(30);

/// What to run.
pub(crate) struct Plan {
    /// Sessions the readers spread over; the measured writes go to the first of them.
    pub(crate) sessions: usize,
    /// Tasks reading through node B's near cache, without pause.
    pub(crate) cache_readers: usize,
    /// Tasks reading straight from Redis (a store without a near cache), without pause.
    pub(crate) redis_readers: usize,
    /// Measured writes.
    pub(crate) writes: u32,
    /// The whole run stops after this, measured writes or not.
    pub(crate) limit: Duration,
}

/// Node A (writes), node B (reads through its near cache), and a store without a near cache
/// for the readers that go straight to Redis.
struct Nodes {
    writer: RedisStore,
    reader: RedisStore,
    plain: RedisStore,
}

impl Nodes {
    /// The three stores, each made by `builder` (B with a near cache for twice the sessions).
    async fn connect(
        plan: &Plan,
        builder: impl Fn() -> RedisStoreBuilder,
        at: impl Fn() -> String + Copy,
    ) -> Result<Self, BoxError> {
        let reader = builder()
            .with_near_cache(u64::try_from(plan.sessions)?.saturating_mul(2))
            .connect()
            .await
            .doing(at)?;
        if reader.near_cache_stats().is_none() {
            return Err("this Redis cannot track keys (CLIENT TRACKING): no near cache".into());
        }
        Ok(Self {
            writer: builder().connect().await.doing(at)?,
            reader,
            plain: builder().connect().await.doing(at)?,
        })
    }
}

/// Measures on the Redis of `redis`.
pub(crate) async fn run(plan: &Plan, redis: &RedisEnv) -> Result<(), BoxError> {
    let url = redis.url();
    let at = || {
        format!(
            "connecting to the benchmark's Redis at {}",
            RedisEnv::addr_of(url)
        )
    };
    let nodes = Nodes::connect(plan, || RedisStore::builder(url), at).await?;
    measure(plan, &nodes).await
}

/// Measures behind Sentinel: on a master, a replica and a Sentinel this starts on loopback,
/// every store finding the master through the Sentinel; then kills the master, waits for the
/// replica's promotion, and measures again on the same stores.
pub(crate) async fn run_behind_sentinel(plan: &Plan) -> Result<(), BoxError> {
    let setup = tokio::task::spawn_blocking(SentinelSetup::start).await??;
    let sentinel = setup.sentinel_url();
    let at = || "connecting through the benchmark's Sentinel".to_owned();
    let builder = || RedisStore::sentinel_builder([sentinel.as_str()], SENTINEL_MASTER);
    let nodes = Nodes::connect(plan, builder, at).await?;
    println!("behind Sentinel (a master and a replica):");
    measure(plan, &nodes).await?;

    let mut setup = setup;
    let setup = tokio::task::spawn_blocking(move || setup.fail_over().map(|()| setup)).await??;
    let failed_over = Instant::now();
    reach_new_master(&nodes).await?;
    println!(
        "\nbehind Sentinel, after the master was killed and the replica promoted (all nodes \
         writing and reading again {:.1} s after the promotion):",
        failed_over.elapsed().as_secs_f64()
    );
    let measured = measure(plan, &nodes).await;
    drop(setup);
    measured
}

/// Waits until node A writes and node B reads through the new master, bounded.
async fn reach_new_master(nodes: &Nodes) -> Result<(), BoxError> {
    let deadline = Instant::now() + FAILOVER_REACH;
    let now = Timestamp::now();
    let probe = Record::new(
        Id::random()?,
        Expiry::new(now, Duration::from_secs(60), None),
        now,
    );
    loop {
        let created = nodes.writer.create(&probe).await;
        let read = match created {
            Ok(_) => nodes
                .reader
                .load(&probe.id)
                .await
                .map(|found| found.is_some()),
            Err(error) => Err(error),
        };
        if matches!(read, Ok(true)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the nodes did not reach the new master within {FAILOVER_REACH:?}: {read:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the plan on `nodes`: makes its sessions, loads node B and Redis with readers, and
/// reports the delays of the measured writes.
async fn measure(plan: &Plan, nodes: &Nodes) -> Result<(), BoxError> {
    let Nodes {
        writer,
        reader,
        plain,
    } = nodes;
    let stats_before = reader.near_cache_stats().unwrap_or_default();
    let expiry = Expiry::new(Timestamp::now(), Duration::from_secs(3600), None);
    let mut ids = Vec::with_capacity(plan.sessions);
    for _ in 0..plan.sessions.max(1) {
        let mut record = Record::new(Id::random()?, expiry, Timestamp::now());
        record.data.insert("k".into(), Bytes::from_static(b"0"));
        if writer.create(&record).await? != Created::Created {
            return Err("a fresh random session id was taken".into());
        }
        ids.push(record.id);
    }
    let ids = Arc::new(ids);
    for id in ids.iter() {
        reader.load(id).await?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + plan.limit;
    let mut load = tokio::task::JoinSet::new();
    let readers = std::iter::repeat_n(reader, plan.cache_readers)
        .chain(std::iter::repeat_n(plain, plan.redis_readers));
    for (task, store) in readers.enumerate() {
        let (store, ids, stop) = (store.clone(), Arc::clone(&ids), Arc::clone(&stop));
        load.spawn(async move {
            let mut reads = 0u64;
            let mut next = task;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                // A stride that is prime to any session count walks them all.
                next = (next + 7_919) % ids.len();
                if let Some(id) = ids.get(next) {
                    let _ = store.load(id).await;
                    reads += 1;
                }
                // A hit never waits: without this the readers would keep the connections'
                // own tasks from running.
                tokio::task::yield_now().await;
            }
            reads
        });
    }

    let started = Instant::now();
    let mut from_send = Vec::with_capacity(plan.writes as usize);
    let mut from_reply = Vec::with_capacity(plan.writes as usize);
    let mut never = 0u32;
    for write in 0..plan.writes {
        if Instant::now() >= deadline {
            break;
        }
        let Some(id) = ids.get(write as usize % ids.len()) else {
            break;
        };
        // Tracked for B: a hit means B read it since the last write, a miss reads it now.
        reader.load(id).await?;
        let before = reader.near_cache_stats().map_or(0, |s| s.invalidations);
        let mut changes = Changes::new();
        changes.insert("k", Bytes::from(write.to_string()));
        let sent = Instant::now();
        if writer.apply(id, &changes, &expiry).await? != Applied::Applied {
            return Err("a measured session was gone".into());
        }
        let replied = sent.elapsed();
        loop {
            let now = reader.near_cache_stats().map_or(0, |s| s.invalidations);
            if now > before {
                let delay = sent.elapsed();
                from_send.push(delay);
                from_reply.push(delay.saturating_sub(replied));
                break;
            }
            if sent.elapsed() > GIVE_UP {
                never += 1;
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    let measured = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0u64;
    while let Some(joined) = load.join_next().await {
        reads += joined?;
    }
    let stats = reader.near_cache_stats().unwrap_or_default();
    let (hits, misses, flushes) = (
        stats.hits.saturating_sub(stats_before.hits),
        stats.misses.saturating_sub(stats_before.misses),
        stats.flushes.saturating_sub(stats_before.flushes),
    );

    println!(
        "{} measured writes on node A, {} sessions; load: {} readers through node B's near cache, {} straight from Redis",
        from_send.len(),
        ids.len(),
        plan.cache_readers,
        plan.redis_readers
    );
    println!(
        "load: {:.0} reads/s in all; node B's cache: {} hits, {} misses, {} flushes",
        reads as f64 / measured.as_secs_f64(),
        hits,
        misses,
        flushes
    );
    print_row("from the start of A's write", &mut from_send);
    print_row("after A's reply", &mut from_reply);
    if never > 0 {
        println!("{never} writes were not invalidated on node B within {GIVE_UP:?}");
        return Err(format!("{never} invalidations never arrived").into());
    }
    Ok(())
}

fn print_row(what: &str, delays: &mut [Duration]) {
    delays.sort_unstable();
    let at = |q: f64| {
        let index = ((delays.len() as f64 - 1.0) * q).round() as usize;
        delays.get(index).copied().unwrap_or_default().as_secs_f64() * 1e3
    };
    println!(
        "invalidation applied on node B, {what}: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
