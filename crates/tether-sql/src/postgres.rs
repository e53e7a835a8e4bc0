//! The PostgreSQL store: every operation one statement, `cycle` one short transaction.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use tether_core::{
    Applied, Changes, Created, Cycled, Expiry, INCREMENT_ATTEMPTS, Id, KeyUpdate, KeyUpdated,
    Loaded, Principal, Record, Renewal, RenewalHints, Revoked, SessionHandle, SessionInfo,
    SessionStore, Timestamp,
};
use tokio::sync::Mutex;

use crate::error::Error;
use crate::events::postgres::EventStatements;
use crate::events::{EventLog, Log};
use crate::names::{DEFAULT_TABLE_PREFIX, Tables};
use crate::row::{Binding, Meta, column, decode_infos, decode_rows, handle_bytes, millis};
use crate::run::{Settings, run};
use crate::sweeper::{Sweep, Sweeper};
use crate::telemetry;

/// The statements of one store, built once from its table names.
#[derive(Debug)]
pub(crate) struct Statements {
    tables: Tables,
    load: String,
    load_renewing: String,
    create: String,
    create_capped: String,
    free_expired: String,
    apply: String,
    apply_capped: String,
    touch: String,
    update_key: String,
    delete: String,
    cycle_move: String,
    cycle_old_live: String,
    sessions_of: String,
    revoke: String,
    revoke_all: String,
    columns_present: String,
    sweep: String,
    // With events: the same statements, each also writing its events.
    create_events: String,
    create_capped_events: String,
    apply_events: String,
    apply_capped_events: String,
    free_expired_events: String,
    delete_events: String,
    cycle_move_events: String,
    revoke_events: String,
    revoke_all_events: String,
    sweep_events: String,
    pub(crate) events: EventStatements,
}

/// How many turns increments take, by session (see [`PostgresStore::increment`]).
const INCREMENT_TURNS: usize = 64;

/// The columns added for the principal index, with their types: a database made before them
/// gets them from `migrate`.
const ADDED_COLUMNS: [(&str, &str); 5] = [
    ("principal", "text"),
    ("handle", "bytea"),
    ("last_seen", "bigint"),
    ("device", "text"),
    ("address", "text"),
];

/// The part of a statement binding a principal that revokes the principal's oldest other live
/// sessions past the cap: all but the newest `$offset` others (by `created_at`, then handle,
/// as `sessions_of` lists them). `s` is the statement's CTE that returns the session written,
/// empty when nothing was; `$id` the session's id, `$principal` the principal, `$now` the
/// time. The `DELETE` checks principal and liveness itself, so a session rebound meanwhile by
/// a concurrent statement is left alone. The subquery reads the statement's snapshot, which
/// holds neither a row this statement inserts nor its update: `o.id <> $id` keeps the session
/// being bound out of the count either way. With `events` (the events table), each session
/// it revokes is reported `revoked` by one more part of the statement.
fn capped(
    sessions: &str,
    id: &str,
    principal: &str,
    now: &str,
    offset: &str,
    events: Option<&str>,
) -> String {
    let (returning, report) = match events {
        Some(events) => (
            "RETURNING d.handle, d.principal ",
            format!(
                ", capped_events AS ( \
                   INSERT INTO {events} (kind, handle, principal, occurred_at) \
                   SELECT 'revoked', c.handle, c.principal, {now}::bigint FROM capped c \
                 ) "
            ),
        ),
        None => ("", String::new()),
    };
    format!(
        ", capped AS ( \
           DELETE FROM {sessions} d USING ( \
             SELECT o.id FROM {sessions} o CROSS JOIN s \
             WHERE o.principal = {principal} AND o.expires_at > {now} AND o.id <> {id} \
             ORDER BY o.created_at DESC, o.handle DESC OFFSET {offset} \
           ) v WHERE d.id = v.id AND d.principal = {principal} AND d.expires_at > {now} \
         {returning}) {report}"
    )
}

/// The handle of the session whose id is in the column `id`, computed as
/// [`SessionHandle::of`] does (SHA-256 of a fixed prefix and the id's 16 bytes, the first 16
/// bytes of it): for rows written before the handle column existed. `NULL` for text that is
/// not a session id.
fn derived_handle(id: &str) -> String {
    let prefix: String = b"tether session handle v1\0"
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!(
        "CASE WHEN {id} ~ '^[A-Za-z0-9_-]{{21}}[AQgw]$' THEN substring(sha256(decode('{prefix}', 'hex') \
         || decode(translate({id}, '-_', '+/') || '==', 'base64')) FROM 1 FOR 16) END"
    )
}

