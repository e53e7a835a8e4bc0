//! The Redis session store.

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind, Value};
use tether_core::{
    Applied, Changes, Created, Cycled, Error, Expiry, Id, KeyUpdate, KeyUpdated, Loaded, Principal,
    Record, Renewal, RenewalHints, Revoked, SessionHandle, SessionInfo, SessionStore, Timestamp,
};

use crate::connection::{Connection, Handle};
use crate::error::from_redis;
use crate::events::{EventLog, Log};
use crate::index::IndexKeys;
use crate::layout;
use crate::near_cache::{NearCache, NearCacheStats, PendingWipe, PendingWrite};
use crate::telemetry;

/// Default prefix of session keys: sessions live under `tether:<id>`.
pub const DEFAULT_PREFIX: &str = "tether";
/// Default bound on one store operation, connecting included.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// A Lua script the store runs, with the name its metrics carry.
pub(crate) struct NamedScript {
    name: &'static str,
    script: Script,
}

impl NamedScript {
    pub(crate) fn new(name: &'static str, code: &str) -> Self {
        Self {
            name,
            script: Script::new(code),
        }
    }

    /// `EVALSHA` of the script on the key `key`; arguments follow.
    pub(crate) fn call(&self, key: String) -> ScriptCall<'_> {
        self.call_keys(vec![key])
    }

    /// `EVALSHA` of the script on `keys`; arguments follow.
    pub(crate) fn call_keys(&self, keys: Vec<String>) -> ScriptCall<'_> {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.script.get_hash())
            .arg(keys.len())
            .arg(keys);
        ScriptCall {
            script: self,
            command,
        }
    }
}

/// One invocation of a [`NamedScript`].
pub(crate) struct ScriptCall<'a> {
    script: &'a NamedScript,
    command: Cmd,
}

impl ScriptCall<'_> {
    pub(crate) fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        self.command.arg(arg);
        self
    }
}

static CREATE: LazyLock<NamedScript> = LazyLock::new(|| {
    NamedScript::new(
        "create",
        concat!(
            include_str!("scripts/events.lua"),
            include_str!("scripts/index.lua"),
            include_str!("scripts/cap.lua"),
            include_str!("scripts/create.lua")
        ),
    )
});
static APPLY: LazyLock<NamedScript> = LazyLock::new(|| {
    NamedScript::new(
        "apply",
        concat!(
            include_str!("scripts/events.lua"),
            include_str!("scripts/index.lua"),
            include_str!("scripts/cap.lua"),
            include_str!("scripts/apply.lua")
        ),
    )
});
static LOAD_RENEWING: LazyLock<NamedScript> = LazyLock::new(|| {
    NamedScript::new(
        "load_renewing",
        concat!(
            include_str!("scripts/events.lua"),
            include_str!("scripts/index.lua"),
            include_str!("scripts/load_renewing.lua")
        ),
    )
});
static TAKE: LazyLock<NamedScript> = LazyLock::new(|| {
    NamedScript::new(
        "take",
        concat!(
            include_str!("scripts/events.lua"),
            include_str!("scripts/take.lua")
        ),
    )
});
static DELETE: LazyLock<NamedScript> = LazyLock::new(|| {
    NamedScript::new(
        "delete",
        concat!(
            include_str!("scripts/events.lua"),
            include_str!("scripts/delete.lua")
        ),
    )
});

static UPDATE_KEY: LazyLock<NamedScript> =
    LazyLock::new(|| NamedScript::new("update_key", include_str!("scripts/update_key.lua")));

