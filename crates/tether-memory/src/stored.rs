//! One session as the store keeps it: what a [`Record`] holds, less the id (the cache's key
//! already is the id), with the data packed into a single block.
//!
//! A `HashMap<String, Bytes>` of one key takes about 350 bytes of heap (a table of four
//! buckets, the key's block, the value's block and its shared header); the packed block of the
//! same key takes about 64 (the block and its shared header). Most sessions hold a handful of
//! small keys, and a store of a million sessions pays that difference a million times. A read
//! unpacks the block into the map of the record it returns, which it had to build anyway: the
//! values it hands out are slices of the block, not copies.

use std::collections::HashMap;

use bytes::Bytes;
use tether_core::{Changes, Expiry, Id, Principal, Record, Seen, SessionInfo, Timestamp};

/// A session in the store.
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) data: Packed,
    expiry: StoredExpiry,
    pub(crate) created_at: Timestamp,
    pub(crate) principal: Option<Principal>,
    pub(crate) seen: Option<Box<Seen>>,
}

impl Stored {
    pub(crate) fn from_record(record: &Record) -> Self {
        Self {
            data: Packed::from_map(&record.data),
            expiry: StoredExpiry::from(record.expiry),
            created_at: record.created_at,
            principal: record.principal.clone(),
            seen: record.seen.clone(),
        }
    }

    /// The session as a [`Record`] under `id`.
    pub(crate) fn to_record(&self, id: Id) -> Record {
        let mut record =
            Record::new(id, self.expiry(), self.created_at).with_data(self.data.to_map());
        record.principal.clone_from(&self.principal);
        record.seen.clone_from(&self.seen);
        record
    }

    /// Its entry in a principal's list of sessions.
    pub(crate) fn info(&self, id: &Id) -> SessionInfo {
        SessionInfo::new(
            tether_core::SessionHandle::of(id),
            self.created_at,
            self.expires_at(),
        )
        .with_seen(self.seen.as_deref().cloned())
    }

    /// When the session ends.
    pub(crate) fn expires_at(&self) -> Timestamp {
        self.expiry.expires_at
    }

    pub(crate) fn expiry(&self) -> Expiry {
        self.expiry.into()
    }

    pub(crate) fn set_expiry(&mut self, expiry: Expiry) {
        self.expiry = StoredExpiry::from(expiry);
    }

    /// Whether the session has ended at `now`.
    pub(crate) fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at()
    }

    /// Applies `changes`: data, principal and last use.
    pub(crate) fn apply(&mut self, changes: &Changes) {
        if changes.is_clear() || changes.removed().len() > 0 || changes.inserted().len() > 0 {
            self.data = self.data.with_changes(changes);
        }
        if let Some(principal) = changes.principal() {
            self.principal = Some(principal.clone());
        }
        if let Some(seen) = changes.seen() {
            self.seen = Some(Box::new(seen.clone()));
        }
    }
}

/// An [`Expiry`] in 24 bytes instead of 40: the idle timeout in nanoseconds (saturating at
/// 584 years), no absolute deadline as `u64::MAX` milliseconds (which is never reached, so it
/// means the same).
#[derive(Clone, Copy)]
struct StoredExpiry {
    expires_at: Timestamp,
    idle_nanos: u64,
    absolute_deadline: Timestamp,
}

/// The absolute deadline of a session without one.
const NEVER: Timestamp = Timestamp::from_millis(u64::MAX);

impl From<Expiry> for StoredExpiry {
    fn from(expiry: Expiry) -> Self {
        Self {
            expires_at: expiry.expires_at(),
            idle_nanos: u64::try_from(expiry.idle_timeout().as_nanos()).unwrap_or(u64::MAX),
            absolute_deadline: expiry.absolute_deadline().unwrap_or(NEVER),
        }
    }
}

impl From<StoredExpiry> for Expiry {
    fn from(stored: StoredExpiry) -> Self {
        Self::from_parts(
            stored.expires_at,
            std::time::Duration::from_nanos(stored.idle_nanos),
            Some(stored.absolute_deadline).filter(|&deadline| deadline != NEVER),
        )
    }
}

