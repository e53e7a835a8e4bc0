//! Cookies as tether's session layer and sticky router use them: a [`KeyRing`] that seals
//! (AES-256-GCM) or signs (HMAC-SHA256) values and rotates keys, the attributes of one cookie
//! and its `Set-Cookie` line ([`CookieSettings`]), and request `Cookie` headers read as bytes
//! ([`request_cookies`], [`cookie_values`], [`without_cookie`]).
//!
//! Sealing and signing are the `cookie` crate's private and signed jars. A sealed value is bound
//! to its cookie name (the name is the cipher's associated data), so it cannot be moved to
//! another cookie; a signed value is not (the tag covers the value only). Request headers are read as raw
//! bytes and never fail: a pair that is not UTF-8, has no `=` or is empty is skipped, and does
//! not hide the pairs around it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tether_core::cookie::{CookieSettings, Key, KeyRing, cookie_values};
//!
//! let ring = KeyRing::new(Key::from(&[7; 64]));
//! let settings = CookieSettings::new("route").with_host_prefix(true);
//!
//! // The response sets a sealed value...
//! let sealed = ring.seal(settings.wire_name(), "backend-a");
//! let line = settings.set_cookie(sealed.clone(), Some(Duration::from_secs(3600)));
//! assert!(line.starts_with("__Host-route="));
//!
//! // ...which a later request carries, next to cookies of other applications.
//! let header = format!("theme=dark; __Host-route={sealed}");
//! let value = cookie_values([header.as_bytes()], settings.wire_name()).next();
//! let opened = value
//!     .and_then(|v| std::str::from_utf8(v).ok())
//!     .and_then(|v| ring.open(settings.wire_name(), v));
//! assert_eq!(opened.as_deref(), Some("backend-a"));
//! ```

mod keys;
mod request;
mod settings;

pub use ::cookie::{Key, SameSite};
pub use keys::KeyRing;
pub use request::{cookie_values, request_cookies, without_cookie};
pub use settings::CookieSettings;
