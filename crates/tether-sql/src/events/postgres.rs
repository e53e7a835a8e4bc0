//! Session events on PostgreSQL: rows ordered by the id of the transaction that wrote them, read
//! only once every older transaction has ended.
//!
//! A `bigserial` id alone is not a reading order: a transaction that took id 7 may commit after
//! one that took id 8, and a reader that moved past 8 would never see 7. So each event row also
//! holds its transaction's id (`pg_current_xact_id()`, 64 bits, never wrapping), and a consumer
//! reads only rows whose transaction id is below the `xmin` of its snapshot: every transaction
//! below it has ended, so those rows are all the rows there will ever be below it. It reads them
//! in `(xid, id)` order, and its position is the last `(xid, id)` it read. A row written later
//! belongs to a transaction that was still open (its id is at least that `xmin`) or began later
//! (its id is higher still), so it sorts after the position: nothing is skipped.

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{ConnectOptions as _, Row as _};
use tether_core::{EventStream, Timestamp};

use super::{Feed, READ_BATCH, Read, decode_event, stream};
use crate::error::Error;
use crate::names::Tables;
use crate::postgres::PostgresStore;
use crate::row::millis;
use crate::run::run;
use crate::telemetry;

/// The statements of events: their tables, and the consumer's.
#[derive(Debug)]
pub(crate) struct EventStatements {
    /// `CREATE TABLE IF NOT EXISTS` of the events and cursors tables, and the index.
    pub(crate) create_tables: String,
    /// Deletes a batch of events that occurred before $1, at most $2.
    pub(crate) trim: String,
    take_turn: String,
    ensure_cursor: String,
    load_cursor: String,
    read: String,
    save: String,
}

impl EventStatements {
    pub(crate) fn new(tables: &Tables) -> Self {
        let Tables {
            events,
            event_cursors,
            events_index,
            ..
        } = tables;
        Self {
            create_tables: format!(
                "CREATE TABLE IF NOT EXISTS {events} (\n\
                 \x20 xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),\n\
                 \x20 id bigserial NOT NULL,\n\
                 \x20 kind text NOT NULL,\n\
                 \x20 handle bytea,\n\
                 \x20 principal text,\n\
                 \x20 from_handle bytea,\n\
                 \x20 occurred_at bigint NOT NULL,\n\
                 \x20 PRIMARY KEY (xid, id)\n\
                 );\n\
                 CREATE INDEX IF NOT EXISTS {events_index} ON {events} (occurred_at);\n\
                 CREATE TABLE IF NOT EXISTS {event_cursors} (\n\
                 \x20 group_name text PRIMARY KEY,\n\
                 \x20 xid bigint NOT NULL,\n\
                 \x20 id bigint NOT NULL,\n\
                 \x20 updated_at bigint NOT NULL\n\
                 );\n"
            ),
            trim: format!(
                "DELETE FROM {events} WHERE (xid, id) IN ( \
                   SELECT xid, id FROM {events} WHERE occurred_at < $1 LIMIT $2 \
                   FOR UPDATE SKIP LOCKED)"
            ),
            // One consumer of a group reads at a time: the one whose connection holds this
            // lock. The key names the cursors table, so stores in other schemas do not meet.
            take_turn: "SELECT pg_try_advisory_lock(hashtextextended($1, 0))".to_owned(),
            // A new group starts at the oldest transaction still open: what was written after
            // it is read, what every ended transaction wrote before it is not.
            ensure_cursor: format!(
                "INSERT INTO {event_cursors} (group_name, xid, id, updated_at) \
                 VALUES ($1, pg_snapshot_xmin(pg_current_snapshot())::text::bigint, 0, $2) \
                 ON CONFLICT (group_name) DO NOTHING"
            ),
            load_cursor: format!("SELECT xid, id FROM {event_cursors} WHERE group_name = $1"),
            read: format!(
                "SELECT xid, id, kind, handle, principal, from_handle, occurred_at FROM {events} \
                 WHERE (xid, id) > ($1, $2) \
                 AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY xid, id LIMIT $3"
            ),
            // Only forward: a consumer that lost its turn and saves late moves nothing back.
            save: format!(
                "UPDATE {event_cursors} SET xid = $2, id = $3, updated_at = $4 \
                 WHERE group_name = $1 AND (xid, id) < ($2, $3)"
            ),
        }
    }
}

/// A position in the events table: transaction id, then event id.
type Position = (i64, i64);

/// A consumer's side of the events table: a connection of its own, outside the pool, holding
/// its group's advisory lock while it reads.
struct PgFeed {
    store: PostgresStore,
    group: String,
    /// The advisory lock's key text.
    turn_key: String,
    connection: Option<PgConnection>,
}

