//! Sticky routing for [tether]: a tower service that sends each request to one of a set of
//! backends, keeping a client's session on one backend, and fixing the two classic weaknesses of
//! sticky sessions.
//!
//! - **Affinity cookie**, sealed with AES-256-GCM (the `cookie` crate's private jar): it holds
//!   the backend's name and the pin's issue time and reveals neither; keys rotate
//!   ([`KeyRing`]); a forged, corrupt, stale or foreign cookie counts as none. It is stripped
//!   before the request goes upstream, set only when it changes, with `Cache-Control: private`
//!   (merged with the backend's own `Cache-Control`, never overriding `no-store`).
//! - **Failover onto the replica.** A request carrying a `tether` session id is placed by
//!   rendezvous hashing with the same function and order as `tether-replicated`
//!   ([`tether_core::placement`]): every proxy replica agrees, and when the session's backend
//!   dies the request goes to the next in order, which holds its backup. [`Failover`] sets what
//!   happens to a pinned client whose backend is gone.
//! - **No NAT hot spot.** [`Pinning::Source`] pins by client address with consistent hashing
//!   with bounded loads: no backend takes more than `(1 + epsilon)` times the average load.
//! - **New sessions** go to the less loaded of two random backends (power of two choices),
//!   weighted during slow start.
//! - **Backend states** ([`BackendState`]: ready, drain, maintenance), passive health
//!   ([`Health`]: failures in a row eject a backend for a while) and active health checks
//!   ([`HealthCheck`], HAProxy's `check inter rise fall`: a backend whose health path fails is
//!   taken out before users see it), through a [`StickyHandle`].
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `client` | `Upstream`: a pooled HTTP/1.1 or h2c client to one backend |
//! | `active-health` | `HealthChecks`: runs a [`HealthCheck`] against every backend (needs tokio) |
//! | `serde` | `Serialize`/`Deserialize` for [`Pinning`], [`Failover`] and [`BackendState`], as the words they print |
//! | `metrics` | requests, failures, ejections, in-flight requests and upstream time per backend, the router's own answers, through the [`metrics`](https://docs.rs/metrics) facade (names in docs/operations.md) |
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tether_sticky::{KeyRing, Sticky, StickyConfig, backends, cookie::Key};
//! use tower::{ServiceExt as _, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let backend = |name: &'static str| {
//!     service_fn(move |_: Request<String>| async move { Ok::<_, Infallible>(Response::new(name.to_string())) })
//! };
//! let layer = StickyConfig::new(KeyRing::new(Key::generate())).with_secure(false);
//! let router = Sticky::new(&layer, backends([("a", backend("a")), ("b", backend("b"))]));
//!
//! let first = router.oneshot(Request::new(String::new())).await.unwrap();
//! let pin = first.headers()["set-cookie"].to_str().unwrap();
//! assert!(pin.starts_with("tether-route="));
//! # }
//! ```
//!
//! [tether]: https://github.com/tether-rs/tether
#![cfg_attr(not(test), forbid(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod affinity;
mod backend;
mod cache_control;
mod check;
mod config;
mod discover;
mod fault;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "active-health")]
mod health_checks;
mod parse;
#[cfg(feature = "client")]
mod progress;
mod roster;
mod service;
mod telemetry;
#[cfg(feature = "client")]
mod upstream;
mod weight;

pub use affinity::PinMemo;
pub use backend::{BackendCounters, BackendState, Health};
pub use check::{Checked, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT, HealthCheck};
pub use config::{Failover, Pinning, StickyConfig};
/// The `cookie` crate, for [`cookie::Key`] and [`cookie::SameSite`].
pub use cookie;
pub use discover::{Backends, backends};
pub use fault::RequestBodyError;
#[cfg(feature = "active-health")]
pub use health_checks::HealthChecks;
pub use parse::ParseError;
pub use service::{BackendReport, ClientAddr, ResponseFuture, Sticky, StickyHandle};
pub use tether_core::cookie::KeyRing;
#[cfg(feature = "client")]
pub use upstream::{
    BodyError, DEFAULT_RESPONSE_TIMEOUT, InvalidUpstream, Upstream, UpstreamBody, UpstreamError,
    box_body,
};
pub use weight::{InvalidWeight, Weight};
