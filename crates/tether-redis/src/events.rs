//! The event log: session events in Redis Streams, written by the same scripts that change the
//! sessions, read by consumer groups.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream;
use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tether_core::{
    Error, EventKind, EventStream, Id, Principal, SessionEvent, SessionHandle, Timestamp,
};

use crate::store::{NamedScript, RedisStore};

/// Default consumer group of [`EventLog`].
pub const DEFAULT_EVENT_GROUP: &str = "tether";
/// Default time events are kept in their streams.
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Default number of shards of the event log on Redis Cluster.
pub const DEFAULT_CLUSTER_SHARDS: u8 = 16;

/// How often a consumer looks for expired sessions: the bound, with [`POLL`], on how late an
/// expiry is reported while a consumer runs.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a consumer waits before reading again when every stream was empty.
const POLL: Duration = Duration::from_millis(100);
/// How often a consumer takes over events that another consumer of its group read and did
/// not acknowledge.
const CLAIM_EVERY: Duration = Duration::from_secs(5);
/// How long an event read by a consumer may stay unacknowledged before another consumer of the
/// group takes it over (the first one died, or hangs).
const CLAIM_AFTER: Duration = Duration::from_secs(30);
/// Entries read or swept per stream and call.
const BATCH: usize = 100;

/// Session events kept in Redis: turn them on with [`RedisStore::with_event_log`], follow them
/// with [`SessionStore::events`](tether_core::SessionStore::events).
///
/// **How.** Every script that changes a session also appends what happened to a stream (a
/// Redis Stream) and keeps the session in a deadline set, atomically, in the same round trip:
/// an event is never lost between the change and its report. A consumer (each call of
/// `events`) reads the streams as a member of a consumer group, and looks for sessions past
/// their deadline every second, reporting each as expired exactly once (a script takes it out
/// of the deadline set as it reports it).
///
/// **Delivery: at least once per group, across restarts.** Every group sees every event; within
/// a group each event goes to one consumer. An event is acknowledged when its consumer asks for
/// the next one, so an event being handled when the process dies is handed to another consumer
/// of the group (or to the same service after its restart) 30 seconds later: it may come twice,
/// never not at all, as long as it is younger than the retention (events older than that are
/// trimmed, read or not). An expiry is reported within about 1.1 seconds of the deadline while
/// a consumer runs, and when one starts otherwise. Order holds per shard, not across shards.
///
/// **Layout.** With an event log, session keys carry a shard as a hash tag,
/// `<prefix>:{<shard>}:<id>`, and each shard has `<prefix>:{<shard>}:events` (the stream) and
/// `<prefix>:{<shard>}:deadlines` (a sorted set). On Redis Cluster the hash tag puts a session,
/// its shard's stream and its deadline set in one slot, which is what lets one script write all
/// three; the shards (16 by default) spread sessions over as many slots, so use at least a few
/// per master. Standalone Redis and Sentinel use one shard. Turning the log on or off, or
/// changing the shards, moves every session key: do it with an empty store.
///
/// # Example
///
/// ```no_run
/// use futures_util::StreamExt as _;
/// use tether_core::SessionStore as _;
/// use tether_redis::{EventLog, RedisStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379")
///     .await?
///     .with_event_log(EventLog::new().with_group("audit"));
/// let mut events = store.events().await?;
/// while let Some(event) = events.next().await {
///     println!("{:?}", event?);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct EventLog {
    group: String,
    retention: Duration,
    shards: Option<u8>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    /// An event log read by the group [`DEFAULT_EVENT_GROUP`], keeping events for
    /// [`DEFAULT_EVENT_RETENTION`].
    pub fn new() -> Self {
        Self {
            group: DEFAULT_EVENT_GROUP.to_owned(),
            retention: DEFAULT_EVENT_RETENTION,
            shards: None,
        }
    }

    /// The consumer group `events` reads as: give each service that follows the events its own
    /// group, and every instance of a service the same one.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// How long events stay in the streams, read or not (default one day). A group that falls
    /// further behind than this misses the oldest.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The number of shards on Redis Cluster (default [`DEFAULT_CLUSTER_SHARDS`]), rounded
    /// down to a power of two between 1 and 64. Ignored by standalone Redis and Sentinel.
    pub fn with_shards(mut self, shards: u8) -> Self {
        let shards = shards.clamp(1, 64);
        self.shards = Some(1 << (7 - shards.leading_zeros().min(7)));
        self
    }
}

/// An event log as a store uses it: its keys and settings.
#[derive(Debug)]
pub(crate) struct Log {
    prefix: Arc<str>,
    group: String,
    retention: Duration,
    shards: u8,
}

