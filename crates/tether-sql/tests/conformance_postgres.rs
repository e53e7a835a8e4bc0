//! The store conformance suite on PostgreSQL, each test on a schema of its own, the principal
//! index contract included.

mod common;

tether_testkit::store_conformance!(common::postgres(), principal_index: |max| async move {
    common::postgres_with(
        common::test_builder().with_max_sessions_per_principal(Some(max)),
        &common::postgres_url(),
    )
    .await
});
