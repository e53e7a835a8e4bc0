//! `tether-proxy`: a sticky-session reverse proxy built on [`tether_sticky`].
//!
//! ```text
//! tether-proxy --listen 127.0.0.1:8080 --backend http://127.0.0.1:3001 --backend http://127.0.0.1:3002
//! ```
//!
//! Cookie affinity by default (`--pinning cookie|session-id|source`), failover policy
//! `--failover redistribute|strict|persist`, affinity keys with `--key` (64 bytes, hex or base64;
//! a random one is generated and logged as a warning when none is given), an admin listener on
//! loopback (`--admin 127.0.0.1:9901`: `GET /backends` lists every configured backend from the
//! start with its state, its health and its counters; `GET /metrics` renders the process's
//! metrics in the Prometheus text format; `POST /backends/{name}/drain` and
//! `POST /backends/{name}/weight/{0-256}` with
//! `Authorization: Bearer <admin_token>`; only loopback `Host` names, no cross-origin requests),
//! a TOML file with `--config` whose keys are the flags' names with `_` (flags win). Adds
//! `X-Forwarded-For` and `Forwarded`, strips hop-by-hop headers, passes WebSockets and other
//! HTTP/1.1 upgrades through to the pinned backend (WebSockets over HTTP/2 too, by extended
//! CONNECT, RFC 8441, asked of the backend as an HTTP/1.1 upgrade), shuts down gracefully on SIGTERM or Ctrl-C. Logs go to stderr, coloured only when it is a terminal.
//!
//! Live reload on SIGHUP or `POST /reload`: the file is read again (the flags of the start
//! still win) and backends added, changed or removed, backend states and weights (`state` and
//! `weight` in a `[[backends]]` table), affinity keys and certificates take effect at once; unchanged
//! backends keep their connections and pinned clients, and a file that cannot be used changes
//! nothing. Other settings need a restart, and the reload says which changed.
//!
//! TLS with `--tls-cert FILE --tls-key FILE` (PEM; repeat the pair for more certificates): the
//! client's SNI picks the certificate valid for its name, the first is the default; ALPN offers
//! `h2` and `http/1.1`; a reload reads the files again (a broken one is logged and the
//! certificates in use stay). The TLS handshake counts toward `header_read_timeout`.
//!
//! TLS to backends with `https://` backend URLs, HTTP/1.1 over it (upgrades pass): a backend's
//! certificate must chain to a `--backend-ca FILE` certificate (PEM; the Mozilla roots without
//! it) and name the URL's host. A reload reads the CA file again and, when it changed, makes
//! the TLS backends' clients anew.
//!
//! The real client address from a PROXY protocol header (v1 or v2) on connections from
//! `--proxy-protocol-from` sources, and an access log on standard output with
//! `--access-log json|text|<template>` (off by default).
//!
//! Active health checks with `--check-path /health` (HAProxy's `check inter rise fall`:
//! `--check-interval` 2 s, `--check-timeout` 1 s, `--check-fall` 3, `--check-rise` 2,
//! `--check-status`, any 2xx or 3xx by default): one round runs before the proxy serves, so a
//! backend broken from the start never sees a client; the admin listener shows what they found
//! beside passive health.
//!
//! Bounds, each a flag and a key, durations written the human way (`500ms`, `2s`, `1m 30s`):
//! connecting to a backend 1 s (`connect_timeout`), a backend's response head 30 s after the
//! request body was sent (`response_timeout`), a client's request head 64 KiB
//! (`max_header_bytes`) received within 10 s (`header_read_timeout`; the first head counted from
//! the accept, so a connection that sends nothing is closed then), 30 s of quiet inside a request
//! body (`body_idle_timeout`: the client gets `400`), 10,000 client connections at once
//! (`max_connections`, lowered to fit the open-file limit, which is raised to the hard limit at
//! start), an upgraded connection (WebSocket) 5 min of quiet in both directions
//! (`upgrade_idle_timeout`) and 24 h in all (`upgrade_max_duration`), in-flight requests 10 s
//! after a shutdown signal. A zero timeout or connection count, or
//! an `epsilon` that is not above zero, is refused when the settings are read.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! pinning = "session-id"
//! session_cookie = "id"
//! connect_timeout = "500ms"
//! response_timeout = "10s"
//! backend_ca = "/etc/tether-proxy/backends-ca.pem"
//!
//! [[backends]]
//! name = "node-0"
//! url = "http://127.0.0.1:3001"
//!
//! [[backends]]
//! name = "node-1"
//! url = "http://127.0.0.1:3002"
//! h2c = true
//! state = "drain"
//!
//! # TLS to this one, its certificate issued by `backend_ca`.
//! [[backends]]
//! name = "node-2"
//! url = "https://node-2.internal:3443"
//!
//! [[certificates]]
//! cert = "/etc/tether-proxy/example.com.pem"
//! key = "/etc/tether-proxy/example.com-key.pem"
//! ```
//!
//! The library is what the binary is made of: [`Cli`] and [`Environment`] read into
//! [`Settings`], which [`run`] serves until a shutdown future ([`shutdown_signal`]) resolves.
//!
//! # Example
//!
//! ```
//! use clap::Parser as _;
//! use tether_proxy::{Cli, Environment, Settings};
//!
//! let cli = Cli::parse_from(["tether-proxy", "--backend", "ftp://127.0.0.1:21"]);
//! let error = Settings::load(cli, Environment::default()).unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     r#"backend "ftp://127.0.0.1:21": only http:// (and h2c) or https:// upstreams, as http://host:port"#
//! );
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod access_log;
mod admin;
mod backend_tls;
mod backend_updates;
mod config;
mod connection_slot;
mod delegate_write;
mod error;
mod forwarded;
mod limits;
mod proxy;
mod proxy_protocol;
mod reload;
mod stall;
mod tls;
mod tunnel;
mod values;

