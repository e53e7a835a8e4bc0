//! Entry points for the fuzz targets in `fuzz/`; not an API.

use tether_core::cookie::{Key, KeyRing};

/// Opens `data` as an affinity cookie value; panics if anything opens without the key having
/// sealed it.
pub fn open_pin(data: &[u8]) {
    let keys = KeyRing::new(Key::from(&[7; 64]));
    let text = String::from_utf8_lossy(data);
    assert!(crate::affinity::open(&keys, "tether-route", &text, None).is_none());
}
