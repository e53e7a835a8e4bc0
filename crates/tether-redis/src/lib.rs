//! A Redis session store for [tether]: every server of an application reads and writes sessions
//! in one Redis, so any server can serve any request.
//!
//! - **One round trip per operation, whatever the topology.** `load` is one `HGETALL`;
//!   `create`, `apply` and `touch` one Lua script each; `delete` one `DEL`. A read of a session
//!   due for renewal renews it in the same round trip (one script) when the store knows it is
//!   due before reading, from when it last read the session (a fixed 512 KiB table per
//!   store); else the renewal takes one more round trip, or rides on the request's write.
//! - **No lost updates.** `apply` writes only the keys a request changed (`HSET`/`HDEL` in a
//!   script that first checks the session exists), so concurrent requests of one session that
//!   change different keys all survive, and a deleted or expired session is never brought back.
//! - **Standalone, Cluster, Sentinel.** Every operation touches one key, so Cluster needs no hash
//!   tags; replicas are never read.
//! - **Atomic updates of one key.** `update_key` (compare-and-set, or an increment counted in
//!   the script) is one script too.
//! - **Survives outages.** Each operation is bounded by a timeout (default 1 s); while Redis is
//!   away operations fail with transient errors (the layer answers 503), and the store reconnects
//!   by itself when Redis is back.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tether_redis::RedisStore;
//! use tether_sessions::{Session, SessionLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let app: Router = Router::new()
//!     .route("/", get(|session: Session| async move {
//!         let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
//!         session.insert("n", &n).await?;
//!         Ok::<_, tether_sessions::Error>(n.to_string())
//!     }))
//!     .layer(SessionLayer::new(store));
//! # let _ = app; Ok(()) }
//! ```
//!
//! # How a session is stored
//!
//! One hash per session, key `<prefix>:<id>` (prefix `tether` by default), expiring at the
//! session's deadline (`PEXPIREAT`):
//!
//! | field | value |
//! |---|---|
//! | `:<key>` | the encoded value of session key `<key>` (MessagePack by default) |
//! | `@m` | `<created>:<deadline>:<idle>:<absolute>`: creation time, deadline (also the key's `PEXPIREAT`) and absolute deadline in Unix milliseconds, idle timeout in milliseconds; `<absolute>` empty when there is none |
//! | `@p` | the principal the session is bound to, if any |
//! | `@s` | `<at>\n<address>\n<device>`: the session's last use as the layer records it (see `tether_sessions::Activity`), if any |
//!
//! Sessions bound to a principal are also listed in a hash per principal,
//! `<prefix>:principal:<principal>`, whose fields are the sessions' handles
//! ([`SessionHandle`](tether_core::SessionHandle), never their ids) and whose values are
//! `<id>:<Unix ms when listed>`. It expires with the latest deadline of its sessions.
//!
//! Each store operation is one round trip touching one key, except `cycle`:
//!
//! | operation | Redis |
//! |---|---|
//! | `load` | `HGETALL` |
//! | `load_renewing` (the session layer's read) | as `load`, then `apply.lua` if the session is due for renewal; when the store knows it is due before reading, `EVALSHA load_renewing.lua` instead: `HGET @m`, the renewal if still due (`HSET @m`, `HSET @s`, `PEXPIREAT`, for a bound session its index entry), `HGETALL` |
//! | `create` | `EVALSHA create.lua`: `EXISTS`, `HSET` all fields, `PEXPIREAT`; for a bound session also its index entry |
//! | `apply`, `touch` | `EVALSHA apply.lua`: `HGET @m` (existence), `HDEL`/`HSET` the delta, `HSET @m`, `PEXPIREAT`; for a bound session also its index entry (and the cap, when binding); `EXISTS` last, so a near cache's connection tracks the key again |
//! | `delete` | `EVALSHA delete.lua`: `DEL`, and the index entry |
//! | `cycle` | `HGETALL` old, `create.lua` under the new id, then `EVALSHA take.lua` (`HGETALL` + `DEL` old) and an `apply` of what changed meanwhile |
//! | `sessions_of` | `EVALSHA list.lua`: the index hash and `HMGET @m @s @p` of each session, dropping entries whose session ended or is another principal's |
//! | `revoke`, `revoke_all` | `EVALSHA revoke.lua`: each named session deleted only if it is bound to the principal |
//!
//! That is standalone Redis and Sentinel, where one script may reach the index hash and the
//! session hashes. On **Redis Cluster** they live in different slots, and no script spans
//! slots, so the store keeps the index from the client: a binding first lists the session
//! (`EVALSHA bind.lua` on the index hash, one more round trip), so the index never misses a
//! bound session; `sessions_of` is one `HGETALL` of the index and one `HMGET` per session (sent
//! together); `revoke` checks the principal on the session hash itself (`revoke_session.lua`)
//! before deleting it. Entries whose session ended are dropped when listed, five minutes after
//! they were written (a session may still be on its way). On Cluster the index hash lasts until
//! the latest absolute deadline of its sessions, and a write to a bound session without an
//! absolute deadline costs one more round trip to extend it.
//!
//! The prefixes keep session keys (any string, the empty one included) apart from metadata. The
//! metadata is one field because every field costs a reply element on each `HGETALL`, and
//! redis-rs spends most of a read's client-side instructions parsing reply elements.
//!
//! A hash that does not have this shape (or a key of another type) loads as
//! [`tether_core::Error::Corrupt`]; the layer logs it and starts a new session.
//!
//! # Near cache
//!
//! [`RedisStoreBuilder::with_near_cache`] keeps recently read sessions in the process: a read
//! of one costs no round trip. Redis keeps the copies coherent with server-assisted
//! client-side caching (RESP3, `CLIENT TRACKING`): it pushes the key of every write to a
//! session the connection read, and the copy is dropped as the push is read. A write through
//! this store updates its own copy (an `apply` or `update_key` made on top of it) or drops it
//! before it returns (read-your-writes), so a read-modify-write request is one round trip; a
//! read that raced a write never leaves a stale copy behind; a lost connection, a flushed
//! database or a failed heartbeat drops every copy. It is built on moka and redis-rs's push
//! channel rather than redis-rs's own `cache-aio`, which stores a read's answer after the
//! reply, where a racing invalidation is already gone, and gives no read-your-writes. One
//! server, or the master Sentinel names (a failover drops every copy); Redis Cluster connects
//! without it, with a warning.
//!
//! ```no_run
//! # async fn run() -> Result<(), tether_redis::Error> {
//! let store = tether_redis::RedisStore::builder("redis://127.0.0.1:6379")
//!     .with_near_cache(100_000)
//!     .connect()
//!     .await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! # Authentication and TLS
//!
//! A user and password in the URL (`redis://user:secret@host:6379`) authenticate with Redis ACLs;
//! no feature is needed. Give the user only what the store runs (the scripts run with the
//! user's permissions, so their commands count too), on its own key prefix:
//!
//! ```text
//! ACL SETUSER app on >secret ~tether:* +hgetall +del +evalsha +eval +script|load +exists +hget +hset +hdel +hkeys +hmget +hlen +pexpireat +pexpiretime
//! ```
//!
//! The test suite runs the store as exactly this user. `CONFIG` is deliberately not in it (it
//! also reads secrets such as `masterauth`), so the eviction check below is skipped for it.
//! With the `tls` feature, `rediss://` URLs connect over TLS (rustls, webpki roots, or your own
//! CA with `RedisStoreBuilder::with_root_certificate`). The feature selects rustls's `ring`
//! crypto provider; if your application enables another provider as well, rustls cannot choose,
//! and you install one at start-up with `rustls::crypto::CryptoProvider::install_default`.
//!
//! # Memory: use `maxmemory-policy noeviction`
//!
//! Every session hash has a TTL, so any evicting policy (`allkeys-*` and `volatile-*` alike)
//! may delete live sessions when Redis reaches `maxmemory`, logging users out without an error
//! anywhere. With `noeviction`, Redis refuses writes instead: the layer answers 503 with the
//! cause logged, and no session is lost. [`RedisStoreBuilder::connect`] reads the policy once
//! (`CONFIG GET`, on every master of a Cluster) and logs one warning when it can evict; when
//! Redis refuses `CONFIG GET`, the check is skipped with a debug message. `docs/operations.md`
//! in the repository explains the policies and the warning.
//!
//! # Changing a session's id
//!
//! `cycle` copies the session to the new id (create-if-absent), then reads and deletes the old
//! id in one script, so a late write to the old id finds nothing; writes that landed in between
//! are applied to the new id. Three round trips, one key each, so Cluster needs no hash tags. If
//! a step fails (Redis over `maxmemory`, a failover), the cycle fails and the session stays
//! under the old id.
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `cluster` | `RedisStore::cluster_builder`, `RedisStore::from_cluster_connection` |
//! | `sentinel` | `RedisStore::sentinel_builder`, `RedisStore::from_sentinel_client` |
//! | `tls` | `rediss://` URLs (rustls with webpki roots or a given CA, `ring` provider) |
//!
//! Redis 7.0 or later. Nothing newer than 7.0 is used.
//!
//! [tether]: https://github.com/tether-rs/tether
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), forbid(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod builder;
mod connection;
mod error;
mod events;
mod eviction;
mod index;
mod layout;
mod near_cache;
mod reconnect;
mod store;
mod telemetry;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets; not an API.

    /// Parses `data` as a RESP reply and loads it as a stored session: a record, nothing, or
    /// `Corrupt`; panics on any other error kind.
    pub fn decode_hash(data: &[u8]) {
        if let Ok(value) = redis::parse_redis_value(data)
            && let Err(e) = crate::layout::decode(tether_core::Id::from_bytes([1; 16]), value)
        {
            assert_eq!(e.kind(), tether_core::ErrorKind::Corrupt);
        }
    }
}

pub use builder::RedisStoreBuilder;
pub use error::Error;
pub use events::{DEFAULT_CLUSTER_SHARDS, DEFAULT_EVENT_GROUP, DEFAULT_EVENT_RETENTION, EventLog};
pub use near_cache::{DEFAULT_NEAR_CACHE_HEARTBEAT, NearCacheStats};
pub use store::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisStore};

/// The redis-rs crate, for building connections to hand to the store.
pub use redis;
