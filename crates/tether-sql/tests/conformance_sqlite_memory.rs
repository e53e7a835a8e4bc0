//! The store conformance suite on SQLite in memory, the principal index contract included.

mod common;

tether_testkit::store_conformance!(common::sqlite_memory(), principal_index: |max| async move {
    common::sqlite_memory_with(Some(max)).await
});
