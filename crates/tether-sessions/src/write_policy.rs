//! How plain writes of one session key meet concurrent writes of the same key.

/// What [`Session::insert`](crate::Session::insert) and
/// [`Session::remove`](crate::Session::remove) do about another request that wrote the same
/// key since this request read the session. Set per key with
/// [`SessionLayer::with_write_policy`](crate::SessionLayer::with_write_policy).
///
/// Writes of different keys never conflict: each request saves only the keys it changed.
/// [`Session::update`](crate::Session::update) and
/// [`Session::increment`](crate::Session::increment) lose no write whatever the policy.
///
/// # Example
///
/// ```
/// use tether_memory::MemoryStore;
/// use tether_sessions::{SessionLayer, WritePolicy};
///
/// // Two tabs editing one draft: the second save is refused instead of overwriting the first.
/// let layer = SessionLayer::new(MemoryStore::new())
///     .with_write_policy("draft", WritePolicy::RejectOnConflict);
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WritePolicy {
    /// The write is saved with the request's other changes; of two requests that write the
    /// key, the later save wins.
    #[default]
    LastWriterWins,
    /// On a stored session the write goes to the store at once, as a compare-and-set from the
    /// value this request saw: if another request changed the key meanwhile, nothing is
    /// written, the session shows the other request's value, and the call fails with
    /// [`Error::Conflict`](crate::Error::Conflict) (`409 Conflict` from an axum handler).
    /// The write stays even if the handler fails afterwards.
    RejectOnConflict,
}
