//! Bounds on what clients may hold: connection count, time to a complete request head, head
//! size; and the process's open-file limit they are measured against.

use std::time::Duration;

use crate::tunnel::TunnelLimits;

/// Bounds on what clients may send and hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest request head, in bytes (default 64 KiB).
    pub(crate) max_header_bytes: usize,
    /// Bound on receiving a request head, the first one counted from the moment the
    /// connection is accepted (default 10 s): a connection that sends nothing, or only part of
    /// a head, is closed when it runs out. Also how long an idle keep-alive connection stays.
    pub(crate) header_read_timeout: Duration,
    /// Client connections served at once (default 10,000, lowered to what the open-file limit
    /// allows); further clients wait in the listen backlog until one ends.
    pub(crate) max_connections: usize,
    /// Longest quiet in a request body (default 30 s): a client that announced a body and
    /// stops sending gets `400` and its connection ends.
    pub(crate) body_idle_timeout: Duration,
    /// Bounds on upgraded connections (WebSocket).
    pub(crate) tunnel: TunnelLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            body_idle_timeout: Duration::from_secs(30),
            tunnel: TunnelLimits::default(),
        }
    }
}

/// Descriptors kept for listeners, the admin listener, logs and the resolver.
const RESERVED_DESCRIPTORS: u64 = 64;

impl Limits {
    /// The connection cap that fits `open_files` descriptors: each client connection may hold
    /// one upstream connection too.
    pub(crate) fn fit_to_open_files(mut self, open_files: u64) -> Self {
        let fits = open_files.saturating_sub(RESERVED_DESCRIPTORS) / 2;
        let fits = usize::try_from(fits).unwrap_or(usize::MAX).max(1);
        if fits < self.max_connections {
            tracing::warn!(
                configured = self.max_connections,
                open_files,
                max_connections = fits,
                "max_connections lowered to fit the open-file limit (raise `ulimit -n`)"
            );
            self.max_connections = fits;
        }
        self
    }
}

/// Raises the soft open-file limit to the hard limit, as servers do at start (the soft limit
/// is often 1,024, a few hundred clients' worth). Returns the limit in force afterwards.
#[cfg(unix)]
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// Raises the soft open-file limit to the hard limit (nothing to do on this platform).
#[cfg(not(unix))]
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_descriptors() {
        let limits = Limits::default();
        // 1,024 descriptors: 64 kept back, two per client connection (client and upstream).
        assert_eq!(limits.fit_to_open_files(1_048_576).max_connections, 10_000);
        assert_eq!(limits.fit_to_open_files(1_024).max_connections, 480);
        assert_eq!(limits.fit_to_open_files(10).max_connections, 1);
    }
}
