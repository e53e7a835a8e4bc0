//! The PROXY protocol (HAProxy's, v1 text and v2 binary): an L4 balancer in front of the proxy
//! starts each connection with the address of the client it accepted. Read only on connections
//! from configured sources, where it is required, as HAProxy's `accept-proxy`.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use ppp::{HeaderResult, PartialResult as _, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt as _, ReadBuf};

use crate::values::Cidr;

/// Longest header read: a v2 header with a few TLVs fits; more is refused.
const MAX_HEADER: usize = 1024;
/// Longest v1 header, CRLF included (the protocol's own bound).
const V1_MAX: usize = 107;

/// The sources whose connections start with a PROXY header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TrustedSources(pub(crate) Vec<Cidr>);

impl TrustedSources {
    /// Whether a connection from `ip` must start with a PROXY header.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }
}

/// Why a connection from a trusted source was closed before any request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    /// The peer closed before the header was whole.
    #[error("connection closed before its PROXY header was complete")]
    Closed,
    /// The bytes are no PROXY header, or a broken one.
    #[error("no valid PROXY header: {0}")]
    Invalid(String),
    /// More than [`MAX_HEADER`] bytes without a complete header.
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// Reading failed.
    #[error("reading the PROXY header failed")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY header at the start of `stream`. Returns the client it names (`None` for a
/// `LOCAL` or `UNKNOWN` header: the balancer's own connection, such as its health check) and
/// the stream with any bytes read past the header put back in front.
pub(crate) async fn read_header<S>(
    mut stream: S,
) -> Result<(Option<SocketAddr>, Rewound<S>), HeaderError>
where
    S: AsyncRead + Unpin,
{
    let mut buffer = Vec::with_capacity(256);
    loop {
        if buffer.len() >= MAX_HEADER {
            return Err(HeaderError::TooLong);
        }
        // Reads into the buffer's spare room; it starts at 256 bytes and grows in small steps,
        // so the check above bounds it.
        if stream.read_buf(&mut buffer).await? == 0 {
            return Err(HeaderError::Closed);
        }
        let parsed = HeaderResult::parse(&buffer);
        if parsed.is_incomplete() {
            // A v1 header ends at its first CRLF, within 107 bytes: a line that does not parse
            // by then never will.
            let v1 = buffer.starts_with(b"PROXY");
            if v1 && (buffer.windows(2).any(|pair| pair == b"\r\n") || buffer.len() > V1_MAX) {
                return Err(HeaderError::Invalid("malformed v1 header".to_owned()));
            }
            continue;
        }
        let (client, length) = match parsed {
            HeaderResult::V1(Ok(header)) => (v1_client(&header.addresses), header.header.len()),
            HeaderResult::V2(Ok(header)) => (v2_client(&header), header.len()),
            HeaderResult::V1(Err(error)) => return Err(HeaderError::Invalid(error.to_string())),
            HeaderResult::V2(Err(error)) => return Err(HeaderError::Invalid(error.to_string())),
        };
        let rest = Bytes::from(buffer).slice(length..);
        return Ok((
            client,
            Rewound {
                rest,
                inner: stream,
            },
        ));
    }
}

fn v1_client(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(ip) => Some((ip.source_address, ip.source_port).into()),
        v1::Addresses::Tcp6(ip) => Some((ip.source_address, ip.source_port).into()),
        v1::Addresses::Unknown => None,
    }
}

fn v2_client(header: &v2::Header<'_>) -> Option<SocketAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match &header.addresses {
        v2::Addresses::IPv4(ip) => Some((ip.source_address, ip.source_port).into()),
        v2::Addresses::IPv6(ip) => Some((ip.source_address, ip.source_port).into()),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub(crate) struct Rewound<S> {
    rest: Bytes,
    inner: S,
}

impl<S> From<S> for Rewound<S> {
    /// `stream` with nothing put back.
    fn from(inner: S) -> Self {
        Self {
            rest: Bytes::new(),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.rest.is_empty() {
            let n = self.rest.len().min(buf.remaining());
            let front = self.rest.split_to(n);
            buf.put_slice(&front);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

crate::delegate_write::delegate_write!(Rewound, inner);

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8]) -> Result<(Option<SocketAddr>, Vec<u8>), HeaderError> {
        let (client, mut rest) = read_header(input).await?;
        let mut after = Vec::new();
        rest.read_to_end(&mut after).await?;
        Ok((client, after))
    }

    #[tokio::test]
    async fn v1_and_v2_name_the_client_and_keep_what_follows() {
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nGET / HTTP/1.1\r\n";
        let (client, after) = read(v1).await.unwrap();
        assert_eq!(client, Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(after, b"GET / HTTP/1.1\r\n");

        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
        let (client, after) = read(v6).await.unwrap();
        assert_eq!(client, Some("[2001:db8::7]:51000".parse().unwrap()));
        assert!(after.is_empty());

        let (client, _) = read(b"PROXY UNKNOWN\r\n").await.unwrap();
        assert_eq!(client, None, "UNKNOWN keeps the connection's own address");

        let addresses = v2::IPv4::new([198, 51, 100, 9], [192, 0, 2, 1], 40000, 443);
        let mut v2 = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            addresses,
        )
        .build()
        .unwrap();
        v2.extend_from_slice(b"GET /");
        let (client, after) = read(&v2).await.unwrap();
        assert_eq!(client, Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(after, b"GET /");

        let local = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(read(&local).await.unwrap().0, None);
    }

    #[tokio::test]
    async fn garbage_short_and_endless_headers_are_refused() {
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await,
            Err(HeaderError::Invalid(_))
        ));
        assert!(matches!(
            read(b"PROXY TCP4 999.0.0.1 1.1.1.1 1 2\r\n").await,
            Err(HeaderError::Invalid(_))
        ));
        assert!(matches!(
            read(b"PROXY TCP4 1.2").await,
            Err(HeaderError::Closed)
        ));
        let endless = [b"PROXY ".as_slice(), &[b'1'; 4096]].concat();
        assert!(matches!(
            read(&endless).await,
            Err(HeaderError::TooLong | HeaderError::Invalid(_))
        ));
    }
}
