//! Configuration: a TOML file and command-line flags; flags win.

use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use serde::Deserialize;
use tether_sticky::cookie::Key;
use tether_sticky::{BackendState, Failover, HealthCheck, KeyRing, Pinning, StickyConfig, Weight};

use crate::Error;
use crate::access_log::AccessLogFormat;
use crate::admin::{AdminToken, MIN_TOKEN_LEN};
use crate::backend_tls::BackendTls;
use crate::limits::Limits;
use crate::proxy_protocol::TrustedSources;
use crate::tls::CertificateFiles;
use crate::values::{AnyDuration, CheckPath, CheckStatus, Cidr, Epsilon, Timeout};

/// A sticky-session reverse proxy.
///
/// `tether-proxy --listen 127.0.0.1:8080 --backend http://127.0.0.1:3001 --backend http://127.0.0.1:3002`
///
/// The `--config` file's keys are the flags' names with `_` for `-`, except `keys` (`--key`),
/// `[[backends]]` tables of `name`, `url`, `h2c`, `state` and `weight` (`--backend`), `[[certificates]]` tables
/// of `cert` and `key` (`--tls-cert`, `--tls-key`), `secure_cookie = false`
/// (`--insecure-cookie`) and `admin_token`, which has no flag. Flags override the file.
/// Durations are written `500ms`, `2s`, `1m 30s`.
#[derive(Clone, Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// A TOML file with the same settings; flags given here override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve clients on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A backend: `http://host:port`, or `name=http://host:port` (names must match
    /// tether-replicated node names for session-id pinning); `https://` for TLS to it (see
    /// `--backend-ca`). Repeat for each.
    #[arg(long = "backend", value_name = "[NAME=]URL")]
    backends: Vec<String>,
    /// What pins a client to a backend: cookie (default), session-id or source.
    #[arg(long)]
    pinning: Option<Pinning>,
    /// When a pinned backend cannot take a request: redistribute (default), strict or persist.
    #[arg(long)]
    failover: Option<Failover>,
    /// The application's session cookie, for session-id pinning.
    #[arg(long, value_name = "NAME")]
    session_cookie: Option<String>,
    /// Name of the affinity cookie [default: tether-route].
    #[arg(long, value_name = "NAME")]
    cookie_name: Option<String>,
    /// A 64-byte affinity key, hex or base64; the first seals, the others still open. Also
    /// `TETHER_PROXY_KEYS` (comma-separated). Without any, a random key is used and logged as a
    /// warning: pins then do not survive a restart and replicas disagree.
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,
    /// Loopback address of the admin listener [default: 127.0.0.1:9901].
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Send the affinity cookie over plain HTTP too (development only).
    #[arg(long)]
    insecure_cookie: bool,
    /// Bounded-load slack of source pinning: a backend takes at most (1 + epsilon) times the
    /// average load; above 0 [default: 0.25].
    #[arg(long)]
    epsilon: Option<Epsilon>,
    /// Slow-start ramp of a joining backend [default: 0s].
    #[arg(long, value_name = "DURATION")]
    slow_start: Option<AnyDuration>,
    /// Bound on connecting to a backend [default: 1s].
    #[arg(long, value_name = "DURATION")]
    connect_timeout: Option<Timeout>,
    /// Bound on a backend's response head, counted once the request body was sent
    /// [default: 30s].
    #[arg(long, value_name = "DURATION")]
    response_timeout: Option<Timeout>,
    /// Largest request head a client may send, in bytes; at least 8 KiB are allowed
    /// [default: 65536].
    #[arg(long, value_name = "BYTES")]
    max_header_bytes: Option<NonZeroUsize>,
    /// Bound on receiving a client's request head; the first one is counted from the moment the
    /// connection is accepted [default: 10s].
    #[arg(long, value_name = "DURATION")]
    header_read_timeout: Option<Timeout>,
    /// Longest quiet in a client's request body; the client then gets 400 [default: 30s].
    #[arg(long, value_name = "DURATION")]
    body_idle_timeout: Option<Timeout>,
    /// Client connections served at once, lowered to fit the open-file limit [default: 10000].
    #[arg(long, value_name = "N")]
    max_connections: Option<NonZeroUsize>,
    /// Longest quiet, in both directions, of an upgraded connection (WebSocket) before the
    /// proxy closes it [default: 5m].
    #[arg(long, value_name = "DURATION")]
    upgrade_idle_timeout: Option<Timeout>,
    /// Longest life of an upgraded connection [default: 24h].
    #[arg(long, value_name = "DURATION")]
    upgrade_max_duration: Option<Timeout>,
    /// CA certificates (PEM) that `https://` backends' certificates must chain to; a backend's
    /// certificate must also name its URL's host [default: the Mozilla roots]. SIGHUP reads it
    /// again.
    #[arg(long, value_name = "FILE")]
    backend_ca: Option<PathBuf>,
    /// Serves clients over TLS with this certificate chain (PEM, leaf first); repeat with
    /// `--tls-key` for each certificate: the client's SNI picks the one valid for its name,
    /// the first is the default. SIGHUP reloads the files.
    #[arg(long = "tls-cert", value_name = "FILE")]
    tls_certs: Vec<PathBuf>,
    /// The private key (PEM) of the `--tls-cert` in the same position.
    #[arg(long = "tls-key", value_name = "FILE")]
    tls_keys: Vec<PathBuf>,
    /// A source (network or address) of connections that start with a PROXY protocol header
    /// (v1 or v2) naming the real client, such as an L4 balancer in front; repeat for more.
    /// Connections from it without one are closed; others are never read for one.
    #[arg(long = "proxy-protocol-from", value_name = "CIDR")]
    proxy_protocol_from: Vec<Cidr>,
    /// Writes one line per request to standard output: `json`, `text`, or a template of
    /// fields in braces: {time} {client} {method} {uri} {version} {status} {backend}
    /// {duration_ms} [default: off].
    #[arg(long, value_name = "FORMAT")]
    access_log: Option<AccessLogFormat>,
    /// Turns on active health checks: `GET` of this path on every backend (as `/health`).
    #[arg(long, value_name = "PATH")]
    check_path: Option<CheckPath>,
    /// Time between two active checks of a backend [default: 2s].
    #[arg(long, value_name = "DURATION")]
    check_interval: Option<Timeout>,
    /// Bound on one active check [default: 1s].
    #[arg(long, value_name = "DURATION")]
    check_timeout: Option<Timeout>,
    /// Passed checks in a row that bring a down backend back [default: 2].
    #[arg(long, value_name = "N")]
    check_rise: Option<NonZeroU32>,
    /// Failed checks in a row that take a backend down [default: 3].
    #[arg(long, value_name = "N")]
    check_fall: Option<NonZeroU32>,
    /// The one status a check must get [default: any 2xx or 3xx].
    #[arg(long, value_name = "STATUS")]
    check_status: Option<CheckStatus>,
    /// Trusted proxies in front of this one, each appending to `X-Forwarded-For`: source
    /// pinning reads the client that many entries from the right [default: 0: the connection's
    /// address only].
    #[arg(long, value_name = "N")]
    trusted_hops: Option<usize>,
}

