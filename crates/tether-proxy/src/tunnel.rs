//! Upgraded connections (WebSocket and any other HTTP/1.1 `Upgrade`, and WebSockets over
//! HTTP/2 by extended CONNECT, RFC 8441): once the backend answers `101 Switching Protocols`,
//! the proxy copies bytes both ways between the client and that backend until either side
//! closes, the tunnel has been quiet for too long, or it has lasted too long. Backends are
//! asked with an HTTP/1.1 upgrade either way.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use http::header::{
    CONNECTION, CONTENT_LENGTH, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use http::{HeaderMap, Method, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};

use tether_sticky::{UpstreamBody, box_body};
use tokio::time::Instant;

use crate::connection_slot::ConnectionSlot;
use crate::forwarded::connection_options;

/// Bounds on an upgraded connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TunnelLimits {
    /// Longest time with no byte in either direction (default 5 min) before the proxy closes
    /// both sides: a peer that vanished without closing holds nothing for longer.
    pub(crate) idle: Duration,
    /// Longest life of one upgraded connection (default 24 h).
    pub(crate) total: Duration,
}

impl Default for TunnelLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(5 * 60),
            total: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The protocol an HTTP/1.1 request asks to switch to: its `Upgrade` value, when its
/// `Connection` header names `upgrade` (RFC 9110 7.8). HTTP/2 has no such upgrade.
pub(crate) fn requested(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 || !names_upgrade(headers) {
        return None;
    }
    headers.get(UPGRADE).cloned()
}

/// The protocol an HTTP/2 extended CONNECT (RFC 8441) asks for: its `:protocol`
/// (`websocket`).
pub(crate) fn extended_connect(parts: &http::request::Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_2 || parts.method != Method::CONNECT {
        return None;
    }
    let protocol = parts.extensions.get::<hyper::ext::Protocol>()?;
    HeaderValue::from_str(protocol.as_str()).ok()
}

/// Makes an extended CONNECT for `protocol` the HTTP/1.1 upgrade request a backend takes:
/// `GET` with `Upgrade` and `Connection` (put back by [`restore`]), and for a WebSocket a fresh
/// `Sec-WebSocket-Key`, which HTTP/2 clients do not send (RFC 8441 5).
pub(crate) fn into_http11_upgrade(parts: &mut http::request::Parts, protocol: &HeaderValue) {
    parts.method = Method::GET;
    parts.version = Version::HTTP_11;
    parts.extensions.remove::<hyper::ext::Protocol>();
    if protocol.as_bytes().eq_ignore_ascii_case(b"websocket")
        && let Ok(nonce) = tether_core::Id::random()
    {
        let key = base64::engine::general_purpose::STANDARD.encode(nonce.as_bytes());
        if let Ok(key) = HeaderValue::from_str(&key) {
            parts.headers.insert(SEC_WEBSOCKET_KEY, key);
        }
    }
}

/// Makes a backend's `101` to an upgrade asked for by extended CONNECT the answer an HTTP/2
/// client expects: `200` with no body, without the HTTP/1.1 handshake's headers.
pub(crate) fn into_connect_success(response: &mut http::Response<UpstreamBody>) {
    *response.status_mut() = http::StatusCode::OK;
    let headers = response.headers_mut();
    for name in [CONNECTION, UPGRADE, SEC_WEBSOCKET_ACCEPT, CONTENT_LENGTH] {
        headers.remove(name);
    }
    *response.body_mut() = box_body(http_body_util::Empty::<bytes::Bytes>::new());
}

/// `Connection` lists the `upgrade` option.
fn names_upgrade(headers: &HeaderMap) -> bool {
    connection_options(headers).any(|option| option.eq_ignore_ascii_case("upgrade"))
}

/// Puts back the two headers that ask for (or agree to) `protocol`, after the hop-by-hop ones
/// were stripped: the upgrade is negotiated hop by hop, and this proxy passes it on.
pub(crate) fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Copies bytes between `client` and `backend` once both upgrades complete, within `limits`.
/// `slot` is the client connection's place under the connection cap, held until the tunnel
/// ends.
pub(crate) async fn run(
    client: OnUpgrade,
    backend: OnUpgrade,
    limits: TunnelLimits,
    peer: SocketAddr,
    slot: Arc<ConnectionSlot>,
) {
    let _slot = slot;
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%peer, %error, "upgrade did not complete");
            return;
        }
    };
    let started = Instant::now();
    let activity = Arc::new(Activity::default());
    let mut client = Active::new(TokioIo::new(client), started, Arc::clone(&activity));
    let mut backend = Active::new(TokioIo::new(backend), started, Arc::clone(&activity));
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    tokio::pin!(copy);
    let end = tokio::time::sleep_until(started + limits.total);
    tokio::pin!(end);
    loop {
        let quiet_until = activity.last(started) + limits.idle;
        tokio::select! {
            copied = &mut copy => {
                match copied {
                    Ok((up, down)) => tracing::debug!(%peer, up, down, "upgraded connection closed"),
                    Err(error) => tracing::debug!(%peer, %error, "upgraded connection ended with an error"),
                }
                return;
            }
            () = &mut end => {
                tracing::debug!(%peer, limit = ?limits.total, "upgraded connection closed: it lasted too long");
                return;
            }
            () = tokio::time::sleep_until(quiet_until) => {
                if activity.last(started) + limits.idle <= Instant::now() {
                    tracing::debug!(%peer, limit = ?limits.idle, "upgraded connection closed: idle");
                    return;
                }
            }
        }
    }
}

/// When a byte last went through a tunnel, in milliseconds since it began.
#[derive(Debug, Default)]
struct Activity(AtomicU64);

impl Activity {
    fn touch(&self, started: Instant) {
        let since = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_max(since, Ordering::Relaxed);
    }

    fn last(&self, started: Instant) -> Instant {
        started + Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// One side of a tunnel, marking [`Activity`] whenever bytes are read from it.
struct Active<T> {
    io: T,
    started: Instant,
    activity: Arc<Activity>,
}

impl<T> Active<T> {
    fn new(io: T, started: Instant, activity: Arc<Activity>) -> Self {
        Self {
            io,
            started,
            activity,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch(self.started);
        }
        polled
    }
}

crate::delegate_write::delegate_write!(Active, io);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_http11_request_naming_upgrade_asks_for_one() {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested(Version::HTTP_11, &headers), None, "no Connection");
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(
            requested(Version::HTTP_11, &headers),
            Some(HeaderValue::from_static("websocket"))
        );
        assert_eq!(requested(Version::HTTP_2, &headers), None);
        assert_eq!(requested(Version::HTTP_10, &headers), None);
        headers.remove(UPGRADE);
        assert_eq!(requested(Version::HTTP_11, &headers), None, "no Upgrade");
    }
}
