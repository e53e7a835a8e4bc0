//! `principals`: what the principal index costs on Redis, standalone and Cluster: round trips
//! of a login that binds its session, of listing a principal's sessions and of revoking them
//! all, counted by `MONITOR` on every server, and the time of the latter two.

use std::time::{Duration, Instant};

use tether_core::{
    Applied, BoxError, Changes, Created, Expiry, Id, Principal, Record, SessionStore as _,
    Timestamp,
};
use tether_redis::RedisStore;
use tether_testkit::{RedisCluster, RedisServer};

use crate::error::Doing as _;
use crate::redis_env::RedisEnv;

/// The topologies measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Topology {
    /// One redis-server.
    Standalone,
    /// A Redis Cluster of three masters.
    Cluster,
}

/// What one run measures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Sessions of the principal listed by `sessions_of`.
    pub(crate) listed: usize,
    /// Sessions of the principal revoked by `revoke_all`.
    pub(crate) revoked: usize,
    /// Timed repetitions of each.
    pub(crate) runs: usize,
}

/// Redis servers of one topology, and a `MONITOR` on each.
struct Servers {
    envs: Vec<RedisEnv>,
    store: RedisStore,
    // Kept alive for the run.
    _standalone: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

impl Servers {
    async fn start(topology: Topology) -> Result<Self, BoxError> {
        match topology {
            Topology::Standalone => {
                let server = RedisServer::start()
                    .doing(|| "starting redis-server (is it on PATH?)".to_owned())?;
                let store = RedisStore::connect(server.url()).await?;
                Ok(Self {
                    envs: vec![RedisEnv::new(Some(server.url()))?],
                    store,
                    _standalone: Some(server),
                    _cluster: None,
                })
            }
            Topology::Cluster => {
                let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
                    .await?
                    .doing(|| "starting a 3-master Redis Cluster".to_owned())?;
                let store = RedisStore::cluster_builder(cluster.urls())
                    .connect()
                    .await?;
                let envs = cluster
                    .nodes()
                    .iter()
                    .map(|node| RedisEnv::new(Some(node.url())))
                    .collect::<Result<_, _>>()?;
                Ok(Self {
                    envs,
                    store,
                    _standalone: None,
                    _cluster: Some(cluster),
                })
            }
        }
    }

