//! The store conformance suite on SQLite in memory.

mod common;

tether_testkit::store_conformance!(common::sqlite_memory());
