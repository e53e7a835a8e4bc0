//! The admin listener: backend states, health and counters, on loopback only.
//!
//! Loopback is not a boundary on its own: a browser on the same machine can be made to send
//! requests there (cross-site forms, DNS rebinding), and so can a co-located backend with an
//! SSRF bug. So every request must name a loopback host in `Host` and must not come from a
//! foreign web origin, and state changes need the configured token as
//! `Authorization: Bearer <token>`; without a configured token they are refused.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use tether_sticky::{BackendReport, BackendState, Checked, Health, StickyHandle, Weight};

use crate::reload::Reloader;

/// The secret that authorizes state changes on the admin listener; never printed.
#[derive(Clone)]
pub(crate) struct AdminToken(String);

/// Shortest token accepted: guessing must be out of reach.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

impl AdminToken {
    /// A token of at least [`MIN_TOKEN_LEN`] characters, surrounding whitespace removed.
    ///
    /// # Errors
    ///
    /// The length of what was given, when it is too short.
    pub(crate) fn new(token: &str) -> Result<Self, usize> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(token.len());
        }
        Ok(Self(token.to_owned()))
    }

    fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

#[derive(Clone)]
struct Admin {
    handle: StickyHandle,
    token: Option<AdminToken>,
    metrics: Option<PrometheusHandle>,
    reloader: Arc<Reloader>,
}

/// `GET /backends`: every backend with its state, health and counters.
/// `GET /metrics`: the process's metrics in the Prometheus text format, when `metrics` is set.
/// `POST /backends/{name}/{ready|drain|maintenance}` and `POST /reload` (the configuration
/// read again, as on SIGHUP), with `Authorization: Bearer <token>` when `token` is set (refused
/// when it is not).
pub(crate) fn router(
    handle: StickyHandle,
    token: Option<AdminToken>,
    metrics: Option<PrometheusHandle>,
    reloader: Arc<Reloader>,
) -> Router {
    let admin = Admin {
        handle,
        token,
        metrics,
        reloader,
    };
    Router::new()
        .route("/backends", get(backends))
        .route("/metrics", get(metrics_text))
        .route("/reload", post(reload))
        .route("/backends/{name}/{state}", post(set_state))
        .route("/backends/{name}/weight/{weight}", post(set_weight))
        .layer(axum::middleware::from_fn_with_state(admin.clone(), guard))
        .with_state(admin)
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    tracing::warn!(%status, why, "admin request refused");
    (status, why).into_response()
}

/// A host name or address that only this machine answers to, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(is_loopback_host)
}

async fn guard(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    let headers: &HeaderMap = request.headers();
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(is_loopback_host) {
        return refuse(StatusCode::FORBIDDEN, "Host must be a loopback name\n");
    }
    if let Some(origin) = headers.get(ORIGIN)
        && !origin.to_str().is_ok_and(is_loopback_origin)
    {
        return refuse(StatusCode::FORBIDDEN, "cross-origin requests are refused\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let Some(token) = &admin.token else {
            return refuse(
                StatusCode::FORBIDDEN,
                "state changes are disabled: set admin_token (or TETHER_PROXY_ADMIN_TOKEN)\n",
            );
        };
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| token.matches(p.trim())) {
            return refuse(StatusCode::UNAUTHORIZED, "a valid bearer token is needed\n");
        }
    }
    next.run(request).await
}

/// One backend as `GET /backends` shows it: the operator's `state` (ready, drain, maintenance)
/// apart from what passive health checks decided (`health`: healthy, with its
/// `failures_in_a_row`, or ejected, with `ejected_until` in RFC 3339 UTC) and what active ones
/// found (`check`), and its counters.
fn report(b: &BackendReport) -> Value {
    let (health, ejected_until, failures_in_a_row) = match b.health {
        Health::Healthy { failures_in_a_row } => ("healthy", None, failures_in_a_row),
        Health::Ejected { until } => {
            let left = until.saturating_duration_since(Instant::now());
            let at = humantime::format_rfc3339_millis(SystemTime::now() + left);
            ("ejected", Some(at.to_string()), 0)
        }
        _ => ("unknown", None, 0),
    };
    json!({
        "name": b.name,
        "state": b.state.to_string(),
        "weight": b.weight.get(),
        "health": health,
        "ejected": b.health.is_ejected(),
        "ejected_until": ejected_until,
        "failures_in_a_row": failures_in_a_row,
        "check": check(b),
        "pinned": b.counters.pinned,
        "new": b.counters.new,
        "by_session": b.counters.by_session,
        "redispatched": b.counters.redispatched,
        "failures": b.counters.failures,
        "in_flight": b.counters.in_flight,
    })
}

