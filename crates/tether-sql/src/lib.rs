//! A SQL session store for [tether] on [sqlx]: PostgreSQL, for sessions every server of an
//! application shares, and SQLite, for one process whose sessions must survive its restarts.
//!
//! - **Changed keys only, no lost updates.** A session is one row, and each of its keys is a row
//!   of its own. A request writes only the keys it changed, so concurrent requests of one
//!   session that change different keys all survive; nothing rewrites the whole session.
//! - **One statement per operation on PostgreSQL.** `load`, `create`, `apply`, `touch` and
//!   `delete` are one statement each (one round trip): `apply` is a data-modifying CTE that
//!   checks the session exists and is live, moves its deadline, deletes the removed keys and
//!   upserts the set ones. A read-only request past the touch threshold is one statement
//!   too, when the store has read the session before: the read renews it
//!   (`load_renewing`; that read takes the session row's lock, so it waits for a concurrent
//!   write of the session to commit). `cycle` is one short transaction. No lock outlives a statement, so
//!   no lock is held across a request, and concurrent requests of one session queue on the
//!   session row, never deadlock.
//! - **One short transaction per operation on SQLite**, writers taking turns.
//! - **A deleted or expired session stays gone.** Every write checks that the session exists
//!   and is unexpired in the statement that writes.
//! - **Outages are transient.** A lost connection, a server restarting or refusing, a full disk
//!   or a read-only transaction fail the operation with a transient error (the layer answers
//!   `503`); the pool reconnects by itself. Each operation is bounded by a timeout.
//! - **Bad rows count as absent.** A row edited into something no write produces is
//!   [`tether_core::Error::Corrupt`] with an [`Error::CorruptRow`] source, logged, and the
//!   layer starts a new session; `sessions_of` leaves it out of its listing, logged.
//! - **Sessions by principal.** A session bound to a [`Principal`](tether_core::Principal)
//!   is listed by `sessions_of` and revoked by `revoke` and `revoke_all` (one statement each on
//!   PostgreSQL), and `with_max_sessions_per_principal` bounds how many one principal keeps.
//! - **Session events, durable.** With `with_events(EventLog::new())`, every write that changes
//!   a session also writes what happened (created, cycled, bound, deleted, revoked, expired)
//!   into an events table, in the same statement on PostgreSQL and the same transaction on
//!   SQLite; [`SessionStore::events`](tether_core::SessionStore::events) delivers them at least
//!   once per consumer group, across restarts. See [Session events](#session-events).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tether_core::{Changes, Codec, Expiry, Id, Record, SessionStore, Timestamp};
//! use tether_sql::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::in_memory().await?;
//! store.migrate().await?;
//!
//! // What the session layer does for a request that stores a counter:
//! let codec = Codec::default();
//! let now = Timestamp::now();
//! let record = Record::new(Id::random()?, Expiry::new(now, Duration::from_secs(1800), None), now);
//! let _ = store.create(&record).await?;
//! let mut changes = Changes::new();
//! changes.insert("visits", codec.encode(&1u32)?);
//! let _ = store.apply(&record.id, &changes, &record.expiry).await?;
//!
//! let loaded = store.load(&record.id).await?.expect("the session is there");
//! assert_eq!(codec.decode::<u32>(&loaded.data["visits"])?, 1);
//! # Ok(()) }
//! ```
//!
//! With `tether-sessions`, the store goes into the layer as any other:
//! `SessionLayer::new(PostgresStore::connect(url).await?)`.
//!
//! # How a session is stored
//!
//! Two tables, named `<prefix>sessions` and `<prefix>session_keys` (prefix `tether_` by
//! default, see `with_table_prefix`), on PostgreSQL optionally in a schema of their own
//! (`with_schema`). [`PostgresStore::migrate`] and [`SqliteStore::migrate`] create them if
//! absent; `migration_sql` gives the statements for an external migration tool.
//!
//! | table | column | content |
//! |---|---|---|
//! | `sessions` | `id` | the session id (22 characters), primary key |
//! | | `created_at` | Unix milliseconds |
//! | | `expires_at` | Unix milliseconds: the earlier of the idle and the absolute deadline; indexed for the sweep |
//! | | `idle_timeout_ms` | milliseconds |
//! | | `absolute_deadline` | Unix milliseconds, `NULL` for none |
//! | | `principal` | the [`Principal`](tether_core::Principal) the session is bound to, `NULL` for none; indexed with `handle` (partial: bound sessions only) |
//! | | `handle` | the [`SessionHandle`](tether_core::SessionHandle) of `id`, 16 bytes (`bytea`/`BLOB`): how `revoke` finds a session without its id |
//! | | `last_seen` | Unix milliseconds of the last recorded use ([`Seen`](tether_core::Seen)), `NULL` for none |
//! | | `device` | the device label of that use, or `NULL` |
//! | | `address` | the client address of that use, as text (`192.0.2.7`, `2001:db8::1`), or `NULL` |
//! | `session_keys` | `session_id` | references `sessions.id`, `ON DELETE CASCADE ON UPDATE CASCADE` |
//! | | `key` | the key's UTF-8 bytes (`bytea`/`BLOB`, so any string fits) |
//! | | `value` | the value as the layer's codec encoded it |
//!
//! The statements on PostgreSQL:
//!
//! | operation | statement |
//! |---|---|
//! | `load` | `SELECT` of the session row `LEFT JOIN` its key rows, live only |
//! | `create` | `WITH s AS (INSERT INTO sessions ... ON CONFLICT (id) DO NOTHING RETURNING id) INSERT INTO session_keys SELECT ... FROM s, unnest(keys, values)`; only if an expired session holds the id, a `DELETE` of it and the insert again |
//! | `apply` | `WITH s AS (UPDATE sessions SET expires_at ..., principal, last use (when the changes carry them) WHERE id = $1 AND expires_at > now RETURNING id)`, then `DELETE` (clear, removed keys) and `INSERT ... ON CONFLICT DO UPDATE` (set keys) of key rows joined to `s`: nothing happens unless the session is live |
//! | `load_renewing` of a session the store knows due (from the deadlines of its recent reads, [`tether_core::RenewalHints`]) | `WITH r AS (UPDATE sessions SET expires_at ..., last use WHERE id = $1 AND live AND due RETURNING ...)`, then the `load` `SELECT` with the renewed columns from `r`: the renewal and the read in one statement; any other `load_renewing` is the `load` statement |
//! | `touch` | `UPDATE sessions SET expires_at ... WHERE id = $1 AND expires_at > now` |
//! | `update_key` | a swap: `WITH s AS (SELECT id FROM sessions WHERE id = $1 AND expires_at > now FOR KEY SHARE), cur AS (SELECT value FROM session_keys ... JOIN s ... FOR UPDATE)` (the key's latest value, locked for the statement), then the one write the swap needs, conditional on it (`UPDATE` or `DELETE ... WHERE cur.value = expected`, or from absent `INSERT ... ON CONFLICT DO NOTHING`), answering whether the session is live, whether the write happened, and `cur`'s value; an increment is a `load`, then swaps from the value read until one lands, in turns with the store's other increments of the session |
//! | `delete` | `DELETE FROM sessions WHERE id = $1` (key rows cascade) |
//! | `cycle` | a transaction: `DELETE` an expired session under the new id, then `UPDATE sessions SET id = new, handle = handle of new WHERE id = old AND live AND NOT EXISTS (new)`; key rows follow through `ON UPDATE CASCADE`, principal and last use stay in the row |
//! | `sessions_of` | `SELECT handle, created_at, ... WHERE principal = $1 AND expires_at > now ORDER BY created_at, handle` |
//! | `revoke` | `DELETE FROM sessions WHERE principal = $1 AND handle = $2 AND expires_at > now` |
//! | `revoke_all` | `DELETE FROM sessions WHERE principal = $1 AND expires_at > now AND handle IS DISTINCT FROM keep` |
//! | sweep | `DELETE ... WHERE id IN (SELECT id ... WHERE expires_at <= now ORDER BY expires_at LIMIT batch FOR UPDATE SKIP LOCKED)`, repeated while batches come back full |
//!
//! With `with_max_sessions_per_principal`, a `create` or `apply` that binds a principal has one
//! more part, in the same statement: `capped AS (DELETE FROM sessions d USING (SELECT id ...
//! WHERE principal = p AND live AND id <> this ORDER BY created_at DESC OFFSET max - 1) ...)`,
//! which revokes the principal's oldest other sessions. On SQLite that `DELETE` is one more
//! statement in the binding's transaction.
//!
//! # Sessions by principal
//!
//! The sessions table keeps each session's [`SessionHandle`](tether_core::SessionHandle) in a
//! column of its own, written by `create` and moved by `cycle` with the id, rather than
//! computing handles from the ids of a principal's rows: so `revoke` and `revoke_all` find
//! their sessions by principal and handle in the one `DELETE` that also checks the principal
//! and the deadline, the ids never leave the database for a listing, and the principal index
//! finds a handle without reading the principal's other rows. A row written before the column
//! existed gets its handle when a principal is bound to it.
//!
//! The cap counts what the binding statement's snapshot shows on PostgreSQL: two bindings of
//! one principal at the same moment may each keep the other's new session, one more than the
//! bound until the principal's next binding. On SQLite writers take turns and the bound holds
//! exactly.
//!
//! Deadlines are compared with the clock of the server that runs the operation, as on every
//! tether store. Two concurrent requests that change the same key: the later statement wins,
//! unless they change it by `update_key`, which swaps only from the value it expects.
//!
//! # Expired sessions
//!
//! An expired session never loads, and no write brings it back, but its rows stay until they
//! are deleted: call `delete_expired` now and then, or let `spawn_sweeper(period)` do it in the
//! background. Each sweep statement deletes at most the sweep batch (default
//! [`DEFAULT_SWEEP_BATCH`]) sessions, so it never holds many locks for long.
//!
//! # Session events
//!
//! Off by default: without `with_events` no statement changes, and no events table exists.
//! With it ([`EventLog`]: a consumer group, default [`DEFAULT_EVENT_GROUP`], and a retention,
//! default [`DEFAULT_EVENT_RETENTION`]), `migrate` creates two more tables:
//!
//! | table | column | content |
//! |---|---|---|
//! | `session_events` | `xid` | PostgreSQL only: the id of the transaction that wrote the row, `pg_current_xact_id()` as `bigint` (the column's default); with `id` the primary key |
//! | | `id` | `bigserial` on PostgreSQL; `INTEGER PRIMARY KEY AUTOINCREMENT` on SQLite (never given twice, even once the newest rows are deleted) |
//! | | `kind` | `created`, `cycled`, `principal_set`, `deleted`, `revoked` or `expired` ([`EventKind::name`](tether_core::EventKind::name)) |
//! | | `handle` | the session's [`SessionHandle`](tether_core::SessionHandle), 16 bytes (for `cycled`, the new one): the session row's `handle` column |
//! | | `principal` | the session row's `principal`, `NULL` for none |
//! | | `from_handle` | `cycled` only: the handle before |
//! | | `occurred_at` | Unix milliseconds; indexed, for the retention |
//! | `session_event_cursors` | `group_name` | a consumer group, primary key |
//! | | `xid`, `id` | the last event the group is done with (`xid` on PostgreSQL only) |
//! | | `updated_at` | Unix milliseconds of the last save |
//!
//! Which write reports what, in the statement (PostgreSQL: one more part, `INSERT INTO
//! session_events ... SELECT ... FROM` the rows the statement wrote or deleted, so still one
//! statement) or the transaction (SQLite: an `INSERT ... SELECT` of the rows before the
//! `DELETE` that removes them, or an `INSERT` after the write) that makes the change:
//!
//! | write | events |
//! |---|---|
//! | `create` | `created`; with the cap, `revoked` for each session it revokes |
//! | `apply` that binds a principal | `principal_set` (and the cap's `revoked`); an `apply` or `touch` that binds nobody reports nothing |
//! | `cycle` | `cycled` for the new handle, `from_handle` the old one |
//! | `delete` | `deleted` if the session was live; `expired` if it was past its deadline and not yet swept; nothing if there was no session |
//! | `revoke`, `revoke_all` | `revoked` for each session deleted |
//! | the sweep (a consumer's, the sweeper's, `delete_expired`) | `expired` for each session deleted; so does a `create` or `cycle` that frees an id held by an expired session |
//!
//! **Reading.** Each call of `events` is a consumer of the group, running in a tokio task of
//! its own (so a caller that stops waiting for an event, by a timeout or a `select!`, never
//! leaves one of its statements half done; dropping the stream ends the task). It reads the
//! events after the group's position, in order, 100 at a time, polling every 100 ms when there
//! are none; an
//! event counts as handled when the consumer asks for the next one, and the group's position
//! is saved in its row before the next batch is read and at least every second. So an event
//! being handled when the process stops is delivered again by the group's next consumer: **at
//! least once per group**, as long as the event is younger than the retention. A new group
//! starts with the events written after its first `events` call. One consumer of a group reads
//! at a time; another waits (trying again every half second) and takes over from the saved
//! position when the first ends. On PostgreSQL a consumer has a connection of its own, opened
//! with the pool's options outside the pool, holding a session-level advisory lock for its
//! group; on SQLite the turn is a lock shared by the clones of the store.
//!
//! **Order on PostgreSQL.** Transactions do not commit in the order of the ids they took: a
//! reader that moved past id 8 would never see an id 7 committed after it. So each event row
//! holds its transaction's id, and a consumer reads, in `(xid, id)` order, only rows whose
//! transaction id is below the `xmin` of its snapshot (`pg_snapshot_xmin(pg_current_snapshot())`):
//! every transaction below it has ended, so no row will ever appear behind the group's
//! position. The price: an event waits until every transaction that began writing before it
//! has ended, in any database of the server; a write transaction left open holds events back
//! (never loses them). This needs **PostgreSQL 13** or later (`pg_current_xact_id`). Events of
//! writes made one after the other come in their order; two writes that overlap in time may
//! come in either order. On SQLite writers take turns, ids are visible in order, and the
//! position is the last id.
//!
//! **Expiries** are reported when the session's row is deleted: a consumer deletes expired
//! sessions (a batch of the sweep) every second and reads right after, so **an expiry is
//! reported within about 1.1 seconds of the deadline while a consumer runs** (on PostgreSQL,
//! plus any wait for an open transaction), and otherwise when a consumer starts or the sweeper
//! or `delete_expired` deletes the session. A session row written before the `handle` column
//! existed is reported with the handle of its id (computed by the sweep statement on
//! PostgreSQL, by the sweep's transaction on SQLite).
//!
//! **Retention.** Events that occurred longer ago than the retention are deleted, read or not,
//! in batches of the sweep batch, by each consumer every second and by `delete_expired` (and so
//! the sweeper).
//!
//! **Damaged rows.** A row that is not an event this version writes (an unknown kind, a handle
//! that is not 16 bytes, a principal [`Principal::new`](tether_core::Principal::new) refuses)
//! is yielded once as [`tether_core::Error::Corrupt`] with an [`Error::CorruptEvent`] source,
//! logged, and passed; the stream goes on. A failed read (a lost connection, the database
//! restarting) is yielded as its error, and the consumer tries again half a second later, by
//! itself, from the group's saved position.
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `postgres` (default) | [`PostgresStore`], sqlx's PostgreSQL driver |
//! | `sqlite` (default) | [`SqliteStore`], sqlx's SQLite driver with SQLite compiled in |
//!
//! Tested on PostgreSQL 15; the statements need 9.5 or later (`ON CONFLICT`, `SKIP LOCKED`),
//! the migration 9.6 (`ADD COLUMN IF NOT EXISTS`), session events 13
//! (`pg_current_xact_id`).
//! SQLite is the one sqlx compiles in (upserts need 3.24 or later).
//!
//! "One round trip" holds once a statement is prepared on a connection: sqlx prepares each
//! statement on its first use per connection (one extra round trip) and caches it.
//!
//! [tether]: https://github.com/tether-rs/tether
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a backend only the shared parts are left, unused.
#![cfg_attr(
    not(any(feature = "postgres", feature = "sqlite")),
    allow(dead_code, unused_imports)
)]
#![cfg_attr(not(test), forbid(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod error;
mod events;
mod names;
#[cfg(feature = "postgres")]
mod postgres;
mod row;
mod run;
#[cfg(feature = "sqlite")]
mod sqlite;
mod sweeper;
mod telemetry;

