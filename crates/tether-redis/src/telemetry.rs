//! What the store counts, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`). Without the feature every function here is empty and compiles away. The names
//! are listed in docs/operations.md.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tether_redis_round_trips_total` | counter | `operation` | commands sent and answered (or failed) |
//! | `tether_redis_script_loads_total` | counter | `script` | scripts loaded again after a `NOSCRIPT` |
//! | `tether_redis_connection_errors_total` | counter | | commands failed on a lost or refused connection |
//! | `tether_redis_reconnects_total` | counter | `topology` | connections made again after a loss (Sentinel, near cache) |
//! | `tether_redis_near_cache_total` | counter | `event` | near-cache hits, misses, invalidations, refreshes, flushes |

/// One command of `operation` went to Redis.
pub(crate) fn round_trip(operation: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tether_redis_round_trips_total", "operation" => operation).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = operation;
}

/// Redis did not know `script` (restarted, failed over, `SCRIPT FLUSH`): it is loaded again.
pub(crate) fn script_loaded(script: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tether_redis_script_loads_total", "script" => script).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = script;
}

/// A command failed with `error`; counted when the connection was lost or could not be made,
/// after which the connection is made again.
pub(crate) fn failed(error: &redis::RedisError) {
    #[cfg(feature = "metrics")]
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
        metrics::counter!("tether_redis_connection_errors_total").increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = error;
}

/// A connection of the store's own reconnecting kind (behind Sentinel, or the near cache's)
/// was made again after a loss; `topology` is `sentinel` or `standalone`.
pub(crate) fn reconnected(topology: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tether_redis_reconnects_total", "topology" => topology).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = topology;
}

/// The near cache did `event`: `hit`, `miss`, `invalidation`, `refresh` or `flush`.
pub(crate) fn near_cache(event: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tether_redis_near_cache_total", "event" => event).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = event;
}
