//! The handshake that opens every replication connection, both halves: the server sends a
//! challenge, the client answers with its name, its own nonce and its proof of the key, the
//! server answers with its proof. Until it is over, frames are limited to
//! [`HANDSHAKE_MAX_FRAME`]; afterwards to the configured max frame.
//!
//! The proofs themselves (HMAC-SHA256 over both nonces, a role and a name) are in
//! [`auth`](crate::auth).

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::auth::nonce;
use crate::link::{FramedPeer, Link, LinkError, PeerStream, plain, receive, send};
use crate::wire::Frame;

/// Bound on the handshake: a connection that does not authenticate in time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest frame accepted before the peer has authenticated. The handshake frames are small:
/// a challenge is 34 bytes, a welcome 35 or 36 plus the server's name, a hello 67 or 68 plus
/// the client's name, so at most 323 bytes with a name of [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)
/// bytes (measured in the wire tests), which leaves a third of margin.
/// Until a connection is authenticated, a longer length prefix is refused before anything is
/// buffered: with the configured max frame (16 MiB by default) instead, every unauthenticated
/// connection could make the node buffer a whole frame.
pub(crate) const HANDSHAKE_MAX_FRAME: usize = 512;

/// The client half, on a connection to the peer named `peer`: answers the server's challenge,
/// then checks the server's proof and name. Returns the connection, authenticated both ways.
pub(crate) async fn connect(
    link: &Link,
    stream: TcpStream,
    peer: &str,
) -> Result<FramedPeer, LinkError> {
    let handshake = async {
        let mut transport = unauthenticated(secure_client(link, stream, peer).await?);
        let Frame::Challenge {
            nonce: server_nonce,
        } = receive(&mut transport).await?
        else {
            return Err(LinkError::Protocol("expected a challenge"));
        };
        let client_nonce = nonce();
        let hello = Frame::Hello {
            node: link.name().to_owned(),
            nonce: client_nonce,
            mac: link
                .key()
                .client_proof(&server_nonce, &client_nonce, link.name()),
        };
        send(&mut transport, &hello).await?;
        let Frame::Welcome { node, mac } = receive(&mut transport).await? else {
            return Err(LinkError::Protocol("expected a welcome"));
        };
        if node != peer
            || !link
                .key()
                .verify_server(&client_nonce, &server_nonce, &node, &mac)
        {
            return Err(LinkError::Authentication);
        }
        Ok(transport)
    };
    let mut transport = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| LinkError::Timeout)??;
    authenticated(link, &mut transport);
    Ok(transport)
}

/// The server half, on an accepted connection: sends a challenge, checks the client's proof
/// and that `is_peer` knows its name, then proves the key in turn. Returns the connection,
/// authenticated both ways, and the peer's name. Whatever goes wrong (garbage, an oversized
/// frame, another protocol version, a wrong key, an unknown name, silence) is an `Err`.
pub(crate) async fn accept(
    link: &Link,
    stream: TcpStream,
    is_peer: impl Fn(&str) -> bool,
) -> Result<(FramedPeer, String), LinkError> {
    let handshake = async {
        let mut transport = unauthenticated(secure_server(link, stream).await?);
        let server_nonce = nonce();
        send(
            &mut transport,
            &Frame::Challenge {
                nonce: server_nonce,
            },
        )
        .await?;
        let Frame::Hello {
            node: peer,
            nonce: client_nonce,
            mac,
        } = receive(&mut transport).await?
        else {
            return Err(LinkError::Protocol("expected a hello"));
        };
        if !is_peer(&peer) {
            return Err(LinkError::Authentication);
        }
        certified(link, &transport, &peer)?;
        if !link
            .key()
            .verify_client(&server_nonce, &client_nonce, &peer, &mac)
        {
            return Err(LinkError::Authentication);
        }
        let welcome = Frame::Welcome {
            node: link.name().to_owned(),
            mac: link
                .key()
                .server_proof(&client_nonce, &server_nonce, link.name()),
        };
        send(&mut transport, &welcome).await?;
        Ok((transport, peer))
    };
    let (mut transport, peer) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| LinkError::Timeout)??;
    authenticated(link, &mut transport);
    Ok((transport, peer))
}

/// The client's connection: inside TLS to `peer` if the cluster speaks it.
async fn secure_client(
    link: &Link,
    stream: TcpStream,
    peer: &str,
) -> Result<PeerStream, LinkError> {
    let _ = stream.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(tls) = link.tls() {
        return Ok(PeerStream::Right(tls.connect(stream, peer).await?));
    }
    #[cfg(not(feature = "tls"))]
    let _ = (link, peer);
    Ok(plain(stream))
}

/// The server's connection: inside TLS if the cluster speaks it.
async fn secure_server(link: &Link, stream: TcpStream) -> Result<PeerStream, LinkError> {
    let _ = stream.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(tls) = link.tls() {
        return Ok(PeerStream::Right(tls.accept(stream).await?));
    }
    #[cfg(not(feature = "tls"))]
    let _ = link;
    Ok(plain(stream))
}

