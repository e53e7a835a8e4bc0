//! Stored session hashes (any RESP reply): a record, nothing, or Corrupt.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tether_redis::fuzzing::decode_hash(data));
