//! Whole copies of sessions moving between nodes, in pages: the state transfer a joining node
//! pulls from the members (both ends), and the pages that rebalancing and repair push.

use std::time::Duration;

use tether_core::Id;

use crate::peer::Peer;
use crate::state::{Entry, LocalState};
use crate::view::View;
use crate::wire::{Request, Response};

/// Entries per `Push` or `Transfer` page are also bounded by bytes: a quarter of the max frame.
const PAGE_ENTRIES: usize = 256;

/// The byte budget of one page under the max frame `max_frame`.
pub(crate) fn page_budget(max_frame: usize) -> usize {
    max_frame / 4
}

/// Pages through the sessions `peer` says the node `me` must hold, merging them into
/// `state`; returns how many came. A failure ends the transfer early: the primaries push
/// what is missing once the node is a member.
pub(crate) async fn pull(peer: &Peer, me: &str, state: &LocalState, timeout: Duration) -> usize {
    let mut after = None;
    let mut received = 0;
    loop {
        let request = Request::Transfer {
            for_node: me.to_owned(),
            after,
        };
        match peer.request(request, timeout).await {
            Ok(Response::Page { entries, next }) => {
                received += entries.len();
                merge(state, entries);
                match next {
                    Some(id) => after = Some(id),
                    None => return received,
                }
            }
            Ok(other) => {
                tracing::warn!(peer = peer.name(), answer = ?other, "unexpected answer to a state transfer");
                return received;
            }
            Err(e) => {
                tracing::warn!(peer = peer.name(), error = %e, "state transfer failed; the primaries will push what is missing");
                return received;
            }
        }
    }
}

/// The answer to a `Transfer`: the first page, after `after` in id order, of the sessions in
/// `state` that `for_node` must hold once it has joined `view`.
pub(crate) fn page(
    state: &LocalState,
    view: &View,
    for_node: &str,
    after: Option<Id>,
    budget: usize,
) -> Response {
    let view = view.with(for_node);
    let mut wanted = state
        .select(|id| after.is_none_or(|after| *id > after) && view.holders(id).contains(&for_node));
    wanted.sort_by_key(|(id, _)| *id);
    let mut page = pages(wanted, budget);
    let first = if page.is_empty() {
        Vec::new()
    } else {
        page.remove(0)
    };
    let next = if page.is_empty() {
        None
    } else {
        first.last().map(|(id, _)| *id)
    };
    Response::Page {
        entries: first,
        next,
    }
}

/// Merges copies received in a page or a push.
pub(crate) fn merge(state: &LocalState, entries: Vec<(Id, Entry)>) {
    for (id, entry) in entries {
        state.merge(id, entry);
    }
}

/// Splits entries into pages of at most [`PAGE_ENTRIES`] and about `budget` bytes.
pub(crate) fn pages(entries: Vec<(Id, Entry)>, budget: usize) -> Vec<Vec<(Id, Entry)>> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut size = 0;
    for (id, entry) in entries {
        let weight = 64
            + entry.writes.weight()
            + entry.principal().map_or(0, |p| 24 + p.as_str().len())
            + entry
                .seen
                .as_ref()
                .map_or(0, |seen| 64 + seen.value.device().map_or(0, str::len))
            + entry
                .fields
                .iter()
                .map(|(k, f)| k.len() + f.value.as_ref().map_or(0, |v| v.len()) + 32)
                .sum::<usize>();
        if !page.is_empty() && (page.len() == PAGE_ENTRIES || size + weight > budget) {
            pages.push(std::mem::take(&mut page));
            size = 0;
        }
        size += weight;
        page.push((id, entry));
    }
    if !page.is_empty() {
        pages.push(page);
    }
    pages
}
