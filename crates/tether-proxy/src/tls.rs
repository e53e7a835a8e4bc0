//! TLS termination with rustls: certificates from PEM files, the one presented chosen by the
//! client's SNI, all of them reloaded from their files without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::Error;

/// One certificate chain and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertificateFiles {
    /// The chain, leaf first.
    pub(crate) cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: PathBuf,
}

/// The certificates the listener presents. A client's SNI picks the first certificate valid
/// for that name; a client without SNI, or with a name none is valid for, gets the first.
#[derive(Debug)]
pub(crate) struct Certificates {
    files: RwLock<Vec<CertificateFiles>>,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Arc<Vec<Arc<CertifiedKey>>>>,
}

impl Certificates {
    /// Reads every pair of files.
    ///
    /// # Errors
    ///
    /// When a file cannot be read, holds no certificate or key, or a key does not match its
    /// certificate: the error names the file.
    pub(crate) fn load(files: Vec<CertificateFiles>) -> Result<Arc<Self>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = read_all(&files, &provider)?;
        Ok(Arc::new(Self {
            files: RwLock::new(files),
            provider,
            loaded: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// Reads `files` (the same as before, or a changed list) and presents what they hold from
    /// the next handshake on; connections already open keep theirs. When any pair cannot be
    /// read, nothing changes.
    ///
    /// # Errors
    ///
    /// As [`Certificates::load`].
    pub(crate) fn replace(&self, files: Vec<CertificateFiles>) -> Result<usize, Error> {
        let loaded = read_all(&files, &self.provider)?;
        let count = loaded.len();
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = files;
        Ok(count)
    }

    /// A TLS acceptor presenting these certificates, offering `h2` and `http/1.1` by ALPN.
    ///
    /// # Errors
    ///
    /// When the crypto provider offers no safe protocol version (it always does).
    pub(crate) fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, Error> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(Error::TlsConfig)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = Arc::clone(&self.loaded.read().unwrap_or_else(|p| p.into_inner()));
        let named = hello
            .server_name()
            .and_then(|name| ServerName::try_from(name).ok())
            .and_then(|name| loaded.iter().find(|key| is_valid_for(key, &name)));
        named.or_else(|| loaded.first()).cloned()
    }
}

/// Whether `key`'s leaf certificate is valid for `name` (wildcards included), as a client
/// would check it.
fn is_valid_for(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    key.end_entity_cert()
        .ok()
        .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
        .is_some_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

fn read_all(
    files: &[CertificateFiles],
    provider: &CryptoProvider,
) -> Result<Vec<Arc<CertifiedKey>>, Error> {
    files
        .iter()
        .map(|pair| read_pair(pair, provider).map(Arc::new))
        .collect()
}

fn read_pair(files: &CertificateFiles, provider: &CryptoProvider) -> Result<CertifiedKey, Error> {
    let bad = |path: &Path, what, source: Box<dyn std::error::Error + Send + Sync>| Error::Tls {
        path: path.to_owned(),
        what,
        source,
    };
    let cert_pem =
        std::fs::read(&files.cert).map_err(|e| bad(&files.cert, "cannot read", e.into()))?;
    let key_pem =
        std::fs::read(&files.key).map_err(|e| bad(&files.key, "cannot read", e.into()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, "not PEM certificates", e.into()))?;
    if chain.is_empty() {
        return Err(bad(
            &files.cert,
            "holds no certificate",
            "no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(&files.key, "holds no private key", e.into()))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| bad(&files.key, "does not fit its certificate", e.into()))
}
