//! A fixed set of backends as a [`Discover`](tower::discover::Discover).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::discover::Change;

/// A fixed set of backends as a [`Discover`](tower::discover::Discover): each `(name, service)`
/// is inserted once, and the set never changes. For a changing set, give [`Sticky`](crate::Sticky) any stream of
/// `Result<tower::discover::Change<K, S>, E>`.
pub fn backends<K, S>(backends: impl IntoIterator<Item = (K, S)>) -> Backends<K, S> {
    Backends {
        inserts: backends.into_iter().collect::<Vec<_>>().into_iter(),
    }
}

/// The [`Discover`](tower::discover::Discover) of [`backends`].
#[derive(Debug)]
pub struct Backends<K, S> {
    inserts: std::vec::IntoIter<(K, S)>,
}

impl<K, S> Unpin for Backends<K, S> {}

impl<K, S> futures_util::Stream for Backends<K, S> {
    type Item = Result<Change<K, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inserts.next() {
            Some((key, service)) => Poll::Ready(Some(Ok(Change::Insert(key, service)))),
            // The set never changes: no more items, and no end either.
            None => Poll::Pending,
        }
    }
}
