//! Test kit for tether's own tests (not published).
//!
//! - [`SpyStore`] wraps a store to count its calls and make them fail, for layer tests.
//! - [`MetricsSnapshot`] reads what a `metrics_util` debugging recorder recorded.
//! - [`TestCa`] issues node certificates from a private CA made at test time (with [`rcgen`]).
//! - The published `tether-conformance` crate, with its `redis` harness, re-exported:
//!   [`store_conformance!`], [`conformance`] (its `checks`), [`Fixture`], and [`redis`] with
//!   [`RedisServer`], [`RedisCluster`] and [`SentinelSetup`].
//!
//! # Example
//!
//! ```
//! use tether_memory::MemoryStore;
//! use tether_testkit::{Failure, SpyStore};
//!
//! let spy = SpyStore::new(MemoryStore::new());
//! spy.fail_with(Some(Failure::CorruptLoads));
//! assert_eq!(spy.calls().total(), 0);
//! ```

mod ca;
mod https_backend;
mod metrics;
mod spy;

pub use ca::TestCa;
pub use https_backend::https_backend;
pub use metrics::MetricsSnapshot;
pub use metrics_util;
pub use rcgen;
pub use spy::{Calls, Failure, SpyStore};
pub use tether_conformance::checks as conformance;
pub use tether_conformance::{
    Fixture, RedisCluster, RedisServer, SentinelSetup, redis, store_conformance,
};
