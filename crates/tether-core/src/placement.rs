//! Which servers hold a session: rendezvous (highest random weight) hashing with xxh3.
//!
//! Every node of a replicated cluster and every sticky proxy replica computes the same order for
//! the same session id and the same set of server names, without talking to each other: the
//! session's primary is the first, its backups follow. When a server leaves, only the sessions
//! it held move, and they move to the next server in their own order, which is where a backup
//! already was.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::Id;

/// The weight of `node` for session `id`: xxh3 of the id's 16 bytes, seeded with xxh3 of the
/// node's name. Stable across processes, platforms and releases (never `DefaultHasher`).
pub fn rendezvous_weight(node: &str, id: &Id) -> u64 {
    xxh3_64_with_seed(id.as_bytes(), xxh3_64_with_seed(node.as_bytes(), 0))
}

/// `nodes` ordered by their weight for session `id`, highest first (ties, which need equal
/// 64-bit hashes, broken by name). The first is the session's primary, the next its backups.
///
/// # Example
///
/// ```
/// use tether_core::{Id, placement::rendezvous_order};
///
/// let id = Id::random()?;
/// let nodes = ["a", "b", "c"];
/// let order = rendezvous_order(&id, &nodes);
/// assert_eq!(order.len(), 3);
///
/// // Without the primary, the others keep their relative order: the first backup takes over.
/// let without_primary: Vec<&str> = nodes.iter().copied().filter(|n| *n != order[0]).collect();
/// assert_eq!(rendezvous_order(&id, &without_primary), &order[1..]);
/// # Ok::<(), tether_core::Error>(())
/// ```
pub fn rendezvous_order<'a, N: AsRef<str> + ?Sized>(id: &Id, nodes: &[&'a N]) -> Vec<&'a N> {
    let mut ranked: Vec<(u64, &'a N)> = nodes
        .iter()
        .map(|node| (rendezvous_weight(node.as_ref(), id), *node))
        .collect();
    ranked.sort_by(|(wa, a), (wb, b)| wb.cmp(wa).then_with(|| a.as_ref().cmp(b.as_ref())));
    ranked.into_iter().map(|(_, node)| node).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_stable() {
        // Pinned: every process and every future release must agree on placement.
        let id = Id::from_bytes([7; 16]);
        assert_eq!(
            rendezvous_weight("node-a", &id),
            rendezvous_weight("node-a", &id)
        );
        assert_ne!(
            rendezvous_weight("node-a", &id),
            rendezvous_weight("node-b", &id)
        );
        let pinned = rendezvous_weight("node-a", &id);
        assert_eq!(
            pinned, 0x_b5cb_3dc1_a8fc_cdfd_u64,
            "placement hash changed: {pinned:#x}"
        );
    }

    #[test]
    fn spreads_sessions_evenly() {
        let nodes = ["a", "b", "c", "d"];
        let mut primaries = std::collections::HashMap::new();
        for _ in 0..40_000 {
            let id = Id::random().unwrap();
            *primaries
                .entry(rendezvous_order(&id, &nodes)[0])
                .or_insert(0u32) += 1;
        }
        for (node, count) in primaries {
            assert!((9_000..11_000).contains(&count), "{node}: {count}");
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_sessions() {
        let all = ["a", "b", "c", "d", "e"];
        let rest = ["a", "b", "c", "e"];
        for _ in 0..1_000 {
            let id = Id::random().unwrap();
            let before = rendezvous_order(&id, &all);
            let after = rendezvous_order(&id, &rest);
            let expected: Vec<&str> = before.into_iter().filter(|n| *n != "d").collect();
            assert_eq!(after, expected);
        }
    }
}
