//! The per-request session handle.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tether_core::{
    Changes, Expiry, Id, KEY_OVERHEAD, KeyUpdate, KeyUpdated, Loaded, Principal, Renewal,
    SessionHandle, SessionStore, Timestamp, data_size, entry_size, error_chain,
};
use tokio::sync::OnceCell;
use tracing::Instrument as _;

use crate::activity::Observed;
use crate::config::Config;
use crate::index::SessionIndex;
use crate::save::Plan;
use crate::telemetry::{Operation, Outcome, Rejection, store_span};
use crate::{Error, Result};

/// Attempts [`Session::update`] makes before it answers [`Error::Conflict`]. Each lost attempt
/// means another request wrote the key in between, and the next starts at once from the value
/// the store reported: among requests contending for one key, the one that lost is the first
/// to try again (a pause would hand the key to newer requests). Eight requests writing one key
/// as fast as they can lose an attempt about seven times in eight.
pub const UPDATE_ATTEMPTS: u32 = 256;

/// The longest encoding of a counter (a JSON `-9007199254740991`), for the size limit.
const MAX_COUNTER_LEN: usize = 17;

/// The session of the current request.
///
/// The [`SessionLayer`](crate::SessionLayer) puts one into every request's extensions; in axum
/// it is an extractor (feature `axum`). Cloning is cheap and every clone is the same session.
///
/// - **Lazy.** Nothing is read from the store until a method needs the data, and then only once
///   per request, whichever clone asks. A handler that never uses its session costs nothing.
/// - **New sessions cost nothing until used.** A visitor without a session gets one only when
///   something is inserted: then the layer stores it and sends the cookie.
/// - **Deltas.** The layer saves only the keys this request inserted or removed, so concurrent
///   requests of one session that change different keys all keep their changes.
/// - **Saved before the response.** Changes are written before the response head goes out; if
///   the write fails the client gets a `503`, never a response whose change was lost.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tether_sessions::{Session, Result};
///
/// async fn visit(session: Session) -> Result<String> {
///     let visits: u64 = session.get("visits").await?.unwrap_or(0) + 1;
///     session.insert("visits", &visits).await?;
///     Ok(format!("visit number {visits}"))
/// }
///
/// let app: Router = Router::new().route("/", get(visit));
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn SessionStore>,
    config: Arc<Config>,
    /// The valid id the request presented, if any.
    incoming: Option<Id>,
    /// The request's client, when the layer records activity.
    client: Option<Observed>,
    /// Initialised once the stored session was read into `state`.
    loaded: OnceCell<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The session as stored, when it exists in the store.
    stored: Option<Stored>,
    /// The data as this request sees it: stored data with this request's changes applied.
    data: HashMap<String, Bytes>,
    /// The principal as this request sees it.
    principal: Option<Principal>,
    /// Encoded size of `data`.
    size: usize,
    /// What this request changed.
    changes: Changes,
    /// An idle timeout set for this session, replacing the layer's.
    idle_timeout: Option<Duration>,
    /// `cycle_id` was called on a stored session.
    cycle: bool,
    /// Id of a stored session that `flush` ended.
    flushed: Option<Id>,
    /// The request named a session the store does not have.
    stale: bool,
    /// The response was produced; later changes would be lost.
    finished: bool,
    /// When the session was read: the time this request's deadlines are counted from.
    loaded_at: Option<Timestamp>,
    /// The read renewed the stored session's expiry, which the client must learn.
    renewed: bool,
    /// This request's use of the session, when the layer records activity.
    seen: Option<tether_core::Seen>,
}

#[derive(Clone, Copy)]
struct Stored {
    id: Id,
    expiry: Expiry,
}

