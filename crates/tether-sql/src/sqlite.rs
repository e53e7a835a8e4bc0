//! The SQLite store: every operation one short transaction, one writer at a time.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};
use tether_core::{Applied, Changes, Created, Cycled, Expiry, Id, Record, SessionStore, Timestamp};
use tokio::sync::Mutex;

use crate::error::Error;
use crate::names::{DEFAULT_TABLE_PREFIX, Tables};
use crate::row::{Meta, decode_rows, millis};
use crate::run::{Settings, run};
use crate::sweeper::{Sweep, Sweeper};
use crate::telemetry;

/// Runs one write: `$body` is an async block of statements on `$conn` answering
/// `(commit, answer)`, in a transaction taken in this store's writers' turn.
macro_rules! write {
    ($store:expr, $operation:literal, |$conn:ident| $body:expr) => {{
        let op = Error::query($operation);
        let _turn = $store.writer.lock().await;
        // BEGIN, and COMMIT or ROLLBACK.
        let mut connection = $store.connection($operation, 2).await.map_err(op)?;
        let mut tx = sqlx::Connection::begin_with(&mut *connection, "BEGIN IMMEDIATE")
            .await
            .map_err(op)?;
        let $conn: &mut SqliteConnection = &mut tx;
        let (commit, answer) = $body.await.map_err(op)?;
        if commit {
            tx.commit().await
        } else {
            tx.rollback().await
        }
        .map_err(op)?;
        Ok(answer)
    }};
}

#[derive(Debug)]
struct Statements {
    tables: Tables,
    load: String,
    free_expired: String,
    insert_session: String,
    upsert_key: String,
    clear: String,
    remove_key: String,
    update_expiry: String,
    delete: String,
    live: String,
    rename: String,
    sweep: String,
}

impl Statements {
    fn new(tables: Tables) -> Self {
        let Tables { sessions, keys, .. } = &tables;
        Self {
            load: format!(
                "SELECT s.created_at, s.expires_at, s.idle_timeout_ms, s.absolute_deadline, k.key, k.value \
                 FROM {sessions} s LEFT JOIN {keys} k ON k.session_id = s.id \
                 WHERE s.id = ?1 AND s.expires_at > ?2"
            ),
            free_expired: format!("DELETE FROM {sessions} WHERE id = ?1 AND expires_at <= ?2"),
            insert_session: format!(
                "INSERT INTO {sessions} (id, created_at, expires_at, idle_timeout_ms, absolute_deadline) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING"
            ),
            upsert_key: format!(
                "INSERT INTO {keys} (session_id, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value"
            ),
            clear: format!("DELETE FROM {keys} WHERE session_id = ?1"),
            remove_key: format!("DELETE FROM {keys} WHERE session_id = ?1 AND key = ?2"),
            update_expiry: format!(
                "UPDATE {sessions} SET expires_at = ?3, idle_timeout_ms = ?4, absolute_deadline = ?5 \
                 WHERE id = ?1 AND expires_at > ?2"
            ),
            delete: format!("DELETE FROM {sessions} WHERE id = ?1"),
            live: format!("SELECT count(*) FROM {sessions} WHERE id = ?1 AND expires_at > ?2"),
            // The key rows follow through `ON UPDATE CASCADE`.
            rename: format!("UPDATE {sessions} SET id = ?2 WHERE id = ?1 AND expires_at > ?3"),
            sweep: format!(
                "DELETE FROM {sessions} WHERE id IN ( \
                   SELECT id FROM {sessions} WHERE expires_at <= ?1 LIMIT ?2)"
            ),
            tables,
        }
    }

    fn migration(&self) -> String {
        let Tables {
            sessions,
            keys,
            expiry_index,
            ..
        } = &self.tables;
        format!(
            "CREATE TABLE IF NOT EXISTS {sessions} (\n\
             \x20 id TEXT PRIMARY KEY NOT NULL,\n\
             \x20 created_at INTEGER NOT NULL,\n\
             \x20 expires_at INTEGER NOT NULL,\n\
             \x20 idle_timeout_ms INTEGER NOT NULL,\n\
             \x20 absolute_deadline INTEGER\n\
             );\n\
             CREATE INDEX IF NOT EXISTS {expiry_index} ON {sessions} (expires_at);\n\
             CREATE TABLE IF NOT EXISTS {keys} (\n\
             \x20 session_id TEXT NOT NULL REFERENCES {sessions} (id) ON DELETE CASCADE ON UPDATE CASCADE,\n\
             \x20 key BLOB NOT NULL,\n\
             \x20 value BLOB NOT NULL,\n\
             \x20 PRIMARY KEY (session_id, key)\n\
             ) WITHOUT ROWID;\n"
        )
    }
}

