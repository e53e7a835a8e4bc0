//! One application server of the lab: the counter app on loopback, in a runtime of its own so
//! that killing it closes every one of its sockets, like a crashed process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use tether_core::SessionStore;
use tether_sessions::{Session, SessionLayer};

use crate::Error;

/// The session cookie's name: session-id routing reads it.
pub(crate) const SESSION_COOKIE: &str = "sid";
/// The header naming a user's request: the same on every retry of it.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// A running (or killed) app server.
#[derive(Debug)]
pub(crate) struct AppNode {
    pub(crate) name: String,
    idle_timeout: Duration,
    pub(crate) addr: SocketAddr,
    pub(crate) served: Arc<AtomicU64>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn app(store: Arc<dyn SessionStore>, served: Arc<AtomicU64>, idle_timeout: Duration) -> Router {
    let reads = Arc::clone(&served);
    Router::new()
        .route(
            "/count",
            get(move |session: Session| {
                let served = Arc::clone(&reads);
                async move {
                    served.fetch_add(1, Ordering::Relaxed);
                    let n: u64 = session.get("n").await?.unwrap_or(0);
                    Ok::<_, tether_sessions::Error>(n.to_string())
                }
            }),
        )
        .route(
            "/incr",
            get(move |session: Session, headers: HeaderMap| {
                let served = Arc::clone(&served);
                async move {
                    served.fetch_add(1, Ordering::Relaxed);
                    let n: u64 = session.get("n").await?.unwrap_or(0);
                    // Idempotent per request, as an API with idempotency keys is: a balancer
                    // that sends a request again after the server it chose died mid-answer must
                    // not count it twice when that server had applied it. What is left of
                    // double counts is then the session store's doing.
                    let request = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok());
                    let done: Option<String> = session.get("request").await?;
                    if request.is_some() && done.as_deref() == request {
                        return Ok(n.to_string());
                    }
                    session.insert("n", &(n + 1)).await?;
                    if let Some(request) = request {
                        session.insert("request", &request).await?;
                    }
                    Ok::<_, tether_sessions::Error>((n + 1).to_string())
                }
            }),
        )
        .layer(
            SessionLayer::from_arc(store)
                .with_secure(false)
                .with_cookie_name(SESSION_COOKIE)
                .with_idle_timeout(idle_timeout),
        )
}

impl AppNode {
    /// Starts `name` on `addr` (port 0 for a free one) with sessions in `store`.
    pub(crate) fn start(
        name: &str,
        addr: SocketAddr,
        store: Arc<dyn SessionStore>,
        idle_timeout: Duration,
    ) -> Result<Self, Error> {
        Self::start_counting(name, addr, store, Arc::default(), idle_timeout)
    }

    fn start_counting(
        name: &str,
        addr: SocketAddr,
        store: Arc<dyn SessionStore>,
        served: Arc<AtomicU64>,
        idle_timeout: Duration,
    ) -> Result<Self, Error> {
        let serve_error = |source| Error::Serve {
            node: name.to_owned(),
            addr,
            source,
        };
        let listener = bind_retrying(addr).map_err(serve_error)?;
        listener.set_nonblocking(true).map_err(serve_error)?;
        let addr = listener.local_addr().map_err(serve_error)?;
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let app = app(store, Arc::clone(&served), idle_timeout);
        let thread = std::thread::Builder::new()
            .name(format!("lab-{name}"))
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = killed => {}
                    }
                });
                // Dropping the runtime ends every connection: a hard kill.
                drop(runtime);
            })
            .map_err(serve_error)?;
        Ok(Self {
            name: name.to_owned(),
            idle_timeout,
            addr,
            served,
            kill: Some(kill),
            thread: Some(thread),
        })
    }

    /// Whether the server runs.
    pub(crate) fn is_running(&self) -> bool {
        self.kill.is_some()
    }

    /// Stops the server at once.
    pub(crate) fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Starts the server again on the same address, with `store`.
    pub(crate) fn restart(&mut self, store: Arc<dyn SessionStore>) -> Result<(), Error> {
        self.kill();
        let again = Self::start_counting(
            &self.name,
            self.addr,
            store,
            Arc::clone(&self.served),
            self.idle_timeout,
        )?;
        *self = again;
        Ok(())
    }
}

impl Drop for AppNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Binds `addr`; a port just released may take a moment to be free again.
fn bind_retrying(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}