impl Session {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        config: Arc<Config>,
        incoming: Option<Id>,
        client: Option<Observed>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                incoming,
                client,
                loaded: OnceCell::new(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The value under `key`, decoded as `T`, or `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// [`Error::Core`] when the session could not be loaded (a transient store error answers
    /// `503` through `IntoResponse`) or the stored value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.load().await?;
        let raw = self.state().data.get(key).cloned();
        raw.map(|bytes| self.inner.config.codec.decode(&bytes))
            .transpose()
            .map_err(Error::from)
    }

    /// Stores `value` under `key`, replacing what was there.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] or [`Error::TooManyKeys`] when the session would pass the layer's
    /// size or key limit, counting the whole session as this request sees it (the session is
    /// then unchanged; returned from an axum handler, it answers `413`); [`Error::Core`] when
    /// the value cannot be encoded or the session cannot be loaded; [`Error::Finished`] after
    /// the response was produced.
    pub async fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = self.inner.config.codec.encode(value)?;
        self.load().await?;
        if self.inner.config.rejects_conflicts(key) {
            return self.write_unless_changed(key, Some(bytes)).await;
        }
        self.writable()?.put(&self.inner.config, key, bytes)
    }

    /// Removes `key` and returns its value decoded as `T`, or `None` when it was absent.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get). If the old value is not a `T` the key is still removed.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.load().await?;
        let old = if self.inner.config.rejects_conflicts(key) {
            let old = self.state().data.get(key).cloned();
            self.write_unless_changed(key, None).await?;
            old
        } else {
            let mut state = self.writable()?;
            let old = state.data.remove(key);
            if let Some(bytes) = &old {
                state.size = state.size.saturating_sub(entry_size(key, bytes));
                state.changes.remove(key);
            }
            old
        };
        old.map(|bytes| self.inner.config.codec.decode(&bytes))
            .transpose()
            .map_err(Error::from)
    }

    /// Replaces the value under `key` with what `change` makes of it, atomically: no
    /// concurrent request's update of the same key is lost (two tabs adding to one cart), and
    /// returns the new value. `change` gets the current value (`None`: absent) and returns the
    /// new one (`None`: remove the key); it may run more than once, when another request
    /// changed the key meanwhile, so it should only compute.
    ///
    /// On a stored session this is written at once, as one compare-and-set of the key in the
    /// store (retried from the value the store reports, at most [`UPDATE_ATTEMPTS`] times), and
    /// stays written even if the handler then fails. On a session that is not stored yet, or
    /// a key this request already inserted or removed, it changes the request's view and is
    /// saved with the request's other changes.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert); [`Error::Conflict`] when every attempt lost to another
    /// writer of the key (returned from an axum handler, it answers `409`).
    ///
    /// # Example
    ///
    /// ```
    /// use tether_sessions::{Result, Session};
    ///
    /// async fn add_to_cart(session: Session, item: u32) -> Result<usize> {
    ///     let cart = session
    ///         .update("cart", |cart: Option<Vec<u32>>| {
    ///             let mut cart = cart.unwrap_or_default();
    ///             cart.push(item);
    ///             Some(cart)
    ///         })
    ///         .await?;
    ///     Ok(cart.map_or(0, |cart| cart.len()))
    /// }
    /// ```
    pub async fn update<T, F>(&self, key: &str, mut change: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        self.load().await?;
        let codec = self.inner.config.codec;
        let mut current = self.state().data.get(key).cloned();
        for attempt in 1..=UPDATE_ATTEMPTS {
            if attempt > 1 {
                self.inner.config.telemetry.update_retried();
            }
            let old = current.as_deref().map(|b| codec.decode(b)).transpose()?;
            let new = change(old);
            let bytes = new.as_ref().map(|v| codec.encode(v)).transpose()?;
            let swap = KeyUpdate::Swap {
                expected: current,
                new: bytes,
            };
            match self.update_key(key, swap).await? {
                KeyUpdated::Conflict(now) => current = now,
                _ => return Ok(new),
            }
        }
        tracing::debug!(
            key,
            attempts = UPDATE_ATTEMPTS,
            "session update gave up: the key kept changing"
        );
        self.inner.config.telemetry.rejected(Rejection::Conflict);
        Err(Error::Conflict {
            key: key.to_owned(),
        })
    }

    /// Adds `by` to the integer counter under `key` (an absent key counts as 0) and returns
    /// the new count. On a stored session the store adds in one step (in its script on
    /// Redis, under the session's lock in memory, at the primary on a replicated store), so
    /// concurrent increments all count; otherwise as for [`update`](Self::update).
    ///
    /// Counters hold integers within ±[`COUNTER_MAX`](tether_core::COUNTER_MAX) (2^53 - 1,
    /// exact on every store), read and written like any `i64` value of the session.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert); [`Error::Core`] with
    /// [`ErrorKind::NotACounter`](tether_core::ErrorKind::NotACounter) when the key holds
    /// something else or the count would leave the range.
    ///
    /// # Example
    ///
    /// ```
    /// use tether_sessions::{Result, Session};
    ///
    /// async fn visit(session: Session) -> Result<String> {
    ///     let visits = session.increment("visits", 1).await?;
    ///     Ok(format!("visit number {visits}"))
    /// }
    /// ```
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64> {
        self.load().await?;
        let codec = self.inner.config.codec;
        let update = KeyUpdate::Increment { by, codec };
        let now = match self.update_key(key, update).await? {
            KeyUpdated::Updated(Some(bytes)) => bytes,
            _ => {
                return Err(tether_core::Error::Backend(
                    "the store answered an increment without the count".into(),
                )
                .into());
            }
        };
        Ok(codec.decode(&now)?)
    }

    /// Writes `new` under `key` (removes it when `None`) only if the store still holds what
    /// this request sees there: the write of a key under
    /// [`WritePolicy::RejectOnConflict`](crate::WritePolicy::RejectOnConflict).
    async fn write_unless_changed(&self, key: &str, new: Option<Bytes>) -> Result<()> {
        let expected = self.state().data.get(key).cloned();
        match self
            .update_key(key, KeyUpdate::Swap { expected, new })
            .await?
        {
            KeyUpdated::Conflict(_) => {
                tracing::debug!(
                    key,
                    "session write refused: another request changed the key"
                );
                self.inner.config.telemetry.rejected(Rejection::Conflict);
                Err(Error::Conflict {
                    key: key.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Runs `update` of `key` in the store when the session is stored and this request left
    /// the key alone, and in the request's view otherwise; the view follows the outcome. A
    /// conflict leaves the store's value in the view, so the next attempt starts from it.
    async fn update_key(&self, key: &str, update: KeyUpdate) -> Result<KeyUpdated> {
        let config = &self.inner.config;
        let target = self.writable()?.store_target(config, key, &update)?;
        if let Some(id) = target {
            let span = store_span!("session.update_key", session = ?id, key);
            let call = self
                .inner
                .store
                .update_key(&id, key, &update)
                .instrument(span);
            let outcome = config
                .telemetry
                .store_call(Operation::UpdateKey, call)
                .await
                .inspect_err(|err| {
                    tracing::error!(session = ?id, error = %error_chain(err), "updating a session key failed");
                })?;
            let mut state = self.state();
            match &outcome {
                KeyUpdated::Updated(now) | KeyUpdated::Conflict(now) => {
                    state.mirror(key, now.clone());
                    return Ok(outcome);
                }
                KeyUpdated::Missing => {
                    tracing::warn!(session = ?id, "session ended while the request ran; it goes on as a new session");
                    state.forget_stored();
                }
            }
        }
        self.writable()?.update_in_view(config, key, &update)
    }

    /// Removes every key. The session itself stays (with its id); see [`flush`](Self::flush) to
    /// end it.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get), and [`Error::Finished`] after the response was produced.
    pub async fn clear(&self) -> Result<()> {
        self.load().await?;
        let mut state = self.writable()?;
        if !state.data.is_empty() {
            state.data.clear();
            state.size = 0;
            state.changes.clear();
        }
        Ok(())
    }

    /// Gives the session a new id, keeping its data; the old id stops working.
    ///
    /// Call it whenever privileges change, at login above all: an id an attacker planted in the
    /// victim's browser before login is then worthless (session fixation). A session that was
    /// never stored gets a fresh id anyway.
    ///
    /// # Errors
    ///
    /// As for [`clear`](Self::clear).
    pub async fn cycle_id(&self) -> Result<()> {
        self.load().await?;
        let mut state = self.writable()?;
        state.cycle = state.stored.is_some();
        Ok(())
    }

    /// Ends the session: it is deleted from the store and the client is told to forget its id.
    /// Inserting afterwards starts a new session with a new id.
    ///
    /// # Errors
    ///
    /// As for [`clear`](Self::clear).
    pub async fn flush(&self) -> Result<()> {
        self.load().await?;
        let mut state = self.writable()?;
        let ended = state.stored.take().map(|stored| stored.id);
        state.flushed = state.flushed.or(ended);
        state.data.clear();
        state.principal = None;
        state.size = 0;
        state.changes = Changes::new();
        state.cycle = false;
        state.idle_timeout = None;
        Ok(())
    }

    /// Binds this session to `principal`, typically the user's id right after a login (and
    /// after [`cycle_id`](Self::cycle_id)): the session is then listed under it by
    /// [`SessionIndex::sessions_of`] and can be signed out from another device. A session with
    /// no data yet is stored for it. The binding is saved with the request's other changes,
    /// in the same store call; it lasts until the session ends or is bound to another principal.
    ///
    /// # Errors
    ///
    /// As for [`clear`](Self::clear).
    ///
    /// # Example
    ///
    /// ```
    /// use tether_sessions::{Principal, Result, Session};
    ///
    /// async fn login(session: Session, user_id: u64) -> Result<()> {
    ///     session.cycle_id().await?;
    ///     session.set_principal(Principal::new(user_id.to_string())?).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn set_principal(&self, principal: Principal) -> Result<()> {
        self.load().await?;
        let mut state = self.writable()?;
        state.principal = Some(principal.clone());
        state.changes.bind(principal);
        Ok(())
    }

    /// The principal this session is bound to, if any.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub async fn principal(&self) -> Result<Option<Principal>> {
        self.load().await?;
        Ok(self.state().principal.clone())
    }

    /// The handle of this session (see [`SessionHandle`]), once it is known: as
    /// [`id`](Self::id). A session that gets a new id at the end of this request gets a new
    /// handle with it.
    pub fn handle(&self) -> Option<SessionHandle> {
        self.id().map(|id| SessionHandle::of(&id))
    }

    /// The sessions of every principal: list and revoke them.
    pub fn index(&self) -> SessionIndex {
        SessionIndex::new(Arc::clone(&self.inner.store))
    }

    /// Sets this session's idle timeout, replacing the layer's (a "remember me" login may keep
    /// a session for longer). The absolute lifetime still applies.
    ///
    /// # Errors
    ///
    /// As for [`clear`](Self::clear).
    pub async fn set_idle_timeout(&self, idle_timeout: Duration) -> Result<()> {
        self.load().await?;
        self.writable()?.idle_timeout = Some(idle_timeout);
        Ok(())
    }

    /// The id of the stored session, once known.
    ///
    /// Before the session was read, this is the id the request presented (whose session may
    /// have ended); after a read it is the stored session's id, or `None` for a session that
    /// does not exist yet. New ids are only chosen when the response is produced.
    pub fn id(&self) -> Option<Id> {
        if self.inner.loaded.initialized() {
            self.state().stored.map(|stored| stored.id)
        } else {
            self.inner.incoming
        }
    }

    /// Reads the stored session, once per request.
    async fn load(&self) -> Result<()> {
        self.inner
            .loaded
            .get_or_try_init(|| async {
                // The request's one clock reading: it decides expiry here and renewal in
                // `finish`, which a handler's run time cannot make matter.
                let now = Timestamp::now();
                let mut renewal = Renewal::new(now, self.inner.config.touch_threshold);
                if let Some(client) = &self.inner.client {
                    renewal = renewal.with_seen(client.seen(now));
                }
                let record = match self.inner.incoming {
                    Some(id) => self.fetch(id, &renewal).await?,
                    None => None,
                };
                let mut state = self.state();
                state.install(record, self.inner.incoming.is_some(), now);
                // The request's last use, written with whatever `finish` writes.
                state.seen = renewal.into_seen();
                Ok::<(), Error>(())
            })
            .await?;
        Ok(())
    }

    /// One read from the store, which may renew the session if its renewal is due (then no
    /// `touch` follows). Stored data that cannot be decoded counts as no session.
    async fn fetch(&self, id: Id, renewal: &Renewal) -> Result<Option<Loaded>> {
        let span = store_span!("session.load", session = ?id);
        let now = renewal.now();
        match self
            .inner
            .config
            .telemetry
            .store_call(
                Operation::Load,
                self.inner
                    .store
                    .load_renewing(&id, renewal)
                    .instrument(span),
            )
            .await
        {
            Ok(loaded) => Ok(loaded.filter(|l| !l.record.expiry.is_expired(now))),
            Err(err) if err.kind() == tether_core::ErrorKind::Corrupt => {
                tracing::error!(session = ?id, error = %error_chain(&err), "stored session is corrupt; starting a new one");
                Ok(None)
            }
            Err(err) => {
                tracing::error!(session = ?id, error = %error_chain(&err), "loading the session failed");
                Err(err.into())
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, but a poisoned lock must not take the request
        // down either.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn writable(&self) -> Result<MutexGuard<'_, State>> {
        let state = self.state();
        if state.finished {
            return Err(Error::Finished);
        }
        Ok(state)
    }

    /// Ends the request for this session and says what must be written. `None` when nothing
    /// was read, so nothing can have changed, or when the handler `failed` (its response is a
    /// `5xx` or made from a session [`Error`]) and such changes are not saved.
    pub(crate) fn finish(&self, failed: bool) -> Option<Plan> {
        let mut state = self.state();
        state.finished = true;
        if !self.inner.loaded.initialized() {
            self.inner.config.telemetry.request(Outcome::NoSession);
            return None;
        }
        if failed && !self.inner.config.save_on_server_error {
            tracing::debug!("the handler failed; session changes discarded");
            self.inner.config.telemetry.request(Outcome::Discarded);
            // A renewal the read made is stored already: the cookie must follow it.
            return state.renewed_at_read();
        }
        let now = state.loaded_at.unwrap_or_else(Timestamp::now);
        let seen = state.seen.take();
        let plan = state.plan(&self.inner.config, now, seen);
        match plan {
            Plan::Nothing => self.inner.config.telemetry.request(Outcome::Loaded),
            Plan::Renewed { .. } => self.inner.config.telemetry.request(Outcome::Touched),
            Plan::Create { .. } | Plan::Apply { .. } | Plan::Cycle { .. } => {
                self.inner.config.telemetry.session_size(state.size);
            }
            Plan::Touch { .. } | Plan::Revoke { .. } => {}
        }
        Some(plan)
    }

    pub(crate) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }
}

impl State {
    /// The session's size with `key` holding a value of `len` bytes, if the layer's limits
    /// allow it.
    fn size_after(&self, config: &Config, key: &str, len: usize) -> Result<usize> {
        let replaced = self.data.get(key).map(|old| entry_size(key, old));
        let keys = self.data.len() + usize::from(replaced.is_none());
        if keys > config.max_keys {
            let limit = config.max_keys;
            tracing::debug!(key, keys, limit, "session insert refused: too many keys");
            config.telemetry.rejected(Rejection::TooManyKeys);
            return Err(Error::TooManyKeys { keys, limit });
        }
        let size = self
            .size
            .saturating_sub(replaced.unwrap_or(0))
            .saturating_add(key.len().saturating_add(len).saturating_add(KEY_OVERHEAD));
        if size > config.max_size {
            let limit = config.max_size;
            tracing::debug!(key, size, limit, "session insert refused: too large");
            config.telemetry.rejected(Rejection::TooLarge);
            return Err(Error::TooLarge { size, limit });
        }
        Ok(size)
    }

    /// The stored session's id when `update` of `key` goes to the store: the session is
    /// stored and this request left the key alone. The layer's limits are checked first, with
    /// the largest counter for an increment.
    fn store_target(&self, config: &Config, key: &str, update: &KeyUpdate) -> Result<Option<Id>> {
        let Some(stored) = self.stored.filter(|_| !self.changes.touches(key)) else {
            return Ok(None);
        };
        let len = match update {
            KeyUpdate::Swap { new, .. } => new.as_ref().map(Bytes::len),
            _ => Some(MAX_COUNTER_LEN),
        };
        if let Some(len) = len {
            self.size_after(config, key, len)?;
        }
        Ok(Some(stored.id))
    }

    /// Runs `update` of `key` on the request's view; what it writes is saved with the
    /// request's other changes.
    fn update_in_view(
        &mut self,
        config: &Config,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated> {
        let outcome = update.evaluate(key, self.data.get(key))?;
        if let KeyUpdated::Updated(new) = &outcome {
            match new.clone() {
                Some(bytes) => self.put(config, key, bytes)?,
                None => self.take(key),
            }
        }
        Ok(outcome)
    }

    /// Sets `key` in the request's view and its changes, within the layer's limits.
    fn put(&mut self, config: &Config, key: &str, bytes: Bytes) -> Result<()> {
        self.size = self.size_after(config, key, bytes.len())?;
        self.changes.insert(key, bytes.clone());
        self.data.insert(key.to_owned(), bytes);
        Ok(())
    }

    /// Removes `key` from the request's view and records the removal.
    fn take(&mut self, key: &str) {
        if let Some(bytes) = self.data.remove(key) {
            self.size = self.size.saturating_sub(entry_size(key, &bytes));
            self.changes.remove(key);
        }
    }

    /// Shows in the request's view what the store holds under `key` (written there already,
    /// so not a change to save).
    fn mirror(&mut self, key: &str, value: Option<Bytes>) {
        let old = match value {
            Some(bytes) => {
                self.size = self.size.saturating_add(entry_size(key, &bytes));
                self.data.insert(key.to_owned(), bytes)
            }
            None => self.data.remove(key),
        };
        if let Some(old) = old {
            self.size = self.size.saturating_sub(entry_size(key, &old));
        }
    }

    /// The stored session ended under this request (another request deleted or revoked it):
    /// from here on the request has a new, empty session, as if it had come without one.
    fn forget_stored(&mut self) {
        self.stored = None;
        self.data.clear();
        self.principal = None;
        self.size = 0;
        self.changes = Changes::new();
        self.cycle = false;
        self.stale = true;
    }

    /// The plan that tells the client of a renewal the read made, if it made one.
    fn renewed_at_read(&self) -> Option<Plan> {
        let stored = self.stored.filter(|_| self.renewed)?;
        Some(Plan::Renewed {
            id: stored.id,
            expiry: stored.expiry,
        })
    }

    fn install(&mut self, loaded: Option<Loaded>, presented: bool, now: Timestamp) {
        self.loaded_at = Some(now);
        match loaded {
            Some(Loaded { record, renewed }) => {
                self.renewed = renewed;
                self.size = data_size(&record.data);
                self.data = record.data;
                self.principal = record.principal;
                self.stored = Some(Stored {
                    id: record.id,
                    expiry: record.expiry,
                });
            }
            None => self.stale = presented,
        }
    }

    /// What to write; `seen` is this request's use of the session, written with whatever is
    /// written anyway.
    fn plan(&mut self, config: &Config, now: Timestamp, seen: Option<tether_core::Seen>) -> Plan {
        let mut changes = std::mem::take(&mut self.changes);
        let Some(stored) = self.stored else {
            return if !self.data.is_empty() || changes.principal().is_some() {
                Plan::Create {
                    ended: self.flushed,
                    data: std::mem::take(&mut self.data),
                    expiry: config.new_expiry(now, self.idle_timeout),
                    principal: changes.principal().cloned(),
                    seen,
                }
            } else if self.flushed.is_some() || self.stale {
                Plan::Revoke {
                    ended: self.flushed,
                }
            } else {
                Plan::Nothing
            };
        };
        let renewal_due = stored.expiry.needs_renewal(now, config.touch_threshold);
        let expiry = match self.idle_timeout {
            Some(idle) => Expiry::new(now, idle, stored.expiry.absolute_deadline()),
            // A write moves the deadline once it is due, as a read does. Until then it leaves
            // the stored deadline as it is: on PostgreSQL the session row's update then changes
            // no indexed column, so it adds no index entries.
            None if renewal_due => stored.expiry.renewed(now),
            None => stored.expiry,
        };
        let changed = !changes.is_empty() || self.idle_timeout.is_some();
        let mut seen = seen;
        if let Some(seen) = seen.take_if(|_| self.cycle || changed) {
            changes.set_seen(seen);
        }
        if self.cycle {
            Plan::Cycle {
                old: stored.id,
                changes,
                expiry,
            }
        } else if changed {
            Plan::Apply {
                id: stored.id,
                changes,
                expiry,
            }
        } else if renewal_due {
            Plan::Touch {
                id: stored.id,
                expiry,
                seen,
            }
        } else {
            self.renewed_at_read().unwrap_or(Plan::Nothing)
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("loaded", &self.inner.loaded.initialized())
            .finish_non_exhaustive()
    }
}

/// A session key with the type of its value, so one key is always read and written as one type.
///
/// # Example
///
/// ```
/// use tether_sessions::{Result, Session, TypedKey};
///
/// const CART: TypedKey<Vec<u32>> = TypedKey::new("cart");
///
/// async fn add_to_cart(session: &Session, item: u32) -> Result<usize> {
///     let mut cart = CART.get(session).await?.unwrap_or_default();
///     cart.push(item);
///     CART.insert(session, &cart).await?;
///     Ok(cart.len())
/// }
/// ```
pub struct TypedKey<T> {
    name: &'static str,
    value: PhantomData<fn() -> T>,
}

impl<T> TypedKey<T> {
    /// A key named `name` holding values of type `T`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            value: PhantomData,
        }
    }

    /// The key's name in the session.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T: Serialize + DeserializeOwned> TypedKey<T> {
    /// [`Session::get`] for this key.
    ///
    /// # Errors
    ///
    /// As [`Session::get`].
    pub async fn get(&self, session: &Session) -> Result<Option<T>> {
        session.get(self.name).await
    }

    /// [`Session::insert`] for this key.
    ///
    /// # Errors
    ///
    /// As [`Session::insert`].
    pub async fn insert(&self, session: &Session, value: &T) -> Result<()> {
        session.insert(self.name, value).await
    }

    /// [`Session::remove`] for this key.
    ///
    /// # Errors
    ///
    /// As [`Session::remove`].
    pub async fn remove(&self, session: &Session) -> Result<Option<T>> {
        session.remove(self.name).await
    }

    /// [`Session::update`] for this key.
    ///
    /// # Errors
    ///
    /// As [`Session::update`].
    pub async fn update(
        &self,
        session: &Session,
        change: impl FnMut(Option<T>) -> Option<T>,
    ) -> Result<Option<T>> {
        session.update(self.name, change).await
    }
}

impl<T> Clone for TypedKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for TypedKey<T> {}

impl<T> fmt::Debug for TypedKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TypedKey").field(&self.name).finish()
    }
}