/// The file's settings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    #[serde(default)]
    backends: Vec<FileBackend>,
    pinning: Option<Pinning>,
    failover: Option<Failover>,
    session_cookie: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
    cookie_name: Option<String>,
    /// Whether the affinity cookie is `Secure` (default true).
    secure_cookie: Option<bool>,
    epsilon: Option<Epsilon>,
    slow_start: Option<AnyDuration>,
    connect_timeout: Option<Timeout>,
    response_timeout: Option<Timeout>,
    max_header_bytes: Option<NonZeroUsize>,
    header_read_timeout: Option<Timeout>,
    max_connections: Option<NonZeroUsize>,
    body_idle_timeout: Option<Timeout>,
    upgrade_idle_timeout: Option<Timeout>,
    upgrade_max_duration: Option<Timeout>,
    check_path: Option<CheckPath>,
    check_interval: Option<Timeout>,
    check_timeout: Option<Timeout>,
    check_rise: Option<NonZeroU32>,
    check_fall: Option<NonZeroU32>,
    check_status: Option<CheckStatus>,
    backend_ca: Option<PathBuf>,
    #[serde(default)]
    certificates: Vec<FileCertificate>,
    #[serde(default)]
    proxy_protocol_from: Vec<Cidr>,
    access_log: Option<AccessLogFormat>,
    /// Authorizes state changes on the admin listener (at least 16 characters; also
    /// `TETHER_PROXY_ADMIN_TOKEN`). Not a flag: flags show in process lists.
    admin_token: Option<String>,
    trusted_hops: Option<usize>,
}

