//! [tower-sessions] 0.14 on tether's stores: [`TetherStore`] implements tower-sessions'
//! [`SessionStore`](tower_sessions_core::SessionStore) over any
//! [`tether_core::SessionStore`] (memory, Redis standalone/Sentinel/Cluster, replicated, SQL).
//!
//! Code written for tower-sessions, and crates built on it such as axum-login 0.18, keeps its
//! `SessionManagerLayer` and `Session` and gets tether's stores underneath. To move to tether's
//! own layer later, see the guide `docs/migrating-from-tower-sessions.md` in the repository.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::{Request, header};
//! use tether_memory::MemoryStore;
//! use tether_tower_sessions::TetherStore;
//! use tower::ServiceExt as _;
//! use tower_sessions::{Expiry, Session, SessionManagerLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SessionManagerLayer::new(TetherStore::new(MemoryStore::new()))
//!     .with_secure(false)
//!     .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
//! let app = Router::new()
//!     .route("/visit", get(|session: Session| async move {
//!         let visits: u64 = session.get("visits").await.ok().flatten().unwrap_or(0) + 1;
//!         let _ = session.insert("visits", visits).await;
//!         visits.to_string()
//!     }))
//!     .layer(layer);
//!
//! let first = app.clone().oneshot(Request::get("/visit").body(String::new())?).await?;
//! let cookie = first.headers()[header::SET_COOKIE].to_str()?;
//! let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
//!
//! let second = Request::get("/visit").header(header::COOKIE, cookie).body(String::new())?;
//! let body = axum::body::to_bytes(app.oneshot(second).await?.into_body(), 64).await?;
//! assert_eq!(body, "2");
//! # Ok(())
//! # }
//! ```
//!
//! # Ids
//!
//! tower-sessions' id is an `i128` printed as the unpadded base64url of its 16 little-endian
//! bytes; tether's is 16 bytes printed as their unpadded base64url. [`to_tether`] takes the
//! `i128`'s little-endian bytes as the tether id and [`to_tower`] reads them back: the mapping is
//! a bijection, and an id prints as the same 22 characters on both sides. A tower-sessions
//! cookie value therefore *is* the tether id of its session, both parse exactly the canonical
//! 22-character form, and Redis keys and SQL rows show the id the browser holds.
//!
//! # Values
//!
//! Each value of a tower-sessions record (a `serde_json::Value`) is stored under its own key as
//! its JSON text: the bytes tether's `Codec::Json` writes and reads. A stored value that is not
//! JSON (written by a layer using MessagePack, or corrupt) makes `load` fail with
//! [`Error::Decode`], which tower-sessions answers with a 500 for that request.
//!
//! # Expiry
//!
//! tower-sessions hands a store only a date (`Record::expiry_date`): `now + d` at each save for
//! `Expiry::OnInactivity(d)`, the date itself for `Expiry::AtDateTime`, and `now + 2 weeks` for
//! `Expiry::OnSessionEnd` or no expiry (the cookie then has no `Max-Age`, but the store keeps the
//! session two weeks). The adapter stores it as a tether expiry that ends at that date, rounded
//! down to the millisecond, with the time left as its idle timeout and no absolute deadline. The
//! store forgets the session exactly when tower-sessions asked; `load` never returns it after
//! that (tether stores filter expired sessions even before they evict them).
//!
//! The idle timeout only matters to a reader that renews from the stored record, as
//! tether-sessions does: for `OnInactivity(d)` it is `d` (less the microseconds between
//! tower-sessions reading the clock and the adapter reading it, so `d` or 1 ms under); for
//! `AtDateTime` it is the time that was left at the last save, which such a reader would then
//! slide. The adapter cannot tell the two apart: the record does not say which `Expiry` made it.
//!
//! # What `save` protects against, and what it does not
//!
//! `save` loads the stored session and applies only the difference: keys whose JSON text
//! differs from the store are set, keys the store has and the record lacks are removed, and the
//! expiry is set (a `touch` when no key differs). So:
//!
//! - **A deleted or expired session is never brought back.** When the session is gone at save
//!   time (a logout or `flush` by an overlapping request, a `cycle_id`, expiry), nothing is
//!   written. A store that upserts the whole record, as tower-sessions' own stores do, re-creates
//!   the logged-out session.
//! - **Only changed keys travel.** A request that changes one key of a large session writes that
//!   key (one `HSET` field on Redis), not the whole record.
//!
//! It does **not** stop overlapping requests of one session from overwriting each other, and
//! that holds for different keys too, not only for the same key. tower-sessions' `Session` loads
//! the whole record at the first access in a request, the handler changes that copy, and after
//! the handler `save` gets the whole copy: every key as it was loaded plus this request's
//! changes. The adapter cannot tell a key this request changed from one it merely carries. If
//! request B loaded before request A saved, then at B's save every key A changed differs from
//! the store and is written back with B's stale value, and every key A added is missing from B's
//! record and is removed. Changes to different keys both survive only when each request's record
//! reflects only its own changes, which with tower-sessions means the requests did not overlap
//! (B's first session access came after A's save). The test suite of this crate shows both
//! outcomes. For concurrent requests that change different keys without losing either, use
//! tether-sessions' own layer, which sends only what the handler changed.
//!
//! # Round trips
//!
//! `load`, `create` and `delete` are one store call each (`create` one more per id collision, at
//! most [`CREATE_ATTEMPTS`]); `save` is two (load, then apply or touch), or one when neither a
//! key nor the expiry differs. tower-sessions' `cycle_id` is a `delete` and a `create` with a
//! fresh id (tether's atomic `cycle` is not reachable through tower-sessions' trait).
//!
//! # Errors
//!
//! One [`Error`], converted into tower-sessions' `session_store::Error` with the whole chain of
//! causes as its message: decode failures become `Decode`, encode failures `Encode`, everything
//! else `Backend`.
//!
//! [tower-sessions]: https://docs.rs/tower-sessions/0.14
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), forbid(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod error;
mod id;
mod store;

pub use error::Error;
pub use id::{to_tether, to_tower};
pub use store::{CREATE_ATTEMPTS, TetherStore};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
