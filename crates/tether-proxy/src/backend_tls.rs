//! TLS to backends (`https://` backend URLs): the roots their certificates must chain to, from
//! `--backend-ca` or, without it, the Mozilla roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};

use crate::Error;

/// How the proxy verifies `https://` backends. Equal when made from the same certificates, so
/// a reload rebuilds the TLS backends' clients only when those changed.
#[derive(Clone, Debug)]
pub(crate) struct BackendTls {
    /// The client settings every TLS backend's client is made with.
    pub(crate) config: Arc<ClientConfig>,
    /// The `--backend-ca` certificates; `None`: the Mozilla roots.
    ca: Option<Vec<CertificateDer<'static>>>,
}

impl PartialEq for BackendTls {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca
    }
}

impl BackendTls {
    /// Trusts the CA certificates in the PEM file `ca`, or the Mozilla roots without one.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] naming the file when it cannot be read, holds no certificate, or one
    /// that cannot be a root; [`Error::TlsConfig`] when rustls refuses the settings.
    pub(crate) fn load(ca: Option<&Path>) -> Result<Self, Error> {
        let (roots, ca) = match ca {
            Some(path) => {
                let certs = read_certificates(path)?;
                let mut roots = RootCertStore::empty();
                for cert in &certs {
                    roots.add(cert.clone()).map_err(|e| Error::Tls {
                        path: path.to_owned(),
                        what: "holds a certificate that cannot be a root",
                        source: e.into(),
                    })?;
                }
                (roots, Some(certs))
            }
            None => (
                RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
                None,
            ),
        };
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(Error::TlsConfig)?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            ca,
        })
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bad = |what, source: Box<dyn std::error::Error + Send + Sync>| Error::Tls {
        path: PathBuf::from(path),
        what,
        source,
    };
    let pem = std::fs::read(path).map_err(|e| bad("cannot read", e.into()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("not PEM certificates", e.into()))?;
    if certs.is_empty() {
        return Err(bad("holds no certificate", "no CERTIFICATE block".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_is_trusted_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let ca = tether_testkit::TestCa::new("backends CA");
        let good = dir.join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        let loaded = BackendTls::load(Some(&good)).unwrap();
        assert_eq!(loaded, BackendTls::load(Some(&good)).unwrap());
        assert_ne!(loaded, BackendTls::load(None).unwrap());

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = BackendTls::load(Some(&empty)).unwrap_err().to_string();
        assert!(
            error.contains("empty.pem") && error.contains("no certificate"),
            "{error}"
        );
        let missing = dir.join("missing.pem");
        let error = BackendTls::load(Some(&missing)).unwrap_err().to_string();
        assert!(
            error.contains("missing.pem") && error.contains("cannot read"),
            "{error}"
        );
    }
}
