//! What can go wrong reading the settings or starting the proxy.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the proxy cannot start: a setting that is wrong, or an address it cannot bind. Each
/// names the input (file, key, flag, address, backend) and keeps its cause as its
/// [`source`](std::error::Error::source); print it with its sources, as the binary does
/// (`tether_core::error_chain`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML, or a key in it is unknown or has a bad value.
    #[error("{}{}", .path.display(), at_key(.key.as_deref()))]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The key whose value is wrong (`backends[1].url`), when the file parsed as TOML.
        key: Option<String>,
        /// What is wrong, with its line and column (boxed: it is large, and rare).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A backend is not a URL.
    #[error("backend {spec:?} is not a URL")]
    BackendUrl {
        /// The backend as given (`name=url` or `url`).
        spec: String,
        /// Why.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// A backend is a URL, but not `http://host:port` or `https://host:port`.
    #[error("backend {spec:?}: only http:// (and h2c) or https:// upstreams, as http://host:port")]
    BackendScheme {
        /// The backend as given.
        spec: String,
    },
    /// An `https://` backend marked `h2c`, which is HTTP/2 without TLS.
    #[error("backend {spec:?}: h2c is HTTP/2 without TLS, so an https:// backend cannot use it")]
    H2cOverTls {
        /// The backend as given.
        spec: String,
    },
    /// No backend was given.
    #[error("no backend: give --backend http://host:port at least once")]
    NoBackend,
    /// Two backends have the same name (names go into affinity cookies and rendezvous hashing).
    #[error("two backends are named {name:?}: give each its own name, as name=http://host:port")]
    DuplicateBackend {
        /// The name.
        name: String,
    },
    /// The admin listener must listen on loopback only.
    #[error("admin address {addr} is not loopback")]
    AdminNotLoopback {
        /// The address given.
        addr: SocketAddr,
    },
    /// An affinity key is neither 128 hex digits nor base64.
    #[error("affinity key {index} of {from}: neither 128 hex digits nor base64")]
    KeyEncoding {
        /// Where the key came from: `--key`, `TETHER_PROXY_KEYS` or the file's `keys`.
        from: &'static str,
        /// Its place there, from 1.
        index: usize,
        /// Why base64 refused it.
        #[source]
        source: base64::DecodeError,
    },
    /// An affinity key has the wrong length.
    #[error("affinity key {index} of {from}: {len} bytes, 64 needed")]
    KeyLength {
        /// Where the key came from.
        from: &'static str,
        /// Its place there, from 1.
        index: usize,
        /// Its length once decoded.
        len: usize,
    },
    /// The admin token is too short to be out of reach of guessing.
    #[error("admin_token from {from}: {len} characters, at least {min} needed")]
    AdminToken {
        /// Where it came from: `TETHER_PROXY_ADMIN_TOKEN` or the file's `admin_token`.
        from: &'static str,
        /// Its length.
        len: usize,
        /// The shortest accepted.
        min: usize,
    },
    /// A backend URL the upstream client cannot use.
    #[error(transparent)]
    Upstream(#[from] tether_sticky::InvalidUpstream),
    /// A TLS certificate or key file is unusable: unreadable, not PEM, empty, or a key that
    /// does not fit its certificate.
    #[error("TLS file {}: {what}", .path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The TLS configuration could not be built.
    #[error("cannot configure TLS")]
    TlsConfig(#[source] rustls::Error),
    /// `--tls-cert` and `--tls-key` were not given in pairs.
    #[error(
        "{certs} --tls-cert and {keys} --tls-key: give one key for each certificate, in the same order"
    )]
    TlsPairs {
        /// Certificates given.
        certs: usize,
        /// Keys given.
        keys: usize,
    },
    /// The access log's writer thread could not be started.
    #[error("cannot start the access log")]
    AccessLog(#[source] std::io::Error),
    /// An address could not be bound (in use, not this machine's, not permitted).
    #[error("cannot bind the {role} address {addr}")]
    Bind {
        /// `listen` or `admin`.
        role: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `: key `name`` after a file name, when the key is known.
fn at_key(key: Option<&str>) -> String {
    key.map(|key| format!(": key `{key}`")).unwrap_or_default()
}