    /// Client commands (round trips: nothing here pipelines) that `work` sends, over every
    /// server.
    async fn round_trips<T, F: std::future::Future<Output = Result<T, BoxError>>>(
        &self,
        work: F,
    ) -> Result<(T, u64), BoxError> {
        let monitors = self
            .envs
            .iter()
            .map(RedisEnv::monitor)
            .collect::<Result<Vec<_>, _>>()?;
        let result = work.await?;
        let mut trips = 0;
        for (monitor, env) in monitors.into_iter().zip(&self.envs) {
            trips += monitor.finish(env).await?.client_total();
        }
        Ok((result, trips))
    }
}

fn record(principal: Option<&Principal>) -> Result<Record, BoxError> {
    let now = Timestamp::now();
    Ok(Record::new(
        Id::random()?,
        Expiry::new(now, Duration::from_secs(600), None),
        now,
    )
    .with_principal(principal.cloned()))
}

async fn create_bound(store: &RedisStore, principal: &Principal, n: usize) -> Result<(), BoxError> {
    for _ in 0..n {
        if store.create(&record(Some(principal))?).await? != Created::Created {
            return Err("a random session id was taken".into());
        }
    }
    Ok(())
}

/// One topology's figures.
#[derive(Debug)]
struct Figures {
    topology: Topology,
    write_trips: u64,
    login_trips: u64,
    create_bound_trips: u64,
    list_trips: u64,
    list_time: Duration,
    revoke_trips: u64,
    revoke_time: Duration,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

async fn measure(topology: Topology, sizes: Sizes) -> Result<Figures, BoxError> {
    let servers = Servers::start(topology).await?;
    let store = &servers.store;
    let principal = Principal::new("bench-user")?;

    let mut login = Changes::new();
    login.bind(principal.clone());
    let mut plain = Changes::new();
    plain.insert("k", bytes::Bytes::from_static(b"v"));

    // Warm every script up on every server (sessions spread over a Cluster's masters), so no
    // `SCRIPT LOAD` is counted below.
    for _ in 0..30 {
        let warm = record(None)?;
        if store.create(&warm).await? != Created::Created {
            return Err("a random session id was taken".into());
        }
        for changes in [&plain, &login] {
            if store.apply(&warm.id, changes, &warm.expiry).await? != Applied::Applied {
                return Err("a session vanished while warming up".into());
            }
        }
    }
    store.sessions_of(&principal).await?;
    store.revoke_all(&principal, None).await?;
    let session = record(None)?;
    if store.create(&session).await? != Created::Created {
        return Err("a random session id was taken".into());
    }
    let (_, write_trips) = servers
        .round_trips(async { Ok(store.apply(&session.id, &plain, &session.expiry).await?) })
        .await?;
    let (applied, login_trips) = servers
        .round_trips(async { Ok(store.apply(&session.id, &login, &session.expiry).await?) })
        .await?;
    if applied != Applied::Applied {
        return Err("the login's session vanished".into());
    }
    let (_, create_bound_trips) = servers
        .round_trips(create_bound(store, &principal, 1))
        .await?;
    store.revoke_all(&principal, None).await?;

    create_bound(store, &principal, sizes.listed).await?;
    let (listed, list_trips) = servers
        .round_trips(async { Ok(store.sessions_of(&principal).await?) })
        .await?;
    if listed.len() != sizes.listed {
        return Err(format!("listed {} of {} sessions", listed.len(), sizes.listed).into());
    }
    let mut list_times = Vec::with_capacity(sizes.runs);
    for _ in 0..sizes.runs {
        let start = Instant::now();
        store.sessions_of(&principal).await?;
        list_times.push(start.elapsed());
    }
    store.revoke_all(&principal, None).await?;

    create_bound(store, &principal, sizes.revoked).await?;
    let (revoked, revoke_trips) = servers
        .round_trips(async { Ok(store.revoke_all(&principal, None).await?) })
        .await?;
    let mut revoke_times = Vec::with_capacity(sizes.runs);
    for _ in 0..sizes.runs {
        if revoked != sizes.revoked {
            return Err(format!("revoked {revoked} of {} sessions", sizes.revoked).into());
        }
        create_bound(store, &principal, sizes.revoked).await?;
        let start = Instant::now();
        let revoked = store.revoke_all(&principal, None).await?;
        revoke_times.push(start.elapsed());
        if revoked != sizes.revoked {
            return Err(format!("revoked {revoked} of {} sessions", sizes.revoked).into());
        }
    }
    Ok(Figures {
        topology,
        write_trips,
        login_trips,
        create_bound_trips,
        list_trips,
        list_time: median(list_times),
        revoke_trips,
        revoke_time: median(revoke_times),
    })
}

pub(crate) async fn run(topologies: &[Topology], sizes: Sizes) -> Result<(), BoxError> {
    println!(
        "principal index on Redis: {} sessions listed, {} revoked, median of {} runs",
        sizes.listed, sizes.revoked, sizes.runs
    );
    println!(
        "{:<11} {:>12} {:>12} {:>13} {:>12} {:>10} {:>12} {:>10}",
        "topology",
        "write trips",
        "login trips",
        "create bound",
        "list trips",
        "list ms",
        "revoke trips",
        "revoke ms"
    );
    for &topology in topologies {
        let figures = measure(topology, sizes).await?;
        println!(
            "{:<11} {:>12} {:>12} {:>13} {:>12} {:>10.2} {:>12} {:>10.2}",
            format!("{:?}", figures.topology).to_lowercase(),
            figures.write_trips,
            figures.login_trips,
            figures.create_bound_trips,
            figures.list_trips,
            figures.list_time.as_secs_f64() * 1000.0,
            figures.revoke_trips,
            figures.revoke_time.as_secs_f64() * 1000.0,
        );
    }
    println!(
        "write trips: an apply of one key to an unbound session; login trips: the same apply \
         binding the session to a principal; create bound: a new session created bound"
    );
    Ok(())
}