/// A [`SessionStore`] in SQLite: sessions of one process that survive its restarts, in a file
/// (or in memory, for tests).
///
/// The same two tables as [`PostgresStore`](crate::PostgresStore) (see the crate docs). Each
/// operation is one short transaction; writers of this store take turns (SQLite has one writer
/// at a time anyway) and start with `BEGIN IMMEDIATE`, so they never deadlock on a lock
/// upgrade. Readers run in parallel (the file is opened in WAL mode). Only the keys a request
/// changed are written.
///
/// Cloning is cheap: clones share the pool and the writer turn.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tether_sql::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| tether_sql::Error::Connect(e.into()))?;
/// # let path = dir.path().join("sessions.db");
/// let store = tether_sql::SqliteStore::open(&path).await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    statements: Arc<Statements>,
    settings: Settings,
    writer: Arc<Mutex<()>>,
}

/// Builds a [`SqliteStore`]: table prefix, pool size, timeouts.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tether_sql::Error> {
/// let store = tether_sql::SqliteStore::builder()
///     .with_table_prefix("shop_")
///     .in_memory()
///     .await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `open`, `in_memory` or `build`"]
pub struct SqliteStoreBuilder {
    prefix: String,
    max_connections: u32,
    settings: Settings,
}

impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            max_connections: crate::DEFAULT_MAX_CONNECTIONS,
            settings: Settings::default(),
        }
    }
}

impl SqliteStoreBuilder {
    /// Prefix of the table and index names (default [`DEFAULT_TABLE_PREFIX`], may be empty).
    pub fn with_table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Most connections [`open`](Self::open) keeps, for parallel reads (default
    /// [`DEFAULT_MAX_CONNECTIONS`](crate::DEFAULT_MAX_CONNECTIONS)).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Bound on one operation, waiting for the writer turn and a connection included (default
    /// [`DEFAULT_OPERATION_TIMEOUT`](crate::DEFAULT_OPERATION_TIMEOUT)).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Most sessions one statement of the sweeper deletes (default
    /// [`DEFAULT_SWEEP_BATCH`](crate::DEFAULT_SWEEP_BATCH)).
    pub fn with_sweep_batch(mut self, batch: u32) -> Self {
        self.settings.sweep_batch = batch.max(1);
        self
    }

    /// Opens (creating it if absent) the database file at `path`, in WAL mode with
    /// `synchronous = NORMAL` (a commit survives a crash of the process; a power loss may undo
    /// the last ones) and foreign keys on.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad prefix, [`Error::Connect`] when the file cannot be opened.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<SqliteStore, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(self.settings.timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.settings.timeout)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(Error::Connect)?;
        self.build(pool)
    }

    /// A database in memory, gone when the store (every clone) is dropped: for tests. It lives
    /// in one connection that the pool never closes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad prefix, [`Error::Connect`] if SQLite fails to open it.
    pub async fn in_memory(self) -> Result<SqliteStore, Error> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(self.settings.timeout)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(Error::Connect)?;
        self.build(pool)
    }

    /// The store on an existing pool, whose connections must have foreign keys on (sqlx's
    /// default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad prefix.
    pub fn build(self, pool: SqlitePool) -> Result<SqliteStore, Error> {
        let tables = Tables::new(None, &self.prefix)?;
        Ok(SqliteStore {
            pool,
            statements: Arc::new(Statements::new(tables)),
            settings: self.settings,
            writer: Arc::new(Mutex::new(())),
        })
    }
}

