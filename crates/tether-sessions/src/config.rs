//! Settings the layer hands to every request's session.

use std::collections::HashMap;
use std::time::Duration;

use tether_core::{Codec, Expiry, Timestamp};

use crate::activity::Activity;
use crate::telemetry::Telemetry;
use crate::transport::{Protection, Transport};
use crate::write_policy::WritePolicy;

/// Default idle timeout: a session unused for this long ends.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Default absolute lifetime: no session lives longer, however active.
pub const DEFAULT_ABSOLUTE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default touch threshold: the store's deadline is extended once a quarter of the idle timeout
/// has passed since the last extension.
pub const DEFAULT_TOUCH_THRESHOLD: f64 = 0.25;
/// Default limit on a session's size: 64 KiB, counting each key's name, its encoded value and
/// [`KEY_OVERHEAD`](tether_core::KEY_OVERHEAD).
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;
/// Default limit on the number of keys in one session: 1,000.
///
/// Every key costs the store an entry and every load reads them all: reading one key of a
/// 10,000-key session takes about 10 ms on Redis. With the default size limit, keys of a few
/// bytes reach the size limit first (at about 900 keys); this limit bounds sessions whose size
/// limit was raised.
pub const DEFAULT_MAX_KEYS: usize = 1_000;
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
    pub(crate) deadline_header: Option<http::HeaderName>,
    pub(crate) activity: Option<Activity>,
    pub(crate) telemetry: Telemetry,
    /// Keys whose plain writes do not follow the default policy.
    pub(crate) write_policies: HashMap<String, WritePolicy>,
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
            deadline_header: None,
            activity: None,
            telemetry: Telemetry::register(),
            write_policies: HashMap::new(),
        }
    }
}

impl Config {
    /// Whether plain writes of `key` are compare-and-set.
    pub(crate) fn rejects_conflicts(&self, key: &str) -> bool {
        !self.write_policies.is_empty()
            && self.write_policies.get(key) == Some(&WritePolicy::RejectOnConflict)
    }

    /// The expiry of a session created at `now`.
    pub(crate) fn new_expiry(&self, now: Timestamp, idle_timeout: Option<Duration>) -> Expiry {
        let absolute = self.absolute_lifetime.map(|lifetime| now + lifetime);
        Expiry::new(now, idle_timeout.unwrap_or(self.idle_timeout), absolute)
    }
}