/// What active health checks found (`null` when they are off): `status` up or down, the
/// checks in a row that count toward the next change, and `last`, what the latest check got.
fn check(b: &BackendReport) -> Value {
    let last = &b.last_check;
    match b.checked {
        None => Value::Null,
        Some(Checked::Up { failures_in_a_row }) => {
            json!({ "status": "up", "failures_in_a_row": failures_in_a_row, "last": last })
        }
        Some(Checked::Down { passes_in_a_row }) => {
            json!({ "status": "down", "passes_in_a_row": passes_in_a_row, "last": last })
        }
        Some(_) => json!({ "status": "unknown", "last": last }),
    }
}

async fn backends(State(admin): State<Admin>) -> Json<Value> {
    let backends: Vec<Value> = admin.handle.backends().iter().map(report).collect();
    Json(json!({ "backends": backends, "invalid_cookies": admin.handle.invalid_pins() }))
}

async fn metrics_text(State(admin): State<Admin>) -> Response {
    match &admin.metrics {
        Some(metrics) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            metrics.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "this process records no metrics\n").into_response(),
    }
}

/// Reads the configuration again: `200` with what changed, or `400` with why nothing did.
async fn reload(State(admin): State<Admin>) -> (StatusCode, String) {
    match admin.reloader.reload().await {
        Ok(changes) if changes.is_empty() => {
            (StatusCode::OK, "reloaded: nothing changed\n".to_owned())
        }
        Ok(changes) => (StatusCode::OK, format!("reloaded: {changes}\n")),
        Err(error) => {
            let error = tether_core::error_chain(&error).to_string();
            tracing::error!(%error, "configuration not reloaded: the one in force stays");
            (StatusCode::BAD_REQUEST, format!("not reloaded: {error}\n"))
        }
    }
}

async fn set_state(
    State(admin): State<Admin>,
    Path((name, state)): Path<(String, String)>,
) -> (StatusCode, String) {
    let state: BackendState = match state.parse() {
        Ok(state) => state,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    set(admin.handle.set_state(&name, state), &name, state)
}

/// The answer to setting `what` on the backend `name`: `found`, or `404`.
fn set(found: bool, name: &str, what: impl std::fmt::Display) -> (StatusCode, String) {
    if found {
        (StatusCode::OK, format!("{name}: {what}\n"))
    } else {
        (
            StatusCode::NOT_FOUND,
            format!("no backend named {name:?}\n"),
        )
    }
}

/// Sets a backend's weight (0 to 256): its share of new sessions from now on.
async fn set_weight(
    State(admin): State<Admin>,
    Path((name, weight)): Path<(String, String)>,
) -> (StatusCode, String) {
    let weight: Weight = match weight.parse() {
        Ok(weight) => weight,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    set(
        admin.handle.set_weight(&name, weight),
        &name,
        format_args!("weight {weight}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_and_origins() {
        for host in [
            "127.0.0.1:9901",
            "localhost",
            "LOCALHOST:1",
            "[::1]:9901",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9901",
            "10.0.0.1:9901",
            "localhost.evil.example",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert!(is_loopback_origin("http://localhost:9901"));
        assert!(!is_loopback_origin("https://evil.example"));
        assert!(!is_loopback_origin("null"));
    }

    #[test]
    fn tokens_must_be_long_enough() {
        assert_eq!(AdminToken::new("short").unwrap_err(), 5);
        assert!(AdminToken::new("too short").is_err());
        let token = AdminToken::new(" 0123456789abcdef ").unwrap();
        assert_eq!(format!("{token:?}"), "AdminToken(..)", "never printed");
        assert!(token.matches("0123456789abcdef"));
        assert!(!token.matches("0123456789abcdeF"));
        assert!(!token.matches(""));
    }
}
