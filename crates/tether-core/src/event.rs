//! What happens to sessions, as a stream a service can follow.

use std::pin::Pin;

use crate::{Error, Principal, SessionHandle, Timestamp};

/// One thing that happened to a session: an audit log line, a "new sign-in" mail, a cache to
/// drop. Sessions are named by their [`SessionHandle`], never their id.
///
/// # Example
///
/// ```
/// use tether_core::{EventKind, Id, Principal, SessionEvent, SessionHandle, Timestamp};
///
/// let event = SessionEvent::new(
///     EventKind::PrincipalSet,
///     SessionHandle::of(&Id::random()?),
///     Some(Principal::new("alice")?),
///     Timestamp::now(),
/// );
/// assert_eq!(event.kind, EventKind::PrincipalSet);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SessionEvent {
    /// What happened.
    pub kind: EventKind,
    /// The session it happened to (for [`EventKind::Cycled`], its new handle).
    pub handle: SessionHandle,
    /// The principal the session was bound to, if any.
    pub principal: Option<Principal>,
    /// When it happened (for [`EventKind::Expired`], when the store found the session past
    /// its deadline).
    pub at: Timestamp,
}

impl SessionEvent {
    /// An event.
    pub const fn new(
        kind: EventKind,
        handle: SessionHandle,
        principal: Option<Principal>,
        at: Timestamp,
    ) -> Self {
        Self {
            kind,
            handle,
            principal,
            at,
        }
    }
}

/// What happened to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum EventKind {
    /// A new session was stored.
    Created,
    /// The session moved to a new id (at login, typically); `from` is its handle before.
    Cycled {
        /// The handle under the old id.
        from: SessionHandle,
    },
    /// The session was bound to a principal (or to another one).
    PrincipalSet,
    /// The session was deleted: a logout, or a write that ended it.
    Deleted,
    /// The session was revoked through the principal index (signed out from elsewhere, or
    /// past the principal's session cap).
    Revoked,
    /// The session passed its deadline.
    Expired,
    /// The store dropped the session to make room (an in-process store at its bound).
    Evicted,
}

impl EventKind {
    /// A short lowercase name: `created`, `cycled`, `principal_set`, `deleted`, `revoked`,
    /// `expired`, `evicted`.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Cycled { .. } => "cycled",
            Self::PrincipalSet => "principal_set",
            Self::Deleted => "deleted",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Evicted => "evicted",
        }
    }
}

/// The events of a store, from [`SessionStore::events`](crate::SessionStore::events). An
/// `Err` item says what went wrong (events missed by a subscriber that fell behind, a lost
/// connection); the stream goes on after it where the store can.
pub type EventStream =
    Pin<Box<dyn futures_core::Stream<Item = Result<SessionEvent, Error>> + Send + 'static>>;
