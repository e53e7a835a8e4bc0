//! Who is in the cluster, and who holds a session.

use std::sync::Arc;

use tether_core::Id;
use tether_core::placement::rendezvous_order;

use crate::Mode;

/// A snapshot of the live members and the placement rule: which nodes hold a session.
///
/// The sticky layer uses it to route a session to a node that holds it.
///
/// # Example
///
/// ```
/// use tether_core::Id;
/// use tether_replicated::{Mode, View};
///
/// let view = View::new(["a", "b", "c"], Mode::Backup { copies: 1 });
/// let id = Id::random()?;
/// let holders = view.holders(&id);
/// assert_eq!(holders.len(), 2);
/// assert_eq!(view.primary(&id), Some(holders[0]));
/// # Ok::<(), tether_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    members: Arc<[String]>,
    mode: Mode,
}

impl View {
    /// A view of `members` (sorted, deduplicated) under `mode`.
    pub fn new<S: Into<String>>(members: impl IntoIterator<Item = S>, mode: Mode) -> Self {
        let mut members: Vec<String> = members.into_iter().map(Into::into).collect();
        members.sort();
        members.dedup();
        Self {
            members: members.into(),
            mode,
        }
    }

    /// The live members, sorted by name.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Whether `node` is a live member.
    pub fn contains(&self, node: &str) -> bool {
        self.members.iter().any(|m| m == node)
    }

    /// The nodes that hold session `id`, primary first: every member in `AllToAll`, the first
    /// `1 + copies` by rendezvous order in `Backup`.
    pub fn holders(&self, id: &Id) -> Vec<&str> {
        let names: Vec<&str> = self.members.iter().map(String::as_str).collect();
        let mut order = rendezvous_order(id, &names);
        if let Mode::Backup { copies } = self.mode {
            order.truncate(copies.saturating_add(1));
        }
        order
    }

    /// The node that orders the writes of session `id`.
    pub fn primary(&self, id: &Id) -> Option<&str> {
        self.holders(id).into_iter().next()
    }

    /// The same members less `node`: who holds what once `node` has left.
    pub(crate) fn without(&self, node: &str) -> Self {
        Self::new(
            self.members
                .iter()
                .filter(|m| *m != node)
                .map(String::as_str),
            self.mode,
        )
    }

    /// The same members plus `node`: where `node` would hold sessions once it has joined.
    pub(crate) fn with(&self, node: &str) -> Self {
        Self::new(
            self.members.iter().map(String::as_str).chain([node]),
            self.mode,
        )
    }
}

/// Where a view of the cluster comes from.
///
/// A [`Node`](crate::Node) computes its view from its peers (a fixed list, or what its
/// [`Discovery`](crate::Discovery) finds) and their heartbeats: a peer is a member while it
/// answers heartbeats and has finished its state transfer.
pub trait Membership: Send + Sync + 'static {
    /// The current view.
    fn view(&self) -> View;
    /// Changes of the view, as they happen.
    fn watch(&self) -> tokio::sync::watch::Receiver<View>;
}
