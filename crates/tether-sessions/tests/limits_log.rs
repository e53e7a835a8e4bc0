//! A session refused for its size is the client's fault: not logged as an error or warning.
//!
//! Alone in its test binary: tracing caches per call site whether anyone listens, and a test
//! running on another thread without a subscriber could make this one miss events.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Path;
use axum::routing::get as route_get;
use common::*;
use tether_sessions::{Error, Session, SessionLayer};

/// Everything logged while the test runs, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_refused_insert_is_not_logged_as_an_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime runs every task on this thread, so this subscriber sees the request.
    let _guard = tracing::subscriber::set_default(subscriber);

    let app: Router = Router::new()
        .route(
            "/put/{n}",
            route_get(|s: Session, Path(n): Path<usize>| async move {
                s.insert("big", &"x".repeat(n)).await?;
                Ok::<_, Error>("stored")
            }),
        )
        .layer(SessionLayer::new(spy()).with_max_size(1_000));
    let answer = send(&app, get("/put/2000", None)).await;

    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("too large"),
        "the refusal is logged: {logged}"
    );
    assert!(!logged.contains("ERROR"), "{logged}");
    assert!(!logged.contains("WARN"), "{logged}");
    assert_eq!(answer.status, 413);
}
