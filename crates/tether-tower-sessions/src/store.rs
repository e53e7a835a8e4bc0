//! The adapter: tower-sessions' `SessionStore` over a tether store.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use tether_core::{Applied, Changes, Created, Expiry, Record, Timestamp};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id as TowerId, Record as TowerRecord};
use tower_sessions_core::session_store;

use crate::{Error, to_tether, to_tower};

/// How many ids [`TetherStore`]'s `create` tries before it gives up. With 128 random bits a
/// second attempt already means something is wrong with the random source.
pub const CREATE_ATTEMPTS: usize = 8;

/// tower-sessions' [`SessionStore`](tower_sessions_core::SessionStore) over any tether store.
///
/// Each value of a tower-sessions record (a `serde_json::Value`) is stored under its key as its
/// JSON text, which is what tether's `Codec::Json` reads, so a tether-sessions layer configured
/// with that codec reads the same sessions. See the [crate docs](crate) for the mapping of ids
/// and expiry and what `save` protects against.
///
/// # Example
///
/// ```
/// use tether_memory::MemoryStore;
/// use tether_tower_sessions::TetherStore;
/// use tower_sessions::SessionManagerLayer;
///
/// let layer = SessionManagerLayer::new(TetherStore::new(MemoryStore::new()));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct TetherStore<S> {
    store: S,
}

impl<S: tether_core::SessionStore> TetherStore<S> {
    /// Serves tower-sessions from `store`.
    pub const fn new(store: S) -> Self {
        Self { store }
    }

    /// The tether store.
    pub const fn get_ref(&self) -> &S {
        &self.store
    }

    /// The tether store, back.
    pub fn into_inner(self) -> S {
        self.store
    }

    async fn create_record(&self, record: &mut TowerRecord) -> Result<(), Error> {
        let now = Timestamp::now();
        let data = encode_data(&record.data)?;
        let expiry = to_expiry(record.expiry_date, now);
        for attempt in 0..CREATE_ATTEMPTS {
            if attempt > 0 {
                // tower-sessions' collision contract: on a taken id, draw a fresh one and retry.
                record.id = to_tower(tether_core::Id::random()?);
            }
            let tether = Record::new(to_tether(record.id), expiry, now).with_data(data.clone());
            match self.store.create(&tether).await? {
                Created::Created => return Ok(()),
                Created::IdTaken => tracing::warn!("session id collision on create; retrying"),
            }
        }
        Err(Error::IdCollisions(CREATE_ATTEMPTS))
    }

    async fn save_record(&self, record: &TowerRecord) -> Result<(), Error> {
        let id = to_tether(record.id);
        let now = Timestamp::now();
        let Some(stored) = self.store.load(&id).await? else {
            // tower-sessions calls `save` only for a session it loaded earlier in the request,
            // so it was deleted (a logout, a cycle_id) or expired since. Deletion is final: a
            // late request does not bring it back.
            tracing::debug!("session gone before save; not re-created");
            return Ok(());
        };
        let changes = diff(&stored.data, &record.data)?;
        let expiry = to_expiry(record.expiry_date, now);
        let applied = if changes.is_empty() {
            if stored.expiry == expiry {
                return Ok(());
            }
            self.store.touch(&id, &expiry).await?
        } else {
            self.store.apply(&id, &changes, &expiry).await?
        };
        if applied == Applied::Missing {
            tracing::debug!("session gone during save; not re-created");
        }
        Ok(())
    }

    async fn load_record(&self, id: &TowerId) -> Result<Option<TowerRecord>, Error> {
        let Some(record) = self.store.load(&to_tether(*id)).await? else {
            return Ok(None);
        };
        let mut data = HashMap::with_capacity(record.data.len());
        for (key, bytes) in record.data {
            match serde_json::from_slice(&bytes) {
                Ok(value) => {
                    data.insert(key, value);
                }
                Err(source) => return Err(Error::Decode { key, source }),
            }
        }
        Ok(Some(TowerRecord {
            id: *id,
            data,
            expiry_date: to_date(record.expiry.expires_at()),
        }))
    }
}

#[async_trait]
impl<S: tether_core::SessionStore> tower_sessions_core::SessionStore for TetherStore<S> {
    async fn create(&self, record: &mut TowerRecord) -> session_store::Result<()> {
        Ok(self.create_record(record).await?)
    }

    async fn save(&self, record: &TowerRecord) -> session_store::Result<()> {
        Ok(self.save_record(record).await?)
    }

    async fn load(&self, id: &TowerId) -> session_store::Result<Option<TowerRecord>> {
        Ok(self.load_record(id).await?)
    }

