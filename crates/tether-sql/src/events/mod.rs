//! Session events in a table: written by the statement (PostgreSQL) or the transaction
//! (SQLite) that changes the session, read by consumer groups whose position is a row of its
//! own.

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tether_core::{EventKind, EventStream, Principal, SessionEvent, Timestamp};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{BadValue, Error};
use crate::row::{column, decode_handle, decode_principal, duration_millis, millis};

/// Default consumer group of [`EventLog`].
pub const DEFAULT_EVENT_GROUP: &str = "tether";
/// Default time events are kept.
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How long a consumer waits before reading again when it found no new event.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// How often a consumer deletes expired sessions (reporting them) and trims old events: with
/// [`POLL`], the bound on how late an expiry is reported while a consumer runs.
pub(crate) const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);
/// Most sweep batches one maintenance runs, so reading events goes on during a large backlog.
const MAINTENANCE_BATCHES: u32 = 10;
/// How often a consumer waiting for its group's turn (another consumer of the group has it)
/// tries again.
const STANDBY: Duration = Duration::from_millis(500);
/// How long a consumer waits after an error before it tries again.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// The position a consumer has finished with is saved at least this often while it hands out
/// a batch (and always before it reads the next batch).
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Events read per query.
pub(crate) const READ_BATCH: i64 = 100;

/// Session events kept in the database: turn them on with `with_events` on
/// [`PostgresStoreBuilder`](crate::PostgresStoreBuilder) or
/// [`SqliteStoreBuilder`](crate::SqliteStoreBuilder), follow them with
/// [`SessionStore::events`](tether_core::SessionStore::events).
///
/// **How.** `migrate` creates two more tables, `<prefix>session_events` (one row per event)
/// and `<prefix>session_event_cursors` (one row per consumer group: the last event it is done
/// with). Every statement that changes a session also writes its event: on PostgreSQL as one
/// more part of the same statement, on SQLite in the same transaction, so an event is never
/// lost between the change and its report. Each call of `events` is a consumer of the group
/// named here, running in a tokio task of its own until the stream is dropped: it reads the
/// table in order (polling every 100 ms when idle), deletes expired sessions every second (each
/// reported [`Expired`](tether_core::EventKind::Expired) by the statement that deletes it) and
/// deletes events older than the retention, in batches.
///
/// **Delivery: at least once per group, across restarts.** Every group sees every event. An
/// event counts as handled when its consumer asks for the next one; the group's position is
/// saved in its cursor row when the consumer reads its next batch, and at least every second,
/// so an event being handled when the process dies is delivered again after the restart: it
/// may come twice, never not at all, as long as it is younger than the retention (older events
/// are deleted, read or not). One consumer of a group reads at a time; others of the same group
/// (more instances of a service) wait and take over when it ends (on PostgreSQL: when its
/// connection closes, so also when its process dies). Give each service that follows the
/// events its own group.
///
/// **Expiries** are reported within about 1.1 seconds of the deadline while a consumer runs
/// (it deletes expired sessions every second, and reads right after), and otherwise when one
/// starts, or when `delete_expired` or the sweeper deletes the session.
///
/// **Order.** SQLite: the order of the writes. PostgreSQL: the order of the transactions'
/// ids, which is the order of writes made one after the other; two writes that overlap in
/// time may come in either order. An event becomes visible once every transaction that began
/// writing before it ended (see the crate docs), so a long write transaction anywhere on the
/// server delays events, never loses them.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_sql::{EventLog, SqliteStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tether_sql::Error> {
/// let store = SqliteStore::builder()
///     .with_events(EventLog::new().with_group("audit").with_retention(Duration::from_secs(3600)))
///     .in_memory()
///     .await?;
/// store.migrate().await?;
/// assert_eq!(store.event_log().map(EventLog::group), Some("audit"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct EventLog {
    group: String,
    retention: Duration,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    /// Events read by the group [`DEFAULT_EVENT_GROUP`], kept for
    /// [`DEFAULT_EVENT_RETENTION`].
    pub fn new() -> Self {
        Self {
            group: DEFAULT_EVENT_GROUP.to_owned(),
            retention: DEFAULT_EVENT_RETENTION,
        }
    }

    /// The consumer group `events` reads as: give each service that follows the events its own
    /// group, and every instance of a service the same one. A group that does not exist yet
    /// starts with the events written after its first `events` call.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// How long events stay in the table, read or not (default one day). A group that falls
    /// further behind than this misses the oldest.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The retention.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Events that occurred before this are deleted at `now`.
    pub(crate) fn cutoff(&self, now: Timestamp) -> i64 {
        millis(now).saturating_sub(duration_millis(self.retention))
    }
}