impl Statements {
    fn new(tables: Tables) -> Self {
        let Tables {
            sessions,
            keys,
            events,
            ..
        } = &tables;
        // With events, the session written is returned with its handle and principal, and one
        // more part reports it.
        let returning = |events: bool| {
            if events {
                "RETURNING id, handle, principal"
            } else {
                "RETURNING id"
            }
        };
        let report = |report: bool, kind: &str, now: &str| {
            if report {
                format!(
                    ", reported AS ( \
                       INSERT INTO {events} (kind, handle, principal, occurred_at) \
                       SELECT '{kind}', s.handle, s.principal, {now}::bigint FROM s \
                     )"
                )
            } else {
                String::new()
            }
        };
        // The key rows reference the session row inserted by the same statement: foreign
        // keys are checked at the end of the statement. With events, `now` is $13.
        let create = |cap: &str, events: bool| {
            let (returning, report) = (returning(events), report(events, "created", "$13"));
            format!(
                "WITH s AS ( \
                   INSERT INTO {sessions} (id, created_at, expires_at, idle_timeout_ms, absolute_deadline, \
                     principal, handle, last_seen, device, address) \
                   VALUES ($1, $2, $3, $4, $5, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING {returning} \
                 ), k AS ( \
                   INSERT INTO {keys} (session_id, key, value) \
                   SELECT s.id, u.key, u.value FROM s CROSS JOIN unnest($6::bytea[], $7::bytea[]) AS u(key, value) \
                 ){report}{cap} SELECT count(*) FROM s"
            )
        };
        // The UPDATE of the session row comes first (every other part reads its output), so
        // concurrent applies of one session queue on that row's lock, never on key rows in
        // different orders: no deadlock. The parts change disjoint key rows: `clear` keeps
        // the keys being set, which the upsert then overwrites. A `NULL` principal, handle or
        // `last_seen` ($10, $11, $12) keeps what is stored: the changes bind nobody, or record
        // no use. The statement with events runs only for changes that bind.
        let apply = |cap: &str, events: bool| {
            let (returning, report) = (returning(events), report(events, "principal_set", "$2"));
            format!(
                "WITH s AS ( \
                   UPDATE {sessions} SET expires_at = $3, idle_timeout_ms = $4, absolute_deadline = $5, \
                     principal = COALESCE($10, principal), handle = COALESCE($11, handle), \
                     last_seen = COALESCE($12, last_seen), \
                     device = CASE WHEN $12::bigint IS NULL THEN device ELSE $13 END, \
                     address = CASE WHEN $12::bigint IS NULL THEN address ELSE $14 END \
                   WHERE id = $1 AND expires_at > $2 {returning} \
                 ), cleared AS ( \
                   DELETE FROM {keys} k USING s WHERE $6 AND k.session_id = s.id AND k.key <> ALL($7::bytea[]) \
                 ), removed AS ( \
                   DELETE FROM {keys} k USING s WHERE k.session_id = s.id AND k.key = ANY($9::bytea[]) \
                 ), upserted AS ( \
                   INSERT INTO {keys} (session_id, key, value) \
                   SELECT s.id, u.key, u.value FROM s CROSS JOIN unnest($7::bytea[], $8::bytea[]) AS u(key, value) \
                   ON CONFLICT (session_id, key) DO UPDATE SET value = EXCLUDED.value \
                 ){report}{cap} SELECT count(*) FROM s"
            )
        };
        Self {
            load: format!(
                "SELECT s.created_at, s.expires_at, s.idle_timeout_ms, s.absolute_deadline, \
                 s.principal, s.last_seen, s.device, s.address, k.key, k.value \
                 FROM {sessions} s LEFT JOIN {keys} k ON k.session_id = s.id \
                 WHERE s.id = $1 AND s.expires_at > $2"
            ),
            // The rule of `Expiry::needs_renewal`, in milliseconds: the deadline would move
            // ($2: now), and more than the threshold's fraction ($3) of the idle timeout has
            // passed since the last renewal; `now + idle` saturates as `Timestamp` does. The
            // `SELECT` reads the statement's snapshot, without the update, so the session
            // row's columns come from `r` when it renewed: a row another statement changed
            // meanwhile is checked again on its latest version, and renewed only if that
            // version is still due. The key rows are the snapshot's, as in `load`. Taking the
            // row's lock, a renewing read waits for a concurrent write of the session to end.
            load_renewing: {
                let renewed = "LEAST(LEAST($2, 9223372036854775807 - idle_timeout_ms) + idle_timeout_ms, \
                     COALESCE(absolute_deadline, 9223372036854775807))";
                // The session row's columns besides the deadline: returned by the update, and
                // read from the version it renewed if it did.
                let columns = [
                    "idle_timeout_ms",
                    "absolute_deadline",
                    "principal",
                    "last_seen",
                    "device",
                    "address",
                ];
                let returned = columns.join(", ");
                let latest = columns
                    .map(|column| {
                    format!(
                        "CASE WHEN r.expires_at IS NULL THEN s.{column} ELSE r.{column} END AS {column}"
                    )
                })
                .join(", ");
                format!(
                    "WITH r AS ( \
                       UPDATE {sessions} SET expires_at = {renewed}, \
                         last_seen = COALESCE($4, last_seen), \
                         device = CASE WHEN $4::bigint IS NULL THEN device ELSE $5 END, \
                         address = CASE WHEN $4::bigint IS NULL THEN address ELSE $6 END \
                       WHERE id = $1 AND expires_at > $2 AND {renewed} > expires_at \
                         AND idle_timeout_ms - GREATEST(expires_at - $2, 0) > idle_timeout_ms * $3::float8 \
                       RETURNING expires_at, {returned} \
                     ) \
                     SELECT s.created_at, COALESCE(r.expires_at, s.expires_at) AS expires_at, {latest}, \
                       r.expires_at IS NOT NULL AS renewed, k.key, k.value \
                     FROM {sessions} s LEFT JOIN r ON true LEFT JOIN {keys} k ON k.session_id = s.id \
                     WHERE s.id = $1 AND s.expires_at > $2"
                )
            },
            create: create("", false),
            create_capped: create(&capped(sessions, "$1", "$8", "$13", "$14", None), false),
            create_events: create("", true),
            create_capped_events: create(
                &capped(sessions, "$1", "$8", "$13", "$14", Some(events)),
                true,
            ),
            free_expired: format!("DELETE FROM {sessions} WHERE id = $1 AND expires_at <= $2"),
            // $3: the handle of the id, for a row written before the handle column.
            free_expired_events: format!(
                "WITH d AS ( \
                   DELETE FROM {sessions} WHERE id = $1 AND expires_at <= $2 RETURNING handle, principal \
                 ) INSERT INTO {events} (kind, handle, principal, occurred_at) \
                 SELECT 'expired', COALESCE(d.handle, $3), d.principal, $2 FROM d"
            ),
            apply: apply("", false),
            apply_capped: apply(&capped(sessions, "$1", "$10", "$2", "$15", None), false),
            apply_events: apply("", true),
            apply_capped_events: apply(
                &capped(sessions, "$1", "$10", "$2", "$15", Some(events)),
                true,
            ),
            touch: format!(
                "UPDATE {sessions} SET expires_at = $3, idle_timeout_ms = $4, absolute_deadline = $5 \
                 WHERE id = $1 AND expires_at > $2"
            ),
            // A swap of key $3 from $4 to $5 (NULL: absent). `s` holds the session row against
            // a concurrent delete or cycle for the statement (`FOR KEY SHARE`: applies go on),
            // so no key is written to a session that ended. `cur` locks the key row and reads
            // its latest value, after any concurrent write of it commits; each write is
            // conditional on that value, so of two concurrent swaps from one value only the
            // first lands, and the other reports what it wrote. A key inserted after the
            // statement's snapshot is not in `cur`: a swap from absent then writes nothing
            // (`DO NOTHING`) and runs again.
            update_key: format!(
                "WITH s AS ( \
                   SELECT id FROM {sessions} WHERE id = $1 AND expires_at > $2 FOR KEY SHARE \
                 ), cur AS ( \
                   SELECT k.value FROM {keys} k JOIN s ON k.session_id = s.id WHERE k.key = $3 \
                   FOR UPDATE OF k \
                 ), updated AS ( \
                   UPDATE {keys} k SET value = $5 FROM cur \
                   WHERE $5::bytea IS NOT NULL AND cur.value = $4 AND k.session_id = $1 AND k.key = $3 \
                   RETURNING 1 \
                 ), inserted AS ( \
                   INSERT INTO {keys} (session_id, key, value) \
                   SELECT s.id, $3, $5 FROM s WHERE $4::bytea IS NULL AND $5::bytea IS NOT NULL \
                   ON CONFLICT (session_id, key) DO NOTHING RETURNING 1 \
                 ), removed AS ( \
                   DELETE FROM {keys} k USING cur \
                   WHERE $5::bytea IS NULL AND cur.value = $4 AND k.session_id = $1 AND k.key = $3 \
                   RETURNING 1 \
                 ) SELECT EXISTS (SELECT 1 FROM s) AS live, \
                   EXISTS (SELECT 1 FROM updated UNION ALL SELECT 1 FROM inserted \
                     UNION ALL SELECT 1 FROM removed) AS written, \
                   (SELECT value FROM cur) AS current"
            ),
            delete: format!("DELETE FROM {sessions} WHERE id = $1"),
            // A session past its deadline that no sweep deleted yet is reported expired: it
            // was, and nothing else will report it. $2: the handle of the id, $3: now.
            delete_events: format!(
                "WITH d AS ( \
                   DELETE FROM {sessions} WHERE id = $1 RETURNING handle, principal, expires_at \
                 ) INSERT INTO {events} (kind, handle, principal, occurred_at) \
                 SELECT CASE WHEN d.expires_at > $3 THEN 'deleted' ELSE 'expired' END, \
                   COALESCE(d.handle, $2), d.principal, $3 FROM d"
            ),
            // The key rows follow through `ON UPDATE CASCADE`; principal and last use stay in
            // the row, and the handle follows the id.
            cycle_move: format!(
                "UPDATE {sessions} SET id = $2, handle = $4 WHERE id = $1 AND expires_at > $3 \
                 AND NOT EXISTS (SELECT 1 FROM {sessions} WHERE id = $2)"
            ),
            // $5: the handle of the old id.
            cycle_move_events: format!(
                "WITH m AS ( \
                   UPDATE {sessions} SET id = $2, handle = $4 WHERE id = $1 AND expires_at > $3 \
                   AND NOT EXISTS (SELECT 1 FROM {sessions} WHERE id = $2) RETURNING handle, principal \
                 ) INSERT INTO {events} (kind, handle, principal, from_handle, occurred_at) \
                 SELECT 'cycled', m.handle, m.principal, $5, $3 FROM m"
            ),
            cycle_old_live: format!(
                "SELECT count(*) FROM {sessions} WHERE id = $1 AND expires_at > $2"
            ),
            sessions_of: format!(
                "SELECT handle, created_at, expires_at, idle_timeout_ms, absolute_deadline, \
                 last_seen, device, address FROM {sessions} \
                 WHERE principal = $1 AND expires_at > $2 ORDER BY created_at, handle"
            ),
            // Principal and liveness are checked by the statement that deletes: a handle of
            // another principal's session deletes nothing.
            revoke: format!(
                "DELETE FROM {sessions} WHERE principal = $1 AND handle = $2 AND expires_at > $3"
            ),
            revoke_all: format!(
                "DELETE FROM {sessions} WHERE principal = $1 AND expires_at > $2 \
                 AND ($3::bytea IS NULL OR handle IS DISTINCT FROM $3)"
            ),
            revoke_events: format!(
                "WITH d AS ( \
                   DELETE FROM {sessions} WHERE principal = $1 AND handle = $2 AND expires_at > $3 \
                   RETURNING handle, principal \
                 ) INSERT INTO {events} (kind, handle, principal, occurred_at) \
                 SELECT 'revoked', d.handle, d.principal, $3 FROM d"
            ),
            revoke_all_events: format!(
                "WITH d AS ( \
                   DELETE FROM {sessions} WHERE principal = $1 AND expires_at > $2 \
                   AND ($3::bytea IS NULL OR handle IS DISTINCT FROM $3) RETURNING handle, principal \
                 ) INSERT INTO {events} (kind, handle, principal, occurred_at) \
                 SELECT 'revoked', d.handle, d.principal, $2 FROM d"
            ),
            columns_present: "SELECT count(*) FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attname = ANY($2) AND NOT attisdropped"
                .to_owned(),
            sweep: format!(
                "DELETE FROM {sessions} WHERE id IN ( \
                   SELECT id FROM {sessions} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 \
                   FOR UPDATE SKIP LOCKED)"
            ),
            sweep_events: format!(
                "WITH d AS ( \
                   DELETE FROM {sessions} WHERE id IN ( \
                     SELECT id FROM {sessions} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 \
                     FOR UPDATE SKIP LOCKED) \
                   RETURNING id, handle, principal \
                 ) INSERT INTO {events} (kind, handle, principal, occurred_at) \
                 SELECT 'expired', COALESCE(d.handle, {}), d.principal, $1 FROM d",
                derived_handle("d.id")
            ),
            events: EventStatements::new(&tables),
            tables,
        }
    }

