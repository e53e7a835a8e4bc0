//! Entry points for the fuzz targets in `fuzz/`; not an API.

use tether_core::cookie::{Key, KeyRing};

use crate::transport::{Protection, Transport};

/// Opens `data` as a session cookie value and as a whole `Cookie` header, under plain,
/// signed and private protection. Panics if a value that was not sealed with the test key
/// opens as something else than a canonical plain id.
pub fn open_cookie(data: &[u8]) {
    let keys = KeyRing::new(Key::from(&[7; 64]));
    let protections = [
        Protection::Plain,
        Protection::Signed(keys.clone()),
        Protection::Private(keys),
    ];
    let text = String::from_utf8_lossy(data);
    for protection in &protections {
        if let Some(id) = protection.open("sid", &text) {
            assert!(matches!(protection, Protection::Plain) && id.to_string() == text);
        }
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_bytes(data) {
            headers.insert(http::header::COOKIE, value);
        }
        let _ = Transport::default().read(&headers, protection);
    }
}