/// Bytes of the two lengths before each entry.
const HEADER: usize = 8;

/// A session's keys and values in one block: per entry, the key's length and the value's
/// length (`u32`, little-endian), then the key's bytes and the value's. Keys are unique.
#[derive(Clone, Default)]
pub(crate) struct Packed(Bytes);

impl Packed {
    pub(crate) fn from_map(data: &HashMap<String, Bytes>) -> Self {
        let mut block = Vec::with_capacity(data.iter().map(|(k, v)| entry_len(k, v)).sum());
        for (key, value) in data {
            push(&mut block, key, value);
        }
        Self(Bytes::from(block))
    }

    /// The entries, in block order.
    pub(crate) fn entries(&self) -> Entries<'_> {
        Entries { rest: &self.0 }
    }

    /// The number of entries, counted from their framing alone (no key is checked).
    fn len(&self) -> usize {
        let mut rest: &[u8] = &self.0;
        let mut count = 0;
        while let Some((_, _, tail)) = split_entry(rest) {
            rest = tail;
            count += 1;
        }
        count
    }

    /// The data as a map; the values are slices of the block.
    pub(crate) fn to_map(&self) -> HashMap<String, Bytes> {
        let mut map = HashMap::with_capacity(self.len());
        for (key, value) in self.entries() {
            map.insert(key.to_owned(), self.0.slice_ref(value));
        }
        map
    }

    /// The value under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        self.entries()
            .find_map(|(k, v)| (k == key).then(|| self.0.slice_ref(v)))
    }

    /// A block with `changes` applied: the entries they leave alone, then those they set.
    pub(crate) fn with_changes(&self, changes: &Changes) -> Self {
        // Room for the old block and every new entry: one pass, one allocation. What the
        // changes replaced or removed stays as spare room until the next write.
        let added = changes
            .inserted()
            .map(|(k, v)| entry_len(k, v))
            .sum::<usize>();
        self.rebuilt(
            self.0.len() + added,
            |key| !changes.touches(key),
            changes.inserted().map(|(key, value)| (key, &value[..])),
        )
    }

    /// A block with `key` set to `value`, or removed when `None`.
    pub(crate) fn with_key(&self, key: &str, value: Option<&[u8]>) -> Self {
        let kept = self
            .entries()
            .filter(|(k, _)| *k != key)
            .map(|(k, v)| entry_len(k, v))
            .sum::<usize>();
        let len = kept + value.map_or(0, |v| entry_len(key, v));
        self.rebuilt(len, |k| k != key, value.map(|value| (key, value)))
    }

    /// A block of `capacity` bytes holding the entries whose key `keep` accepts, then `added`.
    fn rebuilt<'a>(
        &self,
        capacity: usize,
        keep: impl Fn(&str) -> bool,
        added: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Self {
        let mut block = Vec::with_capacity(capacity);
        for (key, value) in self.entries().filter(|(key, _)| keep(key)) {
            push(&mut block, key, value);
        }
        for (key, value) in added {
            push(&mut block, key, value);
        }
        Self(Bytes::from(block))
    }
}

fn entry_len(key: &str, value: &[u8]) -> usize {
    HEADER + key.len() + value.len()
}

fn push(block: &mut Vec<u8>, key: &str, value: &[u8]) {
    // Session keys and values are bounded far below 4 GiB by the layer's size limit; a
    // longer one would be cut by the cast, so it is checked.
    let (Ok(key_len), Ok(value_len)) = (u32::try_from(key.len()), u32::try_from(value.len()))
    else {
        tracing::error!(
            key_len = key.len(),
            "a session entry of 4 GiB or more was not stored"
        );
        return;
    };
    block.extend_from_slice(&key_len.to_le_bytes());
    block.extend_from_slice(&value_len.to_le_bytes());
    block.extend_from_slice(key.as_bytes());
    block.extend_from_slice(value);
}