impl SqliteStore {
    /// A builder with the defaults: prefix `tether_`.
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// Opens the database file at `path` with the defaults; see [`SqliteStoreBuilder::open`].
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the file cannot be opened.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder().open(path).await
    }

    /// An in-memory database with the defaults; see [`SqliteStoreBuilder::in_memory`].
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] if SQLite fails to open it.
    pub async fn in_memory() -> Result<Self, Error> {
        Self::builder().in_memory().await
    }

    /// Creates the two tables and the expiry index, each only if absent (`CREATE ... IF NOT
    /// EXISTS`), in one transaction. The statements are [`migration_sql`](Self::migration_sql):
    /// the columns of [`PostgresStore::migrate`](crate::PostgresStore::migrate), with `INTEGER`
    /// for `bigint` and `BLOB` for `bytea`.
    ///
    /// # Errors
    ///
    /// [`Error::Migrate`] when a statement fails.
    pub async fn migrate(&self) -> Result<(), Error> {
        let _turn = self.writer.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::Migrate)?;
        // A plain string runs in the simple protocol, several statements at once. (`raw_sql`
        // would too, but its future is not `Send` when spawned.)
        let migration = self.migration_sql();
        sqlx::Executor::execute(&mut *tx, migration.as_str())
            .await
            .map_err(Error::Migrate)?;
        tx.commit().await.map_err(Error::Migrate)
    }

    /// The statements [`migrate`](Self::migrate) runs.
    pub fn migration_sql(&self) -> String {
        self.statements.migration()
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The quoted name of the sessions table, for queries of your own.
    pub fn sessions_table(&self) -> &str {
        &self.statements.tables.sessions
    }

    /// The quoted name of the session keys table.
    pub fn keys_table(&self) -> &str {
        &self.statements.tables.keys
    }

    /// Deletes every session expired now, in statements of at most the sweep batch each, and
    /// answers how many it deleted.
    ///
    /// # Errors
    ///
    /// The first failing statement's error; what earlier statements deleted stays deleted.
    pub async fn delete_expired(&self) -> Result<u64, tether_core::Error> {
        crate::sweeper::delete_all_expired(self).await
    }

    /// Starts a task that calls [`delete_expired`](Self::delete_expired) every `period`,
    /// logging failures, until the returned [`Sweeper`] is stopped or dropped.
    pub fn spawn_sweeper(&self, period: Duration) -> Sweeper {
        Sweeper::spawn(self.clone(), period)
    }

    /// A connection from the pool, for `count` statements of `operation`.
    async fn connection(
        &self,
        operation: &'static str,
        count: u64,
    ) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
        telemetry::acquire("sqlite", &self.pool, operation, count).await
    }

    fn upsert<'q>(
        &'q self,
        id: &'q str,
        key: &'q str,
        value: &'q [u8],
    ) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        sqlx::query(&self.statements.upsert_key)
            .bind(id)
            .bind(key.as_bytes())
            .bind(value)
    }
}

#[async_trait]
impl Sweep for SqliteStore {
    async fn sweep_batch(&self) -> Result<u64, tether_core::Error> {
        let batch = i64::from(self.settings.sweep_batch);
        run(&self.settings, "sweep", async {
            write!(self, "sweep", |conn| async {
                telemetry::statements("sqlite", "sweep", 1);
                let done = sqlx::query(&self.statements.sweep)
                    .bind(millis(Timestamp::now()))
                    .bind(batch)
                    .execute(&mut *conn)
                    .await?;
                Ok((true, done.rows_affected()))
            })
        })
        .await
    }

