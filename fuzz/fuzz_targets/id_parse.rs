//! Session id parsing: only canonical ids parse, and they print back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = text.parse::<tether_core::Id>() {
        assert_eq!(id.to_string(), text);
    }
});