use std::time::Duration;

pub use error::{BadValue, Error};
pub use events::{DEFAULT_EVENT_GROUP, DEFAULT_EVENT_RETENTION, EventLog};
pub use names::{DEFAULT_TABLE_PREFIX, MAX_NAME_LEN};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteStore, SqliteStoreBuilder};
pub use sweeper::Sweeper;

/// The sqlx crate, for building pools to hand to a store's `build`.
pub use sqlx;

/// Default bound on one operation, waiting for a connection included.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// Default size of the connection pool.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// Default number of sessions one sweep statement deletes at most.
pub const DEFAULT_SWEEP_BATCH: u32 = 1_000;

#[cfg(test)]
mod tests {
    //! The futures an application spawns must be `Send`: these compile only if they are.
    #![allow(dead_code)]

    fn send<T: Send>(_: T) {}

    #[cfg(feature = "postgres")]
    fn postgres(store: &crate::PostgresStore) {
        send(store.migrate());
        send(store.delete_expired());
        send(tether_core::SessionStore::events(store));
        send(crate::PostgresStore::connect(""));
    }

    #[cfg(feature = "sqlite")]
    fn sqlite(store: &crate::SqliteStore) {
        send(store.migrate());
        send(store.delete_expired());
        send(tether_core::SessionStore::events(store));
        send(crate::SqliteStore::open(""));
        send(crate::SqliteStore::in_memory());
    }

    fn sweeper(sweeper: crate::Sweeper) {
        send(sweeper.stop());
    }
}
