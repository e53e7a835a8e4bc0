//! Settings the layer hands to every request's session.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tether_core::{Codec, Expiry, Timestamp};

use crate::transport::{Protection, Transport};

/// Default idle timeout: a session unused for this long ends.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Default absolute lifetime: no session lives longer, however active.
pub const DEFAULT_ABSOLUTE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default touch threshold: the store's deadline is extended once a quarter of the idle timeout
/// has passed since the last extension.
pub const DEFAULT_TOUCH_THRESHOLD: f64 = 0.25;
/// Default limit on a session's size: 64 KiB, counting each key's name, its encoded value and
/// [`KEY_OVERHEAD`].
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;
/// Default limit on the number of keys in one session: 1,000.
///
/// Every key costs the store an entry and every load reads them all: reading one key of a
/// 10,000-key session takes about 10 ms on Redis. With the default size limit, keys of a few
/// bytes reach the size limit first (at about 900 keys); this limit bounds sessions whose size
/// limit was raised.
pub const DEFAULT_MAX_KEYS: usize = 1_000;
/// Bytes counted for each key in a session's size, on top of its name and encoded value: what
/// an entry costs a store beyond its data.
///
/// Without it, 12,000 keys of three bytes holding one byte each count 48,000 bytes and fit the
/// 64 KiB default, yet take 611,288 bytes in Redis 7.0 (`MEMORY USAGE`): a hash past its
/// compact listpack encoding spends about 47 bytes per field beyond the field's name and
/// value. An entry of the in-process map of a `Record` (`HashMap<String, Bytes>`, as the
/// memory and replicated stores keep it) took 87 to 126 bytes of heap for the same keys
/// (12,000 and 1,000 of them), table spare room and the blocks of name and value included.
/// 64 sits between the two, so a session at the size limit costs a store about that much.
pub const KEY_OVERHEAD: usize = 64;

/// What one key of a session counts towards its size.
pub(crate) fn entry_size(key: &str, value: &[u8]) -> usize {
    key.len()
        .saturating_add(value.len())
        .saturating_add(KEY_OVERHEAD)
}

/// The size of a session's data, as the size limit counts it.
pub(crate) fn data_size(data: &HashMap<String, Bytes>) -> usize {
    data.iter().fold(0, |size, (key, value)| {
        size.saturating_add(entry_size(key, value))
    })
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) transport: Transport,
    pub(crate) protection: Protection,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_lifetime: Option<Duration>,
    pub(crate) touch_threshold: f64,
    pub(crate) max_size: usize,
    pub(crate) max_keys: usize,
    pub(crate) codec: Codec,
    pub(crate) save_on_server_error: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            transport: Transport::default(),
            protection: Protection::Plain,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            absolute_lifetime: Some(DEFAULT_ABSOLUTE_LIFETIME),
            touch_threshold: DEFAULT_TOUCH_THRESHOLD,
            max_size: DEFAULT_MAX_SIZE,
            max_keys: DEFAULT_MAX_KEYS,
            codec: Codec::default(),
            save_on_server_error: false,
        }
    }
}

impl Config {
    /// The expiry of a session created at `now`.
    pub(crate) fn new_expiry(&self, now: Timestamp, idle_timeout: Option<Duration>) -> Expiry {
        let absolute = self.absolute_lifetime.map(|lifetime| now + lifetime);
        Expiry::new(now, idle_timeout.unwrap_or(self.idle_timeout), absolute)
    }
}
