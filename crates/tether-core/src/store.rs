//! The contract every session store fulfils.

use async_trait::async_trait;

use crate::key_update::incremented;
use crate::{
    Changes, Error, EventStream, Expiry, Id, KeyUpdate, KeyUpdated, Loaded, Principal, Record,
    Renewal, SessionHandle, SessionInfo,
};

/// Outcome of [`SessionStore::create`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "an `IdTaken` outcome means nothing was stored"]
pub enum Created {
    /// The record was stored.
    Created,
    /// A live session already has this id; nothing was written. The caller retries with a new id.
    IdTaken,
}

/// Outcome of [`SessionStore::apply`] and [`SessionStore::touch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a `Missing` outcome means nothing was written"]
pub enum Applied {
    /// The session existed and was updated.
    Applied,
    /// The session does not exist (never did, was deleted, or expired); nothing was written.
    Missing,
}

/// Outcome of [`SessionStore::cycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "only `Moved` means the session lives under the new id"]
pub enum Cycled {
    /// The data now lives under the new id and the old id names nothing.
    Moved,
    /// The old session does not exist; nothing was written.
    Missing,
    /// The new id is already taken; the old session is unchanged. Retry with another id.
    IdTaken,
}

/// Outcome of [`SessionStore::revoke`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "`NotFound` means nothing was revoked"]
pub enum Revoked {
    /// The session was deleted.
    Revoked,
    /// No live session of this principal has that handle: it ended already, or it belongs to
    /// another principal (whose session is left alone). Nothing was deleted.
    NotFound,
}

/// The name [`Error::Unsupported`] gives the principal index.
const PRINCIPAL_INDEX: &str = "the principal index (sessions by user)";
/// The name [`Error::Unsupported`] gives session events.
const EVENTS: &str = "session events";
/// The name [`Error::Unsupported`] gives atomic key updates.
const KEY_UPDATES: &str = "atomic key updates (compare-and-set)";

/// Attempts the default [`SessionStore::update_key`] makes at an increment before it answers
/// [`Error::Conflict`].
pub const INCREMENT_ATTEMPTS: u32 = 64;