/// The entries of a [`Packed`] block.
#[derive(Clone)]
pub(crate) struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, value, rest) = split_entry(self.rest)?;
        self.rest = rest;
        // Only `push` writes blocks, from `&str` keys.
        let key = std::str::from_utf8(key).ok()?;
        Some((key, value))
    }
}

/// The first entry of `block` as its key's bytes, its value and the rest of the block; `None`
/// at the end of the block or where it is cut short.
fn split_entry(block: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (lengths, rest) = block.split_first_chunk::<HEADER>()?;
    let (key_len, value_len) = lengths.split_at(4);
    let key_len = usize::try_from(u32::from_le_bytes(key_len.try_into().ok()?)).ok()?;
    let value_len = usize::try_from(u32::from_le_bytes(value_len.try_into().ok()?)).ok()?;
    let (key, rest) = rest.split_at_checked(key_len)?;
    let (value, rest) = rest.split_at_checked(value_len)?;
    Some((key, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &[u8])]) -> HashMap<String, Bytes> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Bytes::copy_from_slice(v)))
            .collect()
    }

    #[test]
    fn an_expiry_round_trips() {
        let now = Timestamp::from_millis(1_764_633_600_123);
        for expiry in [
            Expiry::new(now, std::time::Duration::from_secs(1800), None),
            Expiry::new(
                now,
                std::time::Duration::from_nanos(1_500_000_001),
                Some(now + std::time::Duration::from_secs(60)),
            ),
            Expiry::from_parts(now, std::time::Duration::ZERO, Some(now)),
        ] {
            assert_eq!(Expiry::from(StoredExpiry::from(expiry)), expiry);
        }
    }

    #[test]
    fn a_map_round_trips() {
        for data in [
            map(&[]),
            map(&[("count", b"\x01")]),
            map(&[("", b""), ("cart", b"[1,2,3]"), ("ünïcode", &[0xff; 300])]),
        ] {
            let packed = Packed::from_map(&data);
            assert_eq!(packed.len(), data.len());
            assert_eq!(packed.to_map(), data);
        }
    }

    #[test]
    fn changes_keep_untouched_keys_and_replace_the_rest() {
        let packed = Packed::from_map(&map(&[("a", b"1"), ("b", b"2"), ("c", b"3")]));
        let mut changes = Changes::new();
        changes.insert("b", Bytes::from_static(b"20"));
        changes.insert("d", Bytes::from_static(b"4"));
        changes.remove("c");
        let changed = packed.with_changes(&changes);
        assert_eq!(
            changed.to_map(),
            map(&[("a", b"1"), ("b", b"20"), ("d", b"4")])
        );
        let mut clear = Changes::new();
        clear.clear();
        clear.insert("z", Bytes::from_static(b"9"));
        assert_eq!(changed.with_changes(&clear).to_map(), map(&[("z", b"9")]));
    }

    #[test]
    fn one_key_is_set_or_removed() {
        let packed = Packed::from_map(&map(&[("a", b"1"), ("b", b"2")]));
        assert_eq!(packed.get("b").as_deref(), Some(&b"2"[..]));
        assert_eq!(packed.get("x"), None);
        let set = packed.with_key("b", Some(b"22"));
        assert_eq!(set.to_map(), map(&[("a", b"1"), ("b", b"22")]));
        let removed = set.with_key("a", None);
        assert_eq!(removed.to_map(), map(&[("b", b"22")]));
        assert_eq!(removed.with_key("x", None).to_map(), removed.to_map());
    }

    #[test]
    fn a_truncated_block_ends_its_entries_instead_of_panicking() {
        let packed = Packed::from_map(&map(&[("a", b"1"), ("b", b"2")]));
        for cut in 0..packed.0.len() {
            let truncated = Packed(packed.0.slice(..cut));
            assert!(truncated.entries().count() < 2);
            assert_eq!(truncated.len(), truncated.entries().count());
        }
    }
}