impl Log {
    pub(crate) fn new(prefix: Arc<str>, settings: EventLog, cluster: bool) -> Self {
        let shards = if cluster {
            settings.shards.unwrap_or(DEFAULT_CLUSTER_SHARDS)
        } else {
            1
        };
        Self {
            prefix,
            group: settings.group,
            retention: settings.retention,
            shards,
        }
    }

    pub(crate) fn shard(&self, id: &Id) -> u8 {
        id.as_bytes()[0] % self.shards
    }

    pub(crate) fn session_key(&self, id: &Id) -> String {
        format!("{}:{{{}}}:{id}", self.prefix, self.shard(id))
    }

    /// The start of every session key of `shard`.
    pub(crate) fn sessions_prefix(&self, shard: u8) -> String {
        format!("{}:{{{shard}}}:", self.prefix)
    }

    pub(crate) fn stream(&self, shard: u8) -> String {
        format!("{}:{{{shard}}}:events", self.prefix)
    }

    pub(crate) fn deadlines(&self, shard: u8) -> String {
        format!("{}:{{{shard}}}:deadlines", self.prefix)
    }

    /// The oldest stream id to keep at `now`.
    pub(crate) fn min_id(&self, now: Timestamp) -> String {
        let oldest = now
            .as_millis()
            .saturating_sub(u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX));
        format!("{oldest}-0")
    }
}

/// A stream entry as an event; `None` for an entry this version did not write.
fn event(entry: &StreamId) -> Option<SessionEvent> {
    let text = |field: &str| -> Option<String> {
        match entry.map.get(field)? {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
            Value::SimpleString(text) => Some(text.clone()),
            _ => None,
        }
    };
    let handle: SessionHandle = text("h")?.parse().ok()?;
    let at = Timestamp::from_millis(text("t")?.parse().ok()?);
    let principal = match text("p") {
        Some(principal) => Some(Principal::new(principal).ok()?),
        None => None,
    };
    let kind = match text("k")?.as_str() {
        "created" => EventKind::Created,
        "cycled" => EventKind::Cycled {
            from: text("f")?.parse().ok()?,
        },
        "principal_set" => EventKind::PrincipalSet,
        "deleted" => EventKind::Deleted,
        "revoked" => EventKind::Revoked,
        "expired" => EventKind::Expired,
        _ => return None,
    };
    Some(SessionEvent::new(kind, handle, principal, at))
}

/// One consumer's state between two items of its stream.
struct Consumer {
    store: RedisStore,
    log: Arc<Log>,
    name: String,
    /// Read, not yet handed out: stream key, entry id, the entry.
    buffer: VecDeque<(String, StreamId)>,
    /// Handed out, to acknowledge when the next one is asked for.
    unacknowledged: Option<(String, String)>,
    next_sweep: Instant,
    next_claim: Instant,
}

impl Consumer {
    fn log(&self) -> &Log {
        &self.log
    }