/// The events of a store: its settings, and (on SQLite) the lock a consumer of its group holds
/// while it reads, shared by the store's clones.
#[derive(Debug)]
pub(crate) struct Log {
    pub(crate) settings: EventLog,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) turn: Arc<tokio::sync::Mutex<()>>,
}

impl Log {
    pub(crate) fn new(settings: EventLog) -> Arc<Self> {
        Arc::new(Self {
            settings,
            turn: Arc::default(),
        })
    }
}

/// One row of the events table as read: where it is, and the event or why it is none.
pub(crate) struct Read<P> {
    pub(crate) position: P,
    pub(crate) event: Result<SessionEvent, Error>,
}

/// The row `(kind, handle, principal, from_handle, occurred_at)` of event `id` as an event,
/// refusing what this version does not write.
pub(crate) fn decode_event<R>(row: &R, id: i64) -> Result<SessionEvent, Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    decode(row).map_err(|error| match error {
        Error::CorruptRow { column, source } => Error::CorruptEvent { id, column, source },
        other => other,
    })
}

fn decode<R>(row: &R) -> Result<SessionEvent, Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let bad = |column: &'static str, value: BadValue| Error::CorruptRow {
        column,
        source: Box::new(value),
    };
    let kind: Option<String> = column(row, "kind")?;
    let handle = decode_handle(column(row, "handle")?)?;
    let principal: Option<Principal> = decode_principal(column(row, "principal")?)?;
    let occurred_at: i64 = column(row, "occurred_at")?;
    let at = u64::try_from(occurred_at)
        .map_err(|_| bad("occurred_at", BadValue::Negative(occurred_at)))?;
    let kind = match kind.as_deref() {
        Some("created") => EventKind::Created,
        Some("cycled") => {
            let from = decode_handle(column(row, "from_handle")?).map_err(|error| match error {
                Error::CorruptRow { source, .. } => Error::CorruptRow {
                    column: "from_handle",
                    source,
                },
                other => other,
            })?;
            EventKind::Cycled { from }
        }
        Some("principal_set") => EventKind::PrincipalSet,
        Some("deleted") => EventKind::Deleted,
        Some("revoked") => EventKind::Revoked,
        Some("expired") => EventKind::Expired,
        other => {
            return Err(bad(
                "kind",
                BadValue::EventKind(other.unwrap_or("NULL").to_owned()),
            ));
        }
    };
    Ok(SessionEvent::new(
        kind,
        handle,
        principal,
        Timestamp::from_millis(at),
    ))
}

/// Where a consumer reads: the events table of one store, as one group.
#[async_trait]
pub(crate) trait Feed: Send + 'static {
    /// A place in the events table, in the order events are read.
    type Position: Copy + fmt::Debug + Send + Sync + 'static;

    /// Takes the group's turn to read, and answers the group's saved position; `None` while
    /// another consumer of the group has the turn.
    async fn take_turn(&mut self) -> Result<Option<Self::Position>, tether_core::Error>;

    /// The next events after `after`, in order, at most [`READ_BATCH`].
    async fn read(
        &mut self,
        after: Self::Position,
    ) -> Result<Vec<Read<Self::Position>>, tether_core::Error>;

    /// Saves that the group is done with every event up to `position`.
    async fn save(&mut self, position: Self::Position) -> Result<(), tether_core::Error>;

    /// Deletes expired sessions (reporting them) and events past the retention.
    async fn maintain(&mut self) -> Result<(), tether_core::Error>;

    /// The last call failed: let go of what may be broken (a connection and the turn it held).
    fn lose(&mut self);

    /// The group's name, for logs.
    fn group(&self) -> &str;
}

/// Runs one maintenance of `store`: sweep batches (at most [`MAINTENANCE_BATCHES`]) and one
/// batch of old events.
pub(crate) async fn maintain(store: &impl crate::sweeper::Sweep) -> Result<(), tether_core::Error> {
    for _ in 0..MAINTENANCE_BATCHES {
        if store.sweep_batch().await? < store.batch_size() {
            break;
        }
    }
    store.trim_batch().await?;
    Ok(())
}

/// One consumer's state between two items of its stream.
struct Consumer<F: Feed> {
    feed: F,
    /// The last position read, while this consumer has its group's turn.
    cursor: Option<F::Position>,
    /// Read, not yet handed out.
    buffer: VecDeque<Read<F::Position>>,
    /// Handed out: done when the next item is asked for.
    handed: Option<F::Position>,
    /// Done with, not yet saved.
    done: Option<F::Position>,
    saved_at: Instant,
    next_maintenance: Instant,
    /// After an error: no new attempt before this.
    pause_until: Option<Instant>,
}

