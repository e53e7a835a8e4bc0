//! The servers under test: one axum 0.8 app, with and without a session layer.

use std::fmt;
use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::backends::Backends;
use crate::live_sessions::{self, Filled, InMemory};
use crate::net::bind_loopback;
use crate::postgres_env::PostgresEnv;
use crate::redis_env::RedisEnv;
use tether_core::BoxError;

/// Sessions the near cache of `tether-redis-near` holds.
const NEAR_CACHE_SESSIONS: u64 = 100_000;

/// A server configuration measured by the benchmarks. Its command-line names (clap's
/// kebab-case of the variants) are its [`name`](Self::name)s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Stack {
    /// The same routes with no session at all: the ceiling.
    None,
    /// tether-sessions with tether-memory.
    TetherMemory,
    /// tower-sessions 0.14 with its MemoryStore.
    TowerSessionsMemory,
    /// tether-sessions with tether-redis: one multiplexed connection.
    TetherRedis,
    /// tether-redis with its near cache (100,000 sessions): warm reads cost no round trip.
    TetherRedisNear,
    /// tower-sessions 0.14 with tower-sessions-redis-store 0.16 (fred), a pool of 6 connections
    /// as its documentation shows.
    TowerSessionsRedis,
    /// tether-sessions with tether-sql on PostgreSQL, a pool of 6 connections.
    TetherPostgres,
    /// tower-sessions 0.14 with tower-sessions-sqlx-store 0.15 on the same PostgreSQL, a pool of
    /// 6 connections.
    TowerSessionsPostgres,
    /// tower-sessions 0.14 with tether-redis underneath, through tether-tower-sessions.
    TowerSessionsTetherRedis,
    /// tether-memory with the layer's metrics recorded by a Prometheus recorder (feature
    /// `metrics`). The recorder is global to its process, so this stack runs only as a server
    /// of its own (`serve`, `instructions`).
    #[cfg(feature = "metrics")]
    TetherMemoryPrometheus,
}