/// One TLS certificate in the file (`[[certificates]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCertificate {
    /// The chain, PEM, leaf first.
    cert: PathBuf,
    /// Its private key, PEM.
    key: PathBuf,
}

impl From<FileCertificate> for CertificateFiles {
    fn from(file: FileCertificate) -> Self {
        Self {
            cert: file.cert,
            key: file.key,
        }
    }
}

/// One backend in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackend {
    /// Stable name (default: the URL's host:port).
    name: Option<String>,
    /// `http://host:port`, or `https://host:port` for TLS to it.
    url: String,
    /// Speak HTTP/2 without TLS (prior knowledge) to it.
    #[serde(default)]
    h2c: bool,
    /// Its state, applied at start and at each reload: `ready`, `drain` or `maintenance`
    /// (default: left as it is; a new backend starts ready).
    state: Option<BackendState>,
    /// Its weight, 0 to 256, applied at start and at each reload (default: left as it is; a
    /// new backend starts at 1).
    weight: Option<Weight>,
}

/// A backend to proxy to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackendSpec {
    /// Stable name: in affinity cookies and rendezvous hashing.
    pub(crate) name: String,
    /// Where it listens.
    pub(crate) url: http::Uri,
    /// HTTP/2 without TLS.
    pub(crate) h2c: bool,
    /// The state the configuration gives it, if any.
    pub(crate) state: Option<BackendState>,
    /// The weight the configuration gives it, if any.
    pub(crate) weight: Option<Weight>,
}

/// Everything the proxy runs with: the flags, the file and the environment merged and checked
/// by [`Settings::load`], for [`run`](crate::run).
///
/// # Example
///
/// ```
/// use clap::Parser as _;
/// use tether_proxy::{Cli, Environment, Settings};
///
/// let cli = Cli::parse_from([
///     "tether-proxy",
///     "--backend", "node-0=http://127.0.0.1:3001",
///     "--backend", "node-1=http://127.0.0.1:3002",
///     "--pinning", "session-id",
///     "--session-cookie", "id",
///     "--connect-timeout", "500ms",
/// ]);
/// let settings = Settings::load(cli, Environment::default())?;
/// # let _ = settings;
///
/// let twice = Cli::parse_from([
///     "tether-proxy",
///     "--backend", "a=http://127.0.0.1:3001",
///     "--backend", "a=http://127.0.0.1:3002",
/// ]);
/// let error = Settings::load(twice, Environment::default()).unwrap_err();
/// assert!(error.to_string().contains(r#"two backends are named "a""#));
/// # Ok::<(), tether_proxy::Error>(())
/// ```
#[derive(Debug)]
pub struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) backends: Vec<BackendSpec>,
    pub(crate) layer: StickyConfig,
    /// The affinity keys in `layer`, for a reload to hand to the running router.
    pub(crate) keys: KeyRing,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) limits: Limits,
    /// No key was given: a random one is in use.
    pub(crate) generated_key: bool,
    /// Authorizes state changes on the admin listener; `None`: they are refused.
    pub(crate) admin_token: Option<AdminToken>,
    /// What `GET /metrics` on the admin listener renders; `None`: it answers `404`.
    pub(crate) metrics: Option<PrometheusHandle>,
    /// Active health checks; `None`: passive health only.
    pub(crate) health_check: Option<HealthCheck>,
    /// The certificates clients are served TLS with; empty: plain HTTP.
    pub(crate) certificates: Vec<CertificateFiles>,
    /// How `https://` backends are verified.
    pub(crate) backend_tls: BackendTls,
    /// Sources whose connections start with a PROXY header.
    pub(crate) proxy_protocol: TrustedSources,
    /// How access-log lines are written; `None`: no access log.
    pub(crate) access_log: Option<AccessLogFormat>,
    /// The flags and environment these settings were read from, for a reload to read the file
    /// again with.
    pub(crate) origin: (Cli, Environment),
}