impl<F: Feed> Consumer<F> {
    fn new(feed: F) -> Self {
        let now = Instant::now();
        Self {
            feed,
            cursor: None,
            buffer: VecDeque::new(),
            handed: None,
            done: None,
            saved_at: now,
            next_maintenance: now,
            pause_until: None,
        }
    }

    async fn next(&mut self) -> Result<SessionEvent, tether_core::Error> {
        if let Some(until) = self.pause_until.take() {
            tokio::time::sleep_until(until.into()).await;
        }
        let item = self.step().await;
        if let Err(error) = &item
            && error.kind() != tether_core::ErrorKind::Corrupt
        {
            tracing::warn!(
                group = self.feed.group(),
                error = %tether_core::error_chain(error),
                "reading session events failed; trying again"
            );
            self.pause_until = Some(Instant::now() + RETRY_AFTER);
        }
        item
    }

    async fn step(&mut self) -> Result<SessionEvent, tether_core::Error> {
        if let Some(handed) = self.handed.take() {
            self.done = Some(handed);
        }
        loop {
            // Saved before the next batch is read, and at least every `SAVE_EVERY`.
            if let Some(done) = self.done
                && (self.buffer.is_empty() || self.saved_at.elapsed() >= SAVE_EVERY)
            {
                if let Err(error) = self.feed.save(done).await {
                    self.lose();
                    return Err(error);
                }
                self.done = None;
                self.saved_at = Instant::now();
            }
            if let Some(read) = self.buffer.pop_front() {
                self.handed = Some(read.position);
                return read.event.map_err(|error| {
                    tracing::warn!(
                        group = self.feed.group(),
                        position = ?read.position,
                        error = %tether_core::error_chain(&error),
                        "a session event row is not an event this version writes; skipped"
                    );
                    error.into_store_error()
                });
            }
            let after = match self.cursor {
                Some(cursor) => cursor,
                None => match self.feed.take_turn().await {
                    Ok(Some(cursor)) => {
                        self.cursor = Some(cursor);
                        cursor
                    }
                    Ok(None) => {
                        tokio::time::sleep(STANDBY).await;
                        continue;
                    }
                    Err(error) => {
                        self.lose();
                        return Err(error);
                    }
                },
            };
            let now = Instant::now();
            if now >= self.next_maintenance {
                self.next_maintenance = now + MAINTENANCE_EVERY;
                self.feed.maintain().await?;
            }
            let rows = match self.feed.read(after).await {
                Ok(rows) => rows,
                Err(error) => {
                    self.lose();
                    return Err(error);
                }
            };
            match rows.last() {
                Some(last) => self.cursor = Some(last.position),
                None => tokio::time::sleep(POLL).await,
            }
            self.buffer.extend(rows);
        }
    }

    /// Forgets what was read and not saved: it is read again from the saved position.
    fn lose(&mut self) {
        self.buffer.clear();
        self.cursor = None;
        self.handed = None;
        self.done = None;
        self.feed.lose();
    }
}

type Item = Result<SessionEvent, tether_core::Error>;

/// A consumer as a stream. The consumer runs in a task of its own, which computes an item only
/// when the stream asks for one (so an event counts as handled only once the next is asked
/// for), and always to its end: a caller that stops waiting for an item (a timeout, a
/// `select!`) never leaves a statement half done with a pooled connection in hand. The item
/// waits in the channel until it is asked for again. Dropping the stream ends the task (and
/// so its connection and its group's turn).
struct Driven {
    /// One request at a time: "the next item, please".
    requests: mpsc::Sender<()>,
    replies: mpsc::Receiver<Item>,
    /// A request is out, its reply not yet taken.
    asked: bool,
    task: JoinHandle<()>,
}

impl futures_core::Stream for Driven {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        if !this.asked {
            // The task took the last request before it replied, so there is room.
            if this.requests.try_send(()).is_err() {
                return Poll::Ready(None);
            }
            this.asked = true;
        }
        match this.replies.poll_recv(cx) {
            Poll::Ready(Some(item)) => {
                this.asked = false;
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stream of a consumer reading `feed`, in a task of its own (needs a tokio runtime).
pub(crate) fn stream<F: Feed>(feed: F) -> EventStream {
    let (requests, mut asked) = mpsc::channel::<()>(1);
    let (reply, replies) = mpsc::channel::<Item>(1);
    let mut consumer = Consumer::new(feed);
    let task = tokio::spawn(async move {
        while asked.recv().await.is_some() {
            let item = consumer.next().await;
            if reply.send(item).await.is_err() {
                break;
            }
        }
    });
    Box::pin(Driven {
        requests,
        replies,
        asked: false,
        task,
    })
}
