//! WebSockets through the proxy binary: real tokio-tungstenite echo backends and clients.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};

use common::spawn_proxy;

type Socket = WebSocketStream<TcpStream>;

/// Accepts WebSocket connections on a free port, each on a task of the current runtime, and
/// answers every text message `m` with `name:m` and every binary one with itself.
async fn echo_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(echo(name, stream));
        }
    });
    addr
}

/// Names the backend in its `101` answer.
struct Named(&'static str);

impl Callback for Named {
    fn on_request(self, _: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
        response
            .headers_mut()
            .insert("x-backend", self.0.parse().unwrap());
        Ok(response)
    }
}

async fn echo(name: &'static str, stream: TcpStream) {
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, Named(name)).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        let answer = match message {
            Message::Text(text) => Message::text(format!("{name}:{text}")),
            Message::Binary(bytes) => Message::Binary(bytes),
            _ => continue,
        };
        if socket.send(answer).await.is_err() {
            return;
        }
    }
}

/// Opens a WebSocket to `/chat` through `proxy`, with `cookie` if given; returns the socket,
/// the backend that took it and the affinity cookie the proxy set, if it set one.
async fn connect(proxy: SocketAddr, cookie: Option<&str>) -> (Socket, String, Option<String>) {
    let mut request = format!("ws://{proxy}/chat").into_client_request().unwrap();
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
    }
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the WebSocket handshake goes through the proxy");
    let backend = response.headers()["x-backend"].to_str().unwrap().to_owned();
    let pin = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (socket, backend, pin)
}

/// The next text message, or what ended the stream instead, within 5 s.
async fn next_text(socket: &mut Socket) -> Result<String, String> {
    match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
        Err(_) => Err("nothing within 5 s".to_owned()),
        Ok(None) => Err("closed".to_owned()),
        Ok(Some(Err(e))) => Err(format!("error: {e}")),
        Ok(Some(Ok(Message::Text(text)))) => Ok(text.to_string()),
        Ok(Some(Ok(Message::Close(_)))) => Err("close frame".to_owned()),
        Ok(Some(Ok(other))) => Err(format!("unexpected {other:?}")),
    }
}

