//! The store conformance suite on SQLite, a database file in a temporary directory, the
//! principal index contract included: with events (the whole suite runs the writes that also
//! write their events, and the events check runs), and without.

mod common;

use std::time::Duration;

/// An expiry is reported within this long of the deadline: a consumer deletes expired sessions
/// every second and reads right after.
const EXPIRED_WITHIN: Duration = Duration::from_millis(1500);

mod with_events {
    tether_testkit::store_conformance!(
        crate::common::sqlite_file_events(None),
        principal_index: |max| crate::common::sqlite_file_events(Some(max)),
        events: crate::EXPIRED_WITHIN
    );
}

mod without_events {
    tether_testkit::store_conformance!(crate::common::sqlite_file(), principal_index: |max| async move {
        crate::common::sqlite_file_with(Some(max)).await
    });
}
