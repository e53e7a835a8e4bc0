//! What the layer records about where and on what a session is used.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Request};
use tether_core::{Seen, Timestamp};

/// What the layer records with each session about its use, for a "your devices" page: when it
/// was last used, and optionally the device (`User-Agent`) and the client's address. Off unless
/// set with [`SessionLayer::with_activity`](crate::SessionLayer::with_activity).
///
/// **What is stored, and when.** When the layer writes a session anyway (a change, a renewal
/// at the touch threshold, a login), it also writes the time of that request and, if turned on
/// here, the request's `User-Agent` (cleaned and cut to
/// [`MAX_DEVICE_LEN`](tether_core::MAX_DEVICE_LEN) bytes) and client address. A request that
/// only reads writes nothing, so "last seen" is as fresh as the touch threshold (a quarter of
/// the idle timeout by default) and costs no write of its own. The values live with the session
/// and end with it. An address is personal data in many jurisdictions: record it only if the
/// page needs it, and say so in the application's privacy notice.
///
/// # Example
///
/// ```
/// use http::HeaderName;
/// use tether_memory::MemoryStore;
/// use tether_sessions::{Activity, ClientAddress, SessionLayer};
///
/// let sessions = SessionLayer::new(MemoryStore::new()).with_activity(
///     Activity::new()
///         .with_user_agent(true)
///         .with_client_address(ClientAddress::Header(HeaderName::from_static("x-real-ip"))),
/// );
/// # let _ = sessions;
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Activity {
    user_agent: bool,
    address: Option<ClientAddress>,
}

/// Where the client's address comes from, for [`Activity::with_client_address`].
///
/// A header is only as trustworthy as whatever sets it: use a header source only behind a
/// proxy you run that overwrites (or appends to) it on every request. Otherwise a client writes
/// any address it likes into its own requests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAddress {
    /// The TCP peer, as a `SocketAddr` in the request's extensions (a hyper server inserts it
    /// itself). For axum's `ConnectInfo`, use [`ClientAddress::extension`]. Behind a proxy this
    /// is the proxy's address.
    Peer,
    /// The TCP peer from an extension of another type that dereferences to a `SocketAddr`:
    /// made by [`ClientAddress::extension`].
    Extension(ExtensionReader),
    /// The last address of the last `X-Forwarded-For` header: the one the nearest proxy added.
    /// Addresses before it were written by the client or by proxies further out, and are
    /// ignored.
    ForwardedFor,
    /// A header holding the client's address that a proxy you run sets, such as `X-Real-IP`.
    /// When it holds a list, the last entry counts, as for
    /// [`ForwardedFor`](Self::ForwardedFor).
    Header(HeaderName),
}

impl ClientAddress {
    /// The TCP peer from the request extension `T`, which dereferences to a `SocketAddr`: for
    /// axum served with `into_make_service_with_connect_info::<SocketAddr>()`,
    /// `ClientAddress::extension::<axum::extract::ConnectInfo<SocketAddr>>()`.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tether_sessions::ClientAddress;
    ///
    /// #[derive(Clone)]
    /// struct Peer(SocketAddr);
    /// impl std::ops::Deref for Peer {
    ///     type Target = SocketAddr;
    ///     fn deref(&self) -> &SocketAddr { &self.0 }
    /// }
    ///
    /// let source = ClientAddress::extension::<Peer>();
    /// # let _ = source;
    /// ```
    pub fn extension<T>() -> Self
    where
        T: Deref<Target = SocketAddr> + Clone + Send + Sync + 'static,
    {
        fn read<T: Deref<Target = SocketAddr> + Clone + Send + Sync + 'static>(
            extensions: &Extensions,
        ) -> Option<IpAddr> {
            extensions.get::<T>().map(|peer| peer.ip())
        }
        Self::Extension(ExtensionReader {
            read: read::<T>,
            name: std::any::type_name::<T>(),
        })
    }
}

/// Reads the client's address from one type of request extension; see
/// [`ClientAddress::extension`].
#[derive(Clone, Copy)]
pub struct ExtensionReader {
    read: fn(&Extensions) -> Option<IpAddr>,
    name: &'static str,
}

impl PartialEq for ExtensionReader {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ExtensionReader {}

impl fmt::Debug for ExtensionReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExtensionReader").field(&self.name).finish()
    }
}

impl Activity {
    /// Record when each session was last used; no device, no address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to record the request's `User-Agent` as the device label (default `false`).
    pub fn with_user_agent(mut self, user_agent: bool) -> Self {
        self.user_agent = user_agent;
        self
    }

    /// Record the client's address, read from `source`.
    pub fn with_client_address(mut self, source: ClientAddress) -> Self {
        self.address = Some(source);
        self
    }

