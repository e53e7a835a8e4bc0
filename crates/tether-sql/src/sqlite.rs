//! The SQLite store: every operation one short transaction, one writer at a time.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};
use tether_core::{
    Applied, Changes, Created, Cycled, EventKind, Expiry, Id, KeyUpdate, KeyUpdated, Principal,
    Record, Revoked, SessionHandle, SessionInfo, SessionStore, Timestamp,
};
use tokio::sync::Mutex;

use crate::error::Error;
use crate::events::sqlite::EventStatements;
use crate::events::{EventLog, Log};
use crate::names::{DEFAULT_TABLE_PREFIX, Tables};
use crate::row::{Binding, Meta, decode_infos, decode_rows, handle_bytes, millis};
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
pub(crate) struct Statements {
    tables: Tables,
    load: String,
    free_expired: String,
    insert_session: String,
    upsert_key: String,
    clear: String,
    remove_key: String,
    key_value: String,
    update: String,
    cap: String,
    delete: String,
    live: String,
    rename: String,
    sessions_of: String,
    revoke: String,
    revoke_all: String,
    columns: String,
    sweep: String,
    // With events: the statements that report, each run in the transaction of the change it
    // reports, before a `DELETE` (they read the rows it deletes) or after an insert or update.
    event: String,
    free_expired_event: String,
    delete_event: String,
    cycled_event: String,
    cap_events: String,
    revoke_events: String,
    revoke_all_events: String,
    sweep_ordered: String,
    sweep_events: String,
    sweep_unnamed: String,
    name_session: String,
    pub(crate) events: EventStatements,
}

/// The columns added for the principal index, with their types: a database made before them
/// gets them from `migrate` (SQLite has no `ADD COLUMN IF NOT EXISTS`: `migrate` looks first).
const ADDED_COLUMNS: [(&str, &str); 5] = [
    ("principal", "TEXT"),
    ("handle", "BLOB"),
    ("last_seen", "INTEGER"),
    ("device", "TEXT"),
    ("address", "TEXT"),
];

