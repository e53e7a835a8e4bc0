//! Replication frames from a peer: a frame or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tether_replicated::fuzzing::decode_frame(data));
