//! What every operation shares: the timeout, error sorting and logging.

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::error::Error;

/// Settings every operation reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) timeout: Duration,
    pub(crate) sweep_batch: u32,
    /// Most live sessions one principal keeps; binding one more revokes the oldest others.
    pub(crate) max_per_principal: Option<NonZeroUsize>,
}

impl Settings {
    /// How many of a principal's other sessions a binding keeps (the newest ones), as the
    /// `OFFSET` of the statement that revokes the rest; `None` without a cap.
    pub(crate) fn others_kept(&self) -> Option<i64> {
        self.max_per_principal
            .map(|max| i64::try_from(max.get() - 1).unwrap_or(i64::MAX))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout: crate::DEFAULT_OPERATION_TIMEOUT,
            sweep_batch: crate::DEFAULT_SWEEP_BATCH,
            max_per_principal: None,
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