use std::sync::Arc;

pub use config::{Cli, Environment, Settings};
pub use error::Error;
use tether_sticky::Sticky;
use tower::discover::Change;

/// Binds `addr` for `role` (`listen` or `admin`), naming both when it cannot.
async fn bind(
    role: &'static str,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { role, addr, source })
}

/// How often the Prometheus recorder's histograms are folded in.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the proxy until `shutdown` resolves: the client listener and the admin listener.
///
/// # Errors
///
/// When an address cannot be bound ([`Error::Bind`] names it) or a backend URL is unusable.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if settings.generated_key {
        tracing::warn!(
            "no affinity key given (--key or TETHER_PROXY_KEYS): using a random one; pins will not \
             survive a restart and proxy replicas will not share them"
        );
    }
    if settings.admin_token.is_none() {
        tracing::info!(
            "no admin_token (or TETHER_PROXY_ADMIN_TOKEN): the admin listener is read-only"
        );
    }
    let certificates = if settings.certificates.is_empty() {
        None
    } else {
        Some(tls::Certificates::load(settings.certificates.clone())?)
    };
    let acceptor = certificates
        .as_ref()
        .map(tls::Certificates::acceptor)
        .transpose()?;
    let access_log = settings
        .access_log
        .clone()
        .map(access_log::AccessLog::to_stdout)
        .transpose()
        .map_err(Error::AccessLog)?;
    let access_logged = access_log.is_some();
    let (updates, discovered) = backend_updates::backend_updates();
    for spec in &settings.backends {
        let service = reload::backend_service(spec, &settings, access_logged)?;
        let _ = updates.send(Change::Insert(spec.name.clone(), service));
    }
    let router = Sticky::new(&settings.layer, discovered);
    // The router learns its backends when it is first made ready: do it now, so the admin
    // listener lists every configured backend (in its configured state) before the first
    // client request.
    reload::take_in(&router, &settings.backends).await;
    let handle = router.handle();
    // One round of active checks before serving: a backend broken from the start never sees a
    // client.
    let checks = settings
        .health_check
        .clone()
        .map(|check| router.health_checks::<tether_sticky::UpstreamBody>(check));
    if let Some(checks) = &checks {
        checks.round().await;
    }
    let checks = checks.map(|checks| tokio::spawn(checks.run()));
    let listener = bind("listen", settings.listen).await?;
    let admin = bind("admin", settings.admin).await?;
    let local = |listener: &tokio::net::TcpListener, configured| {
        listener.local_addr().unwrap_or(configured)
    };
    tracing::info!(
        listen = %local(&listener, settings.listen),
        admin = %local(&admin, settings.admin),
        backends = settings.backends.len(),
        tls = !settings.certificates.is_empty(),
        "tether-proxy ready"
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let admin_stop = Arc::clone(&stop);
    let metrics = settings.metrics.clone();
    let upkeep = metrics.clone().map(|metrics| {
        tokio::spawn(async move {
            // Histograms keep their samples until upkeep folds them in.
            let mut every = tokio::time::interval(METRICS_UPKEEP);
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        })
    });
    let admin_token = settings.admin_token.clone();
    let frontend_limits = settings.limits;
    let proxy_protocol = settings.proxy_protocol.clone();
    let reloader = Arc::new(reload::Reloader::new(
        router.clone(),
        updates,
        certificates,
        access_logged,
        settings,
    ));
    let reloads = tokio::spawn(reload::on_hangup(Arc::clone(&reloader)));
    let admin_task = tokio::spawn(async move {
        let served = axum::serve(admin, admin::router(handle, admin_token, metrics, reloader))
            .with_graceful_shutdown(async move { admin_stop.notified().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(error = %tether_core::error_chain(&error), "admin listener failed");
        }
    });
    let limits = match limits::raise_open_files_limit() {
        Some(open_files) => frontend_limits.fit_to_open_files(open_files),
        None => frontend_limits,
    };
    let frontend = proxy::Frontend {
        limits,
        tls: acceptor,
        proxy_protocol,
        access_log,
    };
    proxy::serve(listener, router, frontend, shutdown).await;
    stop.notify_waiters();
    let _ = admin_task.await;
    reloads.abort();
    for task in [upkeep, checks].into_iter().flatten() {
        task.abort();
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
