//! The store conformance suite against 3 nodes in AllToAll mode, calls spread over the nodes,
//! the principal index and session events included.
//!
//! The events check subscribes through [`Spread`], which subscribes on every node: each node
//! reports the writes of the calls it took and the expiries of the sessions it is the primary
//! of, so the check, whose calls go round robin over the nodes, sees its events only on all of
//! them together.

mod common;

use std::time::Duration;

use common::{Spread, capped_cluster, cluster};
use tether_replicated::{Ack, Mode};

tether_testkit::store_conformance!(async {
    Spread::new(cluster(3, Mode::AllToAll, Ack::Sync).await)
}, principal_index: |max| async move {
    Spread::new(capped_cluster(3, Mode::AllToAll, Ack::Sync, max).await)
},
    // A primary's sweep runs every second: an expiry is reported within a second of the
    // deadline (the crate docs, Session events).
    events: Duration::from_secs(1)
);