    async fn delete(&self, id: &TowerId) -> session_store::Result<()> {
        Ok(self
            .store
            .delete(&to_tether(*id))
            .await
            .map_err(Error::from)?)
    }
}

/// Every value as its JSON text.
fn encode_data(data: &HashMap<String, serde_json::Value>) -> Result<HashMap<String, Bytes>, Error> {
    data.iter()
        .map(|(key, value)| Ok((key.clone(), encode(key, value)?)))
        .collect()
}

/// The keys of `wanted` whose JSON text differs from what `stored` holds, and the keys of
/// `stored` that `wanted` no longer has.
fn diff(
    stored: &HashMap<String, Bytes>,
    wanted: &HashMap<String, serde_json::Value>,
) -> Result<Changes, Error> {
    let mut changes = Changes::new();
    for (key, value) in wanted {
        let bytes = encode(key, value)?;
        // Comparing the text, not the parsed value: a value stored with another layout (key
        // order) is written once more, which is harmless; a changed one is never missed.
        if stored.get(key) != Some(&bytes) {
            changes.insert(key.clone(), bytes);
        }
    }
    for key in stored.keys() {
        if !wanted.contains_key(key) {
            changes.remove(key.clone());
        }
    }
    Ok(changes)
}

/// tower-sessions hands over only a date. It becomes a sliding expiry whose idle timeout is the
/// time left, with no absolute deadline: see "Expiry" in the crate docs.
fn to_expiry(date: OffsetDateTime, now: Timestamp) -> Expiry {
    let expires_at = to_timestamp(date);
    Expiry::from_parts(expires_at, expires_at.duration_since(now), None)
}

/// Milliseconds since the epoch, rounded down; a date before 1970 is the epoch (already past).
fn to_timestamp(date: OffsetDateTime) -> Timestamp {
    let millis = date.unix_timestamp_nanos().div_euclid(1_000_000);
    Timestamp::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// A tether instant as a date; past what `time` can represent, its last representable instant.
fn to_date(at: Timestamp) -> OffsetDateTime {
    let nanos = i128::from(at.as_millis()) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or_else(|_| time::PrimitiveDateTime::MAX.assume_utc())
}

/// One value as its JSON text, as `Codec::Json` encodes it.
fn encode(key: &str, value: &serde_json::Value) -> Result<Bytes, Error> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|source| Error::Encode {
            key: key.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn diff_holds_only_changed_new_and_removed_keys() {
        let stored = encode_data(&HashMap::from([
            ("same".to_string(), json!({"a": 1})),
            ("changed".to_string(), json!(1)),
            ("gone".to_string(), json!("x")),
        ]))
        .unwrap();
        let wanted = HashMap::from([
            ("same".to_string(), json!({"a": 1})),
            ("changed".to_string(), json!(2)),
            ("new".to_string(), json!(null)),
        ]);
        let changes = diff(&stored, &wanted).unwrap();
        let mut inserted: Vec<_> = changes.inserted().map(|(k, _)| k).collect();
        inserted.sort_unstable();
        assert_eq!(inserted, ["changed", "new"]);
        assert_eq!(changes.removed().collect::<Vec<_>>(), ["gone"]);
        assert!(!changes.is_clear());
        assert!(
            diff(
                &stored,
                &HashMap::from([
                    ("same".to_string(), json!({"a": 1})),
                    ("changed".to_string(), json!(1)),
                    ("gone".to_string(), json!("x")),
                ])
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn values_are_what_the_json_codec_reads() {
        let value = json!({"user": "alice", "roles": ["admin"], "n": 3});
        let bytes = encode("k", &value).unwrap();
        let back: serde_json::Value = tether_core::Codec::Json.decode(&bytes).unwrap();
        assert_eq!(back, value);
        assert_eq!(tether_core::Codec::Json.encode(&value).unwrap(), bytes);
    }

    #[test]
    fn dates_and_timestamps_round_trip_to_the_millisecond() {
        let now = Timestamp::now();
        let date = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let expiry = to_expiry(date, now);
        assert_eq!(
            to_date(expiry.expires_at()),
            date.replace_millisecond(date.millisecond()).unwrap()
        );
        assert!(expiry.idle_timeout() <= Duration::from_secs(3601));
        assert!(expiry.idle_timeout() >= Duration::from_secs(3599));
        assert_eq!(expiry.absolute_deadline(), None);

        // Before 1970: the epoch, already past. Past year 9999: time's last instant.
        assert_eq!(
            to_timestamp(OffsetDateTime::UNIX_EPOCH - time::Duration::days(1)),
            Timestamp::from_millis(0)
        );
        assert_eq!(
            to_date(Timestamp::from_millis(u64::MAX)),
            time::PrimitiveDateTime::MAX.assume_utc()
        );
    }
}