    /// `CREATE SCHEMA` if one is set, the tables and the expiry index.
    fn create_tables(&self) -> String {
        let Tables {
            schema,
            sessions,
            keys,
            expiry_index,
            ..
        } = &self.tables;
        let schema = schema
            .as_ref()
            .map(|schema| format!("CREATE SCHEMA IF NOT EXISTS {schema};\n"))
            .unwrap_or_default();
        format!(
            "{schema}\
             CREATE TABLE IF NOT EXISTS {sessions} (\n\
             \x20 id text PRIMARY KEY,\n\
             \x20 created_at bigint NOT NULL,\n\
             \x20 expires_at bigint NOT NULL,\n\
             \x20 idle_timeout_ms bigint NOT NULL,\n\
             \x20 absolute_deadline bigint,\n\
             \x20 principal text,\n\
             \x20 handle bytea,\n\
             \x20 last_seen bigint,\n\
             \x20 device text,\n\
             \x20 address text\n\
             );\n\
             CREATE INDEX IF NOT EXISTS {expiry_index} ON {sessions} (expires_at);\n\
             CREATE TABLE IF NOT EXISTS {keys} (\n\
             \x20 session_id text NOT NULL REFERENCES {sessions} (id) ON DELETE CASCADE ON UPDATE CASCADE,\n\
             \x20 key bytea NOT NULL,\n\
             \x20 value bytea NOT NULL,\n\
             \x20 PRIMARY KEY (session_id, key)\n\
             );\n"
        )
    }

