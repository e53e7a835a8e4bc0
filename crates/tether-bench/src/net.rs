//! Loopback sockets for the servers the bench starts.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::error::Doing as _;
use tether_core::BoxError;

/// Where every server of the bench listens: loopback, a free port.
const LOOPBACK_ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A listener on a free loopback port.
pub(crate) async fn bind_loopback() -> Result<(TcpListener, SocketAddr), BoxError> {
    let listener = TcpListener::bind(LOOPBACK_ANY_PORT)
        .await
        .doing(|| format!("binding {LOOPBACK_ANY_PORT}"))?;
    let addr = listener
        .local_addr()
        .doing(|| format!("reading the address bound for {LOOPBACK_ANY_PORT}"))?;
    Ok((listener, addr))
}

/// A loopback address free a moment ago, for a child process to listen on.
pub(crate) fn free_addr() -> Result<SocketAddr, BoxError> {
    std::net::TcpListener::bind(LOOPBACK_ANY_PORT)
        .and_then(|listener| listener.local_addr())
        .doing(|| format!("finding a free port: binding {LOOPBACK_ANY_PORT}"))
}