/// A [`SessionStore`] in Redis: every server of an application sees every session.
///
/// One hash per session under `<prefix>:<id>` (see the crate docs for its fields). Every
/// operation is one round trip: `load` is one `HGETALL`; `create` and `apply` (which also
/// serves `touch`) are one Lua script each (`EVALSHA`, reloaded after a `NOSCRIPT`) that checks existence, writes and sets
/// `PEXPIREAT` atomically; `delete` is one `DEL`. Only the keys a request changed are sent, so
/// concurrent requests lose nothing. Each operation touches one key, so Redis Cluster needs no
/// hash tags; `cycle` copies a session to the new id, then retires the old id (three round trips,
/// never a cross-slot command), so a failure at any step leaves the session under one of them.
///
/// Failures map onto [`tether_core::Error`]: a lost or refused connection, `LOADING`, `TRYAGAIN`,
/// `CLUSTERDOWN`, `MASTERDOWN`, `READONLY` and timeouts are transient (the layer answers 503,
/// and the next request tries again); a key of another type is [`Error::Corrupt`]; anything
/// else is [`Error::Backend`]. Each operation is bounded by the command timeout.
///
/// Cloning is cheap: clones share the connection.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use tether_redis::RedisStore;
///
/// # async fn run() -> Result<(), tether_redis::Error> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .with_prefix("shop")
///     .with_command_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    prefix: Arc<str>,
    timeout: Duration,
    pub(crate) index: IndexKeys,
    pub(crate) log: Option<Arc<Log>>,
    near: Option<Arc<NearCache>>,
    hints: Arc<RenewalHints>,
}

impl RedisStore {
    pub(crate) fn new(connection: Connection, prefix: &str, timeout: Duration) -> Self {
        let in_scripts = !connection.is_cluster();
        Self {
            connection,
            prefix: Arc::from(prefix),
            timeout,
            index: IndexKeys::new(&format!("{prefix}:"), prefix, in_scripts),
            log: None,
            near: None,
            hints: Arc::new(RenewalHints::new()),
        }
    }

    /// Keeps session events in Redis, for [`SessionStore::events`] (off by default): see
    /// [`EventLog`] for how, the delivery guarantee, and the key layout it brings. Every
    /// server of an application must agree on it.
    #[must_use]
    pub fn with_event_log(mut self, settings: EventLog) -> Self {
        let log = Log::new(
            Arc::clone(&self.prefix),
            settings,
            self.connection.is_cluster(),
        );
        self.index = IndexKeys::new(
            &log.sessions_prefix(0),
            &self.prefix,
            self.index.in_scripts(),
        )
        .with_cap(self.index.cap);
        self.log = Some(Arc::new(log));
        self
    }

