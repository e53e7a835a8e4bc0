//! Sticky routing for [tether]: a tower service that sends each request to one of a set of
//! backends, keeping a client's session on one backend, and fixing the two classic weaknesses of
//! sticky sessions.
//!
//! - **Affinity cookie**, sealed with AES-256-GCM (the `cookie` crate's private jar): it holds
//!   the backend's name and the pin's issue time and reveals neither; keys rotate
//!   ([`AffinityKeys`]); a forged, corrupt, stale or foreign cookie counts as none. It is stripped
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
//! - **Backend states** ([`BackendState`]: ready, drain, maintenance) and passive health
//!   ([`Health`]: failures in a row eject a backend for a while), through a [`StickyHandle`].
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `client` | `Upstream`: a pooled HTTP/1.1 or h2c client to one backend |
//! | `serde` | `Serialize`/`Deserialize` for [`Pinning`], [`Failover`] and [`BackendState`], as the words they print |
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tether_sticky::{AffinityKeys, Sticky, StickyConfig, backends, cookie::Key};
//! use tower::{ServiceExt as _, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let backend = |name: &'static str| {
//!     service_fn(move |_: Request<String>| async move { Ok::<_, Infallible>(Response::new(name.to_string())) })
//! };
//! let layer = StickyConfig::new(AffinityKeys::new(Key::generate())).with_secure(false);
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
mod config;
mod fault;
mod parse;
#[cfg(feature = "client")]
mod progress;
mod roster;
mod service;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets; not an API.

    /// Opens `data` as an affinity cookie value; panics if anything opens without the key
    /// having sealed it.
    pub fn open_pin(data: &[u8]) {
        let keys = crate::AffinityKeys::new(cookie::Key::from(&[7; 64]));
        let text = String::from_utf8_lossy(data);
        assert!(keys.open("tether-route", &text, None).is_none());
    }
}
#[cfg(feature = "client")]
mod upstream;

use std::convert::Infallible;

pub use affinity::AffinityKeys;
pub use backend::{BackendCounters, BackendState, Health};
pub use config::{Failover, Pinning, StickyConfig};
pub use cookie;
pub use fault::RequestBodyError;
pub use parse::ParseError;
pub use service::{BackendReport, ClientAddr, ResponseFuture, Sticky, StickyHandle};
use tower::discover::Change;
#[cfg(feature = "client")]
pub use upstream::{
    BodyError, DEFAULT_RESPONSE_TIMEOUT, InvalidUpstream, Upstream, UpstreamBody, UpstreamError,
    box_body,
};

/// A fixed set of backends as a [`Discover`](tower::discover::Discover): each `(name, service)`
/// is inserted once, and the set never changes. For a changing set, give [`Sticky`] any stream of
/// `Result<tower::discover::Change<K, S>, E>`.
pub fn backends<K, S>(backends: impl IntoIterator<Item = (K, S)>) -> Backends<K, S> {
    Backends {
        inserts: backends.into_iter().collect::<Vec<_>>().into_iter(),
    }
}

/// The [`Discover`](tower::discover::Discover) of [`backends`].
#[derive(Debug)]
pub struct Backends<K, S> {
    inserts: std::vec::IntoIter<(K, S)>,
}

impl<K, S> Unpin for Backends<K, S> {}

impl<K, S> futures_util::Stream for Backends<K, S> {
    type Item = Result<Change<K, S>, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.inserts.next() {
            Some((key, service)) => std::task::Poll::Ready(Some(Ok(Change::Insert(key, service)))),
            // The set never changes: no more items, and no end either.
            None => std::task::Poll::Pending,
        }
    }
}
