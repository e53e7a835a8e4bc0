//! What a reverse proxy changes in the messages it passes on: hop-by-hop headers out,
//! `X-Forwarded-For` and `Forwarded` in.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use http::header::{CONNECTION, HeaderName, HeaderValue};
use http::{HeaderMap, Request};
use tether_sticky::ClientAddr;
use tower::Service;

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers and those that `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the client to `X-Forwarded-For` and `Forwarded`.
fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr) {
    let ip = client.ip();
    let previous: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if previous.is_empty() {
        ip.to_string()
    } else {
        format!("{}, {ip}", previous.join(", "))
    };
    if let Ok(value) = HeaderValue::try_from(xff) {
        headers.insert("x-forwarded-for", value);
    }
    let node = if ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.to_string()
    };
    if let Ok(value) = HeaderValue::try_from(format!("for={node}")) {
        headers.append("forwarded", value);
    }
}

/// A backend service that appends the request's [`ClientAddr`] to its forwarding headers on
/// the way out. It sits behind the router, so the router reads `X-Forwarded-For` as the client
/// and the proxies in front of this one wrote it, without this proxy's own entry.
#[derive(Clone, Debug)]
pub(crate) struct AddForwarded<S> {
    inner: S,
}

impl<S> AddForwarded<S> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<B>> for AddForwarded<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        if let Some(ClientAddr(client)) = request.extensions().get::<ClientAddr>().copied() {
            add_forwarded(request.headers_mut(), client);
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        headers.append("x-forwarded-for", "198.51.100.2".parse().unwrap());
        headers.insert(CONNECTION, "close, x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert("keep-alive", "5".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        add_forwarded(&mut headers, "203.0.113.9:5555".parse().unwrap());
        assert_eq!(
            headers["x-forwarded-for"],
            "198.51.100.1, 198.51.100.2, 203.0.113.9"
        );
        assert_eq!(headers["forwarded"], "for=203.0.113.9");
        assert!(headers.get("x-secret").is_none() && headers.get("keep-alive").is_none());
    }

    #[tokio::test]
    async fn the_client_is_appended_on_the_way_out() {
        use std::convert::Infallible;
        use tower::{ServiceExt as _, service_fn};

        let echo = service_fn(|request: Request<()>| async move {
            Ok::<_, Infallible>(
                request.headers()["x-forwarded-for"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            )
        });
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        request
            .extensions_mut()
            .insert(ClientAddr("203.0.113.9:4000".parse().unwrap()));
        let seen = AddForwarded::new(echo).oneshot(request).await.unwrap();
        assert_eq!(seen, "198.51.100.1, 203.0.113.9");
    }
}