/// Over TLS, the client's certificate must name the node the client says it is; without TLS
/// there is no certificate to check.
fn certified(link: &Link, transport: &FramedPeer, peer: &str) -> Result<(), LinkError> {
    #[cfg(feature = "tls")]
    if let (PeerStream::Right(stream), Some(tls)) = (transport.get_ref(), link.tls())
        && !tls.certifies(stream, peer)
    {
        return Err(LinkError::NotCertified);
    }
    #[cfg(not(feature = "tls"))]
    let _ = (link, transport, peer);
    Ok(())
}

/// A new connection, not authenticated yet: it accepts only frames up to
/// [`HANDSHAKE_MAX_FRAME`] until [`authenticated`].
fn unauthenticated(stream: PeerStream) -> FramedPeer {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(HANDSHAKE_MAX_FRAME)
        .new_codec();
    Framed::new(stream, codec)
}

/// Raises the frame limit of a connection whose peer has authenticated to the configured
/// max frame.
fn authenticated(link: &Link, transport: &mut FramedPeer) {
    transport.codec_mut().set_max_frame_length(link.max_frame());
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{NodeConfig, PeerKey};

    fn link(max_frame: usize) -> Link {
        named("a", 3, max_frame)
    }

    fn named(name: &str, key: u8, max_frame: usize) -> Link {
        let key = PeerKey::new([key; 32]).unwrap();
        let config =
            NodeConfig::new(name, ([127, 0, 0, 1], 0).into(), key).with_max_frame(max_frame);
        Link::new(&config, CancellationToken::new())
    }

    /// Runs both halves on a loopback connection: the client `client` expects the server to be
    /// named `expected`; the server knows only a peer named "a".
    async fn both_halves(
        client: &Link,
        server: &Link,
        expected: &str,
    ) -> (Result<(), LinkError>, Result<String, LinkError>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_half = async {
            let (stream, _) = listener.accept().await.unwrap();
            accept(server, stream, |name| name == "a")
                .await
                .map(|(_, peer)| peer)
        };
        let client_half = async {
            let stream = TcpStream::connect(addr).await.unwrap();
            connect(client, stream, expected).await.map(|_| ())
        };
        tokio::join!(client_half, server_half)
    }

    #[tokio::test]
    async fn both_halves_authenticate_each_other_with_the_same_key_only() {
        let (a, b) = (named("a", 3, 1 << 20), named("b", 3, 1 << 20));
        let (client, server) = both_halves(&a, &b, "b").await;
        assert!(client.is_ok(), "{client:?}");
        assert_eq!(server.unwrap(), "a");

        let stranger = named("a", 4, 1 << 20);
        let (_, server) = both_halves(&stranger, &b, "b").await;
        assert!(
            matches!(server, Err(LinkError::Authentication)),
            "{server:?}"
        );

        let unknown = named("c", 3, 1 << 20);
        let (_, server) = both_halves(&unknown, &b, "b").await;
        assert!(
            matches!(server, Err(LinkError::Authentication)),
            "{server:?}"
        );

        let (client, _) = both_halves(&a, &b, "someone else").await;
        assert!(
            matches!(client, Err(LinkError::Authentication)),
            "{client:?}"
        );
    }

    /// The server end of a loopback connection, framed, and the raw client end.
    async fn pair() -> (FramedPeer, TcpStream) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (unauthenticated(plain(server)), client)
    }

    /// A peer that announces a 16 MiB frame and then dribbles: before authentication the length
    /// prefix alone is refused, and nothing near the announced length was reserved (the codec
    /// reserves the whole announced frame once it accepts a length).
    #[tokio::test]
    async fn before_authentication_a_long_frame_is_refused_at_its_prefix() {
        let (mut server, mut client) = pair().await;
        client
            .write_all(&((16u32 << 20) - 1).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[0; 3]).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), server.next())
            .await
            .expect("the prefix alone decides");
        assert!(
            matches!(read, Some(Err(ref e)) if e.kind() == std::io::ErrorKind::InvalidData),
            "{read:?}"
        );
        let reserved = server.read_buffer().capacity();
        assert!(reserved < 64 << 10, "{reserved} bytes reserved");
    }

    #[tokio::test]
    async fn after_authentication_the_configured_max_frame_applies() {
        let link = link(1 << 20);
        let (mut server, client) = pair().await;
        let mut client = Framed::new(client, LengthDelimitedCodec::new());
        client
            .send(Bytes::from(vec![1u8; HANDSHAKE_MAX_FRAME]))
            .await
            .unwrap();
        let first = server.next().await.unwrap().unwrap();
        assert_eq!(
            first.len(),
            HANDSHAKE_MAX_FRAME,
            "a handshake-sized frame passes"
        );
        authenticated(&link, &mut server);
        client.send(Bytes::from(vec![2u8; 1 << 20])).await.unwrap();
        let second = server.next().await.unwrap().unwrap();
        assert_eq!(second.len(), 1 << 20);
        client
            .send(Bytes::from(vec![3u8; (1 << 20) + 1]))
            .await
            .unwrap();
        assert!(
            matches!(server.next().await, Some(Err(_))),
            "max frame still holds"
        );
    }
}
