//! Configuration: a TOML file and command-line flags; flags win.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use serde::Deserialize;
use tether_sticky::cookie::Key;
use tether_sticky::{Failover, KeyRing, Pinning, StickyConfig};

use crate::admin::{AdminToken, MIN_TOKEN_LEN};
use crate::limits::Limits;

/// A sticky-session reverse proxy.
///
/// `tether-proxy --listen 127.0.0.1:8080 --backend http://127.0.0.1:3001 --backend http://127.0.0.1:3002`
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// A TOML file with the same settings; flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to serve clients on (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A backend: `http://host:port`, or `name=http://host:port` (names must match
    /// tether-replicated node names for session-id routing). Repeat for each.
    #[arg(long = "backend")]
    pub backends: Vec<String>,
    /// cookie (default), session-id or source.
    #[arg(long)]
    pub strategy: Option<String>,
    /// redistribute (default), strict or persist.
    #[arg(long)]
    pub failover: Option<String>,
    /// The application's session cookie, for session-id routing.
    #[arg(long)]
    pub session_cookie: Option<String>,
    /// A 64-byte affinity key, hex or base64; the first seals, the others still open. Also
    /// `TETHER_PROXY_KEYS` (comma-separated). Without any, a random key is used and logged as a
    /// warning: pins then do not survive a restart and replicas disagree.
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// Loopback address of the admin listener (default 127.0.0.1:9901).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Send the affinity cookie over plain HTTP too (development only).
    #[arg(long)]
    pub insecure_cookie: bool,
}

/// The file's settings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to serve clients on.
    pub listen: Option<SocketAddr>,
    /// Loopback address of the admin listener.
    pub admin: Option<SocketAddr>,
    /// The backends.
    #[serde(default)]
    pub backends: Vec<FileBackend>,
    /// `cookie`, `session-id` or `source`.
    pub strategy: Option<String>,
    /// `redistribute`, `strict` or `persist`.
    pub failover: Option<String>,
    /// The application's session cookie, for session-id routing.
    pub session_cookie: Option<String>,
    /// Affinity keys (64 bytes, hex or base64); the first seals.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Name of the affinity cookie (default `tether-route`).
    pub cookie_name: Option<String>,
    /// Whether the affinity cookie is `Secure` (default true).
    pub secure_cookie: Option<bool>,
    /// Bounded-load slack for the source strategy (default 0.25).
    pub epsilon: Option<f64>,
    /// Slow-start ramp of a joining backend, in seconds (default 0).
    pub slow_start_secs: Option<u64>,
    /// Bound on connecting to a backend, in milliseconds (default 1000).
    pub connect_timeout_ms: Option<u64>,
    /// Bound on a backend's response head, in milliseconds (default 30000).
    pub response_timeout_ms: Option<u64>,
    /// Largest request head a client may send, in bytes (default 65536).
    pub max_header_bytes: Option<usize>,
    /// Bound on receiving a client's request head, in milliseconds (default 10000); the first
    /// one is counted from the moment the connection is accepted.
    pub header_read_timeout_ms: Option<u64>,
    /// Client connections served at once (default 10000, lowered to fit the open-file limit).
    pub max_connections: Option<usize>,
    /// Longest quiet in a client's request body, in milliseconds (default 30000).
    pub body_idle_timeout_ms: Option<u64>,
    /// Token that authorizes state changes on the admin listener (at least 16 characters;
    /// also `TETHER_PROXY_ADMIN_TOKEN`). Without one, state changes are refused.
    pub admin_token: Option<String>,
    /// Trusted proxies in front of this one, each appending to `X-Forwarded-For`: source
    /// routing reads the client from that many entries from the right (default 0: from the
    /// connection's address only).
    pub trusted_hops: Option<usize>,
}

/// One backend in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackend {
    /// Stable name (default: the URL's host:port).
    pub name: Option<String>,
    /// `http://host:port`.
    pub url: String,
    /// Speak HTTP/2 without TLS (prior knowledge) to it.
    #[serde(default)]
    pub h2c: bool,
}

/// A backend to proxy to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Stable name: in affinity cookies and rendezvous hashing.
    pub name: String,
    /// Where it listens.
    pub url: http::Uri,
    /// HTTP/2 without TLS.
    pub h2c: bool,
}

/// Everything the proxy runs with.
#[derive(Debug)]
pub struct Settings {
    /// Address to serve clients on.
    pub listen: SocketAddr,
    /// Loopback address of the admin listener.
    pub admin: SocketAddr,
    /// The backends.
    pub backends: Vec<BackendSpec>,
    /// The router's settings.
    pub layer: StickyConfig,
    /// Bound on connecting to a backend.
    pub connect_timeout: Duration,
    /// Bound on a backend's response head.
    pub response_timeout: Duration,
    /// Bounds on what clients may send and hold.
    pub limits: Limits,
    /// No key was given: a random one is in use.
    pub generated_key: bool,
    /// Authorizes state changes on the admin listener; `None`: they are refused.
    pub admin_token: Option<AdminToken>,
}

