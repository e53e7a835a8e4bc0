//! Sessions for [tower] services (axum, hyper, tonic) that stay consistent when the application
//! runs on many servers.
//!
//! [`SessionLayer`] gives every request a [`Session`]: a lazy, cheap handle that reads the
//! session from a [store](tether_core::SessionStore) on first use and writes back only the keys
//! the request changed, before the response goes out. Stores: `tether-memory` (one process),
//! `tether-redis` (shared), `tether-replicated` (peer to peer).
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use serde_json::{Value, json};
//! use tether_memory::MemoryStore;
//! use tether_sessions::{Result, Session, SessionLayer};
//!
//! async fn count(session: Session) -> Result<Json<Value>> {
//!     let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
//!     session.insert("count", &count).await?;
//!     Ok(Json(json!({ "count": count })))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(count))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! Without axum, the handle is in the request's extensions:
//! `request.extensions().get::<Session>()`.
//!
//! # What happens per request
//!
//! | the handler | store calls | response |
//! |---|---|---|
//! | never touches the session | none | unchanged |
//! | reads a visitor without a session | none | unchanged: no cookie for anonymous visitors |
//! | reads an existing session | one `load` (plus a `touch` once the touch threshold passed, unless the store renewed the session with the read) | unchanged (persistent cookies: new `Max-Age` when renewed) |
//! | inserts into a new session | one `create` | `Set-Cookie` with the new id |
//! | changes an existing session | `load`, then one `apply` with only the changed keys, which also moves the deadline once the touch threshold passed | unchanged (persistent cookies: `Max-Age` to the stored deadline) |
//! | calls [`Session::cycle_id`] | `load`, `cycle`, `apply` | `Set-Cookie` with the new id |
//! | calls [`Session::flush`] | `load`, `delete` | cookie removed |
//! | calls [`Session::update`] or [`Session::increment`] on an existing session | `load`, then one `update_key` per call (more only when a concurrent writer of the key won) | unchanged |
//! | fails with a `5xx` | reads only: changes are discarded (a renewal the store made with the read stays) | unchanged (persistent cookies: new `Max-Age` when the read renewed) |
//! | returns a session [`Error`] (axum) | reads only: changes are discarded | `413` past the size or key limit, `409` for a [`Conflict`](Error::Conflict), `503` when the store is unavailable, else `500` |
//! | anything, and the save fails | | `503 Service Unavailable`, cause logged |
//!
//! Every `load` here is a [`load_renewing`](tether_core::SessionStore::load_renewing): a store
//! that can renew a session due for renewal in the same round trip as the read (the Redis
//! store, for a session it read before) does, and then no `touch` follows.
//!
//! A cookie or header that is missing, malformed, too long, not UTF-8, wrongly signed, or names
//! a session that does not exist counts as no session: never an error response. Stored data that
//! cannot be decoded counts as no session too, and is logged.
//!
//! # Concurrent requests of one session
//!
//! Requests that change different keys never lose each other's changes: each saves only its
//! own keys. For one key written by concurrent requests (two tabs adding to one cart), plain
//! [`insert`](Session::insert) lets the last writer win; [`Session::update`] (compare-and-set,
//! retried) and [`Session::increment`] (run inside the store) lose none, and
//! [`WritePolicy::RejectOnConflict`] makes a key's plain writes fail with `409` instead of
//! overwriting a change the request did not see.
//!
//! # gRPC (tonic)
//!
//! gRPC clients keep no cookies, so carry the id in a metadata key with
//! [`SessionLayer::with_header`] (such as `x-session-id`) and wrap the server in the layer:
//! `tonic::transport::Server::builder().layer(sessions)`.
//!
//! - **Handlers** find the session in the request extensions:
//!   `request.extensions().get::<Session>()` on the `tonic::Request`.
//! - **Clients** read the key from the response metadata (of the `Status` too, for a failed
//!   call). A value is the session's new id: send it in the request metadata of every later
//!   call. An empty value means the session ended: forget the id. Until a value arrives, keep
//!   sending the id held. A missing, garbage or unknown id starts a new session, never an error
//!   status.
//! - **Failures.** When the layer cannot save the session it answers HTTP `503` without a
//!   `grpc-status`, which a tonic client sees as `Code::Unavailable`. A handler's error `Status`
//!   is an HTTP `200` response (the code travels in `grpc-status`), so unlike a `5xx` or an axum
//!   session error it does not discard the session changes the handler made before it failed:
//!   change the session only on the path that succeeds.
//!
//! The runnable tonic version, with a client that echoes the id and tests over real gRPC, is
//! the [`examples/grpc`](https://github.com/tether-rs/tether/tree/main/examples/grpc) crate.
//! Here is the same exchange over plain tower; the metadata of a gRPC call are these headers:
//!
//! ```
//! use http::{HeaderName, Request, Response};
//! use tether_memory::MemoryStore;
//! use tether_sessions::{Session, SessionLayer};
//! use tower::{ServiceBuilder, ServiceExt as _};
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let key = HeaderName::from_static("x-session-id");
//! let counter = ServiceBuilder::new()
//!     .layer(SessionLayer::new(MemoryStore::new()).with_header(key.clone()))
//!     .service_fn(|request: Request<()>| async move {
//!         let session = request.extensions().get::<Session>().ok_or("no SessionLayer")?;
//!         let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
//!         session.insert("count", &count).await?;
//!         Ok::<_, BoxError>(Response::new(count.to_string()))
//!     });
//!
//! // The first call gets a new id in the response.
//! let first = counter.clone().oneshot(Request::new(())).await?;
//! let id = first.headers().get(&key).ok_or("no id issued")?.clone();
//!
//! // Later calls send it back, and see their session.
//! let mut again = Request::new(());
//! again.headers_mut().insert(&key, id);
//! let second = counter.oneshot(again).await?;
//! assert!(second.headers().get(&key).is_none(), "a known id is not sent again");
//! // The body is the service's own, unless the layer answered `503` itself.
//! assert_eq!(second.into_body().into_inner().as_deref(), Some("2"));
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `axum` | yes | [`Session`] as an axum extractor; [`Error`] as an axum response |
//! | `json` | no | `Codec::Json`: values encoded as JSON |
//! | `metrics` | no | requests by outcome, store call time and errors by operation, saved session sizes, through the [`metrics`](https://docs.rs/metrics) facade (names in docs/operations.md) |
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), forbid(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod activity;
mod body;
mod config;
mod deadline;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod layer;
mod save;
mod service;
mod session;
mod telemetry;
mod transport;
mod write_policy;

pub use activity::{Activity, ClientAddress, ExtensionReader};
pub use body::{ResponseBody, UNAVAILABLE_MESSAGE};
pub use config::{
    DEFAULT_ABSOLUTE_LIFETIME, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_KEYS, DEFAULT_MAX_SIZE,
    DEFAULT_TOUCH_THRESHOLD,
};
pub use deadline::deadline_header_value;
pub use error::{Error, Result};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::SessionLayerMissing;
pub use future::ResponseFuture;
pub use index::SessionIndex;
pub use layer::SessionLayer;
pub use service::SessionService;
pub use session::{Session, TypedKey, UPDATE_ATTEMPTS};
pub use tether_core::cookie::KeyRing;
pub use tether_core::{
    COUNTER_MAX, EventKind, EventStream, InvalidPrincipal, KEY_OVERHEAD, Principal, Revoked,
    SessionEvent, SessionHandle, SessionInfo,
};
pub use write_policy::WritePolicy;

/// The `cookie` crate, for [`cookie::Key`] and [`cookie::SameSite`].
pub use cookie;
/// The core model: ids, records, the store trait, codecs.
pub use tether_core as core;

#[cfg(test)]
mod send_sync {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}

    #[test]
    fn handles_and_futures_are_send() {
        assert_send::<super::Session>();
        assert_sync::<super::Session>();
        assert_send::<super::SessionLayer>();
        assert_sync::<super::SessionLayer>();
        assert_send::<super::SessionService<()>>();
        assert_send::<super::ResponseFuture<std::future::Ready<Result<http::Response<()>, ()>>, ()>>(
        );
    }
}
