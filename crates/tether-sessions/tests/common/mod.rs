//! Shared test app and helpers for the layer's integration tests.
#![allow(dead_code, unreachable_pub)]

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::routing::{MethodRouter, get as route_get};
use http_body_util::BodyExt as _;
use tether_memory::MemoryStore;
use tether_sessions::{Error, Session, SessionLayer};
use tether_testkit::SpyStore;
use tower::ServiceExt as _;

pub type Spy = SpyStore<MemoryStore>;

pub fn spy() -> Spy {
    SpyStore::new(MemoryStore::new())
}

/// The app every test drives. Routes:
/// - `/untouched`: never uses the session;
/// - `/count`: reads `count`; `/incr`: increments it;
/// - `/set/{k}/{v}`, `/get/{k}`, `/remove/{k}`;
/// - `/big/{n}`: inserts `n` bytes under `big` (413 when too large);
/// - `/cycle`, `/flush`, `/clear`; `/login`: cycles the id, then inserts `user`;
/// - `/fail`: increments, then answers 500.
pub fn app(layer: SessionLayer) -> Router {
    routes().layer(layer)
}

/// The routes of [`app`] without the layer, to add more before layering.
pub fn routes() -> Router {
    Router::new()
        .route("/untouched", route_get(|| async { "ok" }))
        .route("/count", route_get(|s: Session| async move { count(&s).await.map(|c| c.to_string()) }))
        .route("/incr", route_get(incr))
        .route(
            "/set/{k}/{v}",
            route_get(|s: Session, Path((k, v)): Path<(String, String)>| async move {
                s.insert(&k, &v).await
            }),
        )
        .route(
            "/get/{k}",
            route_get(|s: Session, Path(k): Path<String>| async move {
                s.get::<String>(&k).await.map(|v| v.unwrap_or_else(|| "<none>".into()))
            }),
        )
        .route(
            "/remove/{k}",
            route_get(|s: Session, Path(k): Path<String>| async move { s.remove::<String>(&k).await.map(|_| ()) }),
        )
        .route(
            "/big/{n}",
            route_get(|s: Session, Path(n): Path<usize>| async move {
                match s.insert("big", &"x".repeat(n)).await {
                    Ok(()) => Ok(StatusCode::OK),
                    Err(Error::TooLarge { .. }) => Ok(StatusCode::PAYLOAD_TOO_LARGE),
                    Err(e) => Err(e),
                }
            }),
        )
        .route("/cycle", route_get(|s: Session| async move { s.cycle_id().await }))
        .route(
            "/login",
            route_get(|s: Session| async move {
                s.cycle_id().await?;
                s.insert("user", "alice").await
            }),
        )
        .route("/flush", route_get(|s: Session| async move { s.flush().await }))
        .route("/clear", route_get(|s: Session| async move { s.clear().await }))
        .route(
            "/fail",
            route_get(|s: Session| async move {
                incr(s).await?;
                Ok::<_, Error>(StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
}

async fn count(session: &Session) -> Result<u64, Error> {
    Ok(session.get::<u64>("count").await?.unwrap_or(0))
}

async fn incr(session: Session) -> Result<String, Error> {
    let next = count(&session).await? + 1;
    session.insert("count", &next).await?;
    Ok(next.to_string())
}

/// A GET with the given request headers.
pub fn get_with(uri: &str, headers: &[(&str, &[u8])]) -> Request<Body> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).unwrap()
}

/// A GET carrying `cookie` (a `name=value` pair) if given.
pub fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    match cookie {
        Some(c) => get_with(uri, &[("cookie", c.as_bytes())]),
        None => get_with(uri, &[]),
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The `name=value` pair of the single `Set-Cookie`, for the next request.
    pub fn cookie(&self) -> String {
        let set = self.set_cookies();
        assert_eq!(set.len(), 1, "expected exactly one Set-Cookie, got {set:?}");
        set[0].split(';').next().unwrap().to_owned()
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends `request` and asserts a 200.
pub async fn ok(app: &Router, request: Request<Body>) -> Answer {
    let answer = send(app, request).await;
    assert_eq!(answer.status, StatusCode::OK, "body: {}", answer.body);
    answer
}

/// A route that reads `draft`, tells `reached`, waits for `gate` (so that another request can
/// change the key meanwhile), then inserts its path's last segment `{v}` into `draft`.
pub fn gated_draft_insert(
    gate: std::sync::Arc<tokio::sync::Notify>,
    reached: std::sync::Arc<tokio::sync::Notify>,
) -> MethodRouter {
    route_get(move |s: Session, Path(v): Path<String>| {
        let (gate, reached) = (
            std::sync::Arc::clone(&gate),
            std::sync::Arc::clone(&reached),
        );
        async move {
            let _seen: Option<String> = s.get("draft").await?;
            reached.notify_one();
            gate.notified().await;
            s.insert("draft", &v).await
        }
    })
}
