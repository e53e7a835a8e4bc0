//! Live sessions made straight through a store's API, for the measures that need many of
//! them (memory per session): one key each, `count`, holding the integer the bench's `/write`
//! route would have stored, with the expiry the session layer gives a new session by default;
//! each read once after it is made.

use std::collections::HashMap;

use tether_core::{BoxError, Changes, Codec, Expiry, Id, Record, SessionStore as _, Timestamp};
use tether_sessions::{DEFAULT_ABSOLUTE_LIFETIME, DEFAULT_IDLE_TIMEOUT};
use tower_sessions::session_store::SessionStore as _;

use crate::error::Doing as _;

/// The in-memory stores whose sessions the bench can make directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InMemory {
    /// tether-memory (moka, LRU, per-session expiry).
    TetherMemory,
    /// tower-sessions 0.14's MemoryStore (a `HashMap` behind a mutex).
    TowerSessionsMemory,
}

impl InMemory {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::TetherMemory => "tether-memory",
            Self::TowerSessionsMemory => "tower-sessions-memory",
        }
    }
}

impl std::fmt::Display for InMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tether-memory store with room for `live` sessions beside the `DEFAULT_MAX_SESSIONS` a
/// server would have, so nothing the measure makes is evicted.
fn tether_store(live: u64) -> tether_memory::MemoryStore {
    tether_memory::MemoryStore::with_max_sessions(
        tether_memory::DEFAULT_MAX_SESSIONS.saturating_add(live),
    )
}

/// Makes `count` one-key sessions in `store`; with `written`, changes each one's key once
/// after its first read and reads it again.
async fn fill_tether(
    store: &tether_memory::MemoryStore,
    count: u64,
    written: bool,
) -> Result<(), BoxError> {
    for _ in 0..count {
        // Encoded anew for each session, as the layer does: a store that keeps the value it is
        // given keeps that allocation.
        let value = Codec::default().encode(&1u64)?;
        let now = Timestamp::now();
        let expiry = Expiry::new(
            now,
            DEFAULT_IDLE_TIMEOUT,
            Some(now + DEFAULT_ABSOLUTE_LIFETIME),
        );
        let record = Record::new(Id::random()?, expiry, now)
            .with_data(HashMap::from([("count".to_owned(), value)]));
        let _created = store
            .create(&record)
            .await
            .doing(|| "making a tether-memory session".into())?;
        // Read once, as a live session is: the first read may allocate what later ones share.
        let _read = store
            .load(&record.id)
            .await
            .doing(|| "reading a tether-memory session".into())?;
        if written {
            let mut changes = Changes::new();
            changes.insert("count", Codec::default().encode(&2u64)?);
            let _applied = store
                .apply(&record.id, &changes, &expiry.renewed(Timestamp::now()))
                .await
                .doing(|| "writing a tether-memory session".into())?;
            let _read = store
                .load(&record.id)
                .await
                .doing(|| "reading a tether-memory session".into())?;
        }
    }
    store.run_pending_tasks().await;
    Ok(())
}

/// Makes `count` one-key sessions in `store`, as tower-sessions' layer would store them; with
/// `written`, saves each once more with its key changed and reads it again.
async fn fill_tower_sessions(
    store: &tower_sessions::MemoryStore,
    count: u64,
    written: bool,
) -> Result<(), BoxError> {
    let lifetime = tower_sessions::cookie::time::Duration::try_from(DEFAULT_IDLE_TIMEOUT)?;
    for _ in 0..count {
        let mut record = tower_sessions::session::Record {
            id: tower_sessions::session::Id::default(),
            data: HashMap::from([("count".to_owned(), serde_json::json!(1))]),
            expiry_date: tower_sessions::cookie::time::OffsetDateTime::now_utc() + lifetime,
        };
        store
            .create(&mut record)
            .await
            .doing(|| "making a tower-sessions session".into())?;
        let _read = store
            .load(&record.id)
            .await
            .doing(|| "reading a tower-sessions session".into())?;
        if written {
            record.data.insert("count".to_owned(), serde_json::json!(2));
            store
                .save(&record)
                .await
                .doing(|| "writing a tower-sessions session".into())?;
            let _read = store
                .load(&record.id)
                .await
                .doing(|| "reading a tower-sessions session".into())?;
        }
    }
    Ok(())
}

/// A store of one of the [`InMemory`] kinds, filled.
pub(crate) enum Filled {
    Tether(tether_memory::MemoryStore),
    TowerSessions(tower_sessions::MemoryStore),
}

impl Filled {
    /// Sessions the store says it holds, when it can say.
    pub(crate) fn held(&self) -> Option<u64> {
        match self {
            Self::Tether(store) => Some(store.session_count()),
            Self::TowerSessions(_) => None,
        }
    }
}

/// A fresh store of kind `store` holding `count` one-key sessions, each `written` once if
/// asked.
pub(crate) async fn filled(store: InMemory, count: u64, written: bool) -> Result<Filled, BoxError> {
    Ok(match store {
        InMemory::TetherMemory => {
            let tether = tether_store(count);
            fill_tether(&tether, count, written).await?;
            Filled::Tether(tether)
        }
        InMemory::TowerSessionsMemory => {
            let tower = tower_sessions::MemoryStore::default();
            fill_tower_sessions(&tower, count, written).await?;
            Filled::TowerSessions(tower)
        }
    })
}
