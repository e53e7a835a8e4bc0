//! The store conformance suite on PostgreSQL, each test on a schema of its own.

mod common;

tether_testkit::store_conformance!(common::postgres());
