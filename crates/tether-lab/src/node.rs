//! One application server of the lab: the counter app on loopback, in a runtime of its own so
//! that killing it closes every one of its sockets, like a crashed process, and pausing it
//! (blocking that runtime's only thread) stops it answering while its sockets stay open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderName};
use axum::routing::get;
use tether_core::SessionStore;
use tether_sessions::{Session, SessionLayer};

use crate::Error;
use crate::operator::NodeMetrics;

/// The session cookie's name: session-id routing reads it.
pub(crate) const SESSION_COOKIE: &str = "sid";
/// The header naming a user's request: the same on every retry of it.
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// The header carrying the moment the front stops waiting for a request's answer.
pub(crate) const REQUEST_DEADLINE: &str = "x-request-deadline";

/// How long a graceful stop lets in-flight requests finish before the server is killed.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// What the server's thread is told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Serve,
    /// Stop accepting, let in-flight requests finish (at most [`GRACE`]), then end.
    Graceful,
    /// End at once.
    Kill,
}

/// A running (or killed) app server.
#[derive(Debug)]
pub(crate) struct AppNode {
    pub(crate) name: String,
    idle_timeout: Duration,
    pub(crate) addr: SocketAddr,
    /// What its session layer counts: requests by outcome, store errors.
    pub(crate) metrics: NodeMetrics,
    /// Its runtime, to pause it; `None` once stopped.
    runtime: Option<tokio::runtime::Handle>,
    stop: tokio::sync::watch::Sender<Stop>,
    /// Closed when the thread ends.
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn app(store: Arc<dyn SessionStore>, metrics: &NodeMetrics, idle_timeout: Duration) -> Router {
    // The layer registers its metric handles when it is built: in the node's own recorder.
    let layer = metrics.recording(|| {
        SessionLayer::from_arc(store)
            .with_secure(false)
            .with_cookie_name(SESSION_COOKIE)
            .with_idle_timeout(idle_timeout)
            .with_deadline_header(HeaderName::from_static(REQUEST_DEADLINE))
    });
    Router::new()
        .route(
            "/count",
            get(move |session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0);
                Ok::<_, tether_sessions::Error>(n.to_string())
            }),
        )
        .route(
            "/incr",
            get(move |session: Session, headers: HeaderMap| {
                async move {
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
        .layer(layer)
}

impl AppNode {
    /// Starts `name` on `addr` (port 0 for a free one) with sessions in `store`.
    pub(crate) fn start(
        name: &str,
        addr: SocketAddr,
        store: Arc<dyn SessionStore>,
        idle_timeout: Duration,
    ) -> Result<Self, Error> {
        Self::start_counting(name, addr, store, NodeMetrics::new(), idle_timeout)
    }

    fn start_counting(
        name: &str,
        addr: SocketAddr,
        store: Arc<dyn SessionStore>,
        metrics: NodeMetrics,
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
        let (stop, mut stopping) = tokio::sync::watch::channel(Stop::Serve);
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let app = app(store, &metrics, idle_timeout);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(serve_error)?;
        let handle = runtime.handle().clone();
        let thread = std::thread::Builder::new()
            .name(format!("lab-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let mut graceful = stopping.clone();
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = graceful.wait_for(|s| *s != Stop::Serve).await;
                    });
                    // Ends the serving at once on a kill, or GRACE after a graceful stop began.
                    let bound = async move {
                        let Ok(Stop::Graceful) =
                            stopping.wait_for(|s| *s != Stop::Serve).await.map(|s| *s)
                        else {
                            return;
                        };
                        tokio::select! {
                            () = tokio::time::sleep(GRACE) => {}
                            _ = stopping.wait_for(|s| *s == Stop::Kill) => {}
                        }
                    };
                    tokio::select! {
                        _ = serve => {}
                        () = bound => {}
                    }
                });
                // Dropping the runtime ends every connection left: a hard kill.
                drop(runtime);
                drop(end);
            })
            .map_err(serve_error)?;
        Ok(Self {
            name: name.to_owned(),
            idle_timeout,
            addr,
            metrics,
            runtime: Some(handle),
            stop,
            ended: Some(ended),
            thread: Some(thread),
        })
    }

    /// Whether the server runs.
    pub(crate) fn is_running(&self) -> bool {
        self.runtime.is_some()
    }

    /// Stops the server at once.
    pub(crate) fn kill(&mut self) {
        self.runtime = None;
        self.ended = None;
        let _ = self.stop.send(Stop::Kill);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops the server gracefully: it stops accepting connections at once, lets the requests
    /// in flight finish, closes its idle connections, and ends; what is still running after
    /// [`GRACE`] is cut off as by [`AppNode::kill`].
    pub(crate) async fn stop_gracefully(&mut self) {
        self.runtime = None;
        let _ = self.stop.send(Stop::Graceful);
        if let Some(ended) = self.ended.take() {
            let _ = ended.await;
        }
        self.kill();
    }

    /// Freezes the server for `duration`: its thread blocks, so it answers nothing, while its
    /// listener and connections stay open. Returns once the pause has begun. False if it does
    /// not run.
    pub(crate) fn pause(&self, duration: Duration) -> bool {
        let Some(runtime) = &self.runtime else {
            return false;
        };
        let (began, beginning) = std::sync::mpsc::sync_channel(1);
        // Blocking the runtime's only thread is the point: every task of the server stops.
        runtime.spawn(async move {
            let _ = began.send(());
            std::thread::sleep(duration);
        });
        // Ready tasks may run before the pause does: wait until it stands still. A runtime
        // that ended drops the task, and with it the sender.
        beginning.recv().is_ok()
    }

    /// Starts the server again on the same address, with `store`.
    pub(crate) fn restart(&mut self, store: Arc<dyn SessionStore>) -> Result<(), Error> {
        self.kill();
        let again = Self::start_counting(
            &self.name,
            self.addr,
            store,
            self.metrics.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get(addr: SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /count HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_paused_server_answers_after_the_pause_and_a_stopped_one_refuses() {
        let mut node = AppNode::start(
            "node-0",
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Arc::new(tether_memory::MemoryStore::new()),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(get(node.addr).await.starts_with("HTTP/1.1 200"));

        let pause = Duration::from_millis(500);
        let paused_at = Instant::now();
        assert!(node.pause(pause));
        // Its listener stays open: the request goes in, and is answered once the pause is over.
        assert!(get(node.addr).await.starts_with("HTTP/1.1 200"));
        assert!(paused_at.elapsed() >= pause);

        node.stop_gracefully().await;
        assert!(!node.is_running());
        assert!(!node.pause(pause));
        assert!(tokio::net::TcpStream::connect(node.addr).await.is_err());
        // It starts again on its address.
        node.restart(Arc::new(tether_memory::MemoryStore::new()))
            .unwrap();
        assert!(get(node.addr).await.starts_with("HTTP/1.1 200"));
        assert_eq!(node.metrics.requests(), 3, "counted across the restart");
    }
}
