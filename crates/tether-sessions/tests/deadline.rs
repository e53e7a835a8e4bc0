//! Request deadlines: a request its sender gave up on changes no session.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderName, StatusCode};
use axum::routing::get;
use common::{Answer, get_with, ok, send, spy};
use tether_sessions::{Session, SessionLayer, deadline_header_value};

const DEADLINE: &str = "x-request-deadline";

fn layer(store: common::Spy) -> SessionLayer {
    SessionLayer::new(store)
        .with_secure(false)
        .with_deadline_header(HeaderName::from_static(DEADLINE))
}

fn deadline_in(offset: Duration, late: bool) -> Vec<u8> {
    let now = SystemTime::now();
    let at = if late { now - offset } else { now + offset };
    deadline_header_value(at).as_bytes().to_vec()
}

async fn incr(app: &Router, cookie: &str, deadline: Option<&[u8]>) -> Answer {
    let mut headers: Vec<(&str, &[u8])> = vec![("cookie", cookie.as_bytes())];
    if let Some(deadline) = deadline {
        headers.push((DEADLINE, deadline));
    }
    send(app, get_with("/incr", &headers)).await
}

#[tokio::test]
async fn a_request_that_arrives_after_its_deadline_is_not_run() {
    let store = spy();
    let ran = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&ran);
    let app = common::routes()
        .route(
            "/counted",
            get(move |session: Session| {
                let counted = Arc::clone(&counted);
                async move {
                    counted.fetch_add(1, Ordering::Relaxed);
                    session.insert("x", &1u8).await
                }
            }),
        )
        .layer(layer(store.clone()));

    let late = deadline_in(Duration::from_millis(50), true);
    let answer = send(&app, get_with("/counted", &[(DEADLINE, &late)])).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body, tether_sessions::UNAVAILABLE_MESSAGE);
    assert!(answer.set_cookies().is_empty());
    assert_eq!(ran.load(Ordering::Relaxed), 0, "the handler ran");
    assert_eq!(store.calls().total(), 0, "the store was used");

    // The same request within its deadline runs.
    let timely = deadline_in(Duration::from_secs(60), false);
    let answer = ok(&app, get_with("/counted", &[(DEADLINE, &timely)])).await;
    assert_eq!(answer.set_cookies().len(), 1);
    assert_eq!(ran.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn changes_are_dropped_when_the_deadline_passes_before_the_save() {
    let store = spy();
    let app = common::routes()
        .route(
            "/slow-incr",
            get(|session: Session| async move {
                let n: u64 = session.get("count").await?.unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(300)).await;
                session.insert("count", &(n + 1)).await
            }),
        )
        .layer(layer(store.clone()));
    let cookie = ok(&app, get_with("/incr", &[])).await.cookie();

    let soon = deadline_in(Duration::from_millis(100), false);
    let headers: Vec<(&str, &[u8])> = vec![("cookie", cookie.as_bytes()), (DEADLINE, &soon)];
    let writes = store.calls().writes();
    let answer = send(&app, get_with("/slow-incr", &headers)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body, tether_sessions::UNAVAILABLE_MESSAGE);
    assert_eq!(store.calls().writes(), writes, "the late request wrote");
    assert_eq!(
        ok(&app, common::get("/count", Some(&cookie))).await.body,
        "1"
    );
}

#[tokio::test]
async fn no_malformed_or_unconfigured_deadline_stops_a_request() {
    let store = spy();
    let app = common::app(layer(store.clone()));
    let cookie = ok(&app, get_with("/incr", &[])).await.cookie();
    for garbage in [&b"soon"[..], b"-5", b"1.5", b"", b"\xff"] {
        assert_eq!(
            incr(&app, &cookie, Some(garbage)).await.status,
            StatusCode::OK
        );
    }
    let timely = deadline_in(Duration::from_secs(60), false);
    assert_eq!(incr(&app, &cookie, Some(&timely)).await.body, "7");

    // Without the setting, the header means nothing.
    let plain = common::app(SessionLayer::new(spy()).with_secure(false));
    let cookie = ok(&plain, get_with("/incr", &[])).await.cookie();
    let late = deadline_in(Duration::from_secs(60), true);
    assert_eq!(incr(&plain, &cookie, Some(&late)).await.body, "2");
}
