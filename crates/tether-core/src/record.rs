//! A stored session.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;

use crate::{Expiry, Id, Principal, Seen, Timestamp};

/// A session as a store keeps it: its id, its data (each value encoded by the session's
/// [`Codec`](crate::Codec)), its [`Expiry`], when it was created, and, when the application
/// uses them, the [`Principal`] it is bound to and when it was last [`Seen`].
///
/// `Debug` prints key names and value sizes, never the values, which often hold credentials.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use tether_core::{Expiry, Id, KEY_OVERHEAD, Record, Timestamp};
///
/// let now = Timestamp::now();
/// let mut record = Record::new(Id::random()?, Expiry::new(now, Duration::from_secs(1800), None), now);
/// record.data.insert("user".into(), Bytes::from_static(b"\xa5alice"));
/// assert_eq!(record.size(), "user".len() + 6 + KEY_OVERHEAD);
/// # Ok::<(), tether_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The session's id.
    pub id: Id,
    /// Session keys and their encoded values.
    pub data: HashMap<String, Bytes>,
    /// When the session ends.
    pub expiry: Expiry,
    /// When the session was first stored.
    pub created_at: Timestamp,
    /// Who the session belongs to, once the application bound it (at login, typically).
    pub principal: Option<Principal>,
    /// When, where and on what it was last used, if the layer records it. Boxed: most
    /// sessions of most applications carry none, and every record in memory pays for the field.
    pub seen: Option<Box<Seen>>,
}

impl Record {
    /// An empty session.
    pub fn new(id: Id, expiry: Expiry, created_at: Timestamp) -> Self {
        Self {
            id,
            data: HashMap::new(),
            expiry,
            created_at,
            principal: None,
            seen: None,
        }
    }

    /// The same record with `data` as its data.
    #[must_use]
    pub fn with_data(mut self, data: HashMap<String, Bytes>) -> Self {
        self.data = data;
        self
    }

    /// The same record with another id.
    #[must_use]
    pub fn with_id(mut self, id: Id) -> Self {
        self.id = id;
        self
    }

    /// The same record bound to `principal`.
    #[must_use]
    pub fn with_principal(mut self, principal: Option<Principal>) -> Self {
        self.principal = principal;
        self
    }

    /// The same record with `seen` as its last use.
    #[must_use]
    pub fn with_seen(mut self, seen: Option<Seen>) -> Self {
        self.seen = seen.map(Box::new);
        self
    }

    /// The size of the data as session size limits count it: see [`data_size`].
    pub fn size(&self) -> usize {
        data_size(&self.data)
    }
}

/// Bytes counted for each key in a session's size, on top of its name and encoded value: what
/// an entry costs a store beyond its data.
///
/// Without it, 12,000 keys of three bytes holding one byte each count 48,000 bytes and fit the
/// 64 KiB default, yet take 611,288 bytes in Redis 7.0 (`MEMORY USAGE`): a hash past its
/// compact listpack encoding spends about 47 bytes per field beyond the field's name and
/// value. An entry of the in-process map of a `Record` (`HashMap<String, Bytes>`, as the
/// memory and replicated stores keep it) took 87 to 126 bytes of heap for the same keys
/// (12,000 and 1,000 of them), table spare room and the blocks of name and value included.
/// 64 sits between the two, so a session at the size limit costs a store about that much.
pub const KEY_OVERHEAD: usize = 64;

/// What one key of a session counts towards its size: name, encoded value and
/// [`KEY_OVERHEAD`].
///
/// ```
/// assert_eq!(tether_core::entry_size("cart", b"[1,2]"), 4 + 5 + tether_core::KEY_OVERHEAD);
/// ```
pub fn entry_size(key: &str, value: &[u8]) -> usize {
    key.len()
        .saturating_add(value.len())
        .saturating_add(KEY_OVERHEAD)
}

/// The size of a session data map, as session size limits count it: the sum of its
/// [`entry_size`]s.
pub fn data_size(data: &HashMap<String, Bytes>) -> usize {
    data.iter().fold(0, |size, (key, value)| {
        size.saturating_add(entry_size(key, value))
    })
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Sizes<'a>(&'a HashMap<String, Bytes>);
        impl fmt::Debug for Sizes<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(
                        self.0
                            .iter()
                            .map(|(k, v)| (k, format!("<{} bytes>", v.len()))),
                    )
                    .finish()
            }
        }
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("data", &Sizes(&self.data))
            .field("expiry", &self.expiry)
            .field("created_at", &self.created_at)
            .field("principal", &self.principal)
            .field("seen", &self.seen)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn debug_hides_values() {
        let now = Timestamp::now();
        let mut r = Record::new(
            Id::random().unwrap(),
            Expiry::new(now, Duration::from_secs(1), None),
            now,
        );
        r.data
            .insert("password".into(), Bytes::from_static(b"hunter2"));
        let debug = format!("{r:?}");
        assert!(debug.contains("password"));
        assert!(debug.contains("<7 bytes>"));
        assert!(!debug.contains("hunter2"));
    }
}
