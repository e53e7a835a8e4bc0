//! What one request did to a session: a delta, never the whole record.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::{Principal, Record, Seen};

/// The changes one request made to a session's data: keys set (with their encoded values), keys
/// removed, and whether the data was cleared first; and to its metadata: the [`Principal`] it
/// was bound to, and when it was [`Seen`].
///
/// Stores apply a `Changes` as a delta, so two concurrent requests that change different keys of
/// one session both survive. A request that only read produces an empty `Changes`, and nothing is
/// written.
///
/// Applying means, in this order: drop every key if [`Changes::is_clear`], remove the
/// [removed](Changes::removed) keys, then insert the [inserted](Changes::inserted) ones. Setting a key
/// cancels an earlier removal of it in the same `Changes`, and the other way round.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use tether_core::Changes;
///
/// let mut changes = Changes::new();
/// assert!(changes.is_empty());
/// changes.insert("cart", Bytes::from_static(b"\x93\x01\x02\x03"));
/// changes.remove("flash");
/// assert!(!changes.is_empty());
/// assert_eq!(changes.inserted().count(), 1);
/// assert_eq!(changes.removed().collect::<Vec<_>>(), ["flash"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    clear: bool,
    set: HashMap<String, Bytes>,
    removed: HashSet<String>,
    principal: Option<Principal>,
    seen: Option<Seen>,
}

impl Changes {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `key` now holds `value` (already encoded by the session's codec).
    pub fn insert(&mut self, key: impl Into<String>, value: Bytes) {
        let key = key.into();
        self.removed.remove(&key);
        self.set.insert(key, value);
    }

    /// Records that `key` was removed.
    pub fn remove(&mut self, key: impl Into<String>) {
        let key = key.into();
        self.set.remove(&key);
        // After a clear every key is gone already; no need to remember single removals.
        if !self.clear {
            self.removed.insert(key);
        }
    }

    /// Records that every key was removed; keys set afterwards are kept.
    pub fn clear(&mut self) {
        self.clear = true;
        self.set.clear();
        self.removed.clear();
    }

    /// Records that the session is now bound to `principal` (replacing any earlier binding).
    pub fn bind(&mut self, principal: Principal) {
        self.principal = Some(principal);
    }

    /// Records when, where and on what the session was used.
    pub fn set_seen(&mut self, seen: Seen) {
        self.seen = Some(seen);
    }

    /// True when applying these changes would change nothing.
    pub fn is_empty(&self) -> bool {
        !self.clear
            && self.set.is_empty()
            && self.removed.is_empty()
            && self.principal.is_none()
            && self.seen.is_none()
    }

    /// Whether these changes set or remove `key` (a clear removes every key).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tether_core::Changes;
    ///
    /// let mut changes = Changes::new();
    /// changes.remove("a");
    /// assert!(changes.touches("a") && !changes.touches("b"));
    /// changes.clear();
    /// assert!(changes.touches("b"));
    /// ```
    pub fn touches(&self, key: &str) -> bool {
        self.clear || self.set.contains_key(key) || self.removed.contains(key)
    }

    /// The principal the session is being bound to, if this request bound it.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// The session's latest use, if this request recorded it.
    pub fn seen(&self) -> Option<&Seen> {
        self.seen.as_ref()
    }

    /// Whether the data is cleared before the other changes apply.
    pub fn is_clear(&self) -> bool {
        self.clear
    }

    /// The keys inserted (set), with their encoded values.
    pub fn inserted(&self) -> impl ExactSizeIterator<Item = (&str, &Bytes)> {
        self.set.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The keys removed.
    pub fn removed(&self) -> impl ExactSizeIterator<Item = &str> {
        self.removed.iter().map(String::as_str)
    }

    /// Applies these changes to a session's data map.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use bytes::Bytes;
    /// use tether_core::Changes;
    ///
    /// let mut data = HashMap::from([("a".to_string(), Bytes::from_static(b"1"))]);
    /// let mut changes = Changes::new();
    /// changes.remove("a");
    /// changes.insert("b", Bytes::from_static(b"2"));
    /// changes.apply_to(&mut data);
    /// assert_eq!(data.len(), 1);
    /// assert_eq!(data["b"], Bytes::from_static(b"2"));
    /// ```
    pub fn apply_to(&self, data: &mut HashMap<String, Bytes>) {
        self.apply_data(data);
    }

    /// Applies these changes to a whole record: its data, its principal and its last use.
    pub fn apply_to_record(&self, record: &mut Record) {
        self.apply_data(&mut record.data);
        if let Some(principal) = &self.principal {
            record.principal = Some(principal.clone());
        }
        if let Some(seen) = &self.seen {
            record.seen = Some(Box::new(seen.clone()));
        }
    }

    fn apply_data(&self, data: &mut HashMap<String, Bytes>) {
        if self.clear {
            data.clear();
        }
        for key in &self.removed {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn set_then_remove_is_a_removal() {
        let mut c = Changes::new();
        c.insert("k", b("v"));
        c.remove("k");
        assert_eq!(c.inserted().count(), 0);
        assert_eq!(c.removed().collect::<Vec<_>>(), ["k"]);
    }

    #[test]
    fn remove_then_set_is_a_set() {
        let mut c = Changes::new();
        c.remove("k");
        c.insert("k", b("v"));
        assert_eq!(c.removed().count(), 0);
        assert_eq!(c.inserted().count(), 1);
    }

    #[test]
    fn clear_keeps_later_sets_only() {
        let mut data = HashMap::from([("old".to_string(), b("1")), ("k".to_string(), b("1"))]);
        let mut c = Changes::new();
        c.insert("gone", b("x"));
        c.clear();
        c.insert("k", b("2"));
        c.remove("never-there");
        assert!(c.is_clear());
        assert_eq!(c.removed().count(), 0);
        c.apply_to(&mut data);
        assert_eq!(data, HashMap::from([("k".to_string(), b("2"))]));
    }

    #[test]
    fn metadata_changes_are_changes() {
        let mut c = Changes::new();
        c.bind(Principal::new("alice").unwrap());
        assert!(!c.is_empty());
        let mut c = Changes::new();
        c.set_seen(Seen::new(crate::Timestamp::from_millis(1)));
        assert!(!c.is_empty());
        let now = crate::Timestamp::from_millis(1);
        let mut record = Record::new(
            crate::Id::from_bytes([1; 16]),
            crate::Expiry::new(now, std::time::Duration::from_secs(1), None),
            now,
        );
        c.bind(Principal::new("bob").unwrap());
        c.insert("k", b("v"));
        c.apply_to_record(&mut record);
        assert_eq!(record.principal, Some(Principal::new("bob").unwrap()));
        assert_eq!(record.seen.as_deref(), Some(&Seen::new(now)));
        assert_eq!(record.data.len(), 1);
        // A later change that binds nobody keeps the principal.
        Changes::new().apply_to_record(&mut record);
        assert!(record.principal.is_some());
    }

    #[test]
    fn clear_alone_is_not_empty() {
        let mut c = Changes::new();
        c.clear();
        assert!(!c.is_empty());
    }
}
