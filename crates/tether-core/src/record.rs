//! A stored session.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;

use crate::{Expiry, Id, Timestamp};

/// A session as a store keeps it: its id, its data (each value encoded by the session's
/// [`Codec`](crate::Codec)), its [`Expiry`], and when it was created.
///
/// `Debug` prints key names and value sizes, never the values, which often hold credentials.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use tether_core::{Expiry, Id, Record, Timestamp};
///
/// let now = Timestamp::now();
/// let mut record = Record::new(Id::random()?, Expiry::new(now, Duration::from_secs(1800), None), now);
/// record.data.insert("user".into(), Bytes::from_static(b"\xa5alice"));
/// assert_eq!(record.encoded_len(), "user".len() + 6);
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
}

impl Record {
    /// An empty session.
    pub fn new(id: Id, expiry: Expiry, created_at: Timestamp) -> Self {
        Self {
            id,
            data: HashMap::new(),
            expiry,
            created_at,
        }
    }

    /// The same record with `data` as its data.
    #[must_use]
    pub fn with_data(mut self, data: HashMap<String, Bytes>) -> Self {
        self.data = data;
        self
    }

    /// The encoded size of the data: the sum of key and value lengths. The session layer's size
    /// limit counts this plus a fixed overhead per key, for what each entry costs a store.
    pub fn encoded_len(&self) -> usize {
        encoded_len(&self.data)
    }
}

/// The encoded size of a session data map: the sum of key and value lengths.
pub fn encoded_len(data: &HashMap<String, Bytes>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
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
