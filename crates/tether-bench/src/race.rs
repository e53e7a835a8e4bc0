//! `race`: concurrent writers on one session, each bumping its own key (or, with
//! `--same-key`, all bumping one key); how many updates survive.

use std::net::SocketAddr;

use crate::backends::Backends;
use crate::load::Client;
use crate::replicated;
use crate::stacks::Stack;
use tether_core::BoxError;

/// The store the writers race on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Store {
    /// tether-memory.
    Memory,
    /// tether-redis.
    Redis,
    /// tether-replicated: 3 nodes, each writer on its own node.
    Replicated,
    /// tower-sessions with its MemoryStore.
    TowerSessionsMemory,
    /// tower-sessions with tower-sessions-redis-store.
    TowerSessionsRedis,
    /// tether-sql on PostgreSQL.
    Postgres,
    /// tower-sessions with tower-sessions-sqlx-store on PostgreSQL.
    TowerSessionsPostgres,
    /// tower-sessions with tether-redis underneath (tether-tower-sessions).
    TowerSessionsTetherRedis,
}

/// How the writers of `race --same-key` change the one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SameKey {
    /// A read and a plain insert: what every session library offers (tower-sessions too).
    Insert,
    /// tether's `Session::increment`: one atomic operation in the store.
    Increment,
    /// tether's `Session::update`: a compare-and-set loop.
    Update,
}

impl SameKey {
    fn path(self) -> &'static str {
        match self {
            Self::Insert => "/same/insert",
            Self::Increment => "/same/increment",
            Self::Update => "/same/update",
        }
    }
}

/// What the writers race on: a key each, or one key for all.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Keys {
    Own,
    Same(SameKey),
}

/// Runs the race on `store`; a Redis store starts or uses the Redis of `redis_url`, a
/// PostgreSQL store uses `postgres_url`.
pub(crate) async fn run(
    store: Store,
    keys: Keys,
    writers: u32,
    rounds: u32,
    redis_url: Option<String>,
    postgres_url: &str,
) -> Result<(), BoxError> {
    let tower_sessions = matches!(
        store,
        Store::TowerSessionsMemory
            | Store::TowerSessionsRedis
            | Store::TowerSessionsPostgres
            | Store::TowerSessionsTetherRedis
    );
    if tower_sessions && matches!(keys, Keys::Same(SameKey::Increment | SameKey::Update)) {
        return Err(
            "tower-sessions has no atomic update of a key: race it with --same-key insert".into(),
        );
    }
    let stack = match store {
        Store::Replicated => return replicated::race(keys, writers, rounds).await,
        Store::Memory => Stack::TetherMemory,
        Store::Redis => Stack::TetherRedis,
        Store::TowerSessionsMemory => Stack::TowerSessionsMemory,
        Store::TowerSessionsRedis => Stack::TowerSessionsRedis,
        Store::Postgres => Stack::TetherPostgres,
        Store::TowerSessionsPostgres => Stack::TowerSessionsPostgres,
        Store::TowerSessionsTetherRedis => Stack::TowerSessionsTetherRedis,
    };
    let backends = Backends::for_stacks(&[stack], redis_url, postgres_url)?;
    let (addr, server) = stack.serve_fresh(&backends).await?;
    let result = race_on(&[addr], keys, writers, rounds, stack.name()).await;
    server.abort();
    result
}

/// Writers share one session, each bumping its own key (or the one key) `rounds` times;
/// writer `i` sends its requests to `addrs[i % len]`. Prints `lost <n>/<total>` last.
pub(crate) async fn race_on(
    addrs: &[SocketAddr],
    keys: Keys,
    writers: u32,
    rounds: u32,
    label: &str,
) -> Result<(), BoxError> {
    let first_addr = *addrs.first().ok_or("no server")?;
    let mut first = Client::connect(first_addr).await?;
    first.get("/write").await?;
    let cookie = first.cookie().ok_or("the server set no session cookie")?;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let cookie = cookie.clone();
        let addr = addrs[writer as usize % addrs.len()];
        tasks.spawn(async move {
            let mut client = Client::connect(addr).await?.with_cookie(Some(cookie));
            let path = match keys {
                Keys::Own => format!("/bump/{writer}"),
                Keys::Same(how) => how.path().to_owned(),
            };
            for _ in 0..rounds {
                let (status, body) = client.get(&path).await?;
                if status != 200 {
                    let body = String::from_utf8_lossy(&body);
                    return Err(format!("{path} on {addr}: {status} {body}").into());
                }
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let sum = match keys {
        Keys::Own => format!("/sum/{writers}"),
        Keys::Same(_) => "/same".to_owned(),
    };
    let (_, body) = first.get(&sum).await?;
    let seen: serde_json::Value = serde_json::from_slice(&body)?;
    let seen = seen["count"].as_u64().ok_or("no count in /sum answer")?;
    let total = u64::from(writers) * u64::from(rounds);
    let how = match keys {
        Keys::Own => "a key each".to_owned(),
        Keys::Same(how) => format!("one key, by {how:?}").to_lowercase(),
    };
    println!("stack {label}: {writers} writers x {rounds} rounds on one session, {how}");
    println!("lost {}/{total}", total.saturating_sub(seen));
    Ok(())
}
