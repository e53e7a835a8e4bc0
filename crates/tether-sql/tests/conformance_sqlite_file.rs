//! The store conformance suite on SQLite, a database file in a temporary directory.

mod common;

tether_testkit::store_conformance!(common::sqlite_file());