/// Whether the socket ends (closed, error or close frame) within `within`.
async fn ends_within(socket: &mut Socket, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn backend_args(backends: &[(&str, SocketAddr)]) -> Vec<String> {
    backends
        .iter()
        .flat_map(|(name, addr)| ["--backend".to_owned(), format!("{name}=http://{addr}")])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_pass_through_and_stick_to_their_backend() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let (_proxy, listen, _) = spawn_proxy(&backend_args(&[("a", a), ("b", b)]));

    let mut pins = Vec::new();
    for _ in 0..12 {
        let (mut socket, backend, pin) = connect(listen, None).await;
        socket.send(Message::text("hello")).await.unwrap();
        assert_eq!(next_text(&mut socket).await, Ok(format!("{backend}:hello")));
        let big = vec![7u8; 1 << 20];
        socket.send(Message::binary(big.clone())).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Binary(echoed)))) => assert!(echoed[..] == big[..]),
            other => panic!("a 1 MiB message comes back whole: {other:?}"),
        }
        socket.close(None).await.unwrap();
        pins.push((pin.expect("a new WebSocket client is pinned"), backend));
    }
    let used: std::collections::HashSet<&str> = pins.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(used.len(), 2, "new clients spread over both backends");

    for (pin, pinned_to) in &pins {
        let (mut socket, backend, _) = connect(listen, Some(pin)).await;
        assert_eq!(
            &backend, pinned_to,
            "the upgrade follows the affinity cookie"
        );
        for n in 0..50 {
            socket.send(Message::text(n.to_string())).await.unwrap();
            assert_eq!(next_text(&mut socket).await, Ok(format!("{backend}:{n}")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_stream_closes_the_client_and_nothing_else() {
    // The dying backend runs on a runtime of its own: shutting it down drops its sockets.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let dying = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = runtime.block_on(echo_backend("dying"));
        addr_tx.send(addr).unwrap();
        let waiting = std::thread::spawn(move || stop_rx.recv());
        runtime.block_on(async {
            while !waiting.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        runtime.shutdown_background();
    });
    let dying_addr = addr_rx.recv().unwrap();
    let (_proxy, listen, admin) = spawn_proxy(&backend_args(&[("dying", dying_addr)]));

    let (mut socket, backend, _) = connect(listen, None).await;
    assert_eq!(backend, "dying");
    socket.send(Message::text("before")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, Ok("dying:before".to_owned()));

    stop_tx.send(()).unwrap();
    dying.join().unwrap();
    let started = Instant::now();
    let _ = socket.send(Message::text("after")).await;
    assert!(
        ends_within(&mut socket, Duration::from_secs(5)).await,
        "the client's WebSocket ends when its backend dies"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // The proxy itself is unharmed.
    let status = tokio::task::spawn_blocking(move || {
        common::admin(admin, "GET", "/backends", "127.0.0.1", None).0
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_and_long_lived_upgrades_are_closed_at_their_limits() {
    let a = echo_backend("a").await;
    let mut args = backend_args(&[("a", a)]);
    args.extend(
        [
            "--upgrade-idle-timeout",
            "400ms",
            "--upgrade-max-duration",
            "2s",
        ]
        .map(str::to_owned),
    );
    let (_proxy, listen, _) = spawn_proxy(&args);

    // Quiet: closed after the idle limit, not before.
    let (mut quiet, _, _) = connect(listen, None).await;
    let opened = Instant::now();
    assert!(!ends_within(&mut quiet, Duration::from_millis(200)).await);
    assert!(ends_within(&mut quiet, Duration::from_secs(3)).await);
    assert!(opened.elapsed() >= Duration::from_millis(350));

    // Chatty: outlives the idle limit many times, then is closed at the total limit.
    let (mut chatty, _, _) = connect(listen, None).await;
    let opened = Instant::now();
    let mut answered = 0;
    while opened.elapsed() < Duration::from_secs(6) {
        if chatty.send(Message::text("ping")).await.is_err() {
            break;
        }
        match next_text(&mut chatty).await {
            Ok(_) => answered += 1,
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lived = opened.elapsed();
    assert!(answered >= 10, "only {answered} answers");
    assert!(
        lived >= Duration::from_millis(1_800) && lived < Duration::from_secs(5),
        "closed after {lived:?}, the limit is 2 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_keeps_its_place_under_the_connection_cap() {
    let a = echo_backend("a").await;
    let mut args = backend_args(&[("a", a)]);
    args.extend(["--max-connections", "1"].map(str::to_owned));
    let (_proxy, listen, _) = spawn_proxy(&args);

    let (mut socket, _, _) = connect(listen, None).await;
    socket.send(Message::text("x")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, Ok("a:x".to_owned()));
    let plain = |timeout: Duration| {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read as _, Write as _};
            let mut stream = std::net::TcpStream::connect(listen).unwrap();
            stream.set_read_timeout(Some(timeout)).unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).into_owned()
        })
    };
    let waiting = plain(Duration::from_millis(500)).await.unwrap();
    assert_eq!(
        waiting, "",
        "a second connection waits while the WebSocket is open"
    );
    socket.close(None).await.unwrap();
    drop(socket);
    let served = plain(Duration::from_secs(5)).await.unwrap();
    assert!(served.starts_with("HTTP/1.1 "), "{served:?}");
}

/// Opens a WebSocket to `/chat` through `proxy` over HTTP/2 (cleartext, prior knowledge) by
/// extended CONNECT (RFC 8441), with `cookie` if given; returns the socket, the backend that
/// took it and the affinity cookie the proxy set, if it set one.
async fn connect_h2(
    proxy: SocketAddr,
    cookie: Option<&str>,
) -> (
    WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    String,
    Option<String>,
) {
    let tcp = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    // The client may ask for a protocol only once the server's settings allowed it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let response = loop {
        let mut request = http::Request::builder()
            .method(http::Method::CONNECT)
            .version(http::Version::HTTP_2)
            .uri(format!("http://{proxy}/chat"))
            .header("sec-websocket-version", "13")
            .extension(hyper::ext::Protocol::from_static("websocket"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let request = request
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        match sender.send_request(request).await {
            Ok(response) => break response,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "extended CONNECT refused: {error}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(response.status(), 200, "{response:?}");
    assert!(
        response.headers().get("sec-websocket-accept").is_none(),
        "no HTTP/1.1 handshake header over HTTP/2"
    );
    let backend = response.headers()["x-backend"].to_str().unwrap().to_owned();
    let pin = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let socket = WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    (socket, backend, pin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_pass_through_and_stick_to_their_backend() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let (_proxy, listen, _) = spawn_proxy(&backend_args(&[("a", a), ("b", b)]));

    let (mut socket, backend, pin) = connect_h2(listen, None).await;
    for n in 0..20 {
        socket.send(Message::text(n.to_string())).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                assert_eq!(text.as_str(), format!("{backend}:{n}"))
            }
            other => panic!("an echo over HTTP/2: {other:?}"),
        }
    }
    socket.close(None).await.unwrap();

    let pin = pin.expect("a new WebSocket client is pinned");
    for _ in 0..5 {
        let (mut socket, again, _) = connect_h2(listen, Some(&pin)).await;
        assert_eq!(
            again, backend,
            "the extended CONNECT follows the affinity cookie"
        );
        socket.send(Message::text("pinned")).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                assert_eq!(text.as_str(), format!("{backend}:pinned"));
            }
            other => panic!("an echo over HTTP/2: {other:?}"),
        }
    }
}
