//! The router in front of real HTTP backends on loopback, killed for real.
#![cfg(feature = "client")]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use tether_core::Id;
use tether_core::placement::rendezvous_order;
use tether_sticky::{
    AffinityKeys, BackendState, ClientAddr, Failover, Sticky, StickyHandle, StickyLayer, Strategy,
    Upstream, UpstreamBody, backends, box_body, cookie::Key,
};
use tower::{Service, ServiceExt as _};

/// A backend server in its own runtime on its own thread, so killing it closes every socket.
struct Backend {
    name: String,
    addr: SocketAddr,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Backend {
    fn start(name: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let me = name.to_owned();
        let (n, p) = (Arc::clone(&now), Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let slow_name = me.clone();
                let app = Router::new()
                    .route("/", get(move || async move { me.clone() }))
                    .route(
                        "/slow",
                        get(move || async move {
                            let current = n.fetch_add(1, Ordering::SeqCst) + 1;
                            p.fetch_max(current, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(150)).await;
                            n.fetch_sub(1, Ordering::SeqCst);
                            slow_name.clone()
                        }),
                    );
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = killed => {}
                }
            });
            // Dropping the runtime ends every connection task: a hard kill.
            drop(runtime);
        });
        Self {
            name: name.to_owned(),
            addr,
            kill: Some(kill),
            thread: Some(thread),
            now,
            peak,
        }
    }

    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn keys(seed: u8) -> AffinityKeys {
    AffinityKeys::new(Key::from(&[seed; 64]))
}

type Discovered = tether_sticky::Backends<String, Upstream>;
type Router_ = Sticky<Discovered>;

fn router(layer: &StickyLayer, servers: &[Backend]) -> (Router_, StickyHandle) {
    let upstreams: Vec<(String, Upstream)> = servers
        .iter()
        .map(|b| {
            let uri = format!("http://{}", b.addr).parse().unwrap();
            (
                b.name.clone(),
                Upstream::new(uri, false, Duration::from_millis(500)).unwrap(),
            )
        })
        .collect();
    let discover: Discovered = backends(upstreams);
    let sticky = Sticky::new(layer, discover);
    let handle = sticky.handle();
    (sticky, handle)
}

fn start(names: &[&str]) -> Vec<Backend> {
    names.iter().map(|n| Backend::start(n)).collect()
}

/// A client request: path, cookies, client address.
fn request(path: &str, cookies: &[String], from: Option<SocketAddr>) -> Request<UpstreamBody> {
    let mut builder = Request::get(path);
    if !cookies.is_empty() {
        builder = builder.header(header::COOKIE, cookies.join("; "));
    }
    let mut request = builder.body(box_body(Empty::<Bytes>::new())).unwrap();
    if let Some(addr) = from {
        request.extensions_mut().insert(ClientAddr(addr));
    }
    request
}

struct Answer {
    status: StatusCode,
    backend: String,
    set_cookie: Option<String>,
    cache_control: Option<String>,
}

async fn send(router: &mut Router_, request: Request<UpstreamBody>) -> Answer {
    let response: Response<UpstreamBody> =
        router.ready().await.unwrap().call(request).await.unwrap();
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let set_cookie = header(header::SET_COOKIE).map(|c| c.split(';').next().unwrap().to_owned());
    let cache_control = header(header::CACHE_CONTROL);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        backend: String::from_utf8_lossy(&body).into_owned(),
        set_cookie,
        cache_control,
    }
}

fn cookie_layer() -> StickyLayer {
    StickyLayer::new(keys(1)).with_secure(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_spread_evenly() {
    let servers = start(&["a", "b", "c", "d"]);
    let (mut router, _) = router(&cookie_layer(), &servers);
    let mut per_backend: HashMap<String, u32> = HashMap::new();
    for _ in 0..10_000 {
        let answer = send(&mut router, request("/", &[], None)).await;
        assert_eq!(answer.status, 200);
        assert!(answer.set_cookie.is_some(), "a new client is pinned");
        assert_eq!(answer.cache_control.as_deref(), Some("private"));
        *per_backend.entry(answer.backend).or_default() += 1;
    }
    for (backend, count) in &per_backend {
        assert!(
            (2_250..=2_750).contains(count),
            "{backend}: {count} of 10,000"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_sessions_stay_put() {
    let servers = start(&["a", "b", "c", "d"]);
    let (router, handle) = router(&cookie_layer(), &servers);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let mut router = router.clone();
        tasks.spawn(async move {
            for _ in 0..125 {
                let first = send(&mut router, request("/", &[], None)).await;
                let cookie = first.set_cookie.unwrap();
                let mut seen = HashSet::from([first.backend]);
                for _ in 0..19 {
                    let answer = send(&mut router, request("/", &[cookie.clone()], None)).await;
                    assert!(
                        answer.set_cookie.is_none(),
                        "Set-Cookie only when the pin changes"
                    );
                    seen.insert(answer.backend);
                }
                assert_eq!(seen.len(), 1, "chunk {chunk}: a session moved: {seen:?}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let pinned: u64 = handle.backends().iter().map(|b| b.counters.pinned).sum();
    assert_eq!(pinned, 1_000 * 19);
}