/// Settings the process environment may give.
///
/// # Example
///
/// ```
/// use clap::Parser as _;
/// use tether_proxy::{Cli, Environment, Settings};
///
/// let cli = || Cli::parse_from(["tether-proxy", "--backend", "http://127.0.0.1:3001"]);
/// let mut env = Environment::default();
/// env.admin_token = Some("a-long-random-admin-token".to_owned());
/// assert!(Settings::load(cli(), env).is_ok());
///
/// let mut env = Environment::default();
/// env.admin_token = Some("short".to_owned());
/// let error = Settings::load(cli(), env).unwrap_err().to_string();
/// assert!(error.contains("TETHER_PROXY_ADMIN_TOKEN"), "{error}");
/// ```
#[derive(Clone, Debug, Default)]
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

/// Parses `name=url` or `url` (named after its authority).
fn parse_backend(
    spec: &str,
    h2c: bool,
    state: Option<BackendState>,
    weight: Option<Weight>,
) -> Result<BackendSpec, Error> {
    let (name, url) = match spec.split_once('=') {
        Some((name, url)) => (Some(name.to_owned()), url),
        None => (None, spec),
    };
    let url: http::Uri = url.parse().map_err(|source| Error::BackendUrl {
        spec: spec.to_owned(),
        source,
    })?;
    let scheme = || Error::BackendScheme {
        spec: spec.to_owned(),
    };
    let authority = url.authority().ok_or_else(scheme)?;
    match url.scheme_str() {
        Some("http") => {}
        Some("https") if h2c => {
            return Err(Error::H2cOverTls {
                spec: spec.to_owned(),
            });
        }
        Some("https") => {}
        _ => return Err(scheme()),
    }
    let name = name.unwrap_or_else(|| authority.to_string());
    Ok(BackendSpec {
        name,
        url,
        h2c,
        state,
        weight,
    })
}

/// Decodes a 64-byte key from hex or base64; `from` and `index` name it in errors (never the
/// key itself: it is a secret).
fn parse_key(text: &str, from: &'static str, index: usize) -> Result<Key, Error> {
    let text = text.trim();
    let bytes = if text.len() == 128 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        // Every byte is a hex digit (checked above), so each pair decodes.
        text.as_bytes()
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                    .unwrap_or_default()
            })
            .collect::<Vec<u8>>()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|source| Error::KeyEncoding {
                from,
                index,
                source,
            })?
    };
    Key::try_from(bytes.as_slice()).map_err(|_| Error::KeyLength {
        from,
        index,
        len: bytes.len(),
    })
}

/// Reads the file, naming it, and the key whose value is wrong, in errors.
fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |key: Option<String>, source| Error::ParseConfig {
        path: path.to_owned(),
        key,
        source: Box::new(source),
    };
    let document = toml::Deserializer::parse(&text).map_err(|e| parse_error(None, e))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let key = e.path().iter().next().map(|_| e.path().to_string());
        parse_error(key, e.into_inner())
    })
}

