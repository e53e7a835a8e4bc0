//! Sticky routing over three counter backends, and what a dead backend costs.
//!
//! Run with `cargo run -p example-sticky`. It starts three counter apps on loopback behind a
//! `tether-sticky` router, lets six browsers count, kills one backend, and counts on: first with
//! each backend keeping sessions in its own memory (the browsers pinned to the dead backend
//! start again from 1), then with `tether-replicated` underneath and session-id routing (they
//! carry on where they were).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt as _, Empty};
use tether_core::SessionStore;
use tether_memory::MemoryStore;
use tether_replicated::{LocalCluster, Mode};
use tether_sessions::{Session, SessionLayer};
use tether_sticky::{
    Backends, KeyRing, Pinning, Sticky, StickyConfig, Upstream, backends, box_body, cookie::Key,
};
use tower::ServiceExt as _;

/// A counter app on `store`, answering `<name> <count>`.
async fn serve(
    name: String,
    store: Arc<dyn SessionStore>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route(
            "/",
            get(move |session: Session| {
                let name = name.clone();
                async move {
                    let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
                    session.insert("n", &n).await?;
                    Ok::<_, tether_sessions::Error>(format!("{name} {n}"))
                }
            }),
        )
        .layer(
            SessionLayer::from_arc(store)
                .with_secure(false)
                .with_cookie_name("sid"),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// A browser: keeps every cookie it is given.
#[derive(Default)]
struct Browser {
    cookies: Vec<(String, String)>,
}

impl Browser {
    async fn visit(&mut self, router: &Sticky<Backends<String, Upstream>>) -> String {
        let mut request = Request::get("/");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            request = request.header(header::COOKIE, jar.join("; "));
        }
        let request = request
            .body(box_body(Empty::<Bytes>::new()))
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        for set in response.headers().get_all(header::SET_COOKIE) {
            let pair = set
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.retain(|(n, _)| n != name);
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            String::from_utf8_lossy(&body).into_owned()
        } else {
            format!("HTTP {status}")
        }
    }
}

async fn demo(
    title: &str,
    stores: Vec<Arc<dyn SessionStore>>,
    layer: StickyConfig,
    mut cluster: Option<&mut LocalCluster>,
) {
    println!("\n== {title}");
    let mut servers = Vec::new();
    let mut upstreams = Vec::new();
    for (i, store) in stores.into_iter().enumerate() {
        let name = format!("node-{i}");
        let (addr, task) = serve(name.clone(), store).await;
        let uri = format!("http://{addr}").parse().expect("uri");
        upstreams.push((
            name,
            Upstream::new(uri, false, Duration::from_millis(300)).expect("upstream"),
        ));
        servers.push(task);
    }
    let router = Sticky::new(&layer, backends(upstreams));
    let mut browsers: Vec<Browser> = (0..6).map(|_| Browser::default()).collect();
    for round in 1..=3 {
        let mut line = Vec::new();
        for browser in &mut browsers {
            line.push(browser.visit(&router).await);
        }
        println!("round {round}: {}", line.join(" | "));
    }
    println!("-- node-1 dies");
    servers[1].abort();
    if let Some(cluster) = cluster.as_mut() {
        cluster.kill(1);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for round in 4..=5 {
        let mut line = Vec::new();
        for browser in &mut browsers {
            line.push(browser.visit(&router).await);
        }
        println!("round {round}: {}", line.join(" | "));
    }
    for server in servers {
        server.abort();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("example-sticky: {}", tether_core::error_chain(&*error));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), tether_core::BoxError> {
    let keys = || KeyRing::new(Key::generate());

    // Each backend keeps its sessions in its own memory: sticky routing is what keeps a
    // browser's count, and a dead backend takes its sessions along.
    let memory: Vec<Arc<dyn SessionStore>> = (0..3)
        .map(|_| Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>)
        .collect();
    demo(
        "sticky cookie routing, sessions in each backend's memory",
        memory,
        StickyConfig::new(keys()).with_secure(false),
        None,
    )
    .await;

    // The same backends on a replicated store (backup-1), routed by session id: the browsers of
    // the dead backend land on the node that holds their session's backup.
    let mut cluster = LocalCluster::start(3, |c| {
        c.with_mode(Mode::Backup { copies: 1 })
            .with_failure_detection(Duration::from_millis(100), Duration::from_millis(600))
    })
    .await?;
    let replicated: Vec<Arc<dyn SessionStore>> = (0..3)
        .filter_map(|i| cluster.store(i))
        .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
        .collect();
    let layer = StickyConfig::new(keys())
        .with_secure(false)
        .with_pinning(Pinning::SessionId)
        .with_session_cookie("sid");
    demo(
        "session-id routing onto tether-replicated (backup-1)",
        replicated,
        layer,
        Some(&mut cluster),
    )
    .await;
    Ok(())
}