/// Settings the process environment may give.
///
/// # Example
///
/// ```
/// use clap::Parser as _;
/// use tether_proxy::{Cli, Environment, Settings};
///
/// let cli = Cli::parse_from(["tether-proxy", "--backend", "http://127.0.0.1:3001"]);
/// let mut env = Environment::default();
/// env.admin_token = Some("a-long-random-admin-token".to_owned());
/// let settings = Settings::load(cli, env).unwrap();
/// assert!(settings.admin_token.is_some());
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Environment {
    /// `TETHER_PROXY_KEYS`: affinity keys, comma-separated.
    pub keys: Option<String>,
    /// `TETHER_PROXY_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
}

impl Environment {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self {
            keys: std::env::var("TETHER_PROXY_KEYS").ok(),
            admin_token: std::env::var("TETHER_PROXY_ADMIN_TOKEN").ok(),
        }
    }
}

/// What is wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for these settings.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// A setting is invalid; the message names it.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// Parses `name=url` or `url` (named after its authority).
pub fn parse_backend(spec: &str, h2c: bool) -> Result<BackendSpec, ConfigError> {
    let (name, url) = match spec.split_once('=') {
        Some((name, url)) => (Some(name.to_owned()), url),
        None => (None, spec),
    };
    let url: http::Uri = url
        .parse()
        .map_err(|e| invalid(format!("backend {spec:?}: {e}")))?;
    let authority = url
        .authority()
        .ok_or_else(|| invalid(format!("backend {spec:?}: needs http://host:port")))?;
    if url.scheme_str() != Some("http") {
        return Err(invalid(format!(
            "backend {spec:?}: only http:// (and h2c) upstreams"
        )));
    }
    let name = name.unwrap_or_else(|| authority.to_string());
    Ok(BackendSpec { name, url, h2c })
}

/// Decodes a 64-byte key from hex or base64.
pub fn parse_key(text: &str) -> Result<Key, ConfigError> {
    let text = text.trim();
    let bytes = if text.len() == 128 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..128)
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid("key: bad hex"))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| invalid("key: neither 128 hex digits nor base64"))?
    };
    Key::try_from(bytes.as_slice())
        .map_err(|_| invalid(format!("key: {} bytes, 64 needed", bytes.len())))
}

fn limits(file: &FileConfig) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    if let Some(bytes) = file.max_header_bytes {
        limits.max_header_bytes = bytes.max(8 * 1024);
    }
    if let Some(ms) = file.header_read_timeout_ms {
        if ms == 0 {
            return Err(invalid("header_read_timeout_ms must be above 0"));
        }
        limits.header_read_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = file.body_idle_timeout_ms {
        if ms == 0 {
            return Err(invalid("body_idle_timeout_ms must be above 0"));
        }
        limits.body_idle_timeout = Duration::from_millis(ms);
    }
    if let Some(max) = file.max_connections {
        if max == 0 {
            return Err(invalid("max_connections must be above 0"));
        }
        limits.max_connections = max;
    }
    Ok(limits)
}

