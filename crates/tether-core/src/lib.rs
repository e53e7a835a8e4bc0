//! The core model of [tether]: session ids, records, deltas, expiry, value codecs and the
//! [`SessionStore`] contract that every tether store implements.
//!
//! This crate does no I/O. Application code uses `tether-sessions` (the tower layer) and a store
//! crate (`tether-memory`, `tether-redis`, ...); store authors depend on this crate alone.
//!
//! # Example
//!
//! How a store sees one request that changed one key:
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use tether_core::{Changes, Codec, Expiry, Id, Record, Timestamp};
//!
//! let codec = Codec::default();
//! let now = Timestamp::now();
//! let mut record = Record::new(Id::random()?, Expiry::new(now, Duration::from_secs(1800), None), now);
//! record.data.insert("visits".into(), codec.encode(&1u32)?);
//!
//! // A request bumps `visits`; only that key travels to the store.
//! let mut changes = Changes::new();
//! changes.insert("visits", codec.encode(&2u32)?);
//! changes.apply_to(&mut record.data);
//!
//! let visits: u32 = codec.decode(&record.data["visits"])?;
//! assert_eq!(visits, 2);
//! # Ok::<(), tether_core::Error>(())
//! ```
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `json` | [`Codec::Json`], values encoded as JSON |
//! | `cookie` | [`cookie`]: the key ring, cookie attributes and request cookie parsing that `tether-sessions` and `tether-sticky` share |
//!
//! [tether]: https://github.com/tether-rs/tether
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), forbid(clippy::panic))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod changes;
mod codec;
#[cfg(feature = "cookie")]
#[cfg_attr(docsrs, doc(cfg(feature = "cookie")))]
pub mod cookie;
mod error;
mod event;
mod expiry;
mod handle;
mod id;
mod info;
mod key_update;
pub mod placement;
mod principal;
mod record;
mod renewal;
mod renewal_hints;
mod seen;
mod store;
mod time;

pub use changes::Changes;
pub use codec::Codec;
pub use error::{BoxError, Error, ErrorKind, error_chain};
pub use event::{EventKind, EventStream, SessionEvent};
pub use expiry::Expiry;
pub use handle::{InvalidHandle, SessionHandle};
pub use id::{ID_LEN, Id, InvalidId};
pub use info::SessionInfo;
pub use key_update::{COUNTER_MAX, KeyUpdate, KeyUpdated};
pub use principal::{InvalidPrincipal, MAX_PRINCIPAL_LEN, Principal};
pub use record::{KEY_OVERHEAD, Record, data_size, entry_size};
pub use renewal::{Loaded, Renewal};
pub use renewal_hints::RenewalHints;
pub use seen::{MAX_DEVICE_LEN, Seen};
pub use store::{Applied, Created, Cycled, INCREMENT_ATTEMPTS, Revoked, SessionStore};
pub use time::Timestamp;

/// `Result` with tether's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
