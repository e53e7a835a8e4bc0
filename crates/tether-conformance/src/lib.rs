//! The conformance suite of [tether] session stores: what every
//! [`SessionStore`](tether_core::SessionStore) must do, as tests a store crate runs against its
//! own store. Every store in the tether repository passes it; a third-party store runs the same
//! checks.
//!
//! - [`store_conformance!`] generates the whole suite as `#[tokio::test]`s.
//! - [`checks`] holds the checks themselves, one `async fn` each, to call one by one.
//! - [`Fixture`] is what a test gets: a store, and whatever must stay alive while it runs.
//! - [`redis`] (feature `redis`) starts real Redis servers, clusters and Sentinel setups on free
//!   loopback ports, stopped on drop, for stores that need a server to test against.
//!
//! The suite checks the contract documented on `SessionStore`:
//!
//! | check | rule |
//! |---|---|
//! | [`contract`](checks::contract) | `create` is insert-if-absent; `load`, `apply`, `touch` and `delete` do what the contract says, on known and unknown ids |
//! | [`expiry`](checks::expiry) | a session stops loading at its deadline and cannot be renewed afterwards |
//! | [`deletion_is_final`](checks::deletion_is_final) | a late `apply`, `touch` or `cycle` never brings back a deleted session |
//! | [`cycle`](checks::cycle) | `cycle` moves data and expiry to the new id and leaves the old id empty |
//! | [`empty_and_large_values`](checks::empty_and_large_values) | empty, binary, non-ASCII and 1 MiB values, and many keys, round-trip exactly |
//! | [`concurrent_writers_lose_nothing`](checks::concurrent_writers_lose_nothing) | concurrent deltas to different keys of one session all survive |
//! | [`concurrent_create_has_one_winner`](checks::concurrent_create_has_one_winner) | of concurrent `create`s of one id, exactly one wins |
//! | [`key_updates`](checks::key_updates) | `update_key` swaps only from the expected value and reports the current one; increments count from 0, refuse non-counters and stay in range; other keys and the expiry stay; ended sessions are `Missing` and stay gone |
//! | [`load_renewing`](checks::load_renewing) | a read answers as `load`; a renewal it reports is stored with its last use, a session not due is never renewed, and an unknown, deleted or expired session is neither returned nor brought back |
//! | [`concurrent_key_updates_lose_nothing`](checks::concurrent_key_updates_lose_nothing) | concurrent increments and compare-and-set loops of one key lose no update |
//!
//! A store with the principal index (sessions by user) adds its contract with
//! `store_conformance!(make, principal_index: |max| make_capped(max))`:
//!
//! | check | rule |
//! |---|---|
//! | [`metadata_round_trips`](checks::metadata_round_trips) | a session's principal and last use round-trip; `apply` replaces them only when its changes carry them |
//! | [`principal_index`](checks::principal_index) | a principal's sessions are listed oldest first with their last use; `revoke`, `revoke_all` with and without a kept session delete exactly those, never another principal's |
//! | [`principal_index_follows_the_session`](checks::principal_index_follows_the_session) | the index follows `cycle`, rebinding, `delete` and expiry |
//! | [`principal_index_has_no_leaks`](checks::principal_index_has_no_leaks) | 100 users x 100 sessions, half expiring, a quarter deleted, some cycled: each lists exactly its live sessions |
//! | [`principal_cap`](checks::principal_cap) | with a cap of 3 per principal, binding a fourth (by `create` or `apply`) revokes the oldest |
//!
//! A failing check panics with a message naming the broken rule. The `expiry` check waits for
//! real deadlines (about two seconds); the whole suite runs in a few seconds on an in-process
//! store.
//!
//! # Example: run the suite against your store
//!
//! In your store crate's `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! tether-conformance = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! and in `tests/conformance.rs`, an expression that makes a fresh store (it is evaluated once
//! per test; any `SessionStore + Clone` is a [`Fixture`]):
//!
//! ```
//! # mod my_store { pub use tether_memory::MemoryStore as MyStore; }
//! use my_store::MyStore;
//!
//! tether_conformance::store_conformance!(async { MyStore::new() });
//! # fn main() {}
//! ```
//!
//! `cargo test` then runs `conformance::contract`, `conformance::expiry` and the other checks
//! as separate tests.
//!
//! # Example: a store that needs a server
//!
//! A fixture can hold what must outlive the test, here a `redis-server` started by the harness
//! (feature `redis`), killed when the fixture drops:
//!
//! ```
//! # mod my_store {
//! #     pub struct MyStore;
//! #     impl MyStore {
//! #         pub async fn connect(_url: &str) -> Result<tether_memory::MemoryStore, std::convert::Infallible> {
//! #             Ok(tether_memory::MemoryStore::new())
//! #         }
//! #     }
//! # }
//! # #[cfg(feature = "redis")] mod with_redis {
//! # use super::my_store;
//! use std::sync::Arc;
//!
//! use tether_conformance::{Fixture, redis::RedisServer};
//! use tether_core::SessionStore;
//!
//! struct OnRedis<S> {
//!     store: S,
//!     _server: RedisServer,
//! }
//!
//! impl<S: SessionStore + Clone> Fixture for OnRedis<S> {
//!     fn store(&self) -> Arc<dyn SessionStore> {
//!         Arc::new(self.store.clone())
//!     }
//! }
//!
//! async fn on_redis() -> OnRedis<impl SessionStore + Clone> {
//!     let server = RedisServer::start().expect("redis-server");
//!     let store = my_store::MyStore::connect(&server.url()).await.expect("connect");
//!     OnRedis { store, _server: server }
//! }
//!
//! tether_conformance::store_conformance!(on_redis());
//! # }
//! # fn main() {}
//! ```
//!
//! The harness runs `redis-server` and `redis-cli` from `PATH`, or from `REDIS_SERVER_BIN` and
//! `REDIS_CLI_BIN`; on Debian they come with `apt-get install redis-server redis-tools`.
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `redis` | the [`redis`] harness: `RedisServer` (plain or TLS), `RedisCluster`, `SentinelSetup`, and [`Error`] |
//!
//! [tether]: https://github.com/tether-rs/tether
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), deny(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod checks;
#[cfg(feature = "redis")]
mod error;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

pub use checks::Fixture;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use error::Error;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisCluster, RedisServer, SentinelSetup};