    /// A call of `script` that changes session `id` (events.lua's layout): the session's key,
    /// its shard's stream and deadline set (the session key again without an event log), then
    /// `extra` keys; the log's arguments.
    pub(crate) fn logged_call<'a>(
        &self,
        script: &'a NamedScript,
        id: &Id,
        now: Timestamp,
        extra: Option<String>,
    ) -> ScriptCall<'a> {
        let session = self.key(id);
        let shard = self.log.as_ref().map(|log| log.shard(id));
        self.log_call(script, session, shard, now, extra)
    }

    /// A call of `script` with events.lua's layout: `first` key, then the stream and deadline
    /// set of `shard` (`first` again without an event log), then `extra`.
    pub(crate) fn log_call<'a>(
        &self,
        script: &'a NamedScript,
        first: String,
        shard: Option<u8>,
        now: Timestamp,
        extra: Option<String>,
    ) -> ScriptCall<'a> {
        let (on, stream, deadlines, min_id) = match (&self.log, shard) {
            (Some(log), Some(shard)) => (
                "1",
                log.stream(shard),
                log.deadlines(shard),
                log.min_id(now),
            ),
            _ => ("0", first.clone(), first.clone(), String::new()),
        };
        let mut keys = vec![first, stream, deadlines];
        keys.extend(extra);
        let mut call = script.call_keys(keys);
        call.arg(on).arg(min_id).arg(now.as_millis());
        call
    }

    /// Bounds the sessions of one principal: binding one more revokes the oldest (by creation)
    /// of the others. No bound by default. In standalone Redis and behind Sentinel this happens
    /// inside the binding write's script; on Redis Cluster the store does it after the write,
    /// with a few more round trips (only when a binding passes the cap).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tether_redis::Error> {
    /// let store = tether_redis::RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_max_sessions_per_principal(std::num::NonZeroUsize::new(10));
    /// # let _ = store; Ok(()) }
    /// ```
    #[must_use]
    pub fn with_max_sessions_per_principal(mut self, max: Option<NonZeroUsize>) -> Self {
        self.index.cap = max;
        self
    }

    /// The Redis key of session `id`: `<prefix>:<id>`, or `<prefix>:{<shard>}:<id>` with an
    /// event log.
    pub fn key(&self, id: &Id) -> String {
        match &self.log {
            Some(log) => log.session_key(id),
            None => format!("{}:{id}", self.prefix),
        }
    }

    /// The prefix of session keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What the near cache did so far ([`RedisStoreBuilder::with_near_cache`]); `None` without
    /// one.
    ///
    /// [`RedisStoreBuilder::with_near_cache`]: crate::RedisStoreBuilder::with_near_cache
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.near.as_ref().map(|near| near.stats())
    }

    pub(crate) fn with_near(mut self, near: Arc<NearCache>) -> Self {
        self.near = Some(near);
        self
    }

    /// Starts a write that may end sessions this store cannot name: the near cache drops
    /// every copy when the guard goes.
    fn wipe_guard(&self) -> Option<PendingWipe<'_>> {
        self.near.as_deref().map(NearCache::begin_wipe)
    }

    /// Starts a write to `id`: the near cache drops its copy when the guard goes, whatever came
    /// of the write (dropped half-way included), unless the write brings it up to date.
    fn write_guard(&self, id: &Id) -> Option<PendingWrite<'_>> {
        self.near.as_deref().map(|near| near.begin_write(id))
    }

    /// `load` through the near cache: a copy when one may be served, else
    /// [`fill_near`](Self::fill_near).
    async fn load_near(&self, near: &NearCache, id: &Id) -> Result<Option<Record>, Error> {
        match near.get(id) {
            Some(record) => Ok(Some(record)),
            None => self.fill_near(near, id).await,
        }
    }

    /// `HGETALL` on the near cache's connection, which tracks every key it reads, keeping
    /// what it read as the near cache's copy.
    async fn fill_near(&self, near: &NearCache, id: &Id) -> Result<Option<Record>, Error> {
        let ticket = near.ticket(id);
        let mut read = redis::cmd("HGETALL");
        read.arg(self.key(id));
        let reply: Value = self
            .run(|mut handle| async move {
                telemetry::round_trip("load");
                let result = read.query_async(&mut handle).await;
                (handle, result)
            })
            .await?;
        let record = layout::decode(*id, reply)?;
        if let Some(record) = &record {
            near.fill(ticket, record);
        }
        Ok(record)
    }

    /// One `HGETALL`, not through the near cache.
    async fn read(&self, id: &Id) -> Result<Option<Record>, Error> {
        let mut command = redis::cmd("HGETALL");
        command.arg(self.key(id));
        let reply: Value = self.query("load", command).await?;
        layout::decode(*id, reply)
    }

    /// One script that reads session `id` and renews it if it is due (`load_renewing.lua`);
    /// the near cache's copy, if any, is brought up to date from its reply.
    async fn read_and_renew(&self, id: &Id, renewal: &Renewal) -> Result<Option<Loaded>, Error> {
        let now = renewal.now();
        let mut call = self.logged_call(&LOAD_RENEWING, id, now, None);
        call.arg(renewal.threshold().to_string());
        for arg in self.index.session_args(id) {
            call.arg(arg);
        }
        call.arg(renewal.seen().map(layout::seen_value).unwrap_or_default());
        // The script may write: the copy goes while it runs, and comes back from its reply.
        let written = self.write_guard(id);
        let (renewed, record) = layout::renewing_reply(*id, self.script::<Value>(call).await?)?;
        let Some(record) = record.filter(|record| !record.expiry.is_expired(now)) else {
            return Ok(None);
        };
        if let Some(written) = written {
            written.read_back(record.clone());
        }
        if renewed && !self.index.in_scripts() {
            let principal = record.principal.clone();
            self.follow_binding(
                id,
                &Changes::new(),
                &record.expiry,
                now,
                principal.clone(),
                principal,
            )
            .await;
        }
        Ok(Some(Loaded::new(record, renewed)))
    }

    /// One `PING`: the near cache's heartbeat.
    pub(crate) async fn ping(&self) -> Result<(), Error> {
        self.query::<()>("ping", redis::cmd("PING")).await
    }

    /// The bound on one operation.
    pub fn command_timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one operation on a connection, bounded by the command timeout, and sorts its error.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = (Handle, RedisResult<T>)>,
    {
        let attempt = async {
            let handle = self.connection.get().await.inspect_err(telemetry::failed)?;
            let (handle, result) = op(handle).await;
            if let Err(error) = &result {
                telemetry::failed(error);
                handle.failed(error);
            }
            result
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result.map_err(|e| from_redis(e, self.timeout)),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// Sends `command` for `operation`: one round trip.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: Cmd,
    ) -> Result<T, Error> {
        self.run(|mut handle| async move {
            telemetry::round_trip(operation);
            let result = command.query_async(&mut handle).await;
            (handle, result)
        })
        .await
    }

    /// Runs a script: one `EVALSHA`, and only when Redis does not know the script (restarted,
    /// failed over, flushed), a `SCRIPT LOAD` and the `EVALSHA` again.
    pub(crate) async fn script<T: redis::FromRedisValue>(
        &self,
        call: ScriptCall<'_>,
    ) -> Result<T, Error> {
        let ScriptCall { script, command } = call;
        self.run(|mut handle| async move {
            telemetry::round_trip(script.name);
            let result = command.query_async(&mut handle).await;
            let result = match result {
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    telemetry::script_loaded(script.name);
                    telemetry::round_trip(script.name);
                    match script.script.load_async(&mut handle).await {
                        Ok(_) => {
                            telemetry::round_trip(script.name);
                            command.query_async(&mut handle).await
                        }
                        Err(error) => Err(error),
                    }
                }
                result => result,
            };
            (handle, result)
        })
        .await
    }

    /// Runs one of the scripts that answer 1 (done) or 0 (the key's state forbade it).
    async fn script_flag(&self, call: ScriptCall<'_>) -> Result<bool, Error> {
        self.script::<i64>(call).await.map(|flag| flag == 1)
    }

    /// Reads and deletes session `id` in one step. The outer error is the command's (the key
    /// may still be there); the inner result is the decoded reply, `None` when there was no
    /// session, read after the delete happened (so a corrupt hash is gone too).
    async fn take(&self, id: &Id) -> Result<Result<Option<Record>, Error>, Error> {
        let mut call = self.logged_call(&TAKE, id, Timestamp::now(), None);
        for arg in self.index.session_args(id) {
            call.arg(arg);
        }
        let written = self.write_guard(id);
        let reply = self.script(call).await;
        drop(written);
        let reply = reply?;
        Ok(layout::decode(*id, reply))
    }

    /// Deletes the copy a failed cycle made under `new`, which no client knows; if that fails
    /// too, it expires at the session's deadline.
    async fn discard_copy(&self, new: &Id) {
        if let Err(error) = self.delete(new).await {
            tracing::warn!(
                error = %tether_core::error_chain(&error),
                "could not delete the copy of a session that a failed cycle left under an unused id; it expires with the session"
            );
        }
    }

    /// Brings the copy under `new`, made from `copied`, up to date with `last`, what the old id
    /// held when it was retired: requests that wrote to the old id between the copy and the
    /// retirement were told their write landed.
    async fn catch_up(&self, new: &Id, copied: &Record, last: &Record) -> Result<Cycled, Error> {
        let mut changes = Changes::new();
        for (key, value) in &last.data {
            if copied.data.get(key) != Some(value) {
                changes.insert(key.clone(), value.clone());
            }
        }
        for key in copied.data.keys() {
            if !last.data.contains_key(key) {
                changes.remove(key.clone());
            }
        }
        Ok(match self.apply(new, &changes, &last.expiry).await? {
            Applied::Applied => Cycled::Moved,
            // Nobody else knows the new id: it expired with the session.
            Applied::Missing => Cycled::Missing,
        })
    }
}