/// The first name that two backends share.
fn shared_name(backends: &[BackendSpec]) -> Option<&str> {
    let mut names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    names.sort_unstable();
    names.windows(2).find_map(|pair| match pair {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

impl Settings {
    /// Merges the file (if any), the environment and the flags, flags first.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed, or a setting is wrong: the error names the
    /// file and key, or the setting, and the cause.
    pub fn load(cli: Cli, env: Environment) -> Result<Self, Error> {
        let origin = (cli.clone(), env.clone());
        let file = match &cli.config {
            Some(path) => read_file(path)?,
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
            return Err(Error::AdminNotLoopback { addr: admin });
        }
        let backends = if cli.backends.is_empty() {
            file.backends
                .iter()
                .map(|b| {
                    let spec = match &b.name {
                        Some(name) => format!("{name}={}", b.url),
                        None => b.url.clone(),
                    };
                    parse_backend(&spec, b.h2c, b.state, b.weight)
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            cli.backends
                .iter()
                .map(|spec| parse_backend(spec, false, None, None))
                .collect::<Result<Vec<_>, _>>()?
        };
        if backends.is_empty() {
            return Err(Error::NoBackend);
        }
        if let Some(name) = shared_name(&backends) {
            return Err(Error::DuplicateBackend {
                name: name.to_owned(),
            });
        }

        let env_keys: Vec<String> = env
            .keys
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let (from, key_texts) = if !cli.keys.is_empty() {
            ("--key", cli.keys)
        } else if !env_keys.is_empty() {
            ("TETHER_PROXY_KEYS", env_keys)
        } else {
            ("the file's keys", file.keys)
        };
        let generated_key = key_texts.is_empty();
        let mut keys = key_texts
            .iter()
            .enumerate()
            .map(|(i, k)| parse_key(k, from, i + 1));
        let ring = match keys.next() {
            Some(first) => keys.try_fold(KeyRing::new(first?), |ring, k| {
                Ok::<_, Error>(ring.with_retired(k?))
            })?,
            None => KeyRing::new(Key::generate()),
        };

        let mut limits = Limits::default();
        if let Some(bytes) = cli.max_header_bytes.or(file.max_header_bytes) {
            limits.max_header_bytes = bytes.get().max(8 * 1024);
        }
        if let Some(Timeout(timeout)) = cli.header_read_timeout.or(file.header_read_timeout) {
            limits.header_read_timeout = timeout;
        }
        if let Some(Timeout(timeout)) = cli.body_idle_timeout.or(file.body_idle_timeout) {
            limits.body_idle_timeout = timeout;
        }
        if let Some(max) = cli.max_connections.or(file.max_connections) {
            limits.max_connections = max.get();
        }
        if let Some(Timeout(timeout)) = cli.upgrade_idle_timeout.or(file.upgrade_idle_timeout) {
            limits.tunnel.idle = timeout;
        }
        if let Some(Timeout(timeout)) = cli.upgrade_max_duration.or(file.upgrade_max_duration) {
            limits.tunnel.total = timeout;
        }

        let admin_token = match (env.admin_token, file.admin_token) {
            (Some(token), _) => Some(("TETHER_PROXY_ADMIN_TOKEN", token)),
            (None, Some(token)) => Some(("the file's admin_token", token)),
            (None, None) => None,
        };
        let admin_token = admin_token
            .map(|(from, token)| {
                AdminToken::new(&token).map_err(|len| Error::AdminToken {
                    from,
                    len,
                    min: MIN_TOKEN_LEN,
                })
            })
            .transpose()?;

        let mut layer = StickyConfig::new(ring.clone())
            .with_pinning(cli.pinning.or(file.pinning).unwrap_or_default())
            .with_failover(cli.failover.or(file.failover).unwrap_or_default())
            .with_secure(!cli.insecure_cookie && file.secure_cookie.unwrap_or(true))
            .with_trusted_hops(cli.trusted_hops.or(file.trusted_hops).unwrap_or(0));
        if let Some(name) = cli.session_cookie.or(file.session_cookie) {
            layer = layer.with_session_cookie(name);
        }
        if let Some(name) = cli.cookie_name.or(file.cookie_name) {
            layer = layer.with_cookie_name(name);
        }
        if let Some(Epsilon(epsilon)) = cli.epsilon.or(file.epsilon) {
            layer = layer.with_epsilon(epsilon);
        }
        if let Some(AnyDuration(ramp)) = cli.slow_start.or(file.slow_start) {
            layer = layer.with_slow_start(ramp);
        }
        let timeout = |flag: Option<Timeout>, key: Option<Timeout>, default| {
            flag.or(key).map_or(default, |Timeout(timeout)| timeout)
        };
        if cli.tls_certs.len() != cli.tls_keys.len() {
            return Err(Error::TlsPairs {
                certs: cli.tls_certs.len(),
                keys: cli.tls_keys.len(),
            });
        }
        let certificates: Vec<CertificateFiles> = if cli.tls_certs.is_empty() {
            file.certificates.into_iter().map(Into::into).collect()
        } else {
            cli.tls_certs
                .into_iter()
                .zip(cli.tls_keys)
                .map(|(cert, key)| CertificateFiles { cert, key })
                .collect()
        };
        let backend_tls = BackendTls::load(cli.backend_ca.or(file.backend_ca).as_deref())?;
        let health_check = cli.check_path.or(file.check_path).map(|CheckPath(path)| {
            let mut check = HealthCheck::new(path)
                .with_interval(timeout(
                    cli.check_interval,
                    file.check_interval,
                    tether_sticky::DEFAULT_CHECK_INTERVAL,
                ))
                .with_timeout(timeout(
                    cli.check_timeout,
                    file.check_timeout,
                    tether_sticky::DEFAULT_CHECK_TIMEOUT,
                ));
            if let Some(rise) = cli.check_rise.or(file.check_rise) {
                check = check.with_rise(rise);
            }
            if let Some(fall) = cli.check_fall.or(file.check_fall) {
                check = check.with_fall(fall);
            }
            if let Some(CheckStatus(status)) = cli.check_status.or(file.check_status) {
                check = check.with_expected_status(status);
            }
            check
        });
        Ok(Self {
            listen,
            admin,
            backends,
            layer,
            keys: ring,
            connect_timeout: timeout(
                cli.connect_timeout,
                file.connect_timeout,
                Duration::from_secs(1),
            ),
            response_timeout: timeout(
                cli.response_timeout,
                file.response_timeout,
                Duration::from_secs(30),
            ),
            limits,
            generated_key,
            admin_token,
            metrics: None,
            health_check,
            certificates,
            backend_tls,
            proxy_protocol: TrustedSources(if cli.proxy_protocol_from.is_empty() {
                file.proxy_protocol_from
            } else {
                cli.proxy_protocol_from
            }),
            access_log: cli.access_log.or(file.access_log),
            origin,
        })
    }

    /// Serves `handle`'s metrics (the process's Prometheus recorder: see
    /// `metrics_exporter_prometheus::PrometheusBuilder::install_recorder`) at `GET /metrics` on
    /// the admin listener. The binary installs one at start.
    #[must_use]
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
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

    /// Why `args` are refused, by clap or by [`Settings::load`], with every source.
    fn refusal(args: &[&str]) -> String {
        match Cli::try_parse_from(std::iter::once("tether-proxy").chain(args.iter().copied())) {
            Err(e) => e.to_string(),
            Ok(cli) => match Settings::load(cli, Environment::default()) {
                Err(e) => tether_core::error_chain(&e).to_string(),
                Ok(_) => panic!("{args:?} accepted"),
            },
        }
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        for (args, says) in [
            (&[][..], "no backend"),
            (&["--backend", "ftp://x:1"], "only http://"),
            (&["--backend", "nonsense"], r#"backend "nonsense""#),
            (
                &["--backend", "http://a:1", "--backend", "http://a:1"],
                r#"two backends are named "a:1""#,
            ),
            (
                &["--backend", "http://a:1", "--pinning", "random"],
                "--pinning",
            ),
            (
                &["--backend", "http://a:1", "--key", "too-short"],
                "affinity key 1 of --key",
            ),
            (
                &["--backend", "http://a:1", "--admin", "0.0.0.0:9901"],
                "admin address 0.0.0.0:9901 is not loopback",
            ),
            (
                &["--backend", "http://a:1", "--max-connections", "0"],
                "--max-connections",
            ),
            (&["--backend", "http://a:1", "--epsilon", "0"], "--epsilon"),
            (
                &["--backend", "http://a:1", "--epsilon", "NaN"],
                "--epsilon",
            ),
            (
                &["--backend", "http://a:1", "--connect-timeout", "0s"],
                "--connect-timeout",
            ),
            (
                &["--backend", "http://a:1", "--response-timeout", "300"],
                "--response-timeout",
            ),
            (
                &["--backend", "http://a:1", "--backend-ca", "/no/such/ca.pem"],
                "TLS file /no/such/ca.pem: cannot read",
            ),
        ] {
            let refusal = refusal(args);
            assert!(refusal.contains(says), "{args:?}: {refusal}");
        }
        assert!(
            refusal(&["--backend", "http://a:1", "--pinning", "random"])
                .contains("expected cookie, session-id or source")
        );
    }

    #[test]
    fn a_bad_file_is_named_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        let file = path.to_str().unwrap();
        for (toml, key, says) in [
            ("pinning = \"random\"\n", "key `pinning`", "expected cookie"),
            ("max_connections = 0\n", "key `max_connections`", "nonzero"),
            ("epsilon = -1.0\n", "key `epsilon`", "above 0"),
            (
                "connect_timeout = 500\n",
                "key `connect_timeout`",
                "\"500ms\"",
            ),
            (
                "body_idle_timeout = \"0s\"\n",
                "key `body_idle_timeout`",
                "above 0",
            ),
            ("strategy = \"cookie\"\n", "key `strategy`", "unknown field"),
            (
                "[[backends]]\nurl = \"http://a:1\"\n[[backends]]\nname = \"b\"\nurl = 3\n",
                "key `backends[1].url`",
                "line 5",
            ),
            ("listen = \n", "proxy.toml", "line 1"),
        ] {
            std::fs::write(&path, toml).unwrap();
            let refusal = refusal(&["--config", file]);
            assert!(
                refusal.starts_with(file) && refusal.contains(key) && refusal.contains(says),
                "{toml}: {refusal}"
            );
        }
        let missing = refusal(&["--config", &format!("{file}.missing")]);
        assert!(
            missing.contains("proxy.toml.missing") && missing.contains("No such file"),
            "{missing}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        std::fs::write(
            &path,
            "connect_timeout = \"2s\"\nmax_connections = 5\n[[backends]]\nurl = \"http://a:1\"\n",
        )
        .unwrap();
        let settings = Settings::load(
            cli(&[
                "--config",
                path.to_str().unwrap(),
                "--connect-timeout",
                "250ms",
                "--header-read-timeout",
                "3s",
            ]),
            Environment::default(),
        )
        .unwrap();
        assert_eq!(settings.connect_timeout, Duration::from_millis(250));
        assert_eq!(settings.limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(settings.limits.max_connections, 5);
        assert_eq!(settings.backends[0].name, "a:1");
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
pinning = "session-id"
session_cookie = "sid"
connect_timeout = "2s"
response_timeout = "1m 30s"
slow_start = "0s"
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
        assert_eq!(settings.connect_timeout, Duration::from_secs(2));
        assert_eq!(settings.response_timeout, Duration::from_secs(90));
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, tether_testkit::TestCa::new("backends CA").pem()).unwrap();
        std::fs::write(
            &path,
            format!("backend_ca = {ca:?}\n[[backends]]\nurl = \"https://b.internal:3443\"\n"),
        )
        .unwrap();
        let settings = Settings::load(
            cli(&["--config", path.to_str().unwrap()]),
            Environment::default(),
        )
        .unwrap();
        assert_eq!(settings.backends[0].url.scheme_str(), Some("https"));
        assert_ne!(
            settings.backend_tls,
            crate::backend_tls::BackendTls::load(None).unwrap(),
            "the file's CA, not the default roots"
        );
        std::fs::write(
            &path,
            "[[backends]]\nurl = \"https://b.internal:3443\"\nh2c = true\n",
        )
        .unwrap();
        let error = Settings::load(
            cli(&["--config", path.to_str().unwrap()]),
            Environment::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("h2c is HTTP/2 without TLS"), "{error}");

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