    /// The columns a sessions table made before the principal index lacks.
    fn add_columns(&self) -> String {
        let sessions = &self.tables.sessions;
        let columns: Vec<String> = ADDED_COLUMNS
            .iter()
            .map(|(name, ty)| format!("ADD COLUMN IF NOT EXISTS {name} {ty}"))
            .collect();
        format!("ALTER TABLE {sessions} {};\n", columns.join(", "))
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

    /// What `migrate` runs: with events, their tables too.
    fn migration(&self, events: bool) -> String {
        let events = if events {
            self.events.create_tables.as_str()
        } else {
            ""
        };
        format!(
            "{}{}{}{events}",
            self.create_tables(),
            self.add_columns(),
            self.principal_index()
        )
    }
}

/// A [`SessionStore`] in PostgreSQL: every server of an application sees every session, and
/// sessions survive restarts of every server.
///
/// Two tables (see the crate docs for their columns): one row per session, one row per session
/// key. `load`, `create`, `apply`, `touch`, `delete`, `sessions_of`, `revoke` and `revoke_all`
/// are one statement each, so one round trip, and so are a `create` or `apply` that bind a
/// principal over the cap ([`PostgresStoreBuilder::with_max_sessions_per_principal`]) and a
/// swap by `update_key` (one more when a concurrent insert of the key came after the first's
/// snapshot); an increment by `update_key` is a `load` and swaps, in turns with the other
/// increments of the session from this store. `cycle` is one short transaction. Only the keys
/// a request changed are written, so concurrent requests of one session lose nothing. With
/// [`PostgresStoreBuilder::with_events`], each of these statements also writes its session
/// events, and [`SessionStore::events`] reads them (see [`EventLog`]).
///
/// Cloning is cheap: clones share the connection pool.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use tether_sql::PostgresStore;
///
/// # async fn run() -> Result<(), tether_sql::Error> {
/// let store = PostgresStore::builder()
///     .with_schema("sessions")
///     .with_max_connections(20)
///     .connect("postgres://app@127.0.0.1/app")
///     .await?;
/// store.migrate().await?;
/// let _sweeper = store.spawn_sweeper(Duration::from_secs(60));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    pub(crate) statements: Arc<Statements>,
    pub(crate) settings: Settings,
    /// Set by [`PostgresStoreBuilder::with_events`].
    pub(crate) log: Option<Arc<Log>>,
    increment_turns: Arc<[Mutex<()>]>,
    /// When the sessions read recently fall due: a read sends `load_renewing` only then.
    hints: Arc<RenewalHints>,
}

/// Builds a [`PostgresStore`]: table names, pool size, timeouts.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), tether_sql::Error> {
/// let store = tether_sql::PostgresStore::builder()
///     .with_table_prefix("shop_")
///     .connect("postgres://app@127.0.0.1/app")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `connect` or `build`"]
pub struct PostgresStoreBuilder {
    schema: Option<String>,
    prefix: String,
    max_connections: u32,
    settings: Settings,
    events: Option<EventLog>,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        Self {
            schema: None,
            prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            max_connections: crate::DEFAULT_MAX_CONNECTIONS,
            settings: Settings::default(),
            events: None,
        }
    }
}

impl PostgresStoreBuilder {
    /// Puts the tables into this schema (created by [`PostgresStore::migrate`] if absent).
    /// Without one, table names are unqualified and resolve through the `search_path`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Prefix of the table and index names (default [`DEFAULT_TABLE_PREFIX`], may be empty).
    pub fn with_table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Size of the connection pool [`connect`](Self::connect) opens (default
    /// [`DEFAULT_MAX_CONNECTIONS`](crate::DEFAULT_MAX_CONNECTIONS)).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Bound on one operation, waiting for a pooled connection included (default
    /// [`DEFAULT_OPERATION_TIMEOUT`](crate::DEFAULT_OPERATION_TIMEOUT)). Past it the operation
    /// fails with a transient [`tether_core::Error::Timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Most sessions one statement of the sweeper deletes (default
    /// [`DEFAULT_SWEEP_BATCH`](crate::DEFAULT_SWEEP_BATCH)), so no statement holds locks long.
    pub fn with_sweep_batch(mut self, batch: u32) -> Self {
        self.settings.sweep_batch = batch.max(1);
        self
    }

    /// Bounds the live sessions of one principal (default: no bound). Binding one more, by a
    /// `create` of a record with a principal or an `apply` whose changes bind one, revokes the
    /// oldest (by creation) of the principal's other live sessions, so at most `max` remain.
    /// Rebinding a session to the principal it has revokes nothing while the bound holds.
    ///
    /// The revocation is part of the statement that binds: still one statement, and it runs
    /// only when a principal is bound. It counts the sessions that statement's snapshot
    /// shows, so two logins of one principal at the same moment may each keep the other's new
    /// session: one session more than `max`, until the principal's next binding.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tether_sql::Error> {
    /// use std::num::NonZeroUsize;
    ///
    /// let store = tether_sql::PostgresStore::builder()
    ///     .with_max_sessions_per_principal(NonZeroUsize::new(5))
    ///     .connect("postgres://app@127.0.0.1/app")
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub fn with_max_sessions_per_principal(mut self, max: Option<NonZeroUsize>) -> Self {
        self.settings.max_per_principal = max;
        self
    }

    /// Keeps session events (default: none), read with
    /// [`SessionStore::events`](tether_core::SessionStore::events) by the consumer group of
    /// `events`; see [`EventLog`] for what is delivered and when. Needs PostgreSQL 13 or later
    /// (events are ordered by transaction id, `pg_current_xact_id()`).
    ///
    /// Every write that changes a session writes its event in the same statement, so each
    /// operation stays one statement. [`PostgresStore::migrate`] creates the events tables.
    /// Without events no statement writes or reads them.
    ///
    /// A consumer holds one connection of its own (opened with the pool's options, outside
    /// the pool) with a session-level advisory lock, so a connection pooler in front of the
    /// server must give it a session of its own (PgBouncer's session mode, not transaction
    /// mode).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tether_sql::Error> {
    /// use tether_sql::EventLog;
    ///
    /// let store = tether_sql::PostgresStore::builder()
    ///     .with_events(EventLog::new().with_group("audit"))
    ///     .connect("postgres://app@127.0.0.1/app")
    ///     .await?;
    /// store.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_events(mut self, events: EventLog) -> Self {
        self.events = Some(events);
        self
    }