/// Whether Redis answered `error` with an error reply, so the command did not take effect.
/// A lost connection or a timeout leaves that open.
fn refused_by_redis(error: &Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<redis::RedisError>())
        .is_some_and(|error| error.code().is_some())
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        match &self.near {
            Some(near) => self.load_near(near, id).await,
            None => self.read(id).await,
        }
    }

    /// A read is one `HGETALL` (or none, from the near cache), as for `load`; a session due
    /// for renewal is left to the caller to renew, with the request's write or a `touch`. When
    /// this store knows the session is due before reading it (from when it last read it), one
    /// script reads and renews it instead, so a read-only request stays one round trip. A
    /// script costs Redis about 17 times the CPU of an `HGETALL`, so it is sent only then.
    async fn load_renewing(&self, id: &Id, renewal: &Renewal) -> Result<Option<Loaded>, Error> {
        let copy = self.near.as_deref().and_then(|near| near.get(id));
        if copy.is_some() {
            return Ok(renewal.unrenewed(copy));
        }
        let loaded = if self.hints.due(id, renewal) {
            self.read_and_renew(id, renewal).await?
        } else {
            let record = match &self.near {
                Some(near) => self.fill_near(near, id).await?,
                None => self.read(id).await?,
            };
            renewal.unrenewed(record)
        };
        if let Some(loaded) = &loaded {
            self.hints.note(id, &loaded.record.expiry, renewal);
        }
        Ok(loaded)
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.create_reporting(record, None).await
    }

    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        let now = Timestamp::now();
        let cluster = !self.index.in_scripts();
        if let Some(principal) = changes.principal().filter(|_| cluster) {
            self.list_in_index(principal, id, now, expiry).await?;
        }
        let mut call = self.logged_call(&APPLY, id, now, None);
        for arg in layout::apply_args(changes, expiry, self.index.apply_args(id, expiry)) {
            call.arg(arg);
        }
        // A binding may revoke the principal's oldest sessions, unnamed here.
        let wiped = changes.principal().and_then(|_| self.wipe_guard());
        let written = self.write_guard(id);
        let reply = self.script::<Value>(call).await;
        drop(wiped);
        let (applied, before, after) = layout::applied_reply(reply?)?;
        if !applied {
            return Ok(Applied::Missing);
        }
        if let Some(written) = written {
            written.applied(|copy| layout::as_applied(copy, changes, expiry));
        }
        if cluster {
            self.follow_binding(id, changes, expiry, now, before, after)
                .await;
        }
        Ok(Applied::Applied)
    }

    /// One script: the existence check, the comparison or the sum, and the write, atomically.
    /// Counters are read and written in the script (MessagePack or JSON integers).
    async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        let Some(args) = layout::update_key_args(key, update) else {
            return Err(Error::Unsupported("this kind of key update"));
        };
        let mut call = UPDATE_KEY.call(self.key(id));
        for arg in args {
            call.arg(arg);
        }
        let written = self.write_guard(id);
        let reply = self.script::<Value>(call).await?;
        let by = match update {
            KeyUpdate::Increment { by, .. } => *by,
            _ => 0,
        };
        let updated = layout::key_updated_reply(key, by, reply)?;
        if let (Some(written), KeyUpdated::Updated(value)) = (written, &updated) {
            written.applied(|copy| {
                let mut record = copy.clone();
                match value {
                    Some(value) => record.data.insert(key.to_owned(), value.clone()),
                    None => record.data.remove(key),
                };
                Some(record)
            });
        }
        Ok(updated)
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        let mut call = self.logged_call(&DELETE, id, Timestamp::now(), None);
        for arg in self.index.session_args(id) {
            call.arg(arg);
        }
        let _written = self.write_guard(id);
        self.script::<i64>(call).await.map(drop)
    }

    /// Copies the session to the new id, then retires the old id: the session exists under one
    /// of the two ids after every step, so a step Redis refuses or a failover interrupts loses
    /// nothing (the ids may live in different Cluster slots, so no single command spans both).
    ///
    /// 1. `HGETALL` of the old id.
    /// 2. `create` of the copy under the new id (create-if-absent). A failure here leaves the
    ///    old id as it was.
    /// 3. Read and delete the old id in one script, so a late write to it finds nothing. If this
    ///    fails the cycle fails and the client keeps the old id; the copy is deleted when Redis
    ///    refused the step (the old id still holds the session), and otherwise left to expire,
    ///    since the old id may be gone.
    /// 4. Only if requests wrote to the old id between steps 1 and 3: apply what they changed to
    ///    the new id. The old id is gone by then, so a failure is logged and the cycle still
    ///    reports `Moved` (the session lives under the new id without those writes).
    ///
    /// A session deleted or expired before step 3 stays deleted: the copy is removed and the
    /// answer is `Missing`.
    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        let Some(copied) = self.load(old).await? else {
            return Ok(Cycled::Missing);
        };
        let mut copy = copied.clone();
        copy.id = *new;
        if self.create_reporting(&copy, Some(old)).await? == Created::IdTaken {
            return Ok(Cycled::IdTaken);
        }
        let last = match self.take(old).await {
            Ok(last) => last,
            Err(error) => {
                if refused_by_redis(&error) {
                    self.discard_copy(new).await;
                }
                tracing::warn!(
                    error = %tether_core::error_chain(&error),
                    "could not retire the old id of a session being cycled; it keeps the session"
                );
                return Err(error);
            }
        };
        let last = match last {
            Ok(Some(last)) => last,
            // Deleted or expired meanwhile (a logout in another tab): deletion is final.
            Ok(None) => {
                self.discard_copy(new).await;
                return Ok(Cycled::Missing);
            }
            Err(corrupt) => {
                self.discard_copy(new).await;
                return Err(corrupt);
            }
        };
        if last.data == copied.data && last.expiry == copied.expiry {
            return Ok(Cycled::Moved);
        }
        match self.catch_up(new, &copied, &last).await {
            Ok(cycled) => Ok(cycled),
            Err(error) => {
                tracing::error!(
                    error = %tether_core::error_chain(&error),
                    "a write made to a session while its id was cycled could not be moved to the new id and is lost"
                );
                Ok(Cycled::Moved)
            }
        }
    }

    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>, Error> {
        self.list_sessions(principal).await
    }

    async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        let _wiped = self.wipe_guard();
        self.revoke_one(principal, handle).await
    }

    async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        let _wiped = self.wipe_guard();
        self.revoke_every(principal, keep).await
    }

    /// The event log's events, read as a member of its consumer group; without an event log
    /// ([`RedisStore::with_event_log`]), [`Error::Unsupported`]. See [`EventLog`] for the
    /// delivery guarantee.
    async fn events(&self) -> Result<tether_core::EventStream, Error> {
        self.consume_events().await
    }
}

