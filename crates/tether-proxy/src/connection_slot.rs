//! A client connection's place under the connection cap, counted while it is held.

use tokio::sync::OwnedSemaphorePermit;

/// Held for as long as a client connection lives (an upgraded connection included: it
/// outlives the HTTP connection it came from): its permit under the cap, and one in the gauge
/// `tether_proxy_client_connections`.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    open: metrics::Gauge,
}

impl ConnectionSlot {
    /// Takes the place `permit` gives, counting it in `open`.
    pub(crate) fn new(permit: OwnedSemaphorePermit, open: &metrics::Gauge) -> Self {
        open.increment(1.0);
        Self {
            _permit: permit,
            open: open.clone(),
        }
    }

    /// The gauge of open client connections, registered with the recorder installed now.
    pub(crate) fn gauge() -> metrics::Gauge {
        metrics::gauge!("tether_proxy_client_connections")
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}
