//! The store conformance suite on SQLite, a database file in a temporary directory, the
//! principal index contract included.

mod common;

tether_testkit::store_conformance!(common::sqlite_file(), principal_index: |max| async move {
    common::sqlite_file_with(Some(max)).await
});