    fn batch_size(&self) -> u64 {
        u64::from(self.settings.sweep_batch)
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, tether_core::Error> {
        run(&self.settings, "load", async {
            let rows = sqlx::query(&self.statements.load)
                .bind(id.to_string())
                .bind(millis(Timestamp::now()))
                .fetch_all(
                    &mut *self
                        .connection("load", 1)
                        .await
                        .map_err(Error::query("load"))?,
                )
                .await
                .map_err(Error::query("load"))?;
            decode_rows(*id, &rows, Timestamp::now())
        })
        .await
    }

    async fn create(&self, record: &Record) -> Result<Created, tether_core::Error> {
        let id = record.id.to_string();
        let meta = Meta::of(record.created_at, &record.expiry);
        run(&self.settings, "create", async {
            write!(self, "create", |conn| async {
                sqlx::query(&self.statements.free_expired)
                    .bind(&id)
                    .bind(millis(Timestamp::now()))
                    .execute(&mut *conn)
                    .await?;
                let inserted = sqlx::query(&self.statements.insert_session)
                    .bind(&id)
                    .bind(meta.created_at)
                    .bind(meta.expires_at)
                    .bind(meta.idle_timeout_ms)
                    .bind(meta.absolute_deadline)
                    .execute(&mut *conn)
                    .await?;
                telemetry::statements("sqlite", "create", 2);
                if inserted.rows_affected() == 0 {
                    return Ok((false, Created::IdTaken));
                }
                telemetry::statements("sqlite", "create", record.data.len() as u64);
                for (key, value) in &record.data {
                    self.upsert(&id, key, value).execute(&mut *conn).await?;
                }
                Ok((true, Created::Created))
            })
        })
        .await
    }

    async fn apply(
        &self,
        id: &Id,
        changes: &Changes,
        expiry: &Expiry,
    ) -> Result<Applied, tether_core::Error> {
        let id = id.to_string();
        let meta = Meta::of(Timestamp::from_millis(0), expiry);
        run(&self.settings, "apply", async {
            write!(self, "apply", |conn| async {
                let updated = sqlx::query(&self.statements.update_expiry)
                    .bind(&id)
                    .bind(millis(Timestamp::now()))
                    .bind(meta.expires_at)
                    .bind(meta.idle_timeout_ms)
                    .bind(meta.absolute_deadline)
                    .execute(&mut *conn)
                    .await?;
                telemetry::statements("sqlite", "apply", 1);
                if updated.rows_affected() == 0 {
                    return Ok((false, Applied::Missing));
                }
                let rest = u64::from(changes.is_clear())
                    + changes.removed().count() as u64
                    + changes.inserted().count() as u64;
                telemetry::statements("sqlite", "apply", rest);
                if changes.is_clear() {
                    sqlx::query(&self.statements.clear)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                }
                for key in changes.removed() {
                    sqlx::query(&self.statements.remove_key)
                        .bind(&id)
                        .bind(key.as_bytes())
                        .execute(&mut *conn)
                        .await?;
                }
                for (key, value) in changes.inserted() {
                    self.upsert(&id, key, value).execute(&mut *conn).await?;
                }
                Ok((true, Applied::Applied))
            })
        })
        .await
    }

    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, tether_core::Error> {
        self.apply(id, &Changes::new(), expiry).await
    }

    async fn delete(&self, id: &Id) -> Result<(), tether_core::Error> {
        let id = id.to_string();
        run(&self.settings, "delete", async {
            write!(self, "delete", |conn| async {
                telemetry::statements("sqlite", "delete", 1);
                sqlx::query(&self.statements.delete)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                Ok((true, ()))
            })
        })
        .await
    }

    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, tether_core::Error> {
        let (old, new) = (old.to_string(), new.to_string());
        run(&self.settings, "cycle", async {
            write!(self, "cycle", |conn| async {
                let now = millis(Timestamp::now());
                // Freeing the new id and checking it; the old id's check or the rename.
                telemetry::statements("sqlite", "cycle", 3);
                sqlx::query(&self.statements.free_expired)
                    .bind(&new)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                let taken: i64 = sqlx::query_scalar(&self.statements.live)
                    .bind(&new)
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await?;
                if taken > 0 {
                    // Whether the old one lives decides between the two refusals.
                    let old_live: i64 = sqlx::query_scalar(&self.statements.live)
                        .bind(&old)
                        .bind(now)
                        .fetch_one(&mut *conn)
                        .await?;
                    let refused = if old_live > 0 {
                        Cycled::IdTaken
                    } else {
                        Cycled::Missing
                    };
                    return Ok((false, refused));
                }
                let renamed = sqlx::query(&self.statements.rename)
                    .bind(&old)
                    .bind(&new)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                let moved = renamed.rows_affected() > 0;
                Ok((
                    moved,
                    if moved {
                        Cycled::Moved
                    } else {
                        Cycled::Missing
                    },
                ))
            })
        })
        .await
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("sessions_table", &self.statements.tables.sessions)
            .field("keys_table", &self.statements.tables.keys)
            .field("settings", &self.settings)
            .finish()
    }
}
