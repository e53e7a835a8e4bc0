//! Session cookie values and Cookie headers, plain, signed and private: nothing unsealed opens.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tether_sessions::fuzzing::open_cookie(data));
