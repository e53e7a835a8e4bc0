//! The layer around a plain tower service, without axum: the handle is in the extensions.

use std::convert::Infallible;

use http::{Request, Response, StatusCode, header};
use tether_memory::MemoryStore;
use tether_sessions::{Session, SessionLayer};
use tower::{ServiceBuilder, ServiceExt as _};

async fn handler(request: Request<String>) -> Result<Response<String>, Infallible> {
    let Some(session) = request.extensions().get::<Session>() else {
        return Ok(Response::builder().status(500).body(String::new()).unwrap());
    };
    let visits = session
        .get::<u32>("visits")
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
        + 1;
    if session.insert("visits", &visits).await.is_err() {
        return Ok(Response::builder().status(503).body(String::new()).unwrap());
    }
    Ok(Response::new(visits.to_string()))
}

#[tokio::test]
async fn works_with_any_http_service() {
    let service = ServiceBuilder::new()
        .layer(SessionLayer::new(MemoryStore::new()))
        .service_fn(handler);

    let first = service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.body().get_ref().map(String::as_str), Some("1"));
    let set_cookie = first.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let second = Request::builder()
        .header(header::COOKIE, cookie)
        .body(String::new())
        .unwrap();
    let second = service.oneshot(second).await.unwrap();
    assert_eq!(second.body().get_ref().map(String::as_str), Some("2"));
}
