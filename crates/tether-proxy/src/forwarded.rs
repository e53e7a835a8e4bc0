//! What a reverse proxy changes in the messages it passes on: hop-by-hop headers out,
//! `X-Forwarded-For` and `Forwarded` in.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use http::header::{
    CONNECTION, FORWARDED, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Request};
use tower::Service;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// The options `Connection` lists, over all its lines, trimmed (RFC 9110 7.6.1).
pub(crate) fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Removes the hop-by-hop headers and those that `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = connection_options(headers)
            .filter_map(|name| HeaderName::try_from(name).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// One client's entries in `X-Forwarded-For` and `Forwarded`, made once per connection: every
/// request on it appends the same.
#[derive(Clone, Debug)]
pub(crate) struct ClientForwarding {
    /// The client's address alone, as `X-Forwarded-For` holds it.
    address: HeaderValue,
    /// `for=<address>`, IPv6 quoted and bracketed (RFC 7239).
    forwarded: HeaderValue,
}

impl ClientForwarding {
    pub(crate) fn new(client: SocketAddr) -> Self {
        let ip = client.ip();
        let node = if ip.is_ipv6() {
            format!("for=\"[{ip}]\"")
        } else {
            format!("for={ip}")
        };
        // An IP address and `for=` are always valid header values.
        let value = |text: String| {
            HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        };
        Self {
            address: value(ip.to_string()),
            forwarded: value(node),
        }
    }

    /// Appends the client to `X-Forwarded-For` and `Forwarded`.
    fn add_to(&self, headers: &mut HeaderMap) {
        if headers.contains_key(&X_FORWARDED_FOR) {
            let previous: Vec<&[u8]> = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            let joined = [
                previous.join(&b", "[..]).as_slice(),
                b", ",
                self.address.as_bytes(),
            ]
            .concat();
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                headers.insert(X_FORWARDED_FOR, value);
            }
        } else {
            headers.insert(X_FORWARDED_FOR, self.address.clone());
        }
        headers.append(FORWARDED, self.forwarded.clone());
    }
}

/// A backend service that appends the request's [`ClientForwarding`] to its forwarding headers
/// on the way out. It sits behind the router, so the router reads `X-Forwarded-For` as the client
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
        // Taken out: nothing after this needs it, and a retry gets its own copy from the router.
        if let Some(client) = request.extensions_mut().remove::<ClientForwarding>() {
            client.add_to(request.headers_mut());
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
        ClientForwarding::new("203.0.113.9:5555".parse().unwrap()).add_to(&mut headers);
        assert_eq!(
            headers["x-forwarded-for"],
            "198.51.100.1, 198.51.100.2, 203.0.113.9"
        );
        assert_eq!(headers["forwarded"], "for=203.0.113.9");
        let mut headers = HeaderMap::new();
        ClientForwarding::new("[2001:db8::9]:5555".parse().unwrap()).add_to(&mut headers);
        assert_eq!(headers["x-forwarded-for"], "2001:db8::9");
        assert_eq!(headers["forwarded"], "for=\"[2001:db8::9]\"");
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
            .insert(ClientForwarding::new("203.0.113.9:4000".parse().unwrap()));
        let seen = AddForwarded::new(echo).oneshot(request).await.unwrap();
        assert_eq!(seen, "198.51.100.1, 203.0.113.9");
    }
}
