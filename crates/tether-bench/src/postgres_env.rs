//! The PostgreSQL server the SQL stacks run against (`--postgres-url`), and the schema each run
//! starts from.

use sqlx::Connection as _;
use tether_core::BoxError;

use crate::error::Doing as _;

/// The default server: the one this machine kind runs, trust authentication.
pub(crate) const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Connections in each SQL stack's pool, the same for tether-sql and tower-sessions-sqlx-store.
pub(crate) const POOL_SIZE: u32 = 6;
/// The schema the benchmarks create their tables in, emptied before each run.
pub(crate) const SCHEMA: &str = "tether_bench";

/// A PostgreSQL for the benchmarks.
#[derive(Debug)]
pub(crate) struct PostgresEnv {
    url: String,
}

impl PostgresEnv {
    pub(crate) fn new(url: String) -> Self {
        Self { url }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Drops the benchmarks' schema and creates it empty: each run starts from the same state.
    pub(crate) async fn reset(&self) -> Result<(), BoxError> {
        let at = || format!("resetting schema {SCHEMA} on {}", self.server());
        let mut connection = sqlx::PgConnection::connect(&self.url).await.doing(at)?;
        for statement in [
            format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
            format!("CREATE SCHEMA {SCHEMA}"),
        ] {
            sqlx::query(&statement)
                .execute(&mut connection)
                .await
                .doing(at)?;
        }
        Ok(())
    }

    /// The server's address, without user or password.
    pub(crate) fn server(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        rest.rsplit_once('@').map_or(rest, |(_, host)| host)
    }
}