impl Settings {
    /// Merges the file (if any), the environment and the flags.
    pub fn load(cli: Cli, env: Environment) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or(([127, 0, 0, 1], 8080).into());
        let admin = cli
            .admin
            .or(file.admin)
            .unwrap_or(([127, 0, 0, 1], 9901).into());
        if !admin.ip().is_loopback() {
            return Err(invalid(format!("admin address {admin} is not loopback")));
        }
        let mut backends = Vec::new();
        if cli.backends.is_empty() {
            for b in &file.backends {
                let spec = match &b.name {
                    Some(name) => format!("{name}={}", b.url),
                    None => b.url.clone(),
                };
                backends.push(parse_backend(&spec, b.h2c)?);
            }
        } else {
            for spec in &cli.backends {
                backends.push(parse_backend(spec, false)?);
            }
        }
        if backends.is_empty() {
            return Err(invalid(
                "no backend: give --backend http://host:port at least once",
            ));
        }
        let mut names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w.first() == w.get(1)) {
            return Err(invalid("two backends share a name"));
        }

        let mut key_texts = cli.keys.clone();
        if key_texts.is_empty() {
            key_texts = env
                .keys
                .map(|v| v.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
        }
        if key_texts.is_empty() {
            key_texts.clone_from(&file.keys);
        }
        let generated_key = key_texts.is_empty();
        let mut keys = key_texts.iter().map(|k| parse_key(k));
        let ring = match keys.next() {
            Some(first) => keys.try_fold(KeyRing::new(first?), |ring, k| {
                Ok::<_, ConfigError>(ring.with_retired(k?))
            })?,
            None => KeyRing::new(Key::generate()),
        };

        let limits = limits(&file)?;
        let admin_token = env
            .admin_token
            .or(file.admin_token.clone())
            .map(|t| {
                AdminToken::new(&t).map_err(|len| {
                    invalid(format!(
                        "admin_token: {len} characters, at least {MIN_TOKEN_LEN} needed"
                    ))
                })
            })
            .transpose()?;
        let pinning: Pinning = cli
            .strategy
            .or(file.strategy)
            .map(|s| s.parse().map_err(invalid))
            .transpose()?
            .unwrap_or_default();
        let failover: Failover = cli
            .failover
            .or(file.failover)
            .map(|s| s.parse().map_err(invalid))
            .transpose()?
            .unwrap_or_default();
        let mut layer = StickyConfig::new(ring)
            .with_pinning(pinning)
            .with_failover(failover)
            .with_secure(!cli.insecure_cookie && file.secure_cookie.unwrap_or(true))
            .with_trusted_hops(file.trusted_hops.unwrap_or(0));
        if let Some(name) = cli.session_cookie.or(file.session_cookie) {
            layer = layer.with_session_cookie(name);
        }
        if let Some(name) = file.cookie_name {
            layer = layer.with_cookie_name(name);
        }
        if let Some(epsilon) = file.epsilon {
            layer = layer.with_epsilon(epsilon);
        }
        if let Some(secs) = file.slow_start_secs {
            layer = layer.with_slow_start(Duration::from_secs(secs));
        }
        Ok(Self {
            listen,
            admin,
            backends,
            layer,
            connect_timeout: Duration::from_millis(file.connect_timeout_ms.unwrap_or(1_000)),
            response_timeout: Duration::from_millis(file.response_timeout_ms.unwrap_or(30_000)),
            limits,
            generated_key,
            admin_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("tether-proxy").chain(args.iter().copied()))
    }

    #[test]
    fn flags_alone_are_enough() {
        let settings = Settings::load(
            cli(&[
                "--backend",
                "http://127.0.0.1:3001",
                "--backend",
                "b=http://127.0.0.1:3002",
            ]),
            Environment::default(),
        )
        .unwrap();
        assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(settings.backends[0].name, "127.0.0.1:3001");
        assert_eq!(settings.backends[1].name, "b");
        assert!(settings.generated_key);
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        for args in [
            &[][..],
            &["--backend", "ftp://x:1"],
            &["--backend", "nonsense"],
            &["--backend", "http://a:1", "--backend", "http://a:1"],
            &["--backend", "http://a:1", "--strategy", "random"],
            &["--backend", "http://a:1", "--key", "too-short"],
            &["--backend", "http://a:1", "--admin", "0.0.0.0:9901"],
        ] {
            assert!(
                Settings::load(cli(args), Environment::default()).is_err(),
                "{args:?}"
            );
        }
    }

    #[test]
    fn keys_from_hex_base64_and_the_environment() {
        let hex = "ab".repeat(64);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        let settings = Settings::load(
            cli(&["--backend", "http://a:1", "--key", &hex, "--key", &b64]),
            Environment::default(),
        )
        .unwrap();
        assert!(!settings.generated_key);
        let env = Environment {
            keys: Some(hex),
            admin_token: Some("0123456789abcdef".to_owned()),
        };
        let from_env = Settings::load(cli(&["--backend", "http://a:1"]), env).unwrap();
        assert!(from_env.admin_token.is_some());
        assert!(!from_env.generated_key);
    }

    #[test]
    fn reads_a_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:8181"
strategy = "session-id"
session_cookie = "sid"
[[backends]]
name = "node-0"
url = "http://127.0.0.1:3001"
[[backends]]
name = "node-1"
url = "http://127.0.0.1:3002"
h2c = true
"#,
        )
        .unwrap();
        let settings = Settings::load(
            cli(&["--config", path.to_str().unwrap()]),
            Environment::default(),
        )
        .unwrap();
        assert_eq!(settings.listen.port(), 8181);
        assert_eq!(settings.backends.len(), 2);
        assert!(settings.backends[1].h2c);
        std::fs::write(&path, "listen = 5\nunknown = true").unwrap();
        assert!(
            Settings::load(
                cli(&["--config", path.to_str().unwrap()]),
                Environment::default()
            )
            .is_err()
        );
    }
}
