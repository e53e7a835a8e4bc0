//! Affinity cookie opening: nothing opens without the key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tether_sticky::fuzzing::open_pin(data));
