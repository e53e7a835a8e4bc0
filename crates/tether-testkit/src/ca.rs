//! A certificate authority made at test time, for tests and benchmarks of TLS between nodes.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A private CA that issues node certificates, all in memory (PEM text).
///
/// # Example
///
/// ```
/// let ca = tether_testkit::TestCa::new("test CA");
/// let (cert, key) = ca.node("node-0");
/// assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(key.contains("PRIVATE KEY"));
/// ```
pub struct TestCa {
    pem: String,
    cert: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA whose certificate has the common name `name`.
    ///
    /// # Panics
    ///
    /// When the key or certificate cannot be made (a broken random source): this is a test
    /// helper.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            cert,
            key,
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate (PEM) and its private key (PKCS#8 PEM) for the node `name`: valid now,
    /// naming it as a DNS subject alternative name, for servers and clients alike.
    pub fn node(&self, name: &str) -> (String, String) {
        self.issue(name, |_| {})
    }

    /// As [`TestCa::node`], with the parameters changed by `adjust` before signing (to make
    /// an expired certificate, or one for servers only).
    ///
    /// # Panics
    ///
    /// When `name` is not a valid subject alternative name or signing fails.
    pub fn issue(
        &self,
        name: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("node parameters");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let key = KeyPair::generate().expect("node key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("node certificate");
        (cert.pem(), key.serialize_pem())
    }
}