    /// What this request tells of its client, taken while the request is at hand and turned
    /// into a [`Seen`] only if the session is written.
    pub(crate) fn observe<B>(&self, request: &Request<B>) -> Observed {
        let device = if self.user_agent {
            request.headers().get(http::header::USER_AGENT).cloned()
        } else {
            None
        };
        let address = match &self.address {
            None => None,
            Some(ClientAddress::Peer) => {
                request.extensions().get::<SocketAddr>().map(SocketAddr::ip)
            }
            Some(ClientAddress::Extension(reader)) => (reader.read)(request.extensions()),
            Some(ClientAddress::ForwardedFor) => last_listed(
                request.headers(),
                &http::HeaderName::from_static("x-forwarded-for"),
            ),
            Some(ClientAddress::Header(name)) => last_listed(request.headers(), name),
        };
        Observed { device, address }
    }
}

/// The client of one request, as [`Activity`] saw it.
#[derive(Clone, Debug)]
pub(crate) struct Observed {
    device: Option<HeaderValue>,
    address: Option<IpAddr>,
}

impl Observed {
    /// The session's use by this request, at `now`.
    pub(crate) fn seen(&self, now: Timestamp) -> Seen {
        let mut seen = Seen::new(now);
        if let Some(device) = &self.device {
            seen = seen.with_device(&String::from_utf8_lossy(device.as_bytes()));
        }
        if let Some(address) = self.address {
            seen = seen.with_address(address);
        }
        seen
    }
}

/// The last entry of the last `name` header, as an address. An entry that is not an address
/// (`unknown`, garbage) gives none: an earlier entry is not trusted in its place.
fn last_listed(headers: &HeaderMap, name: &HeaderName) -> Option<IpAddr> {
    let value = headers.get_all(name).iter().next_back()?;
    let text = value.to_str().ok()?;
    let last = text.rsplit(',').next()?.trim();
    parse_address(last)
}

/// An address as proxies write it: `192.0.2.7`, `2001:db8::1`, `[2001:db8::1]`, or either
/// with a port.
fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&'static str, &'static str)]) -> Request<()> {
        let mut request = Request::new(());
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        request
    }

    fn address(source: ClientAddress, request: &Request<()>) -> Option<IpAddr> {
        Activity::new()
            .with_client_address(source)
            .observe(request)
            .address
    }

    #[test]
    fn forwarded_for_trusts_only_the_last_entry() {
        let r = request(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.1.1.1, 192.0.2.7"),
        ]);
        assert_eq!(
            address(ClientAddress::ForwardedFor, &r),
            Some("192.0.2.7".parse().unwrap())
        );
        for garbage in ["1.1.1.1, unknown", "", "not an address", "1.1.1.1,"] {
            let mut r = Request::new(());
            r.headers_mut()
                .insert("x-forwarded-for", HeaderValue::from_str(garbage).unwrap());
            assert_eq!(
                address(ClientAddress::ForwardedFor, &r),
                None,
                "{garbage:?}"
            );
        }
        assert_eq!(address(ClientAddress::ForwardedFor, &request(&[])), None);
    }

    #[test]
    fn headers_take_every_address_shape() {
        let name = HeaderName::from_static("x-real-ip");
        for (text, expected) in [
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("192.0.2.7:5000", "192.0.2.7"),
            (" 192.0.2.7 ", "192.0.2.7"),
        ] {
            let mut r = Request::new(());
            r.headers_mut()
                .insert(&name, HeaderValue::from_str(text).unwrap());
            assert_eq!(
                address(ClientAddress::Header(name.clone()), &r),
                Some(expected.parse().unwrap()),
                "{text:?}"
            );
        }
    }

    #[derive(Clone)]
    struct Wrapped(SocketAddr);

    impl Deref for Wrapped {
        type Target = SocketAddr;
        fn deref(&self) -> &SocketAddr {
            &self.0
        }
    }

    #[test]
    fn peer_comes_from_a_socket_address_or_the_extension_named() {
        let mut r = request(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(address(ClientAddress::Peer, &r), None);
        assert_eq!(address(ClientAddress::extension::<Wrapped>(), &r), None);
        r.extensions_mut()
            .insert("10.0.0.1:4000".parse::<SocketAddr>().unwrap());
        r.extensions_mut()
            .insert(Wrapped("10.0.0.2:4000".parse().unwrap()));
        assert_eq!(
            address(ClientAddress::Peer, &r),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            address(ClientAddress::extension::<Wrapped>(), &r),
            Some("10.0.0.2".parse().unwrap())
        );
        assert_eq!(
            ClientAddress::extension::<Wrapped>(),
            ClientAddress::extension::<Wrapped>()
        );
    }

    #[test]
    fn user_agent_only_when_asked() {
        let r = request(&[("user-agent", "Mozilla/5.0 (X11)")]);
        let now = Timestamp::from_millis(9);
        assert_eq!(Activity::new().observe(&r).seen(now).device(), None);
        let seen = Activity::new().with_user_agent(true).observe(&r).seen(now);
        assert_eq!(seen.device(), Some("Mozilla/5.0 (X11)"));
        assert_eq!(seen.at(), now);
    }
}
