//! Live reload: the configuration read again (on SIGHUP or `POST /reload`), and what may change
//! while the proxy runs applied: backends added, changed or removed, backend states, affinity
//! keys, certificates. Backends that did not change keep their connections, counters and pinned
//! clients; requests in flight finish where they are.

use std::fmt::Write as _;
use std::sync::Arc;

use http::Request;
use tether_sticky::{StickyHandle, Upstream, UpstreamBody};
use tokio::sync::Mutex;
use tower::ServiceExt;
use tower::discover::Change;

use crate::access_log::Tagged;
use crate::backend_updates::Updates;
use crate::config::BackendSpec;
use crate::forwarded::AddForwarded;
use crate::proxy::Router;
use crate::tls::Certificates;
use crate::{Error, Settings};

/// The service the router sends one backend's requests to.
pub(crate) type BackendService = Tagged<AddForwarded<Upstream>>;

/// The service for `spec` under `settings`; it names itself in responses when `access_logged`.
pub(crate) fn backend_service(
    spec: &BackendSpec,
    settings: &Settings,
    access_logged: bool,
) -> Result<BackendService, Error> {
    let upstream = if spec.url.scheme() == Some(&http::uri::Scheme::HTTPS) {
        Upstream::https(
            spec.url.clone(),
            Arc::clone(&settings.backend_tls.config),
            settings.connect_timeout,
        )?
    } else {
        Upstream::new(spec.url.clone(), spec.h2c, settings.connect_timeout)?
    }
    .with_response_timeout(settings.response_timeout);
    let named = access_logged.then_some(spec.name.as_str());
    Ok(Tagged::new(AddForwarded::new(upstream), named))
}

/// Makes the router take in the changes sent so far, then sets the states and weights the
/// configuration gives (a backend is in the router's roster only once taken in).
pub(crate) async fn take_in(router: &Router, backends: &[BackendSpec]) {
    let _ = ServiceExt::<Request<UpstreamBody>>::ready(&mut router.clone()).await;
    let handle = router.handle();
    for spec in backends {
        if let Some(state) = spec.state {
            handle.set_state(&spec.name, state);
        }
        if let Some(weight) = spec.weight {
            handle.set_weight(&spec.name, weight);
        }
    }
}

/// Reads the configuration again and applies it to the running proxy.
#[derive(Debug)]
pub(crate) struct Reloader {
    router: Router,
    handle: StickyHandle,
    updates: Updates<BackendService>,
    certificates: Option<Arc<Certificates>>,
    access_logged: bool,
    /// The settings in force: those of the start, then of the latest reload. A reload holds
    /// it throughout, so two reloads never interleave.
    applied: Mutex<Settings>,
}

impl Reloader {
    pub(crate) fn new(
        router: Router,
        updates: Updates<BackendService>,
        certificates: Option<Arc<Certificates>>,
        access_logged: bool,
        applied: Settings,
    ) -> Self {
        Self {
            handle: router.handle(),
            router,
            updates,
            certificates,
            access_logged,
            applied: Mutex::new(applied),
        }
    }

    /// Reads the configuration file again (with the flags and environment of the start,
    /// which win over it as they did then) and applies what changed. Nothing is applied when
    /// the file, a certificate, or a new backend cannot be used. Returns what changed, in
    /// words.
    ///
    /// # Errors
    ///
    /// As [`Settings::load`], [`Certificates::load`], and for a backend URL the client
    /// refuses.
    pub(crate) async fn reload(&self) -> Result<String, Error> {
        let mut applied = self.applied.lock().await;
        let (cli, env) = applied.origin.clone();
        let mut next = Settings::load(cli, env)?;
        // Everything that can fail comes first.
        let mut inserts = Vec::new();
        let mut report = String::new();
        let roots_changed = applied.backend_tls != next.backend_tls;
        for spec in &next.backends {
            let before = applied.backends.iter().find(|b| b.name == spec.name);
            let tls = spec.url.scheme() == Some(&http::uri::Scheme::HTTPS);
            if before.is_some_and(|b| b.url == spec.url && b.h2c == spec.h2c)
                && !(tls && roots_changed)
            {
                continue;
            }
            let verb = if before.is_some() { "changed" } else { "added" };
            let _ = write!(report, "{verb} backend {}; ", spec.name);
            inserts.push((
                spec.name.clone(),
                backend_service(spec, &next, self.access_logged)?,
            ));
        }
        match (&self.certificates, next.certificates.is_empty()) {
            (Some(certificates), false) => {
                let count = certificates.replace(next.certificates.clone())?;
                let _ = write!(report, "{count} certificates; ");
            }
            (None, true) => {}
            _ => report.push_str("TLS turned on or off: takes a restart; "),
        }
        for (name, service) in inserts {
            let _ = self.updates.send(Change::Insert(name, service));
        }
        for gone in &applied.backends {
            if !next.backends.iter().any(|b| b.name == gone.name) {
                let _ = write!(report, "removed backend {}; ", gone.name);
                let _ = self.updates.send(Change::Remove(gone.name.clone()));
            }
        }
        take_in(&self.router, &next.backends).await;
        if next.generated_key {
            // No key configured, now as at start: the random key of the start stays, or every
            // pin would be lost.
            next.keys = applied.keys.clone();
        } else {
            self.handle.set_keys(next.keys.clone());
            report.push_str("affinity keys set; ");
        }
        let restart = needs_restart(&applied, &next);
        if !restart.is_empty() {
            let _ = write!(
                report,
                "needs a restart to change: {}; ",
                restart.join(", ")
            );
        }
        *applied = next;
        let report = report.trim_end_matches("; ").to_owned();
        tracing::info!(changes = %report, "configuration reloaded");
        Ok(report)
    }
}

/// The settings that differ between `applied` and `next` but only take effect at a restart.
fn needs_restart(applied: &Settings, next: &Settings) -> Vec<&'static str> {
    [
        ("listen", applied.listen != next.listen),
        ("admin", applied.admin != next.admin),
        ("limits", applied.limits != next.limits),
        (
            "proxy_protocol_from",
            applied.proxy_protocol != next.proxy_protocol,
        ),
        ("access_log", applied.access_log != next.access_log),
        ("health checks", applied.health_check != next.health_check),
        (
            "connect_timeout (of unchanged backends)",
            applied.connect_timeout != next.connect_timeout,
        ),
        (
            "response_timeout (of unchanged backends)",
            applied.response_timeout != next.response_timeout,
        ),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

/// Reloads on every SIGHUP; a failed reload is logged and changes nothing.
pub(crate) async fn on_hangup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler: the configuration cannot be reloaded by signal");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            if let Err(error) = reloader.reload().await {
                tracing::error!(
                    error = %tether_core::error_chain(&error),
                    "configuration not reloaded: the one in force stays"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}