impl Statements {
    fn new(tables: Tables) -> Self {
        let Tables {
            sessions,
            keys,
            events,
            ..
        } = &tables;
        // The sessions past the cap (see `cap`), and a sweep batch: the same rows for the
        // statement that reports them and the one that deletes them, in one transaction.
        let capped =
            "SELECT id FROM {sessions} WHERE principal = ?1 AND expires_at > ?2 AND id <> ?3 \
                      ORDER BY created_at DESC, handle DESC LIMIT -1 OFFSET ?4"
                .replace("{sessions}", sessions);
        let swept = format!(
            "SELECT id FROM {sessions} WHERE expires_at <= ?1 ORDER BY expires_at, id LIMIT ?2"
        );
        let report =
            format!("INSERT INTO {events} (kind, handle, principal, from_handle, occurred_at)");
        Self {
            load: format!(
                "SELECT s.created_at, s.expires_at, s.idle_timeout_ms, s.absolute_deadline, \
                 s.principal, s.last_seen, s.device, s.address, k.key, k.value \
                 FROM {sessions} s LEFT JOIN {keys} k ON k.session_id = s.id \
                 WHERE s.id = ?1 AND s.expires_at > ?2"
            ),
            free_expired: format!("DELETE FROM {sessions} WHERE id = ?1 AND expires_at <= ?2"),
            insert_session: format!(
                "INSERT INTO {sessions} (id, created_at, expires_at, idle_timeout_ms, absolute_deadline, \
                 principal, handle, last_seen, device, address) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING"
            ),
            upsert_key: format!(
                "INSERT INTO {keys} (session_id, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value"
            ),
            clear: format!("DELETE FROM {keys} WHERE session_id = ?1"),
            remove_key: format!("DELETE FROM {keys} WHERE session_id = ?1 AND key = ?2"),
            // One row if the session is live, its `value` the key's (`NULL`: absent).
            key_value: format!(
                "SELECT k.value FROM {sessions} s \
                 LEFT JOIN {keys} k ON k.session_id = s.id AND k.key = ?3 \
                 WHERE s.id = ?1 AND s.expires_at > ?2"
            ),
            // A `NULL` principal, handle or `last_seen` (?6, ?7, ?8) keeps what is stored: the
            // changes bind nobody, or record no use.
            update: format!(
                "UPDATE {sessions} SET expires_at = ?3, idle_timeout_ms = ?4, absolute_deadline = ?5, \
                 principal = COALESCE(?6, principal), handle = COALESCE(?7, handle), \
                 last_seen = COALESCE(?8, last_seen), \
                 device = CASE WHEN ?8 IS NULL THEN device ELSE ?9 END, \
                 address = CASE WHEN ?8 IS NULL THEN address ELSE ?10 END \
                 WHERE id = ?1 AND expires_at > ?2"
            ),
            // The principal's other live sessions but the newest ?4 (by creation, then
            // handle, as `sessions_of` lists them).
            cap: format!(
                "DELETE FROM {sessions} WHERE id IN ( \
                   SELECT id FROM {sessions} WHERE principal = ?1 AND expires_at > ?2 AND id <> ?3 \
                   ORDER BY created_at DESC, handle DESC LIMIT -1 OFFSET ?4)"
            ),
            delete: format!("DELETE FROM {sessions} WHERE id = ?1"),
            live: format!("SELECT count(*) FROM {sessions} WHERE id = ?1 AND expires_at > ?2"),
            // The key rows follow through `ON UPDATE CASCADE`; principal and last use stay in
            // the row, and the handle follows the id.
            rename: format!(
                "UPDATE {sessions} SET id = ?2, handle = ?4 WHERE id = ?1 AND expires_at > ?3"
            ),
            sessions_of: format!(
                "SELECT handle, created_at, expires_at, idle_timeout_ms, absolute_deadline, \
                 last_seen, device, address FROM {sessions} \
                 WHERE principal = ?1 AND expires_at > ?2 ORDER BY created_at, handle"
            ),
            // Principal and liveness are checked by the statement that deletes: a handle of
            // another principal's session deletes nothing.
            revoke: format!(
                "DELETE FROM {sessions} WHERE principal = ?1 AND handle = ?2 AND expires_at > ?3"
            ),
            revoke_all: format!(
                "DELETE FROM {sessions} WHERE principal = ?1 AND expires_at > ?2 \
                 AND (?3 IS NULL OR handle IS NOT ?3)"
            ),
            columns: "SELECT name FROM pragma_table_info(?1)".to_owned(),
            sweep: format!(
                "DELETE FROM {sessions} WHERE id IN ( \
                   SELECT id FROM {sessions} WHERE expires_at <= ?1 LIMIT ?2)"
            ),
            event: format!("{report} VALUES (?1, ?2, ?3, NULL, ?4)"),
            // ?3: the handle of the id, for a row written before the handle column.
            free_expired_event: format!(
                "{report} SELECT 'expired', COALESCE(handle, ?3), principal, NULL, ?2 \
                 FROM {sessions} WHERE id = ?1 AND expires_at <= ?2"
            ),
            // A session past its deadline that no sweep deleted yet is reported expired: it
            // was, and nothing else will report it. ?2: the handle of the id, ?3: now.
            delete_event: format!(
                "{report} SELECT CASE WHEN expires_at > ?3 THEN 'deleted' ELSE 'expired' END, \
                 COALESCE(handle, ?2), principal, NULL, ?3 FROM {sessions} WHERE id = ?1"
            ),
            // After the rename: ?1 the new id, ?2 the old handle, ?3 now.
            cycled_event: format!(
                "{report} SELECT 'cycled', handle, principal, ?2, ?3 FROM {sessions} WHERE id = ?1"
            ),
            cap_events: format!(
                "{report} SELECT 'revoked', handle, principal, NULL, ?2 FROM {sessions} \
                 WHERE id IN ({capped})"
            ),
            revoke_events: format!(
                "{report} SELECT 'revoked', handle, principal, NULL, ?3 FROM {sessions} \
                 WHERE principal = ?1 AND handle = ?2 AND expires_at > ?3"
            ),
            revoke_all_events: format!(
                "{report} SELECT 'revoked', handle, principal, NULL, ?2 FROM {sessions} \
                 WHERE principal = ?1 AND expires_at > ?2 AND (?3 IS NULL OR handle IS NOT ?3)"
            ),
            sweep_ordered: format!("DELETE FROM {sessions} WHERE id IN ({swept})"),
            sweep_events: format!(
                "{report} SELECT 'expired', handle, principal, NULL, ?1 FROM {sessions} \
                 WHERE id IN ({swept})"
            ),
            // Rows of the batch written before the handle column: named first, from their ids.
            sweep_unnamed: format!(
                "SELECT id FROM {sessions} WHERE id IN ({swept}) AND handle IS NULL"
            ),
            name_session: format!("UPDATE {sessions} SET handle = ?2 WHERE id = ?1"),
            events: EventStatements::new(&tables),
            tables,
        }
    }

