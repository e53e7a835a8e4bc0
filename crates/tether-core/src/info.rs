//! One entry of a principal's session list.

use crate::{Record, Seen, SessionHandle, Timestamp};

/// One session of a principal, as [`SessionStore::sessions_of`](crate::SessionStore::sessions_of)
/// lists it: what a "your devices" page shows, never the session's id or data.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tether_core::{Expiry, Id, Principal, Record, Seen, SessionHandle, SessionInfo, Timestamp};
///
/// let now = Timestamp::now();
/// let mut record = Record::new(Id::random()?, Expiry::new(now, Duration::from_secs(60), None), now);
/// record.principal = Some(Principal::new("alice")?);
/// record.seen = Some(Box::new(Seen::new(now).with_device("Firefox")));
/// let info = SessionInfo::of(&record);
/// assert_eq!(info.handle, SessionHandle::of(&record.id));
/// assert_eq!(info.device(), Some("Firefox"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Names the session for [`SessionStore::revoke`](crate::SessionStore::revoke).
    pub handle: SessionHandle,
    /// When the session was first stored.
    pub created_at: Timestamp,
    /// When the session ends unless it is used (or earlier, at its absolute deadline).
    pub expires_at: Timestamp,
    /// When, where and on what it was last used, if the layer records it.
    pub seen: Option<Seen>,
}

impl SessionInfo {
    /// A session created at `created_at` that ends at `expires_at`, nothing seen.
    pub const fn new(handle: SessionHandle, created_at: Timestamp, expires_at: Timestamp) -> Self {
        Self {
            handle,
            created_at,
            expires_at,
            seen: None,
        }
    }

    /// With what was last seen of it.
    #[must_use]
    pub fn with_seen(mut self, seen: Option<Seen>) -> Self {
        self.seen = seen;
        self
    }

    /// The entry for a stored session.
    pub fn of(record: &Record) -> Self {
        Self::new(
            SessionHandle::of(&record.id),
            record.created_at,
            record.expiry.expires_at(),
        )
        .with_seen(record.seen.as_deref().cloned())
    }

    /// When it was last used, if the layer records it.
    pub fn last_seen(&self) -> Option<Timestamp> {
        self.seen.as_ref().map(Seen::at)
    }

    /// The device label of its last use, if recorded.
    pub fn device(&self) -> Option<&str> {
        self.seen.as_ref().and_then(Seen::device)
    }

    /// The client address of its last use, if recorded.
    pub fn address(&self) -> Option<std::net::IpAddr> {
        self.seen.as_ref().and_then(Seen::address)
    }
}
