//! The store conformance suite against 3 nodes in AllToAll mode, calls spread over the nodes.

mod common;

use common::{Spread, cluster};
use tether_replicated::{Ack, Mode};

tether_testkit::store_conformance!(async {
    Spread::new(cluster(3, Mode::AllToAll, Ack::Sync).await)
});
