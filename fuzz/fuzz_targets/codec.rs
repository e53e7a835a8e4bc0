//! Session value decoding with the default codec: a value or a typed error.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = tether_core::Codec::default();
    let _ = codec.decode::<HashMap<String, Vec<(u64, String, Option<bool>)>>>(data);
    let _ = codec.decode::<String>(data);
    let _ = codec.decode::<f64>(data);
});
