//! What the stores count, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`). Without the feature every function here is a plain pass-through. The names are
//! listed in docs/operations.md.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tether_sql_statements_total` | counter | `database`, `operation` | statements sent, transaction control included |
//! | `tether_sql_pool_wait_seconds` | histogram | `database` | time to get a connection from the pool |
//! | `tether_sql_pool_connections` | gauge | `database`, `state` | open connections, `idle` or `busy` |

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

/// A connection from `pool` for `count` statements of `operation`, timing the wait and
/// publishing the pool's size.
pub(crate) async fn acquire<DB: Database>(
    database: &'static str,
    pool: &Pool<DB>,
    operation: &'static str,
    count: u64,
) -> Result<PoolConnection<DB>, sqlx::Error> {
    let connection = timed_acquire(database, pool).await?;
    statements(database, operation, count);
    Ok(connection)
}

async fn timed_acquire<DB: Database>(
    database: &'static str,
    pool: &Pool<DB>,
) -> Result<PoolConnection<DB>, sqlx::Error> {
    #[cfg(feature = "metrics")]
    {
        let started = std::time::Instant::now();
        let connection = pool.acquire().await;
        metrics::histogram!("tether_sql_pool_wait_seconds", "database" => database)
            .record(started.elapsed().as_secs_f64());
        let (open, idle) = (pool.size(), pool.num_idle());
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(open);
        metrics::gauge!("tether_sql_pool_connections", "database" => database, "state" => "idle")
            .set(f64::from(idle));
        metrics::gauge!("tether_sql_pool_connections", "database" => database, "state" => "busy")
            .set(f64::from(open - idle));
        connection
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = database;
        pool.acquire().await
    }
}

/// `count` statements of `operation` go to the database.
pub(crate) fn statements(database: &'static str, operation: &'static str, count: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "tether_sql_statements_total",
        "database" => database,
        "operation" => operation
    )
    .increment(count);
    #[cfg(not(feature = "metrics"))]
    let _ = (database, operation, count);
}
