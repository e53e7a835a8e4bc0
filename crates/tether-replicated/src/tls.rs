//! TLS between peers (feature `tls`): every node has a certificate naming it, signed by the
//! cluster's CA, and both ends of a replication connection verify the other's (mutual TLS).
//! The pre-shared key handshake then runs inside the encrypted connection, as without TLS.
//!
//! A certificate names its node by a DNS subject alternative name equal to the node's name
//! (`node-a`, or `tether-0.tether.prod.svc`): the client checks that the server it reached is
//! the peer it meant, and the server that the client's certificate names the node the client
//! says it is in the handshake, so one node's certificate cannot speak for another.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::Error;
use crate::link::LinkError;

/// The certificates a node speaks TLS to its peers with: the CA that signs every node's
/// certificate, and this node's certificate chain and private key.
///
/// # Example
///
/// ```no_run
/// use tether_replicated::{NodeConfig, PeerKey, PeerTls};
///
/// let tls = PeerTls::from_pem_files("ca.pem", "node-a.pem", "node-a-key.pem")?;
/// let key = PeerKey::new(std::env::var("TETHER_PEER_KEY")?)?;
/// let config = NodeConfig::new("node-a", "10.0.0.1:7000".parse()?, key).with_tls(tls);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PeerTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    /// Checks the other end's certificate for the role the handshake did not check it for:
    /// a node's certificate must serve both, or a node could reach its peers one way only.
    as_client: Arc<dyn ClientCertVerifier>,
    as_server: Arc<WebPkiServerVerifier>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

impl PeerTls {
    /// From PEM text: `ca` the CA certificate(s) peers must be signed by, `chain` this node's
    /// certificate (then any intermediates), `key` its private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<Self, Error> {
        let roots = CertificateDer::pem_slice_iter(ca)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error("the CA certificate is not valid PEM", e))?;
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error("the node certificate is not valid PEM", e))?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| tls_error("the private key is not valid PEM", e))?;
        Self::from_der(roots, chain, key)
    }

    /// From PEM files, as [`PeerTls::from_pem`] (a Kubernetes TLS secret mounted as files, say).
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::TlsFile {
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(
            &read(ca.as_ref())?,
            &read(chain.as_ref())?,
            &read(key.as_ref())?,
        )
    }

    fn from_der(
        roots: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, Error> {
        if roots.is_empty() {
            return Err(Error::InvalidSetting("the CA PEM holds no certificate"));
        }
        if chain.is_empty() {
            return Err(Error::InvalidSetting("the node PEM holds no certificate"));
        }
        let mut store = RootCertStore::empty();
        for root in roots {
            store
                .add(root)
                .map_err(|e| tls_error("the CA certificate is not usable", e))?;
        }
        let store = Arc::new(store);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&store), Arc::clone(&provider))
                .build()
                .map_err(|e| tls_error("the CA cannot verify clients", e))?;
        let as_server =
            WebPkiServerVerifier::builder_with_provider(Arc::clone(&store), Arc::clone(&provider))
                .build()
                .map_err(|e| tls_error("the CA cannot verify servers", e))?;
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("no TLS version is available", e))?
            .with_client_cert_verifier(Arc::clone(&verifier))
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls_error("the node certificate or key is not usable", e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("no TLS version is available", e))?
            .with_root_certificates(store)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error("the node certificate or key is not usable", e))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            as_client: verifier,
            as_server,
        })
    }

    /// The client half, to the peer named `peer`: the server's certificate must name it, and
    /// be one a client may use too.
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        peer: &str,
    ) -> Result<tokio_rustls::TlsStream<TcpStream>, LinkError> {
        let name = ServerName::try_from(peer.to_owned()).map_err(|_| LinkError::NotCertified)?;
        let stream = self
            .connector
            .connect(name, stream)
            .await
            .map_err(LinkError::Tls)?;
        let (_, connection) = stream.get_ref();
        let (end_entity, intermediates) =
            split_chain(connection.peer_certificates()).ok_or(LinkError::NotCertified)?;
        self.as_client
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map_err(|_| LinkError::NotCertified)?;
        Ok(stream.into())
    }

    /// The server half: the client must present a certificate of the cluster's CA.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> Result<tokio_rustls::TlsStream<TcpStream>, LinkError> {
        let stream = self.acceptor.accept(stream).await.map_err(LinkError::Tls)?;
        Ok(stream.into())
    }
}

impl PeerTls {
    /// Whether the client certificate of `stream` names `node` and may serve too: the name
    /// the client gave in the handshake must be the one its certificate was issued to.
    pub(crate) fn certifies(
        &self,
        stream: &tokio_rustls::TlsStream<TcpStream>,
        node: &str,
    ) -> bool {
        let (_, connection) = stream.get_ref();
        let (Some((end_entity, intermediates)), Ok(name)) = (
            split_chain(connection.peer_certificates()),
            ServerName::try_from(node),
        ) else {
            return false;
        };
        self.as_server
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .is_ok()
    }
}

/// The end-entity certificate and the intermediates of a presented chain.
fn split_chain<'a>(
    chain: Option<&'a [CertificateDer<'static>]>,
) -> Option<(&'a CertificateDer<'static>, &'a [CertificateDer<'static>])> {
    chain?.split_first()
}

fn tls_error(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Tls {
        what,
        source: Box::new(source),
    }
}
