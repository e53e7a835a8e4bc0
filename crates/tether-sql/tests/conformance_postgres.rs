//! The store conformance suite on PostgreSQL, each test on a schema of its own, the principal
//! index contract included: with events (every write also writes its event, so the whole suite
//! runs the statements with events, and the events check runs), and without.

mod common;

use std::time::Duration;

/// An expiry is reported within this long of the deadline: a consumer deletes expired sessions
/// every second and reads right after.
const EXPIRED_WITHIN: Duration = Duration::from_millis(1500);

mod with_events {
    tether_testkit::store_conformance!(
        crate::common::postgres_events(None),
        principal_index: |max| crate::common::postgres_events(Some(max)),
        events: crate::EXPIRED_WITHIN
    );
}

mod without_events {
    tether_testkit::store_conformance!(crate::common::postgres(), principal_index: |max| async move {
        crate::common::postgres_with(
            crate::common::test_builder().with_max_sessions_per_principal(Some(max)),
            &crate::common::postgres_url(),
        )
        .await
    });
}
