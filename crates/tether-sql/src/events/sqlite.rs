//! Session events on SQLite: one writer at a time, so event ids are visible in the order they
//! were given, and a consumer's position is the last id it read.
//!
//! `AUTOINCREMENT` keeps ids from being given again once the newest events are trimmed: a
//! reused id at or below a group's position would be skipped.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use tether_core::{EventStream, Timestamp};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{Feed, READ_BATCH, Read, decode_event, stream};
use crate::error::Error;
use crate::names::Tables;
use crate::row::millis;
use crate::run::run;
use crate::sqlite::SqliteStore;

/// The statements of events: their tables, and the consumer's.
#[derive(Debug)]
pub(crate) struct EventStatements {
    /// `CREATE TABLE IF NOT EXISTS` of the events and cursors tables, and the index.
    pub(crate) create_tables: String,
    /// Deletes a batch of events that occurred before ?1, at most ?2.
    pub(crate) trim: String,
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
                 \x20 id INTEGER PRIMARY KEY AUTOINCREMENT,\n\
                 \x20 kind TEXT NOT NULL,\n\
                 \x20 handle BLOB,\n\
                 \x20 principal TEXT,\n\
                 \x20 from_handle BLOB,\n\
                 \x20 occurred_at INTEGER NOT NULL\n\
                 );\n\
                 CREATE INDEX IF NOT EXISTS {events_index} ON {events} (occurred_at);\n\
                 CREATE TABLE IF NOT EXISTS {event_cursors} (\n\
                 \x20 group_name TEXT PRIMARY KEY NOT NULL,\n\
                 \x20 id INTEGER NOT NULL,\n\
                 \x20 updated_at INTEGER NOT NULL\n\
                 );\n"
            ),
            trim: format!(
                "DELETE FROM {events} WHERE id IN ( \
                   SELECT id FROM {events} WHERE occurred_at < ?1 LIMIT ?2)"
            ),
            // A new group starts after the newest event.
            ensure_cursor: format!(
                "INSERT INTO {event_cursors} (group_name, id, updated_at) \
                 VALUES (?1, COALESCE((SELECT max(id) FROM {events}), 0), ?2) \
                 ON CONFLICT (group_name) DO NOTHING"
            ),
            load_cursor: format!("SELECT id FROM {event_cursors} WHERE group_name = ?1"),
            read: format!(
                "SELECT id, kind, handle, principal, from_handle, occurred_at FROM {events} \
                 WHERE id > ?1 ORDER BY id LIMIT ?2"
            ),
            save: format!(
                "UPDATE {event_cursors} SET id = ?2, updated_at = ?3 \
                 WHERE group_name = ?1 AND id < ?2"
            ),
        }
    }
}

/// A consumer's side of the events table: the pool, and its group's turn in this store.
struct SqliteFeed {
    store: SqliteStore,
    group: String,
    turn: Arc<Mutex<()>>,
    /// Held while this consumer has the turn.
    held: Option<OwnedMutexGuard<()>>,
}

impl SqliteStore {
    /// Makes the row of `group` (starting after the newest event) if there is none.
    async fn ensure_cursor(&self, group: &str) -> Result<(), tether_core::Error> {
        run(&self.settings, "events", async {
            let op = Error::query("events");
            let _turn = self.writer.lock().await;
            sqlx::query(&self.statements.events.ensure_cursor)
                .bind(group)
                .bind(millis(Timestamp::now()))
                .execute(&mut *self.connection("events", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            Ok(())
        })
        .await
    }

    /// A consumer of the events, as the group of the store's settings; makes the group's row
    /// (starting now) if there is none.
    pub(crate) async fn consume_events(&self) -> Result<EventStream, tether_core::Error> {
        let Some(log) = &self.log else {
            return Err(tether_core::Error::Unsupported(
                "session events without `with_events` on the store's builder",
            ));
        };
        let group = log.settings.group().to_owned();
        self.ensure_cursor(&group).await?;
        Ok(stream(SqliteFeed {
            store: self.clone(),
            turn: Arc::clone(&log.turn),
            group,
            held: None,
        }))
    }
}

#[async_trait]
impl Feed for SqliteFeed {
    type Position = i64;

    async fn take_turn(&mut self) -> Result<Option<i64>, tether_core::Error> {
        if self.held.is_none() {
            // Waits while another consumer of the group reads.
            self.held = Some(Arc::clone(&self.turn).lock_owned().await);
        }
        // The group's row is made by `events`; again here in case it was deleted since.
        self.store.ensure_cursor(&self.group).await?;
        let store = &self.store;
        run(&store.settings, "events", async {
            let op = Error::query("events");
            let position: i64 = sqlx::query_scalar(&store.statements.events.load_cursor)
                .bind(&self.group)
                .fetch_one(&mut *store.connection("events", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            Ok(Some(position))
        })
        .await
    }

    async fn read(&mut self, after: i64) -> Result<Vec<Read<i64>>, tether_core::Error> {
        let store = &self.store;
        run(&store.settings, "events", async {
            let op = Error::query("events");
            let rows: Vec<SqliteRow> = sqlx::query(&store.statements.events.read)
                .bind(after)
                .bind(READ_BATCH)
                .fetch_all(&mut *store.connection("events", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            rows.iter()
                .map(|row| {
                    let id: i64 = row.try_get("id").map_err(op)?;
                    Ok(Read {
                        position: id,
                        event: decode_event(row, id),
                    })
                })
                .collect()
        })
        .await
    }

    async fn save(&mut self, position: i64) -> Result<(), tether_core::Error> {
        let store = &self.store;
        run(&store.settings, "events", async {
            let op = Error::query("events");
            let _turn = store.writer.lock().await;
            sqlx::query(&store.statements.events.save)
                .bind(&self.group)
                .bind(position)
                .bind(millis(Timestamp::now()))
                .execute(&mut *store.connection("events", 1).await.map_err(op)?)
                .await
                .map_err(op)?;
            Ok(())
        })
        .await
    }

    async fn maintain(&mut self) -> Result<(), tether_core::Error> {
        super::maintain(&self.store).await
    }

    fn lose(&mut self) {
        // Nothing here breaks with a failed statement: the turn is kept, and the position is
        // read again from the group's row.
    }

    fn group(&self) -> &str {
        &self.group
    }
}
