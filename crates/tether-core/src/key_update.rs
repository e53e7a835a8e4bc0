//! Atomic changes of one session key, run inside the store.

use bytes::Bytes;

use crate::{Codec, Error};

/// The largest counter [`KeyUpdate::Increment`] keeps: `2^53 - 1`. Every store counts exactly
/// up to it (Redis scripts count in IEEE doubles), so it is the bound on every store.
pub const COUNTER_MAX: i64 = (1 << 53) - 1;

/// An atomic change of one key of a stored session, run by the store in one step
/// ([`SessionStore::update_key`](crate::SessionStore::update_key)), so that concurrent
/// read-modify-writes of the same key never lose one.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use tether_core::{Codec, KeyUpdate, KeyUpdated};
///
/// let codec = Codec::default();
/// let one = codec.encode(&1)?;
/// let swap = KeyUpdate::Swap { expected: Some(one.clone()), new: Some(codec.encode(&2)?) };
/// // Only what the caller expected is replaced:
/// assert!(matches!(swap.evaluate("n", Some(&one))?, KeyUpdated::Updated(Some(_))));
/// assert_eq!(swap.evaluate("n", None)?, KeyUpdated::Conflict(None));
///
/// let add = KeyUpdate::Increment { by: 5, codec };
/// assert_eq!(add.evaluate("n", Some(&one))?, KeyUpdated::Updated(Some(codec.encode(&6)?)));
/// # Ok::<(), tether_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyUpdate {
    /// Compare-and-set: the key is set to `new` (removed when `None`) only if it holds exactly
    /// `expected` (is absent when `None`). The key's encoded value is its version: a
    /// read-modify-write that read `expected` and computed `new` from it lands only if nothing
    /// changed the key in between.
    Swap {
        /// The value the caller read (`None`: absent).
        expected: Option<Bytes>,
        /// The value to store (`None`: remove the key).
        new: Option<Bytes>,
    },
    /// Adds `by` to the integer under the key (an absent key counts as 0). The value is read
    /// and written with `codec`, as the session layer reads it. The counter and the amount stay
    /// within `-COUNTER_MAX..=COUNTER_MAX`; an increment past it, or of a value that is not an
    /// integer, is [`Error::NotACounter`] and writes nothing.
    Increment {
        /// The amount to add (negative to subtract).
        by: i64,
        /// The encoding of the counter.
        codec: Codec,
    },
}

/// Outcome of [`SessionStore::update_key`](crate::SessionStore::update_key).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a `Conflict` or `Missing` outcome means nothing was written"]
pub enum KeyUpdated {
    /// The update was applied; the key now holds this value (`None`: absent).
    Updated(Option<Bytes>),
    /// The key did not hold the [`Swap`](KeyUpdate::Swap)'s expected value; nothing was
    /// written. This is what it holds, so the caller can recompute and retry without a load.
    Conflict(Option<Bytes>),
    /// The session does not exist (never did, was deleted, or expired); nothing was written.
    Missing,
}

impl KeyUpdate {
    /// What this update makes of a key that holds `current`: [`KeyUpdated::Updated`] with the
    /// value to store, or [`KeyUpdated::Conflict`]. Never [`KeyUpdated::Missing`]. For stores
    /// that run the update in process, under the session's lock.
    ///
    /// # Errors
    ///
    /// [`Error::NotACounter`] for an [`Increment`](Self::Increment) of a value that is not an
    /// integer in range, or past [`COUNTER_MAX`].
    pub fn evaluate(&self, key: &str, current: Option<&Bytes>) -> Result<KeyUpdated, Error> {
        match self {
            Self::Swap { expected, new } => Ok(if current == expected.as_ref() {
                KeyUpdated::Updated(new.clone())
            } else {
                KeyUpdated::Conflict(current.cloned())
            }),
            Self::Increment { by, codec } => Ok(KeyUpdated::Updated(Some(incremented(
                key, current, *by, *codec,
            )?))),
        }
    }
}

/// The encoded counter `current` holds plus `by` (see [`KeyUpdate::Increment`]).
pub(crate) fn incremented(
    key: &str,
    current: Option<&Bytes>,
    by: i64,
    codec: Codec,
) -> Result<Bytes, Error> {
    let not_a_counter = || Error::NotACounter {
        key: key.to_owned(),
        by,
    };
    let in_range = |n: &i64| (-COUNTER_MAX..=COUNTER_MAX).contains(n);
    let old = match current {
        Some(bytes) => codec.decode_counter(bytes).ok_or_else(not_a_counter)?,
        None => 0,
    };
    let sum = Some(old)
        .filter(|old| in_range(old) && in_range(&by))
        .and_then(|old| old.checked_add(by))
        .filter(in_range)
        .ok_or_else(not_a_counter)?;
    codec.encode(&sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(n: i64) -> Bytes {
        Codec::default().encode(&n).unwrap()
    }

    #[test]
    fn swap_compares_the_whole_value() {
        let swap = KeyUpdate::Swap {
            expected: None,
            new: Some(encoded(1)),
        };
        assert_eq!(
            swap.evaluate("k", None).unwrap(),
            KeyUpdated::Updated(Some(encoded(1)))
        );
        assert_eq!(
            swap.evaluate("k", Some(&encoded(0))).unwrap(),
            KeyUpdated::Conflict(Some(encoded(0)))
        );
    }

    #[test]
    fn increment_stays_in_range() {
        let add = |by| KeyUpdate::Increment {
            by,
            codec: Codec::default(),
        };
        assert_eq!(
            add(-3).evaluate("k", None).unwrap(),
            KeyUpdated::Updated(Some(encoded(-3)))
        );
        assert!(matches!(
            add(1).evaluate("k", Some(&encoded(COUNTER_MAX))),
            Err(Error::NotACounter { by: 1, .. })
        ));
        assert!(add(0).evaluate("k", Some(&encoded(i64::MIN))).is_err());
        assert!(add(i64::MAX).evaluate("k", Some(&encoded(1))).is_err());
        let text = Codec::default().encode("seven").unwrap();
        assert!(add(1).evaluate("k", Some(&text)).is_err());
        let float = Codec::default().encode(&1.5f64).unwrap();
        assert!(add(1).evaluate("k", Some(&float)).is_err());
    }
}
