//! The store conformance suite against 3 nodes in AllToAll mode, calls spread over the nodes,
//! the principal index included.

mod common;

use common::{Spread, capped_cluster, cluster};
use tether_replicated::{Ack, Mode};

tether_testkit::store_conformance!(async {
    Spread::new(cluster(3, Mode::AllToAll, Ack::Sync).await)
}, principal_index: |max| async move {
    Spread::new(capped_cluster(3, Mode::AllToAll, Ack::Sync, max).await)
});
