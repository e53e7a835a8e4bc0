//! What every operation shares: the timeout, error sorting and logging.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;

/// Settings every operation reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) timeout: Duration,
    pub(crate) sweep_batch: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout: crate::DEFAULT_OPERATION_TIMEOUT,
            sweep_batch: crate::DEFAULT_SWEEP_BATCH,
        }
    }
}

/// Runs one operation bounded by the timeout and turns its error into the core kind. A corrupt
/// row is logged here, where the table is known; the layer logs it again with the session.
pub(crate) async fn run<T>(
    settings: &Settings,
    operation: &'static str,
    op: impl Future<Output = Result<T, Error>>,
) -> Result<T, tether_core::Error> {
    let result = match tokio::time::timeout(settings.timeout, op).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            operation,
            timeout: settings.timeout,
        }),
    };
    result.map_err(|error| {
        let error = error.into_store_error();
        if error.kind() == tether_core::ErrorKind::Corrupt {
            tracing::warn!(
                operation,
                error = %tether_core::error_chain(&error),
                "a stored session row does not decode; the session counts as absent"
            );
        }
        error
    })
}