/// A place where sessions live: memory, Redis, a replicated cluster.
///
/// Every method is one round trip on a networked store. The contract, which the conformance suite
/// in `tether-conformance` checks for every store:
///
/// - [`create`](Self::create) inserts only if the id is free, atomically.
/// - [`apply`](Self::apply) applies a delta, key by key, only if the session exists. Two
///   concurrent `apply` calls that change different keys both take effect.
/// - Deletion is final: once a session was deleted or expired, no `apply`, `touch` or `cycle`
///   brings it back.
/// - A session past its [`Expiry::expires_at`] is never returned by [`load`](Self::load), even if
///   the backend has not evicted it yet.
/// - Failures are [`Error`]s that say whether they are transient; stored data that cannot be
///   decoded is [`Error::Corrupt`]. No method panics on what it finds in the backend.
/// - [`Record::principal`] and [`Record::seen`] round-trip like the data; [`Changes::principal`]
///   and [`Changes::seen`] replace them when set, and leave them alone when not.
///
/// # The principal index
///
/// A session bound to a [`Principal`] (by `create` of a record that has one, or by an `apply`
/// whose changes bind one) is listed by [`sessions_of`](Self::sessions_of) under it, by its
/// [`SessionHandle`], until it ends: deleted, revoked, expired, or moved by `cycle` (the new id
/// is listed instead). Rebinding it to another principal moves it. The index never lists a
/// session that ended and never loses one that lives, and [`revoke`](Self::revoke) acts only
/// on sessions of the principal it names, whatever handle it is given. A store may bound the
/// sessions of one principal (`with_max_sessions_per_principal` on the stores of this
/// workspace): binding one more then revokes the oldest. The default methods answer
/// [`Error::Unsupported`], for stores written before the index existed.
///
/// # Atomic key updates
///
/// [`update_key`](Self::update_key) changes one key of an existing session in one atomic step:
/// a [`KeyUpdate::Swap`] (compare-and-set on the key's value) or a [`KeyUpdate::Increment`]
/// run inside the store. Concurrent updates of the same key are serialised, so none is lost;
/// the session's other keys, metadata and expiry are left alone. A store implements `Swap`;
/// the default runs `Increment` as a compare-and-set loop on top of it, and a store that can
/// add in place (memory under the session's lock, Redis in its script) overrides that.
///
/// # Events
///
/// [`events`](Self::events) reports what happens to sessions ([`SessionEvent`](crate::SessionEvent)):
/// created, cycled, bound to a principal, deleted, revoked, expired. Each store states how
/// reliably it delivers them (at most once to a subscriber that keeps up, or at least once
/// across restarts) and how soon after its deadline a session's expiry is reported.
///
/// The trait is object safe: the session layer holds an `Arc<dyn SessionStore>`.
///
/// # Example
///
/// A store that forgets everything, to show the shape of an implementation:
///
/// ```
/// use async_trait::async_trait;
/// use tether_core::{Applied, Changes, Created, Cycled, Error, Expiry, Id, Record, SessionStore};
///
/// #[derive(Debug)]
/// struct Forgetful;
///
/// #[async_trait]
/// impl SessionStore for Forgetful {
///     async fn load(&self, _: &Id) -> Result<Option<Record>, Error> { Ok(None) }
///     async fn create(&self, _: &Record) -> Result<Created, Error> { Ok(Created::Created) }
///     async fn apply(&self, _: &Id, _: &Changes, _: &Expiry) -> Result<Applied, Error> {
///         Ok(Applied::Missing)
///     }
///     async fn delete(&self, _: &Id) -> Result<(), Error> { Ok(()) }
///     async fn cycle(&self, _: &Id, _: &Id) -> Result<Cycled, Error> { Ok(Cycled::Missing) }
/// }
///
/// let store: std::sync::Arc<dyn SessionStore> = std::sync::Arc::new(Forgetful);
/// # let _ = store;
/// ```
#[async_trait]
pub trait SessionStore: std::fmt::Debug + Send + Sync + 'static {
    /// The session with this id, or `None` when there is none (or it expired).
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error>;

    /// Stores a new session if no live session has its id.
    async fn create(&self, record: &Record) -> Result<Created, Error>;

    /// Applies `changes` to an existing session and sets its expiry to `expiry`.
    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error>;

    /// Sets the expiry of an existing session without changing its data.
    ///
    /// The default is [`apply`](Self::apply) with no changes; a store with a cheaper way to move
    /// only the deadline overrides it.
    async fn touch(&self, id: &Id, expiry: &Expiry) -> Result<Applied, Error> {
        self.apply(id, &Changes::new(), expiry).await
    }

    /// [`load`](Self::load), which may also renew the session when it is due for renewal at
    /// [`Renewal::now`] (see [`Renewal`]): the expiry moved to [`Expiry::renewed`] and the
    /// renewal's last use recorded, in the same step, as a [`touch`](Self::touch) (or an
    /// [`apply`](Self::apply) of only the last use) would. [`Loaded::renewed`] says whether it
    /// did; a session returned unrenewed whose renewal is due is the caller's to renew (the
    /// session layer renews it with the request's write, or a `touch`). A session past its
    /// deadline at `renewal.now()` is `None`, and is never renewed.
    ///
    /// The default is `load`, renewing nothing. A store overrides it where reading and
    /// renewing in one step saves a round trip (the Redis store, for a session it knows to be
    /// due before reading it).
    async fn load_renewing(&self, id: &Id, renewal: &Renewal) -> Result<Option<Loaded>, Error> {
        Ok(renewal.unrenewed(self.load(id).await?))
    }

    /// Applies `update` to `key` of an existing session, atomically with respect to every other
    /// write of that key, and says what the key holds afterwards (see [`KeyUpdated`]). Neither
    /// the session's other keys nor its expiry change.
    ///
    /// The default answers [`Error::Unsupported`] to a [`KeyUpdate::Swap`], and runs a
    /// [`KeyUpdate::Increment`] as a loop of swaps: a [`load`](Self::load), then a swap from
    /// the value read, retried from the value a conflict reports, at most
    /// [`INCREMENT_ATTEMPTS`] times.
    ///
    /// # Errors
    ///
    /// As for the other methods; [`Error::NotACounter`] when an increment finds no integer or
    /// would leave the counter range; [`Error::Conflict`] when the default increment lost every
    /// attempt; [`Error::Unsupported`] from a store without the capability.
    async fn update_key(
        &self,
        id: &Id,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, Error> {
        let &KeyUpdate::Increment { by, codec } = update else {
            return Err(Error::Unsupported(KEY_UPDATES));
        };
        let Some(record) = self.load(id).await? else {
            return Ok(KeyUpdated::Missing);
        };
        let mut current = record.data.get(key).cloned();
        for _ in 0..INCREMENT_ATTEMPTS {
            let new = incremented(key, current.as_ref(), by, codec)?;
            let swap = KeyUpdate::Swap {
                expected: current,
                new: Some(new),
            };
            match self.update_key(id, key, &swap).await? {
                KeyUpdated::Conflict(now) => current = now,
                done => return Ok(done),
            }
        }
        Err(Error::Conflict {
            key: key.to_owned(),
            attempts: INCREMENT_ATTEMPTS,
        })
    }

    /// Deletes a session. Deleting a session that does not exist is not an error.
    async fn delete(&self, id: &Id) -> Result<(), Error>;

    /// Moves a session's data and expiry from `old` to `new` (used at login, so an id an attacker
    /// planted before authentication is worthless after it). Afterwards `old` names nothing.
    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error>;

    /// The live sessions bound to `principal`, oldest first.
    ///
    /// # Errors
    ///
    /// As for the other methods; [`Error::Unsupported`] from a store without the index.
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>, Error> {
        let _ = principal;
        Err(Error::Unsupported(PRINCIPAL_INDEX))
    }

    /// Deletes the session `handle` names if it is bound to `principal`; a session of another
    /// principal is left alone, and the answer is [`Revoked::NotFound`].
    ///
    /// # Errors
    ///
    /// As for [`sessions_of`](Self::sessions_of).
    async fn revoke(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        let _ = (principal, handle);
        Err(Error::Unsupported(PRINCIPAL_INDEX))
    }

    /// Deletes every session bound to `principal` except the one `keep` names ("sign out
    /// everywhere else"), and says how many it deleted.
    ///
    /// # Errors
    ///
    /// As for [`sessions_of`](Self::sessions_of). Sessions deleted before an error stay deleted.
    async fn revoke_all(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        let _ = (principal, keep);
        Err(Error::Unsupported(PRINCIPAL_INDEX))
    }

    /// A stream of what happens to this store's sessions from now on (or, for a store that
    /// keeps events, from where this subscriber's group left off), as the store's docs say.
    ///
    /// # Errors
    ///
    /// As for the other methods; [`Error::Unsupported`] from a store without events.
    async fn events(&self) -> Result<EventStream, Error> {
        Err(Error::Unsupported(EVENTS))
    }
}