    async fn next(&mut self) -> Result<SessionEvent, Error> {
        if let Some((stream, id)) = self.unacknowledged.take() {
            self.acknowledge(&stream, &id).await;
        }
        loop {
            if let Some((stream, entry)) = self.buffer.pop_front() {
                match event(&entry) {
                    Some(event) => {
                        self.unacknowledged = Some((stream, entry.id));
                        return Ok(event);
                    }
                    None => {
                        // Acknowledged, so it is not handed out again and again.
                        self.acknowledge(&stream, &entry.id).await;
                        tracing::warn!(
                            stream,
                            entry = entry.id,
                            "a session event stream holds an entry that is not an event; skipped"
                        );
                        return Err(Error::Corrupt(
                            format!("stream {stream} entry {} is not a session event", entry.id)
                                .into(),
                        ));
                    }
                }
            }
            let now = Instant::now();
            if now >= self.next_sweep {
                self.next_sweep = now + SWEEP_EVERY;
                self.sweep().await?;
            }
            if now >= self.next_claim {
                self.next_claim = now + CLAIM_EVERY;
                self.claim().await?;
            }
            self.read().await?;
            if self.buffer.is_empty() {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    async fn acknowledge(&self, stream: &str, id: &str) {
        let mut command = redis::cmd("XACK");
        command.arg(stream).arg(&self.log().group).arg(id);
        if let Err(error) = self.store.query::<i64>("events", command).await {
            tracing::warn!(error = %tether_core::error_chain(&error), "could not acknowledge a session event; it will be delivered again");
        }
    }

    async fn read(&mut self) -> Result<(), Error> {
        let log = self.log();
        let reads = (0..log.shards).map(|shard| {
            let mut command = redis::cmd("XREADGROUP");
            command
                .arg("GROUP")
                .arg(&log.group)
                .arg(&self.name)
                .arg("COUNT")
                .arg(BATCH)
                .arg("STREAMS")
                .arg(log.stream(shard))
                .arg(">");
            self.store
                .query::<Option<StreamReadReply>>("events", command)
        });
        for reply in join_all(reads).await {
            for key in reply?.map(|r| r.keys).unwrap_or_default() {
                self.buffer
                    .extend(key.ids.into_iter().map(|entry| (key.key.clone(), entry)));
            }
        }
        Ok(())
    }

    /// Takes over events other consumers of the group read long ago and never acknowledged.
    async fn claim(&mut self) -> Result<(), Error> {
        let log = Arc::clone(&self.log);
        let (store, name) = (&self.store, &self.name);
        let claims = (0..log.shards).map(|shard| {
            let log = &log;
            let mut command = redis::cmd("XAUTOCLAIM");
            command
                .arg(log.stream(shard))
                .arg(&log.group)
                .arg(name)
                .arg(u64::try_from(CLAIM_AFTER.as_millis()).unwrap_or(u64::MAX))
                .arg("0-0")
                .arg("COUNT")
                .arg(BATCH);
            async move {
                let reply = store.query::<StreamAutoClaimReply>("events", command).await;
                (log.stream(shard), reply)
            }
        });
        let replies = join_all(claims).await;
        for (stream, reply) in replies {
            let claimed = reply?.claimed;
            if !claimed.is_empty() {
                tracing::info!(
                    stream,
                    events = claimed.len(),
                    "took over session events another consumer did not acknowledge"
                );
            }
            self.buffer
                .extend(claimed.into_iter().map(|entry| (stream.clone(), entry)));
        }
        Ok(())
    }

    /// Reports the sessions past their deadline, in every shard.
    async fn sweep(&self) -> Result<(), Error> {
        let log = self.log();
        let now = Timestamp::now();
        let sweeps = (0..log.shards).map(|shard| {
            let stream = log.stream(shard);
            let mut call = SWEEP.call_keys(vec![stream.clone(), stream, log.deadlines(shard)]);
            call.arg("1")
                .arg(log.min_id(now))
                .arg(now.as_millis())
                .arg(log.sessions_prefix(shard))
                .arg(BATCH);
            self.store.script::<i64>(call)
        });
        for swept in join_all(sweeps).await {
            swept?;
        }
        Ok(())
    }
}

impl RedisStore {
    /// A consumer of the event log, as the group of its settings; creates the group (reading
    /// from the streams' ends) if it does not exist.
    pub(crate) async fn consume_events(&self) -> Result<EventStream, Error> {
        let Some(log) = self.log.clone() else {
            return Err(Error::Unsupported(
                "session events without an event log (RedisStore::with_event_log)",
            ));
        };
        for shard in 0..log.shards {
            let mut command = redis::cmd("XGROUP");
            command
                .arg("CREATE")
                .arg(log.stream(shard))
                .arg(&log.group)
                .arg("$")
                .arg("MKSTREAM");
            match self.query::<Value>("events", command).await {
                Ok(_) => {}
                Err(error) if busy_group(&error) => {}
                Err(error) => return Err(error),
            }
        }
        // A name of its own for each consumer: the group hands an event to one of them.
        let suffix = Id::random()?.to_string();
        let name = format!(
            "{}-{}",
            std::process::id(),
            suffix.get(..8).unwrap_or(&suffix)
        );
        let consumer = Consumer {
            store: self.clone(),
            log,
            name,
            buffer: VecDeque::new(),
            unacknowledged: None,
            next_sweep: Instant::now(),
            next_claim: Instant::now(),
        };
        Ok(Box::pin(stream::unfold(
            consumer,
            |mut consumer| async move {
                let item = consumer.next().await;
                if let Err(error) = &item {
                    tracing::warn!(error = %tether_core::error_chain(error), "reading session events");
                    if error.is_transient() {
                        tokio::time::sleep(POLL).await;
                    }
                }
                Some((item, consumer))
            },
        )))
    }
}

/// Whether Redis refused `XGROUP CREATE` because the group exists.
fn busy_group(error: &Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<redis::RedisError>())
        .and_then(redis::RedisError::code)
        .is_some_and(|code| code == "BUSYGROUP")
}

static SWEEP: std::sync::LazyLock<NamedScript> = std::sync::LazyLock::new(|| {
    NamedScript::new(
        "sweep",
        concat!(
            include_str!("scripts/events.lua"),
            include_str!("scripts/sweep.lua")
        ),
    )
});
