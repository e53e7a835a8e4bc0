//! The admin listener: backend states and counters, on loopback only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tether_sticky::{BackendState, StickyHandle};

/// `GET /backends`: states and counters. `POST /backends/{name}/{ready|drain|maintenance}`.
pub fn router(handle: StickyHandle) -> Router {
    Router::new()
        .route("/backends", get(backends))
        .route("/backends/{name}/{state}", post(set_state))
        .with_state(handle)
}

async fn backends(State(handle): State<StickyHandle>) -> Json<Value> {
    let backends: Vec<Value> = handle
        .backends()
        .into_iter()
        .map(|b| {
            json!({
                "name": b.name,
                "state": format!("{:?}", b.state).to_lowercase(),
                "ejected": b.ejected,
                "pinned": b.counters.pinned,
                "new": b.counters.new,
                "by_session": b.counters.by_session,
                "redispatched": b.counters.redispatched,
                "failures": b.counters.failures,
                "in_flight": b.counters.in_flight,
            })
        })
        .collect();
    Json(json!({ "backends": backends, "invalid_cookies": handle.invalid_pins() }))
}

async fn set_state(
    State(handle): State<StickyHandle>,
    Path((name, state)): Path<(String, String)>,
) -> (StatusCode, String) {
    let state: BackendState = match state.parse() {
        Ok(state) => state,
        Err(e) => return (StatusCode::BAD_REQUEST, e),
    };
    if handle.set_state(&name, state) {
        (StatusCode::OK, format!("{name}: {state:?}\n"))
    } else {
        (
            StatusCode::NOT_FOUND,
            format!("no backend named {name:?}\n"),
        )
    }
}