    /// Opens a connection pool to `url` (`postgres://user:password@host:port/database`) and
    /// returns the store. Connects once, so a wrong URL or password fails here. The pool's
    /// connections set `statement_timeout` to the operation timeout, so the server abandons a
    /// statement when the store does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad schema or prefix, [`Error::Connect`] when the URL is
    /// invalid or the server refuses.
    pub async fn connect(self, url: &str) -> Result<PostgresStore, Error> {
        let options: PgConnectOptions = url.parse().map_err(Error::Connect)?;
        // The server gives up on a statement when the client does, so a write whose operation
        // timed out (and was reported failed) does not land later, when a lock it waited for
        // is released.
        let statement_timeout = format!("{}ms", self.settings.timeout.as_millis().max(1));
        let options = options.options([("statement_timeout", statement_timeout)]);
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.settings.timeout)
            // A ping before each use would double the round trips; a dead connection fails its
            // operation with a transient error instead, and is replaced.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(Error::Connect)?;
        self.build(pool)
    }

    /// The store on an existing pool. Give the pool `test_before_acquire(false)` to keep each
    /// operation at one round trip, and its connections a `statement_timeout` no longer than
    /// the operation timeout, so a write that timed out does not land later.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad schema or prefix.
    pub fn build(self, pool: PgPool) -> Result<PostgresStore, Error> {
        let tables = Tables::new(self.schema.as_deref(), &self.prefix)?;
        Ok(PostgresStore {
            pool,
            statements: Arc::new(Statements::new(tables)),
            settings: self.settings,
            log: self.events.map(Log::new),
            increment_turns: (0..INCREMENT_TURNS).map(|_| Mutex::new(())).collect(),
            hints: Arc::new(RenewalHints::new()),
        })
    }
}

