//! The Redis session store.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisResult, Script, Value};
use tether_core::{Applied, Changes, Created, Cycled, Error, Expiry, Id, Record, SessionStore};

use crate::connection::{Connection, Handle};
use crate::error::from_redis;
use crate::layout;

/// Default prefix of session keys: sessions live under `tether:<id>`.
pub const DEFAULT_PREFIX: &str = "tether";
/// Default bound on one store operation, connecting included.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/create.lua")));
static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/apply.lua")));
static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/take.lua")));

/// A [`SessionStore`] in Redis: every server of an application sees every session.
///
/// One hash per session under `<prefix>:<id>` (see the crate docs for its fields). Every
/// operation is one round trip: `load` is one `HGETALL`; `create` and `apply` (which also
/// serves `touch`) are one Lua script each (`EVALSHA`, reloaded after a `NOSCRIPT`) that checks existence, writes and sets
/// `PEXPIREAT` atomically; `delete` is one `DEL`. Only the keys a request changed are sent, so
/// concurrent requests lose nothing. Each operation touches one key, so Redis Cluster needs no
/// hash tags; `cycle` moves a session in two steps (take, then create), never a cross-slot command.
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
}

impl RedisStore {
    pub(crate) fn new(connection: Connection, prefix: &str, timeout: Duration) -> Self {
        Self {
            connection,
            prefix: Arc::from(prefix),
            timeout,
        }
    }

    /// The Redis key of session `id`.
    pub fn key(&self, id: &Id) -> String {
        format!("{}:{id}", self.prefix)
    }

    /// The prefix of session keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
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
            let handle = self.connection.get().await?;
            let (handle, result) = op(handle).await;
            if let Err(error) = &result {
                handle.failed(error);
            }
            result
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result.map_err(|e| from_redis(e, self.timeout)),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// Invokes one of the scripts, which all answer 1 (done) or 0 (the key's state forbade it).
    async fn script_flag(&self, invocation: redis::ScriptInvocation<'_>) -> Result<bool, Error> {
        self.run(|mut handle| async move {
            let result: RedisResult<i64> = invocation.invoke_async(&mut handle).await;
            (handle, result)
        })
        .await
        .map(|flag| flag == 1)
    }

    async fn hash_reply(&self, command: redis::Cmd) -> Result<Value, Error> {
        self.run(|mut handle| async move {
            let result = command.query_async(&mut handle).await;
            (handle, result)
        })
        .await
    }

    async fn take(&self, id: &Id) -> Result<Option<Record>, Error> {
        let invocation = TAKE.key(self.key(id));
        let reply = self
            .run(|mut handle| async move {
                let result = invocation.invoke_async(&mut handle).await;
                (handle, result)
            })
            .await?;
        layout::decode(*id, reply)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        let reply = self
            .hash_reply(redis::cmd("HGETALL").arg(self.key(id)).clone())
            .await?;
        layout::decode(*id, reply)
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        let mut invocation = CREATE.key(self.key(&record.id));
        invocation.arg(record.expiry.expires_at().as_millis());
        for field in layout::record_fields(record) {
            invocation.arg(field);
        }
        Ok(if self.script_flag(invocation).await? {
            Created::Created
        } else {
            Created::IdTaken
        })
    }

    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        let mut invocation = APPLY.key(self.key(id));
        for arg in layout::apply_args(changes, expiry) {
            invocation.arg(arg);
        }
        Ok(applied(self.script_flag(invocation).await?))
    }

    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, Error> {
        self.apply(id, &Changes::new(), expiry).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        let command = redis::cmd("DEL").arg(self.key(id)).clone();
        self.run(|mut handle| async move {
            let result: RedisResult<i64> = command.query_async(&mut handle).await;
            (handle, result)
        })
        .await
        .map(drop)
    }

    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        let Some(mut record) = self.take(old).await? else {
            return Ok(Cycled::Missing);
        };
        record.id = *new;
        match self.create(&record).await {
            Ok(Created::Created) => Ok(Cycled::Moved),
            outcome => {
                // Put the session back under its old id: the new id was taken (a 2^-128
                // collision) or the create failed, and the session must not be lost.
                record.id = *old;
                if let Err(restore) = self.create(&record).await {
                    tracing::error!(error = %tether_core::error_chain(&restore), "could not restore a session after a failed cycle");
                }
                outcome.map(|_| Cycled::IdTaken)
            }
        }
    }
}

fn applied(flag: bool) -> Applied {
    if flag {
        Applied::Applied
    } else {
        Applied::Missing
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
