//! Test kit for tether (not published).
//!
//! - [`store_conformance!`] generates the store conformance suite as `#[tokio::test]`s for any
//!   [`SessionStore`](tether_core::SessionStore); every store crate calls it from its `tests/`.
//! - [`conformance`] holds the checks themselves, one `async fn` each, to call one by one.
//! - [`SpyStore`] wraps a store to count its calls and make them fail, for layer tests.
//! - [`redis`] starts real Redis servers for tests: [`RedisServer`], [`RedisCluster`] and
//!   [`SentinelSetup`], on free loopback ports, stopped on drop.
//!
//! # Example
//!
//! In `crates/my-store/tests/conformance.rs` (the crate needs `tokio` with `macros` and
//! `rt-multi-thread` as a dev-dependency):
//!
//! ```
//! # mod my_store { pub use tether_memory::MemoryStore as MyStore; }
//! use my_store::MyStore;
//!
//! tether_testkit::store_conformance!(async { MyStore::new() });
//! # fn main() {}
//! ```

pub mod conformance;
pub mod redis;
mod spy;

pub use conformance::Fixture;
pub use redis::{HarnessError, RedisCluster, RedisServer, SentinelSetup};
pub use spy::{Calls, Failure, SpyStore};