impl PostgresStore {
    /// A builder with the defaults: no schema (the `search_path`), prefix `tether_`.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// Connects with the defaults; see [`PostgresStoreBuilder::connect`].
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the URL is invalid or the server refuses.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder().connect(url).await
    }

    /// Creates the schema (if one is set), the two tables and their indexes, each only if
    /// absent (`CREATE ... IF NOT EXISTS`), in one transaction under an advisory lock, so
    /// servers starting together may all call it. The tables it creates:
    ///
    /// ```sql
    /// CREATE TABLE IF NOT EXISTS tether_sessions (
    ///   id text PRIMARY KEY,               -- the session id, 22 characters
    ///   created_at bigint NOT NULL,        -- Unix milliseconds
    ///   expires_at bigint NOT NULL,        -- Unix milliseconds: the earlier of idle and absolute deadline
    ///   idle_timeout_ms bigint NOT NULL,
    ///   absolute_deadline bigint,          -- Unix milliseconds, NULL for none
    ///   principal text,                    -- who the session is bound to, NULL for nobody
    ///   handle bytea,                      -- the SessionHandle of the id, 16 bytes
    ///   last_seen bigint,                  -- Unix milliseconds of the last recorded use, or NULL
    ///   device text,                       -- its device label, or NULL
    ///   address text                       -- its client address (as text), or NULL
    /// );
    /// CREATE INDEX IF NOT EXISTS tether_sessions_expires_at ON tether_sessions (expires_at);
    /// CREATE TABLE IF NOT EXISTS tether_session_keys (
    ///   session_id text NOT NULL REFERENCES tether_sessions (id) ON DELETE CASCADE ON UPDATE CASCADE,
    ///   key bytea NOT NULL,                -- UTF-8
    ///   value bytea NOT NULL,              -- the encoded value
    ///   PRIMARY KEY (session_id, key)
    /// );
    /// ALTER TABLE tether_sessions ADD COLUMN IF NOT EXISTS principal text, ...;
    /// CREATE INDEX IF NOT EXISTS tether_sessions_principal ON tether_sessions (principal, handle)
    ///   WHERE principal IS NOT NULL;
    /// ```
    ///
    /// With [`PostgresStoreBuilder::with_events`] (only then; it needs PostgreSQL 13), also:
    ///
    /// ```sql
    /// CREATE TABLE IF NOT EXISTS tether_session_events (
    ///   xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), -- the writing transaction
    ///   id bigserial NOT NULL,
    ///   kind text NOT NULL,                -- created, cycled, principal_set, deleted, revoked, expired
    ///   handle bytea,                      -- the session's handle, 16 bytes (cycled: the new one)
    ///   principal text,                    -- the session's principal, or NULL
    ///   from_handle bytea,                 -- cycled: the handle before
    ///   occurred_at bigint NOT NULL,       -- Unix milliseconds
    ///   PRIMARY KEY (xid, id)
    /// );
    /// CREATE INDEX IF NOT EXISTS tether_session_events_at ON tether_session_events (occurred_at);
    /// CREATE TABLE IF NOT EXISTS tether_session_event_cursors (
    ///   group_name text PRIMARY KEY,       -- a consumer group
    ///   xid bigint NOT NULL,               -- with id: the last event the group is done with
    ///   id bigint NOT NULL,
    ///   updated_at bigint NOT NULL         -- Unix milliseconds
    /// );
    /// ```
    ///
    /// A sessions table made before the principal columns existed gets them (`ALTER TABLE
    /// ... ADD COLUMN IF NOT EXISTS`, which needs PostgreSQL 9.6); its sessions keep working,
    /// bound to nobody. `migrate` runs that `ALTER TABLE` only when a column is missing, so a
    /// routine start takes no exclusive lock on the table.
    ///
    /// Applications that manage their schema with their own migration tool run
    /// [`migration_sql`](Self::migration_sql) there instead.
    ///
    /// # Errors
    ///
    /// [`Error::Migrate`] when a statement fails (no permission to create, say).
    pub async fn migrate(&self) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::Migrate)?;
        // `IF NOT EXISTS` answers a NOTICE for each thing that exists, which sqlx logs at INFO:
        // noise on every start.
        sqlx::query("SET LOCAL client_min_messages TO warning")
            .execute(&mut *tx)
            .await
            .map_err(Error::Migrate)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tether-sql migrate'))")
            .execute(&mut *tx)
            .await
            .map_err(Error::Migrate)?;
        // A plain string runs in the simple protocol, several statements at once. (`raw_sql`
        // would too, but its future is not `Send` when spawned.)
        let tables = self.statements.create_tables();
        sqlx::Executor::execute(&mut *tx, tables.as_str())
            .await
            .map_err(Error::Migrate)?;
        let names: Vec<&str> = ADDED_COLUMNS.iter().map(|(name, _)| *name).collect();
        let present: i64 = sqlx::query_scalar(&self.statements.columns_present)
            .bind(&self.statements.tables.sessions)
            .bind(&names)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::Migrate)?;
        if usize::try_from(present).ok() != Some(names.len()) {
            let add = self.statements.add_columns();
            sqlx::Executor::execute(&mut *tx, add.as_str())
                .await
                .map_err(Error::Migrate)?;
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

    /// The statements [`migrate`](Self::migrate) runs, for an external migration tool: they
    /// create what is absent (the events tables too, with events) and add the principal
    /// columns to a table made before them, so they may run again.
    pub fn migration_sql(&self) -> String {
        self.statements.migration(self.log.is_some())
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The quoted, qualified name of the sessions table, for queries of your own.
    pub fn sessions_table(&self) -> &str {
        &self.statements.tables.sessions
    }

    /// The quoted, qualified name of the session keys table.
    pub fn keys_table(&self) -> &str {
        &self.statements.tables.keys
    }

    /// The quoted, qualified name of the events table (used only with
    /// [`PostgresStoreBuilder::with_events`]).
    pub fn events_table(&self) -> &str {
        &self.statements.tables.events
    }

    /// The quoted, qualified name of the table of consumer groups' positions (used only with
    /// [`PostgresStoreBuilder::with_events`]).
    pub fn event_cursors_table(&self) -> &str {
        &self.statements.tables.event_cursors
    }

    /// The event settings, if events are kept ([`PostgresStoreBuilder::with_events`]).
    pub fn event_log(&self) -> Option<&EventLog> {
        self.log.as_ref().map(|log| &log.settings)
    }

    /// Deletes every session expired now, in statements of at most the sweep batch each, and
    /// answers how many it deleted. Expired sessions never load anyway; this only frees space.
    ///
    /// # Errors
    ///
    /// The first failing statement's error; what earlier statements deleted stays deleted.
    pub async fn delete_expired(&self) -> Result<u64, tether_core::Error> {
        crate::sweeper::delete_all_expired(self).await
    }

    /// The bound on the live sessions of one principal, if one is set
    /// ([`PostgresStoreBuilder::with_max_sessions_per_principal`]).
    pub fn max_sessions_per_principal(&self) -> Option<NonZeroUsize> {
        self.settings.max_per_principal
    }

    /// Starts a task that calls [`delete_expired`](Self::delete_expired) every `period`,
    /// logging failures, until the returned [`Sweeper`] is stopped or dropped. Needs a tokio
    /// runtime.
    pub fn spawn_sweeper(&self, period: Duration) -> Sweeper {
        Sweeper::spawn(self.clone(), period)
    }

    /// A connection from the pool, for `count` statements of `operation`.
    pub(crate) async fn connection(
        &self,
        operation: &'static str,
        count: u64,
    ) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        telemetry::acquire("postgres", &self.pool, operation, count).await
    }

    /// The rows of session `id` live at `now`.
    async fn fetch(&self, id: &Id, now: Timestamp) -> Result<Vec<PgRow>, sqlx::Error> {
        sqlx::query(&self.statements.load)
            .bind(id.to_string())
            .bind(millis(now))
            .fetch_all(&mut *self.connection("load", 1).await?)
            .await
    }

    /// The rows of session `id`, renewed first if it is due for `renewal`; each row says
    /// whether it was (`renewed`).
    async fn fetch_renewing(&self, id: &Id, renewal: &Renewal) -> Result<Vec<PgRow>, sqlx::Error> {
        let seen = Binding::of(None, renewal.seen());
        sqlx::query(&self.statements.load_renewing)
            .bind(id.to_string())
            .bind(millis(renewal.now()))
            .bind(renewal.threshold())
            .bind(seen.last_seen)
            .bind(seen.device)
            .bind(seen.address)
            .fetch_all(&mut *self.connection("load", 1).await?)
            .await
    }

    async fn insert(&self, record: &Record) -> Result<bool, sqlx::Error> {
        let meta = Meta::of(record.created_at, &record.expiry);
        let binding = Binding::of(record.principal.as_ref(), record.seen.as_deref());
        let (keys, values): (Vec<&[u8]>, Vec<&[u8]>) = record
            .data
            .iter()
            .map(|(k, v)| (k.as_bytes(), &v[..]))
            .unzip();
        // The cap's part runs only when the record binds a principal.
        let cap = self
            .settings
            .others_kept()
            .filter(|_| binding.principal.is_some());
        let events = self.log.is_some();
        let statement = match (cap, events) {
            (Some(_), false) => &self.statements.create_capped,
            (None, false) => &self.statements.create,
            (Some(_), true) => &self.statements.create_capped_events,
            (None, true) => &self.statements.create_events,
        };
        let query = sqlx::query_scalar(statement)
            .bind(record.id.to_string())
            .bind(meta.created_at)
            .bind(meta.expires_at)
            .bind(meta.idle_timeout_ms)
            .bind(meta.absolute_deadline)
            .bind(keys)
            .bind(values)
            .bind(binding.principal)
            .bind(handle_bytes(&record.id))
            .bind(binding.last_seen)
            .bind(binding.device)
            .bind(binding.address);
        // Now ($13) for the cap and the events, the number kept ($14) for the cap.
        let query = if cap.is_some() || events {
            query.bind(millis(Timestamp::now()))
        } else {
            query
        };
        let query = match cap {
            Some(kept) => query.bind(kept),
            None => query,
        };
        let inserted: i64 = query
            .fetch_one(&mut *self.connection("create", 1).await?)
            .await?;
        Ok(inserted > 0)
    }

    /// The statement deleting the session `id` if it expired, reporting it with events.
    fn free_expired<'q>(
        &'q self,
        id: &Id,
        now: i64,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        match self.log {
            None => sqlx::query(&self.statements.free_expired)
                .bind(id.to_string())
                .bind(now),
            Some(_) => sqlx::query(&self.statements.free_expired_events)
                .bind(id.to_string())
                .bind(now)
                .bind(handle_bytes(id)),
        }
    }

    async fn free_if_expired(&self, id: &Id) -> Result<bool, sqlx::Error> {
        let done = self
            .free_expired(id, millis(Timestamp::now()))
            .execute(&mut *self.connection("create", 1).await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn move_session(&self, old: &Id, new: &Id) -> Result<Cycled, sqlx::Error> {
        let now = millis(Timestamp::now());
        // BEGIN, two statements, COMMIT; or three and ROLLBACK.
        let mut connection = self.connection("cycle", 4).await?;
        let mut tx = sqlx::Connection::begin(&mut *connection).await?;
        self.free_expired(new, now).execute(&mut *tx).await?;
        let moved = match self.log {
            None => sqlx::query(&self.statements.cycle_move),
            Some(_) => sqlx::query(&self.statements.cycle_move_events),
        }
        .bind(old.to_string())
        .bind(new.to_string())
        .bind(now)
        .bind(handle_bytes(new));
        let moved = match self.log {
            None => moved,
            Some(_) => moved.bind(handle_bytes(old)),
        }
        .execute(&mut *tx)
        .await;
        let moved = match moved {
            Ok(done) => done.rows_affected() > 0,
            // A concurrent create took the new id after the NOT EXISTS check.
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Ok(Cycled::IdTaken);
            }
            Err(error) => return Err(error),
        };
        if moved {
            tx.commit().await?;
            return Ok(Cycled::Moved);
        }
        telemetry::statements("postgres", "cycle", 1);
        let old_live: i64 = sqlx::query_scalar(&self.statements.cycle_old_live)
            .bind(old.to_string())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(if old_live > 0 {
            Cycled::IdTaken
        } else {
            Cycled::Missing
        })
    }

    /// An update the database cannot run (an increment of values the layer's codec encoded) as
    /// the trait's default runs it: a load, then swaps from the value read, each retried from
    /// the value a conflict reports, at most [`INCREMENT_ATTEMPTS`] times. Increments of one
    /// session from this store (and its clones) take turns, so they never fail each other's
    /// swaps; one retries only after another write of the key (an `apply`, a swap, another
    /// process's increment).
    async fn increment(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, tether_core::Error> {
        // Ids are random: a byte of one picks a turn evenly.
        let turn = usize::from(id.as_bytes()[0]) % INCREMENT_TURNS;
        let _turn = match self.increment_turns.get(turn) {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        let Some(record) = self.load(id).await? else {
            return Ok(KeyUpdated::Missing);
        };
        let mut current = record.data.get(key).cloned();
        for _ in 0..INCREMENT_ATTEMPTS {
            let new = match update.evaluate(key, current.as_ref())? {
                KeyUpdated::Updated(new) => new,
                refused => return Ok(refused),
            };
            match self
                .swap_key(id, key, current.as_ref(), new.as_ref())
                .await?
            {
                KeyUpdated::Conflict(now) => current = now,
                done => return Ok(done),
            }
        }
        Err(tether_core::Error::Conflict {
            key: key.to_owned(),
            attempts: INCREMENT_ATTEMPTS,
        })
    }

    /// A [`KeyUpdate::Swap`] of `key`, one statement. Run again only when it wrote nothing yet
    /// read the expected value: a concurrent insert of the key the statement's snapshot does
    /// not show, which the next statement sees.
    async fn swap_key(
        &self,
        id: &Id,
        key: &str,
        expected: Option<&Bytes>,
        new: Option<&Bytes>,
    ) -> Result<KeyUpdated, tether_core::Error> {
        run(&self.settings, "update_key", async {
            let op = Error::query("update_key");
            let mut connection = self.connection("update_key", 1).await.map_err(op)?;
            loop {
                let (live, written, current): (bool, bool, Option<Vec<u8>>) =
                    sqlx::query_as(&self.statements.update_key)
                        .bind(id.to_string())
                        .bind(millis(Timestamp::now()))
                        .bind(key.as_bytes())
                        .bind(expected.map(|value| &value[..]))
                        .bind(new.map(|value| &value[..]))
                        .fetch_one(&mut *connection)
                        .await
                        .map_err(op)?;
                let current = current.map(Bytes::from);
                if !live {
                    return Ok(KeyUpdated::Missing);
                }
                // A swap from absent to absent writes nothing.
                if written || (current.is_none() && expected.is_none() && new.is_none()) {
                    return Ok(KeyUpdated::Updated(new.cloned()));
                }
                if current.as_ref() != expected {
                    return Ok(KeyUpdated::Conflict(current));
                }
                telemetry::statements("postgres", "update_key", 1);
            }
        })
        .await
    }
}

#[async_trait]
impl Sweep for PostgresStore {
    async fn sweep_batch(&self) -> Result<u64, tether_core::Error> {
        let batch = i64::from(self.settings.sweep_batch);
        let statement = match self.log {
            None => &self.statements.sweep,
            Some(_) => &self.statements.sweep_events,
        };
        run(&self.settings, "sweep", async {
            let done = sqlx::query(statement)
                .bind(millis(Timestamp::now()))
                .bind(batch)
                .execute(
                    &mut *self
                        .connection("sweep", 1)
                        .await
                        .map_err(Error::query("sweep"))?,
                )
                .await
                .map_err(Error::query("sweep"))?;
            Ok(done.rows_affected())
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
        run(&self.settings, "trim", async {
            let op = Error::query("trim");
            let done = sqlx::query(&self.statements.events.trim)
                .bind(log.settings.cutoff(Timestamp::now()))
                .bind(batch)
                .execute(&mut *self.connection("trim", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            Ok(done.rows_affected())
        })
        .await
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, tether_core::Error> {
        run(&self.settings, "load", async {
            let now = Timestamp::now();
            let rows = self.fetch(id, now).await.map_err(Error::query("load"))?;
            decode_rows(*id, &rows, now)
        })
        .await
    }

    /// One statement either way: a plain `load` when the session is not known to be due, else
    /// one that renews it if it is due and reads it (see [`RenewalHints`] for why not always).
    async fn load_renewing(
        &self,
        id: &Id,
        renewal: &Renewal,
    ) -> Result<Option<Loaded>, tether_core::Error> {
        run(&self.settings, "load", async {
            let now = renewal.now();
            let loaded = if self.hints.due(id, renewal) {
                let rows = self
                    .fetch_renewing(id, renewal)
                    .await
                    .map_err(Error::query("load"))?;
                let renewed = match rows.first() {
                    Some(row) => column(row, "renewed")?,
                    None => false,
                };
                decode_rows(*id, &rows, now)?.map(|record| Loaded::new(record, renewed))
            } else {
                let rows = self.fetch(id, now).await.map_err(Error::query("load"))?;
                renewal.unrenewed(decode_rows(*id, &rows, now)?)
            };
            if let Some(loaded) = &loaded {
                self.hints.note(id, &loaded.record.expiry, renewal);
            }
            Ok(loaded)
        })
        .await
    }

    async fn create(&self, record: &Record) -> Result<Created, tether_core::Error> {
        run(&self.settings, "create", async {
            let op = Error::query("create");
            if self.insert(record).await.map_err(op)? {
                return Ok(Created::Created);
            }
            // Ids are random, so this is rare: an expired session holds the id, which is free
            // once its rows are gone.
            if self.free_if_expired(&record.id).await.map_err(op)?
                && self.insert(record).await.map_err(op)?
            {
                return Ok(Created::Created);
            }
            Ok(Created::IdTaken)
        })
        .await
    }

    async fn apply(
        &self,
        id: &Id,
        changes: &Changes,
        expiry: &Expiry,
    ) -> Result<Applied, tether_core::Error> {
        run(&self.settings, "apply", async {
            let meta = Meta::of(Timestamp::from_millis(0), expiry);
            let (keys, values): (Vec<&[u8]>, Vec<&[u8]>) = changes
                .inserted()
                .map(|(k, v)| (k.as_bytes(), &v[..]))
                .unzip();
            let removed: Vec<&[u8]> = changes.removed().map(str::as_bytes).collect();
            let binding = Binding::of(changes.principal(), changes.seen());
            // Only a binding writes the handle: it heals rows stored before the column existed.
            let handle = binding.principal.map(|_| handle_bytes(id));
            let cap = self
                .settings
                .others_kept()
                .filter(|_| binding.principal.is_some());
            // Only a binding is an event.
            let events = self.log.is_some() && binding.principal.is_some();
            let statement = match (cap, events) {
                (Some(_), false) => &self.statements.apply_capped,
                (None, false) => &self.statements.apply,
                (Some(_), true) => &self.statements.apply_capped_events,
                (None, true) => &self.statements.apply_events,
            };
            let query = sqlx::query_scalar(statement)
                .bind(id.to_string())
                .bind(millis(Timestamp::now()))
                .bind(meta.expires_at)
                .bind(meta.idle_timeout_ms)
                .bind(meta.absolute_deadline)
                .bind(changes.is_clear())
                .bind(keys)
                .bind(values)
                .bind(removed)
                .bind(binding.principal)
                .bind(handle)
                .bind(binding.last_seen)
                .bind(binding.device)
                .bind(binding.address);
            let query = match cap {
                Some(kept) => query.bind(kept),
                None => query,
            };
            let applied: i64 = query
                .fetch_one(
                    &mut *self
                        .connection("apply", 1)
                        .await
                        .map_err(Error::query("apply"))?,
                )
                .await
                .map_err(Error::query("apply"))?;
            Ok(if applied > 0 {
                Applied::Applied
            } else {
                Applied::Missing
            })
        })
        .await
    }

    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, tether_core::Error> {
        run(&self.settings, "touch", async {
            let meta = Meta::of(Timestamp::from_millis(0), expiry);
            let done = sqlx::query(&self.statements.touch)
                .bind(id.to_string())
                .bind(millis(Timestamp::now()))
                .bind(meta.expires_at)
                .bind(meta.idle_timeout_ms)
                .bind(meta.absolute_deadline)
                .execute(
                    &mut *self
                        .connection("touch", 1)
                        .await
                        .map_err(Error::query("touch"))?,
                )
                .await
                .map_err(Error::query("touch"))?;
            Ok(if done.rows_affected() > 0 {
                Applied::Applied
            } else {
                Applied::Missing
            })
        })
        .await
    }

    async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, tether_core::Error> {
        match update {
            KeyUpdate::Swap { expected, new } => {
                self.swap_key(id, key, expected.as_ref(), new.as_ref())
                    .await
            }
            _ => {
                run(&self.settings, "update_key", async {
                    Ok(self.increment(id, key, update).await)
                })
                .await?
            }
        }
    }

    async fn delete(&self, id: &Id) -> Result<(), tether_core::Error> {
        run(&self.settings, "delete", async {
            let query = match self.log {
                None => sqlx::query(&self.statements.delete).bind(id.to_string()),
                Some(_) => sqlx::query(&self.statements.delete_events)
                    .bind(id.to_string())
                    .bind(handle_bytes(id))
                    .bind(millis(Timestamp::now())),
            };
            query
                .execute(
                    &mut *self
                        .connection("delete", 1)
                        .await
                        .map_err(Error::query("delete"))?,
                )
                .await
                .map_err(Error::query("delete"))?;
            Ok(())
        })
        .await
    }

    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, tether_core::Error> {
        run(&self.settings, "cycle", async {
            self.move_session(old, new)
                .await
                .map_err(Error::query("cycle"))
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
            let op = Error::query("revoke");
            let statement = match self.log {
                None => &self.statements.revoke,
                Some(_) => &self.statements.revoke_events,
            };
            let done = sqlx::query(statement)
                .bind(principal.as_str())
                .bind(&handle.as_bytes()[..])
                .bind(millis(Timestamp::now()))
                .execute(&mut *self.connection("revoke", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            Ok(if done.rows_affected() > 0 {
                Revoked::Revoked
            } else {
                Revoked::NotFound
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
            let op = Error::query("revoke_all");
            let statement = match self.log {
                None => &self.statements.revoke_all,
                Some(_) => &self.statements.revoke_all_events,
            };
            let done = sqlx::query(statement)
                .bind(principal.as_str())
                .bind(millis(Timestamp::now()))
                .bind(keep.map(|handle| &handle.as_bytes()[..]))
                .execute(&mut *self.connection("revoke_all", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
        })
        .await
    }

    async fn events(&self) -> Result<tether_core::EventStream, tether_core::Error> {
        self.consume_events().await
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("sessions_table", &self.statements.tables.sessions)
            .field("keys_table", &self.statements.tables.keys)
            .field("settings", &self.settings)
            .field("events", &self.event_log())
            .field("pool_size", &self.pool.size())
            .finish()
    }
}