    /// The tables and the expiry index.
    fn create_tables(&self) -> String {
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
             \x20 absolute_deadline INTEGER,\n\
             \x20 principal TEXT,\n\
             \x20 handle BLOB,\n\
             \x20 last_seen INTEGER,\n\
             \x20 device TEXT,\n\
             \x20 address TEXT\n\
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

    /// The principal index: sessions of a principal, and one of them by its handle.
    fn principal_index(&self) -> String {
        let Tables {
            sessions,
            principal_index,
            ..
        } = &self.tables;
        format!(
            "CREATE INDEX IF NOT EXISTS {principal_index} ON {sessions} (principal, handle) \
             WHERE principal IS NOT NULL;\n"
        )
    }

    /// What `migrate` runs on a new database: with events, their tables too.
    fn migration(&self, events: bool) -> String {
        let events = if events {
            self.events.create_tables.as_str()
        } else {
            ""
        };
        format!("{}{}{events}", self.create_tables(), self.principal_index())
    }

    /// The sessions table's name as `pragma_table_info` wants it: unquoted (names are plain
    /// identifiers, checked).
    fn sessions_name(&self) -> &str {
        self.tables.sessions.trim_matches('"')
    }
}

/// A [`SessionStore`] in SQLite: sessions of one process that survive its restarts, in a file
/// (or in memory, for tests).
///
/// The same two tables as [`PostgresStore`](crate::PostgresStore) (see the crate docs). Each
/// operation is one short transaction; writers of this store take turns (SQLite has one writer
/// at a time anyway) and start with `BEGIN IMMEDIATE`, so they never deadlock on a lock
/// upgrade. Readers run in parallel (the file is opened in WAL mode). Only the keys a request
/// changed are written; `update_key` reads and writes its key in one transaction, an increment
/// too. With [`SqliteStoreBuilder::with_events`], each of these transactions also writes its
/// session events, and [`SessionStore::events`] reads them (see [`EventLog`]).
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
    pub(crate) pool: SqlitePool,
    pub(crate) statements: Arc<Statements>,
    pub(crate) settings: Settings,
    pub(crate) writer: Arc<Mutex<()>>,
    /// Set by [`SqliteStoreBuilder::with_events`].
    pub(crate) log: Option<Arc<Log>>,
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
    events: Option<EventLog>,
}

impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            max_connections: crate::DEFAULT_MAX_CONNECTIONS,
            settings: Settings::default(),
            events: None,
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

    /// Bounds the live sessions of one principal (default: no bound). Binding one more, by a
    /// `create` of a record with a principal or an `apply` whose changes bind one, revokes the
    /// oldest (by creation) of the principal's other live sessions, so at most `max` remain.
    /// Rebinding a session to the principal it has revokes nothing while the bound holds.
    ///
    /// The revocation is one more statement in the transaction that binds, run only when a
    /// principal is bound; writers take turns, so the bound holds exactly.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tether_sql::Error> {
    /// use std::num::NonZeroUsize;
    ///
    /// let store = tether_sql::SqliteStore::builder()
    ///     .with_max_sessions_per_principal(NonZeroUsize::new(5))
    ///     .in_memory()
    ///     .await?;
    /// assert_eq!(store.max_sessions_per_principal(), NonZeroUsize::new(5));
    /// # Ok(()) }
    /// ```
    pub fn with_max_sessions_per_principal(mut self, max: Option<NonZeroUsize>) -> Self {
        self.settings.max_per_principal = max;
        self
    }

    /// Keeps session events (default: none), read with
    /// [`SessionStore::events`](tether_core::SessionStore::events) by the consumer group of
    /// `events`; see [`EventLog`] for what is delivered and when.
    ///
    /// Every write that changes a session writes its event in the same transaction (one more
    /// statement in it). [`SqliteStore::migrate`] creates the events tables. Without events no
    /// statement writes or reads them. One consumer of a group reads at a time among the
    /// clones of this store; the others wait their turn.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tether_core::SessionStore as _;
    /// use tether_sql::EventLog;
    ///
    /// let store = tether_sql::SqliteStore::builder()
    ///     .with_events(EventLog::new())
    ///     .in_memory()
    ///     .await?;
    /// store.migrate().await?;
    /// let events = store.events().await?;
    /// # drop(events); Ok(()) }
    /// ```
    pub fn with_events(mut self, events: EventLog) -> Self {
        self.events = Some(events);
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
            log: self.events.map(Log::new),
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

    /// Creates the two tables and their indexes, each only if absent (`CREATE ... IF NOT
    /// EXISTS`), in one transaction. The statements are [`migration_sql`](Self::migration_sql):
    /// the columns of [`PostgresStore::migrate`](crate::PostgresStore::migrate), with `INTEGER`
    /// for `bigint`, `BLOB` for `bytea` and `TEXT` for `text`.
    ///
    /// A sessions table made before the principal columns existed (`principal`, `handle`,
    /// `last_seen`, `device`, `address`) gets the ones it lacks, by `ALTER TABLE ... ADD
    /// COLUMN`, in the same transaction; its sessions keep working, bound to nobody.
    ///
    /// With [`SqliteStoreBuilder::with_events`] (only then) it also creates the events tables
    /// (see the crate docs): `tether_session_events (id INTEGER PRIMARY KEY AUTOINCREMENT, kind
    /// TEXT NOT NULL, handle BLOB, principal TEXT, from_handle BLOB, occurred_at INTEGER NOT
    /// NULL)`, indexed on `occurred_at`, and `tether_session_event_cursors (group_name TEXT
    /// PRIMARY KEY NOT NULL, id INTEGER NOT NULL, updated_at INTEGER NOT NULL)`.
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
        let tables = self.statements.create_tables();
        sqlx::Executor::execute(&mut *tx, tables.as_str())
            .await
            .map_err(Error::Migrate)?;
        // SQLite has no `ADD COLUMN IF NOT EXISTS`: look first.
        let present: Vec<String> = sqlx::query_scalar(&self.statements.columns)
            .bind(self.statements.sessions_name())
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::Migrate)?;
        for (name, ty) in ADDED_COLUMNS {
            if !present
                .iter()
                .any(|column| column.eq_ignore_ascii_case(name))
            {
                let add = format!(
                    "ALTER TABLE {} ADD COLUMN {name} {ty}",
                    self.statements.tables.sessions
                );
                sqlx::Executor::execute(&mut *tx, add.as_str())
                    .await
                    .map_err(Error::Migrate)?;
            }
        }
        let index = self.statements.principal_index();
        sqlx::Executor::execute(&mut *tx, index.as_str())
            .await
            .map_err(Error::Migrate)?;
        if self.log.is_some() {
            sqlx::Executor::execute(&mut *tx, self.statements.events.create_tables.as_str())
                .await
                .map_err(Error::Migrate)?;
        }
        tx.commit().await.map_err(Error::Migrate)
    }

    /// The statements [`migrate`](Self::migrate) runs on a new database. On a sessions table
    /// made before the principal columns, `migrate` first adds the ones missing, `ALTER TABLE
    /// tether_sessions ADD COLUMN principal TEXT` and so on for `handle BLOB`, `last_seen
    /// INTEGER`, `device TEXT` and `address TEXT`; an external migration tool must do the same
    /// before the principal index is created.
    pub fn migration_sql(&self) -> String {
        self.statements.migration(self.log.is_some())
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

    /// The quoted name of the events table (used only with
    /// [`SqliteStoreBuilder::with_events`]).
    pub fn events_table(&self) -> &str {
        &self.statements.tables.events
    }

    /// The quoted name of the table of consumer groups' positions (used only with
    /// [`SqliteStoreBuilder::with_events`]).
    pub fn event_cursors_table(&self) -> &str {
        &self.statements.tables.event_cursors
    }

    /// The event settings, if events are kept ([`SqliteStoreBuilder::with_events`]).
    pub fn event_log(&self) -> Option<&EventLog> {
        self.log.as_ref().map(|log| &log.settings)
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

    /// The bound on the live sessions of one principal, if one is set
    /// ([`SqliteStoreBuilder::with_max_sessions_per_principal`]).
    pub fn max_sessions_per_principal(&self) -> Option<NonZeroUsize> {
        self.settings.max_per_principal
    }

    /// Starts a task that calls [`delete_expired`](Self::delete_expired) every `period`,
    /// logging failures, until the returned [`Sweeper`] is stopped or dropped.
    pub fn spawn_sweeper(&self, period: Duration) -> Sweeper {
        Sweeper::spawn(self.clone(), period)
    }

    /// A connection from the pool, for `count` statements of `operation`.
    pub(crate) async fn connection(
        &self,
        operation: &'static str,
        count: u64,
    ) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
        telemetry::acquire("sqlite", &self.pool, operation, count).await
    }

    /// Revokes the oldest of `principal`'s other live sessions past the cap, if one is set,
    /// for the session `id` just bound to it; one statement, in the binding's transaction.
    async fn enforce_cap(
        &self,
        conn: &mut SqliteConnection,
        operation: &'static str,
        principal: Option<&str>,
        id: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let (Some(principal), Some(kept)) = (principal, self.settings.others_kept()) else {
            return Ok(());
        };
        if self.log.is_some() {
            telemetry::statements("sqlite", operation, 1);
            sqlx::query(&self.statements.cap_events)
                .bind(principal)
                .bind(now)
                .bind(id)
                .bind(kept)
                .execute(&mut *conn)
                .await?;
        }
        telemetry::statements("sqlite", operation, 1);
        sqlx::query(&self.statements.cap)
            .bind(principal)
            .bind(now)
            .bind(id)
            .bind(kept)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Writes the event of a session just written (`created`, `principal_set`), in the
    /// transaction that wrote it: with events only.
    async fn report(
        &self,
        conn: &mut SqliteConnection,
        operation: &'static str,
        kind: &EventKind,
        handle: &[u8],
        principal: Option<&str>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        if self.log.is_none() {
            return Ok(());
        }
        telemetry::statements("sqlite", operation, 1);
        sqlx::query(&self.statements.event)
            .bind(kind.name())
            .bind(handle)
            .bind(principal)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Deletes the session `id` if it expired; with events, reports it first.
    async fn free_expired(
        &self,
        conn: &mut SqliteConnection,
        operation: &'static str,
        id: &str,
        handle: &[u8],
        now: i64,
    ) -> Result<(), sqlx::Error> {
        if self.log.is_some() {
            telemetry::statements("sqlite", operation, 1);
            sqlx::query(&self.statements.free_expired_event)
                .bind(id)
                .bind(now)
                .bind(handle)
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(&self.statements.free_expired)
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// One sweep batch with events: names the batch's rows written before the handle column,
    /// reports the batch expired, deletes it.
    async fn sweep_reporting(
        &self,
        conn: &mut SqliteConnection,
        now: i64,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        let unnamed: Vec<String> = sqlx::query_scalar(&self.statements.sweep_unnamed)
            .bind(now)
            .bind(batch)
            .fetch_all(&mut *conn)
            .await?;
        telemetry::statements("sqlite", "sweep", 3 + unnamed.len() as u64);
        for id in unnamed {
            // A row whose id is no session id keeps no handle: its event is reported corrupt.
            if let Ok(parsed) = id.parse::<Id>() {
                sqlx::query(&self.statements.name_session)
                    .bind(&id)
                    .bind(handle_bytes(&parsed))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        sqlx::query(&self.statements.sweep_events)
            .bind(now)
            .bind(batch)
            .execute(&mut *conn)
            .await?;
        let done = sqlx::query(&self.statements.sweep_ordered)
            .bind(now)
            .bind(batch)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected())
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
                let now = millis(Timestamp::now());
                if self.log.is_some() {
                    return Ok((true, self.sweep_reporting(conn, now, batch).await?));
                }
                telemetry::statements("sqlite", "sweep", 1);
                let done = sqlx::query(&self.statements.sweep)
                    .bind(now)
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

    async fn trim_batch(&self) -> Result<u64, tether_core::Error> {
        let Some(log) = &self.log else {
            return Ok(0);
        };
        let batch = i64::from(self.settings.sweep_batch);
        let cutoff = log.settings.cutoff(Timestamp::now());
        run(&self.settings, "trim", async {
            write!(self, "trim", |conn| async {
                telemetry::statements("sqlite", "trim", 1);
                let done = sqlx::query(&self.statements.events.trim)
                    .bind(cutoff)
                    .bind(batch)
                    .execute(&mut *conn)
                    .await?;
                Ok((true, done.rows_affected()))
            })
        })
        .await
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
        let binding = Binding::of(record.principal.as_ref(), record.seen.as_deref());
        let handle = handle_bytes(&record.id);
        run(&self.settings, "create", async {
            write!(self, "create", |conn| async {
                let now = millis(Timestamp::now());
                self.free_expired(conn, "create", &id, &handle, now).await?;
                let inserted = sqlx::query(&self.statements.insert_session)
                    .bind(&id)
                    .bind(meta.created_at)
                    .bind(meta.expires_at)
                    .bind(meta.idle_timeout_ms)
                    .bind(meta.absolute_deadline)
                    .bind(binding.principal)
                    .bind(&handle)
                    .bind(binding.last_seen)
                    .bind(binding.device)
                    .bind(binding.address.as_deref())
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
                let created = EventKind::Created;
                self.report(conn, "create", &created, &handle, binding.principal, now)
                    .await?;
                self.enforce_cap(conn, "create", binding.principal, &id, now)
                    .await?;
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
        // Only a binding writes the handle: it heals rows stored before the column existed.
        let handle = changes.principal().map(|_| handle_bytes(id));
        let id = id.to_string();
        let meta = Meta::of(Timestamp::from_millis(0), expiry);
        let binding = Binding::of(changes.principal(), changes.seen());
        run(&self.settings, "apply", async {
            write!(self, "apply", |conn| async {
                let now = millis(Timestamp::now());
                let updated = sqlx::query(&self.statements.update)
                    .bind(&id)
                    .bind(now)
                    .bind(meta.expires_at)
                    .bind(meta.idle_timeout_ms)
                    .bind(meta.absolute_deadline)
                    .bind(binding.principal)
                    .bind(handle.as_deref())
                    .bind(binding.last_seen)
                    .bind(binding.device)
                    .bind(binding.address.as_deref())
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
                if let (Some(principal), Some(handle)) = (binding.principal, handle.as_deref()) {
                    let set = EventKind::PrincipalSet;
                    self.report(conn, "apply", &set, handle, Some(principal), now)
                        .await?;
                }
                self.enforce_cap(conn, "apply", binding.principal, &id, now)
                    .await?;
                Ok((true, Applied::Applied))
            })
        })
        .await
    }

    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, tether_core::Error> {
        self.apply(id, &Changes::new(), expiry).await
    }

    async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, tether_core::Error> {
        // Writers take turns, so the key read in this transaction is the one it writes: an
        // increment too is one step here, never a conflict.
        let id = id.to_string();
        run(&self.settings, "update_key", async {
            write!(self, "update_key", |conn| async {
                telemetry::statements("sqlite", "update_key", 1);
                let found: Option<Option<Vec<u8>>> = sqlx::query_scalar(&self.statements.key_value)
                    .bind(&id)
                    .bind(millis(Timestamp::now()))
                    .bind(key.as_bytes())
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(current) = found else {
                    return Ok((false, Ok(KeyUpdated::Missing)));
                };
                let new = match update.evaluate(key, current.map(Bytes::from).as_ref()) {
                    Ok(KeyUpdated::Updated(new)) => new,
                    refused => return Ok((false, refused)),
                };
                telemetry::statements("sqlite", "update_key", 1);
                match &new {
                    Some(value) => self.upsert(&id, key, value).execute(&mut *conn).await?,
                    None => {
                        sqlx::query(&self.statements.remove_key)
                            .bind(&id)
                            .bind(key.as_bytes())
                            .execute(&mut *conn)
                            .await?
                    }
                };
                Ok((true, Ok(KeyUpdated::Updated(new))))
            })
        })
        .await?
    }

    async fn delete(&self, id: &Id) -> Result<(), tether_core::Error> {
        let handle = handle_bytes(id);
        let id = id.to_string();
        run(&self.settings, "delete", async {
            write!(self, "delete", |conn| async {
                if self.log.is_some() {
                    telemetry::statements("sqlite", "delete", 1);
                    sqlx::query(&self.statements.delete_event)
                        .bind(&id)
                        .bind(&handle)
                        .bind(millis(Timestamp::now()))
                        .execute(&mut *conn)
                        .await?;
                }
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
        let handle = handle_bytes(new);
        let old_handle = handle_bytes(old);
        let (old, new) = (old.to_string(), new.to_string());
        run(&self.settings, "cycle", async {
            write!(self, "cycle", |conn| async {
                let now = millis(Timestamp::now());
                // Freeing the new id and checking it; the old id's check or the rename.
                telemetry::statements("sqlite", "cycle", 3);
                self.free_expired(conn, "cycle", &new, &handle, now).await?;
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
                    .bind(&handle)
                    .execute(&mut *conn)
                    .await?;
                let moved = renamed.rows_affected() > 0;
                if moved && self.log.is_some() {
                    telemetry::statements("sqlite", "cycle", 1);
                    sqlx::query(&self.statements.cycled_event)
                        .bind(&new)
                        .bind(&old_handle)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                }
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

    async fn sessions_of(
        &self,
        principal: &Principal,
    ) -> Result<Vec<SessionInfo>, tether_core::Error> {
        run(&self.settings, "sessions_of", async {
            let op = Error::query("sessions_of");
            let rows = sqlx::query(&self.statements.sessions_of)
                .bind(principal.as_str())
                .bind(millis(Timestamp::now()))
                .fetch_all(&mut *self.connection("sessions_of", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            Ok(decode_infos(&rows, Timestamp::now()))
        })
        .await
    }

    async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, tether_core::Error> {
        run(&self.settings, "revoke", async {
            write!(self, "revoke", |conn| async {
                let now = millis(Timestamp::now());
                if self.log.is_some() {
                    telemetry::statements("sqlite", "revoke", 1);
                    sqlx::query(&self.statements.revoke_events)
                        .bind(principal.as_str())
                        .bind(&handle.as_bytes()[..])
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                }
                telemetry::statements("sqlite", "revoke", 1);
                let done = sqlx::query(&self.statements.revoke)
                    .bind(principal.as_str())
                    .bind(&handle.as_bytes()[..])
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                let revoked = if done.rows_affected() > 0 {
                    Revoked::Revoked
                } else {
                    Revoked::NotFound
                };
                Ok((true, revoked))
            })
        })
        .await
    }

    async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, tether_core::Error> {
        run(&self.settings, "revoke_all", async {
            write!(self, "revoke_all", |conn| async {
                let now = millis(Timestamp::now());
                let keep = keep.map(|handle| &handle.as_bytes()[..]);
                if self.log.is_some() {
                    telemetry::statements("sqlite", "revoke_all", 1);
                    sqlx::query(&self.statements.revoke_all_events)
                        .bind(principal.as_str())
                        .bind(now)
                        .bind(keep)
                        .execute(&mut *conn)
                        .await?;
                }
                telemetry::statements("sqlite", "revoke_all", 1);
                let done = sqlx::query(&self.statements.revoke_all)
                    .bind(principal.as_str())
                    .bind(now)
                    .bind(keep)
                    .execute(&mut *conn)
                    .await?;
                Ok((
                    true,
                    usize::try_from(done.rows_affected()).unwrap_or(usize::MAX),
                ))
            })
        })
        .await
    }

    async fn events(&self) -> Result<tether_core::EventStream, tether_core::Error> {
        self.consume_events().await
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("sessions_table", &self.statements.tables.sessions)
            .field("keys_table", &self.statements.tables.keys)
            .field("settings", &self.settings)
            .field("events", &self.event_log())
            .finish()
    }
}