impl PgFeed {
    /// The consumer's connection, opened with the pool's options if there is none.
    async fn connection(&mut self) -> Result<&mut PgConnection, tether_core::Error> {
        if self.connection.is_none() {
            let options = self.store.pool.connect_options();
            let opened = run(&self.store.settings, "events", async {
                options.connect().await.map_err(Error::Connect)
            })
            .await?;
            self.connection = Some(opened);
        }
        match self.connection.as_mut() {
            Some(connection) => Ok(connection),
            None => Err(tether_core::Error::Unavailable(
                "the event consumer has no connection".into(),
            )),
        }
    }
}

#[async_trait]
impl Feed for PgFeed {
    type Position = Position;

    async fn take_turn(&mut self) -> Result<Option<Position>, tether_core::Error> {
        let store = self.store.clone();
        let (group, key) = (self.group.clone(), self.turn_key.clone());
        let connection = self.connection().await?;
        let statements = &store.statements.events;
        run(&store.settings, "events", async {
            let op = Error::query("events");
            telemetry::statements("postgres", "events", 1);
            let ours: bool = sqlx::query_scalar(&statements.take_turn)
                .bind(&key)
                .fetch_one(&mut *connection)
                .await
                .map_err(op)?;
            if !ours {
                return Ok(None);
            }
            // The group's row is made by `events`; again here in case it was deleted since.
            telemetry::statements("postgres", "events", 2);
            sqlx::query(&statements.ensure_cursor)
                .bind(&group)
                .bind(millis(Timestamp::now()))
                .execute(&mut *connection)
                .await
                .map_err(op)?;
            let position: Position = sqlx::query_as(&statements.load_cursor)
                .bind(&group)
                .fetch_one(&mut *connection)
                .await
                .map_err(op)?;
            Ok(Some(position))
        })
        .await
    }

    async fn read(&mut self, after: Position) -> Result<Vec<Read<Position>>, tether_core::Error> {
        let store = self.store.clone();
        let connection = self.connection().await?;
        run(&store.settings, "events", async {
            let op = Error::query("events");
            telemetry::statements("postgres", "events", 1);
            let rows: Vec<PgRow> = sqlx::query(&store.statements.events.read)
                .bind(after.0)
                .bind(after.1)
                .bind(READ_BATCH)
                .fetch_all(&mut *connection)
                .await
                .map_err(op)?;
            rows.iter()
                .map(|row| {
                    let xid: i64 = row.try_get("xid").map_err(op)?;
                    let id: i64 = row.try_get("id").map_err(op)?;
                    Ok(Read {
                        position: (xid, id),
                        event: decode_event(row, id),
                    })
                })
                .collect()
        })
        .await
    }

    async fn save(&mut self, position: Position) -> Result<(), tether_core::Error> {
        let store = self.store.clone();
        let group = self.group.clone();
        let connection = self.connection().await?;
        run(&store.settings, "events", async {
            telemetry::statements("postgres", "events", 1);
            sqlx::query(&store.statements.events.save)
                .bind(&group)
                .bind(position.0)
                .bind(position.1)
                .bind(millis(Timestamp::now()))
                .execute(&mut *connection)
                .await
                .map_err(Error::query("events"))?;
            Ok(())
        })
        .await
    }

    async fn maintain(&mut self) -> Result<(), tether_core::Error> {
        super::maintain(&self.store).await
    }

    fn lose(&mut self) {
        // Closing the connection ends the session on the server, which lets go of the lock:
        // another consumer of the group may take over, from the saved position.
        self.connection = None;
    }

    fn group(&self) -> &str {
        &self.group
    }
}

impl PostgresStore {
    /// A consumer of the events, as the group of the store's settings; makes the group's row
    /// (starting now) if there is none.
    pub(crate) async fn consume_events(&self) -> Result<EventStream, tether_core::Error> {
        let Some(log) = &self.log else {
            return Err(tether_core::Error::Unsupported(
                "session events without `with_events` on the store's builder",
            ));
        };
        let group = log.settings.group().to_owned();
        run(&self.settings, "events", async {
            let op = Error::query("events");
            sqlx::query(&self.statements.events.ensure_cursor)
                .bind(&group)
                .bind(millis(Timestamp::now()))
                .execute(&mut *self.connection("events", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            Ok(())
        })
        .await?;
        let turn_key = format!("tether-sql events {} {group}", self.event_cursors_table());
        Ok(stream(PgFeed {
            store: self.clone(),
            group,
            turn_key,
            connection: None,
        }))
    }
}
