//! `race`: concurrent writers on one session, each bumping its own key; how many updates
//! survive.

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

/// Runs the race on `store`; a Redis store starts or uses the Redis of `redis_url`, a
/// PostgreSQL store uses `postgres_url`.
pub(crate) async fn run(
    store: Store,
    writers: u32,
    rounds: u32,
    redis_url: Option<String>,
    postgres_url: &str,
) -> Result<(), BoxError> {
    let stack = match store {
        Store::Replicated => return replicated::race(writers, rounds).await,
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
    let result = race_on(&[addr], writers, rounds, stack.name()).await;
    server.abort();
    result
}

/// Writers share one session, each bumping its own key `rounds` times; writer `i` sends its
/// requests to `addrs[i % len]`. Prints `lost <n>/<total>` last.
pub(crate) async fn race_on(
    addrs: &[SocketAddr],
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
            let path = format!("/bump/{writer}");
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
    let (_, body) = first.get(&format!("/sum/{writers}")).await?;
    let seen: serde_json::Value = serde_json::from_slice(&body)?;
    let seen = seen["count"].as_u64().ok_or("no count in /sum answer")?;
    let total = u64::from(writers) * u64::from(rounds);
    println!("stack {label}: {writers} writers x {rounds} rounds on one session");
    println!("lost {}/{total}", total.saturating_sub(seen));
    Ok(())
}
