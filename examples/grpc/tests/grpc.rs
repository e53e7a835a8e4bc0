//! The gRPC counter over real tonic: a server on a loopback port, called by a tonic client.

use std::net::SocketAddr;

use example_grpc::proto::counter_client::CounterClient;
use example_grpc::proto::counter_server::{Counter, CounterServer};
use example_grpc::proto::{IncrementReply, IncrementRequest, ResetReply, ResetRequest};
use example_grpc::{SESSION_HEADER, SessionClient};
use tether_memory::MemoryStore;
use tether_sessions::Session;
use tether_sessions::core::Id;
use tether_testkit::{Failure, SpyStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

/// A running server; dropping it stops the server.
struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestServer {
    async fn start(store: SpyStore<MemoryStore>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(example_grpc::serve(
            listener,
            example_grpc::sessions(store),
            shutdown,
        ));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn client(&self) -> CounterClient<Channel> {
        CounterClient::connect(self.url()).await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn spy() -> SpyStore<MemoryStore> {
    SpyStore::new(MemoryStore::new())
}

/// One `Increment` call sending `id` (if any): the count and the `x-session-id` the response
/// carries (if any).
async fn increment(client: &mut CounterClient<Channel>, id: Option<&str>) -> (u64, Option<String>) {
    let mut request = Request::new(IncrementRequest {});
    if let Some(id) = id {
        request
            .metadata_mut()
            .insert(SESSION_HEADER, id.parse().unwrap());
    }
    let response = client.increment(request).await.unwrap();
    let issued = response
        .metadata()
        .get(SESSION_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    (response.into_inner().count, issued)
}

#[tokio::test]
async fn a_session_lives_in_the_metadata() {
    let server = TestServer::start(spy()).await;
    let mut client = server.client().await;

    let (count, issued) = increment(&mut client, None).await;
    assert_eq!(count, 1);
    let id = issued.expect("the first call gets a session id");
    assert!(id.parse::<Id>().is_ok(), "{id:?} is an id");

    for expected in 2..=4 {
        let (count, issued) = increment(&mut client, Some(&id)).await;
        assert_eq!(count, expected);
        assert_eq!(issued, None, "a known id is not sent again");
    }
    server.stop().await;
}

#[tokio::test]
async fn garbage_and_forged_ids_are_no_session() {
    let server = TestServer::start(spy()).await;
    let mut client = server.client().await;
    let (_, issued) = increment(&mut client, None).await;
    let real = issued.unwrap();

    let unknown = Id::random().unwrap().to_string();
    let long = "A".repeat(2_000);
    for presented in ["not-a-session", "", &unknown, &long, &format!("{real}x")] {
        let (count, issued) = increment(&mut client, Some(presented)).await;
        assert_eq!(count, 1, "{presented:?} starts over");
        let issued = issued.unwrap_or_else(|| panic!("{presented:?} gets a new id"));
        assert_ne!(issued, real);
        assert_ne!(issued, presented);
    }

    let (count, _) = increment(&mut client, Some(&real)).await;
    assert_eq!(count, 2, "the real session is untouched");
    server.stop().await;
}

#[tokio::test]
async fn the_session_client_echoes_the_id() {
    let server = TestServer::start(spy()).await;
    let mut client = SessionClient::connect(server.url()).await.unwrap();
    assert_eq!(client.session_id(), None);

    for expected in 1..=3 {
        assert_eq!(client.increment().await.unwrap(), expected);
    }
    let id = client.session_id().unwrap().to_owned();

    // A second client resumes the session with the id alone.
    let mut other = SessionClient::connect(server.url()).await.unwrap();
    other.set_session_id(&id).unwrap();
    assert_eq!(other.increment().await.unwrap(), 4);
    assert_eq!(other.session_id(), Some(id.as_str()));

    // Reset ends the session: the response carries an empty id, which the client forgets.
    client.reset().await.unwrap();
    assert_eq!(client.session_id(), None);
    assert_eq!(client.increment().await.unwrap(), 1);
    assert_ne!(client.session_id(), Some(id.as_str()));

    // The ended session is gone for everyone who held its id.
    assert_eq!(other.increment().await.unwrap(), 1);
    assert_ne!(other.session_id(), Some(id.as_str()));
    server.stop().await;
}

/// The layer answers HTTP 503 when it cannot save the session; tonic clients see `Unavailable`.
#[tokio::test]
async fn a_failed_save_is_unavailable() {
    let store = spy();
    let server = TestServer::start(store.clone()).await;
    let mut client = SessionClient::connect(server.url()).await.unwrap();
    assert_eq!(client.increment().await.unwrap(), 1);
    let id = client.session_id().unwrap().to_owned();

    store.fail_with(Some(Failure::Applies));
    let status = client.increment().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert_eq!(status.message(), "session store unavailable", "{status}");
    assert_eq!(client.session_id(), Some(id.as_str()), "the id is kept");

    store.fail_with(None);
    assert_eq!(
        client.increment().await.unwrap(),
        2,
        "the failed call counted nothing"
    );
    server.stop().await;
}

/// A store that fails while the handler reads the session: the handler answers `Unavailable`.
#[tokio::test]
async fn an_unavailable_store_is_unavailable() {
    let store = spy();
    let server = TestServer::start(store.clone()).await;
    let mut client = SessionClient::connect(server.url()).await.unwrap();
    assert_eq!(client.increment().await.unwrap(), 1);

    store.fail_with(Some(Failure::Unavailable));
    let status = client.increment().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert_eq!(status.message(), "session store unavailable");

    store.fail_with(None);
    assert_eq!(client.increment().await.unwrap(), 2);
    server.stop().await;
}

/// A `Counter` whose `Increment` sets the count to 41, then fails.
struct FailsAfterChanging;

#[tonic::async_trait]
impl Counter for FailsAfterChanging {
    async fn increment(
        &self,
        request: Request<IncrementRequest>,
    ) -> Result<Response<IncrementReply>, Status> {
        let session = request.extensions().get::<Session>().unwrap();
        session.insert("count", &41_u64).await.unwrap();
        Err(Status::internal("failed after changing the session"))
    }

    async fn reset(&self, _: Request<ResetRequest>) -> Result<Response<ResetReply>, Status> {
        Ok(Response::new(ResetReply {}))
    }
}

/// An error status is an HTTP 200 response (the status travels in `grpc-status`), so the layer
/// saves what the handler changed before it failed, unlike a `5xx` or an axum session error.
#[tokio::test]
async fn an_error_status_keeps_the_changes_made_before_it() {
    let store = spy();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let failing_addr = listener.local_addr().unwrap();
    let failing = tokio::spawn(
        Server::builder()
            .layer(example_grpc::sessions(store.clone()))
            .add_service(CounterServer::new(FailsAfterChanging))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let mut client = SessionClient::connect(format!("http://{failing_addr}"))
        .await
        .unwrap();
    let status = client.increment().await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status}");
    let id = client
        .session_id()
        .expect("the error status carries the new session's id")
        .to_owned();
    failing.abort();

    // The real counter, on the same store, finds the count the failed call left.
    let server = TestServer::start(store).await;
    let mut client = server.client().await;
    let (count, _) = increment(&mut client, Some(&id)).await;
    assert_eq!(count, 42);
    server.stop().await;
}