impl Stack {
    /// The stack's name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::TetherMemory => "tether-memory",
            Self::TowerSessionsMemory => "tower-sessions-memory",
            Self::TetherRedis => "tether-redis",
            Self::TetherRedisNear => "tether-redis-near",
            Self::TowerSessionsRedis => "tower-sessions-redis",
            Self::TetherPostgres => "tether-postgres",
            Self::TowerSessionsPostgres => "tower-sessions-postgres",
            Self::TowerSessionsTetherRedis => "tower-sessions-tether-redis",
            #[cfg(feature = "metrics")]
            Self::TetherMemoryPrometheus => "tether-memory-prometheus",
        }
    }

    /// Whether the stack installs a metrics recorder, which is global to its process: it runs
    /// only as a server of its own.
    pub(crate) fn records_metrics(self) -> bool {
        #[cfg(feature = "metrics")]
        return self == Self::TetherMemoryPrometheus;
        #[cfg(not(feature = "metrics"))]
        false
    }

    /// Refuses, for the commands that run servers in this process, a stack that must run in
    /// a process of its own.
    pub(crate) fn check_in_process(stacks: &[Self]) -> Result<(), BoxError> {
        match stacks.iter().find(|s| s.records_metrics()) {
            Some(stack) => Err(format!(
                "{stack} installs a process-wide metrics recorder: measure it with `instructions`, or `serve` it to an outside load generator"
            )
            .into()),
            None => Ok(()),
        }
    }

    /// Whether the stack keeps its sessions in Redis.
    pub(crate) fn uses_redis(self) -> bool {
        matches!(
            self,
            Self::TetherRedis
                | Self::TetherRedisNear
                | Self::TowerSessionsRedis
                | Self::TowerSessionsTetherRedis
        )
    }

    /// Whether the stack keeps its sessions in PostgreSQL.
    pub(crate) fn uses_postgres(self) -> bool {
        matches!(self, Self::TetherPostgres | Self::TowerSessionsPostgres)
    }

    /// The app of this stack, its sessions in `backends`' servers.
    pub(crate) async fn router(self, backends: &Backends) -> Result<Router, BoxError> {
        let redis_url = || self.redis_url(backends);
        let postgres_url = || {
            backends
                .postgres()
                .map(PostgresEnv::url)
                .ok_or_else(|| BoxError::from(format!("{self} needs a PostgreSQL server")))
        };
        Ok(match self {
            Self::None => Router::new()
                .route("/read", get(|| async { Json(json!({ "count": 0 })) }))
                .route("/write", get(|| async { Json(json!({ "count": 1 })) })),
            Self::TetherMemory => tether_app::router(),
            #[cfg(feature = "metrics")]
            Self::TetherMemoryPrometheus => tether_app::router(),
            Self::TowerSessionsMemory => tower_sessions_app::router(),
            Self::TetherRedis => tether_redis_app::router(redis_url()?, None).await?,
            Self::TetherRedisNear => {
                tether_redis_app::router(redis_url()?, Some(NEAR_CACHE_SESSIONS)).await?
            }
            Self::TowerSessionsRedis => tower_sessions_redis_app::router(redis_url()?).await?,
            Self::TetherPostgres => tether_postgres_app::router(postgres_url()?).await?,
            Self::TowerSessionsPostgres => {
                tower_sessions_postgres_app::router(postgres_url()?).await?
            }
            Self::TowerSessionsTetherRedis => {
                tower_sessions_tether_redis_app::router(redis_url()?).await?
            }
        })
    }

    /// The URL of `backends`' Redis server, which this stack needs.
    fn redis_url(self, backends: &Backends) -> Result<&str, BoxError> {
        backends
            .redis()
            .map(RedisEnv::url)
            .ok_or_else(|| BoxError::from(format!("{self} needs a Redis server")))
    }

    /// The app of this stack with tether's touch threshold at 0, so that a request a
    /// millisecond after the last renewal finds its session due for another: tether's Redis
    /// and PostgreSQL stacks (the only ones `commands` counts with it); any other stack as
    /// [`router`](Self::router).
    pub(crate) async fn router_renewing(self, backends: &Backends) -> Result<Router, BoxError> {
        match self {
            Self::TetherRedis => {
                tether_redis_app::router_with(self.redis_url(backends)?, None, 0.0).await
            }
            Self::TetherRedisNear => {
                let url = self.redis_url(backends)?;
                tether_redis_app::router_with(url, Some(NEAR_CACHE_SESSIONS), 0.0).await
            }
            Self::TetherPostgres => {
                let url = backends
                    .postgres()
                    .map(PostgresEnv::url)
                    .ok_or_else(|| BoxError::from(format!("{self} needs a PostgreSQL server")))?;
                tether_postgres_app::router_with(url, 0.0).await
            }
            other => other.router(backends).await,
        }
    }

    /// The app of an in-memory stack whose store holds `live` one-key sessions already.
    pub(crate) async fn router_with_live_sessions(self, live: u64) -> Result<Router, BoxError> {
        let kind = match self {
            Self::TetherMemory => InMemory::TetherMemory,
            Self::TowerSessionsMemory => InMemory::TowerSessionsMemory,
            _ => {
                return Err(format!(
                    "{self} keeps no sessions in this process: no --live-sessions"
                )
                .into());
            }
        };
        Ok(match live_sessions::filled(kind, live, false).await? {
            Filled::Tether(store) => tether_app::router_on(store),
            Filled::TowerSessions(store) => tower_sessions_app::router_on(store),
        })
    }

    /// Serves this stack on a free loopback port until the returned handle is aborted.
    pub(crate) async fn serve(
        self,
        backends: &Backends,
    ) -> Result<(SocketAddr, JoinHandle<()>), BoxError> {
        let (listener, addr) = bind_loopback().await?;
        let app = self.router(backends).await?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((addr, task))
    }

    /// [`serve`](Self::serve) on an emptied store: each run starts from the same state.
    pub(crate) async fn serve_fresh(
        self,
        backends: &Backends,
    ) -> Result<(SocketAddr, JoinHandle<()>), BoxError> {
        backends.reset_for(self).await?;
        self.serve(backends).await
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Routes every session stack serves, the same handlers over each library's API:
/// `/read` reads `count`, `/write` increments it, `/bump/{i}` increments `k{i}`,
/// `/sum/{n}` sums `k0..k{n-1}`, `/same/insert` increments `same` by a read and an insert,
/// `/same` reads it.
macro_rules! session_routes {
    ($session:ty) => {
        pub(super) fn common_routes() -> axum::Router {
            use super::*;
            async fn read(session: $session) -> Response {
                let count = session.get::<u64>("count").await;
                respond(count.map(|c| c.unwrap_or(0)).map_err(|e| e.to_string()))
            }
            async fn write(session: $session) -> Response {
                let result = async {
                    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
                    session.insert("count", &count).await?;
                    Ok::<_, Box<dyn std::error::Error>>(count)
                };
                respond(result.await.map_err(|e| e.to_string()))
            }
            async fn bump(session: $session, Path(i): Path<u32>) -> Response {
                let key = format!("k{i}");
                let result = async {
                    let value = session.get::<u64>(&key).await?.unwrap_or(0) + 1;
                    session.insert(&key, &value).await?;
                    Ok::<_, Box<dyn std::error::Error>>(value)
                };
                respond(result.await.map_err(|e| e.to_string()))
            }
            async fn sum(session: $session, Path(n): Path<u32>) -> Response {
                let result = async {
                    let mut total = 0u64;
                    for i in 0..n {
                        total += session.get::<u64>(&format!("k{i}")).await?.unwrap_or(0);
                    }
                    Ok::<_, Box<dyn std::error::Error>>(total)
                };
                respond(result.await.map_err(|e| e.to_string()))
            }
            async fn same(session: $session) -> Response {
                let count = session.get::<u64>("same").await;
                respond(count.map(|c| c.unwrap_or(0)).map_err(|e| e.to_string()))
            }
            async fn same_insert(session: $session) -> Response {
                let result = async {
                    let value = session.get::<u64>("same").await?.unwrap_or(0) + 1;
                    session.insert("same", &value).await?;
                    Ok::<_, Box<dyn std::error::Error>>(value)
                };
                respond(result.await.map_err(|e| e.to_string()))
            }
            axum::Router::new()
                .route("/read", get(read))
                .route("/write", get(write))
                .route("/bump/{i}", get(bump))
                .route("/sum/{n}", get(sum))
                .route("/same", get(same))
                .route("/same/insert", get(same_insert))
        }
    };
}

fn respond(result: Result<u64, String>) -> Response {
    match result {
        Ok(count) => Json(json!({ "count": count })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// The session routes on tether's `Session`, without a layer.
pub(crate) fn session_routes() -> Router {
    tether_app::routes()
}

mod tether_app {
    use tether_memory::MemoryStore;
    use tether_sessions::SessionLayer;

    session_routes!(tether_sessions::Session);

    /// The common routes, and `/same/increment` and `/same/update`: the increment of `same`
    /// as one atomic store operation, and as a compare-and-set loop.
    pub(super) fn routes() -> axum::Router {
        use super::*;
        async fn same_increment(session: tether_sessions::Session) -> Response {
            let count = session.increment("same", 1).await;
            respond(count.map(|c| c.unsigned_abs()).map_err(|e| e.to_string()))
        }
        async fn same_update(session: tether_sessions::Session) -> Response {
            let count = session
                .update("same", |count: Option<u64>| Some(count.unwrap_or(0) + 1))
                .await;
            respond(
                count
                    .map(Option::unwrap_or_default)
                    .map_err(|e| e.to_string()),
            )
        }
        common_routes()
            .route("/same/increment", get(same_increment))
            .route("/same/update", get(same_update))
    }

    pub(super) fn router() -> axum::Router {
        router_on(MemoryStore::new())
    }

    pub(super) fn router_on(store: MemoryStore) -> axum::Router {
        // Plain HTTP on loopback: the clients would not send a Secure cookie back.
        routes().layer(SessionLayer::new(store).with_secure(false))
    }
}

mod tether_redis_app {
    use tether_redis::RedisStore;
    use tether_sessions::SessionLayer;

    pub(super) async fn router(
        url: &str,
        near_cache: Option<u64>,
    ) -> Result<axum::Router, tether_core::BoxError> {
        router_with(url, near_cache, tether_sessions::DEFAULT_TOUCH_THRESHOLD).await
    }

    pub(super) async fn router_with(
        url: &str,
        near_cache: Option<u64>,
        touch_threshold: f64,
    ) -> Result<axum::Router, tether_core::BoxError> {
        let mut builder = RedisStore::builder(url);
        if let Some(capacity) = near_cache {
            builder = builder.with_near_cache(capacity);
        }
        // The error names the URL, its password hidden.
        let store = builder.connect().await?;
        let layer = SessionLayer::new(store)
            .with_secure(false)
            .with_touch_threshold(touch_threshold);
        Ok(super::tether_app::routes().layer(layer))
    }
}

mod tower_sessions_redis_app {
    use tower_sessions::SessionManagerLayer;
    use tower_sessions_redis_store::RedisStore;
    use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};

    use crate::error::Doing as _;

    pub(super) async fn router(url: &str) -> Result<axum::Router, tether_core::BoxError> {
        let at = || {
            format!(
                "tower-sessions-redis-store: connecting to {}",
                super::RedisEnv::addr_of(url)
            )
        };
        let pool = Pool::new(Config::from_url(url).doing(at)?, None, None, None, 6).doing(at)?;
        let _connection = pool.connect();
        pool.wait_for_connect().await.doing(at)?;
        let layer = SessionManagerLayer::new(RedisStore::new(pool)).with_secure(false);
        Ok(super::tower_sessions_app::routes().layer(layer))
    }
}

mod tower_sessions_tether_redis_app {
    use tether_redis::RedisStore;
    use tether_tower_sessions::TetherStore;
    use tower_sessions::SessionManagerLayer;

    pub(super) async fn router(url: &str) -> Result<axum::Router, tether_core::BoxError> {
        let store = RedisStore::connect(url).await?;
        let layer = SessionManagerLayer::new(TetherStore::new(store)).with_secure(false);
        Ok(super::tower_sessions_app::routes().layer(layer))
    }
}

mod tether_postgres_app {
    use tether_sessions::SessionLayer;
    use tether_sql::PostgresStore;

    use crate::error::Doing as _;
    use crate::postgres_env::{POOL_SIZE, SCHEMA};

    pub(super) async fn router(url: &str) -> Result<axum::Router, tether_core::BoxError> {
        router_with(url, tether_sessions::DEFAULT_TOUCH_THRESHOLD).await
    }

    pub(super) async fn router_with(
        url: &str,
        touch_threshold: f64,
    ) -> Result<axum::Router, tether_core::BoxError> {
        let at = || "tether-sql: connecting to PostgreSQL".to_owned();
        let store = PostgresStore::builder()
            .with_schema(SCHEMA)
            .with_max_connections(POOL_SIZE)
            .connect(url)
            .await
            .doing(at)?;
        store.migrate().await.doing(at)?;
        let layer = SessionLayer::new(store)
            .with_secure(false)
            .with_touch_threshold(touch_threshold);
        Ok(super::tether_app::routes().layer(layer))
    }
}

mod tower_sessions_postgres_app {
    use tower_sessions::SessionManagerLayer;
    use tower_sessions_sqlx_store::PostgresStore;
    use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;

    use crate::error::Doing as _;
    use crate::postgres_env::{POOL_SIZE, SCHEMA};

    pub(super) async fn router(url: &str) -> Result<axum::Router, tether_core::BoxError> {
        let at = || "tower-sessions-sqlx-store: connecting to PostgreSQL".to_owned();
        // The pool as tether-sql makes its own: without a ping before each statement (sqlx's
        // default), so the stacks differ by their session store only.
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .test_before_acquire(false)
            .connect(url)
            .await
            .doing(at)?;
        let store = PostgresStore::new(pool)
            .with_schema_name(SCHEMA)
            .doing(at)?;
        store.migrate().await.doing(at)?;
        let layer = SessionManagerLayer::new(store).with_secure(false);
        Ok(super::tower_sessions_app::routes().layer(layer))
    }
}

mod tower_sessions_app {
    use tower_sessions::{MemoryStore, SessionManagerLayer};

    session_routes!(tower_sessions::Session);
    pub(super) use common_routes as routes;

    pub(super) fn router() -> axum::Router {
        router_on(MemoryStore::default())
    }

    pub(super) fn router_on(store: MemoryStore) -> axum::Router {
        routes().layer(SessionManagerLayer::new(store).with_secure(false))
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum as _;

    use super::*;

    #[test]
    fn command_line_names_are_the_stack_names() {
        for &stack in Stack::value_variants() {
            let value = stack.to_possible_value().unwrap();
            assert_eq!(value.get_name(), stack.name());
            assert_eq!(stack.to_string(), stack.name());
        }
    }
}