impl RedisStore {
    /// `create`, reporting the new session as created, or as moved from `cycled_from` (the
    /// copy a `cycle` makes).
    async fn create_reporting(
        &self,
        record: &Record,
        cycled_from: Option<&Id>,
    ) -> Result<Created, Error> {
        let now = Timestamp::now();
        let principal = record.principal.as_ref();
        // Binding past the cap revokes the principal's oldest sessions, unnamed here.
        let _wiped = principal.and_then(|_| self.wipe_guard());
        let mut index_key = None;
        if let Some(principal) = principal {
            if self.index.in_scripts() {
                index_key = Some(self.index.key(principal));
            } else {
                self.list_in_index(principal, &record.id, now, &record.expiry)
                    .await?;
            }
        }
        let mut call = self.logged_call(&CREATE, &record.id, now, index_key);
        call.arg(record.expiry.expires_at().as_millis());
        for arg in self
            .index
            .create_args(&record.id, &record.expiry, principal)
        {
            call.arg(arg);
        }
        match cycled_from {
            Some(old) => call.arg("cycled").arg(SessionHandle::of(old).to_string()),
            None => call.arg("created").arg(""),
        };
        for field in layout::record_fields(record) {
            call.arg(field);
        }
        if !self.script_flag(call).await? {
            return Ok(Created::IdTaken);
        }
        if let Some(principal) = principal.filter(|_| !self.index.in_scripts()) {
            self.enforce_cap(principal, &record.id).await;
        }
        Ok(Created::Created)
    }

    /// After an `apply` on Redis Cluster: takes a rebound session off its former principal's
    /// list, enforces the cap of a binding, and keeps the index of a bound session without an
    /// absolute deadline from expiring before it. Failures are logged, not returned: the write
    /// itself happened, and each step is made again by a later write or listing.
    async fn follow_binding(
        &self,
        id: &Id,
        changes: &Changes,
        expiry: &Expiry,
        now: Timestamp,
        before: Option<Principal>,
        after: Option<Principal>,
    ) {
        if let Some(bound) = changes.principal() {
            if let Some(before) = before.filter(|before| before != bound) {
                self.unlist(&before, id).await;
            }
            self.enforce_cap(bound, id).await;
        } else if let Some(after) = after.filter(|_| expiry.absolute_deadline().is_none())
            && let Err(error) = self.list_in_index(&after, id, now, expiry).await
        {
            tracing::warn!(error = %tether_core::error_chain(&error), "could not extend a principal's index to a session's new deadline; the next write tries again");
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("topology", &self.connection.topology())
            .field("prefix", &self.prefix)
            .field("command_timeout", &self.timeout)
            .finish()
    }
}
