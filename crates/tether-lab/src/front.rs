//! The front balancer: round robin, or the tether-sticky router.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use tether_sessions::deadline_header_value;
use tether_sticky::{Backends, Sticky, Upstream, UpstreamBody, UpstreamError, box_body};
use tower::ServiceExt as _;

use crate::network::Delays;
use crate::node::{REQUEST_DEADLINE, REQUEST_ID};

/// How long a node that refused a connection is skipped by round robin.
const DOWN_FOR: Duration = Duration::from_millis(500);
/// Bound on one request, so no user waits forever on a server that dies mid-answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What a user got back.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) set_cookies: Vec<String>,
    pub(crate) body: String,
}

/// An upstream that notes in the request which node it is: the front then knows which node a
/// request went to last, also when the sticky router chose it or the request failed.
/// With a network set, it also waits one way of a round trip before it sends a request and
/// again when the answer's head has come.
#[derive(Clone, Debug)]
pub(crate) struct Tagged {
    index: usize,
    inner: Upstream,
    delays: Option<Arc<Delays>>,
}

impl Tagged {
    pub(crate) fn new(index: usize, inner: Upstream, delays: Option<Arc<Delays>>) -> Self {
        Self {
            index,
            inner,
            delays,
        }
    }
}

type TaggedFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<UpstreamBody>, UpstreamError>> + Send>>;

/// Put into a request's extensions by the front; the [`Tagged`] upstream that sends it writes
/// its node index into it.
#[derive(Clone, Debug)]
struct SentTo(Arc<AtomicUsize>);

impl tower::Service<Request<UpstreamBody>> for Tagged {
    type Response = http::Response<UpstreamBody>;
    type Error = UpstreamError;
    type Future = TaggedFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<UpstreamBody>) -> Self::Future {
        if let Some(SentTo(node)) = request.extensions().get::<SentTo>() {
            node.store(self.index, Ordering::Relaxed);
        }
        let Some(delays) = self.delays.clone() else {
            return Box::pin(self.inner.call(request));
        };
        // An upstream is always ready, so a clone may be called later.
        let mut inner = self.inner.clone();
        Box::pin(async move {
            delays.one_way_trip().await;
            let answer = inner.call(request).await;
            delays.one_way_trip().await;
            answer
        })
    }
}

/// Sends each request to the next node in turn; a node that fails to connect is skipped for a
/// moment and the request goes to the next one.
#[derive(Debug)]
pub(crate) struct RoundRobin {
    nodes: Vec<Tagged>,
    down_until: Vec<Mutex<Option<Instant>>>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub(crate) fn new(nodes: Vec<Tagged>) -> Self {
        let down_until = nodes.iter().map(|_| Mutex::new(None)).collect();
        Self {
            nodes,
            down_until,
            next: AtomicUsize::new(0),
        }
    }

    fn is_down(&self, index: usize) -> bool {
        self.down_until.get(index).is_some_and(|slot| {
            slot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|until| until > Instant::now())
        })
    }

    fn mark_down(&self, index: usize) {
        if let Some(slot) = self.down_until.get(index) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + DOWN_FOR);
        }
    }
}

/// The balancer in front of the app nodes.
pub(crate) enum Front {
    RoundRobin(RoundRobin),
    Sticky(Sticky<Backends<String, Tagged>>),
}

/// No node: the request was sent nowhere.
const NOWHERE: usize = usize::MAX;

/// What the front sends for one user request: the same on every attempt.
struct Sending<'a> {
    path: &'static str,
    cookies: Option<&'a str>,
    id: u64,
    deadline: HeaderValue,
    sent_to: Arc<AtomicUsize>,
}

fn request(sending: &Sending<'_>) -> Request<UpstreamBody> {
    let Sending {
        path,
        cookies,
        id,
        deadline,
        sent_to,
    } = sending;
    let mut builder = Request::get(*path)
        .header(REQUEST_ID, *id)
        .header(REQUEST_DEADLINE, deadline.clone())
        .extension(SentTo(Arc::clone(sent_to)));
    if let Some(cookies) = cookies {
        builder = builder.header(header::COOKIE, *cookies);
    }
    builder
        .body(box_body(Empty::<Bytes>::new()))
        .unwrap_or_else(|_| Request::new(box_body(Empty::<Bytes>::new())))
}

async fn reply(response: http::Response<UpstreamBody>) -> Reply {
    let status = response.status();
    let set_cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    Reply {
        status,
        set_cookies,
        body,
    }
}

impl Front {
    /// One `GET path` with the user's cookies, as the user's request `id` (sent again with
    /// the same id when the front retries it), and the node it was sent to last (`None` if to
    /// none). The reply is `None` when no node could be reached, or the answer did not come
    /// within two seconds: the request carries that deadline, so a server that reads it later
    /// (it was frozen) does not apply what the user was told failed.
    pub(crate) async fn send(
        &self,
        path: &'static str,
        cookies: Option<&str>,
        id: u64,
    ) -> (Option<Reply>, Option<usize>) {
        let sending = Sending {
            path,
            cookies,
            id,
            deadline: deadline_header_value(SystemTime::now() + REQUEST_TIMEOUT),
            sent_to: Arc::new(AtomicUsize::new(NOWHERE)),
        };
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, self.send_unbounded(&sending))
            .await
            .ok()
            .flatten();
        let node = sending.sent_to.load(Ordering::Relaxed);
        (reply, (node != NOWHERE).then_some(node))
    }

    async fn send_unbounded(&self, sending: &Sending<'_>) -> Option<Reply> {
        match self {
            Self::Sticky(router) => {
                let response = router.clone().oneshot(request(sending)).await.ok()?;
                Some(reply(response).await)
            }
            Self::RoundRobin(rr) => {
                let n = rr.nodes.len();
                let start = rr.next.fetch_add(1, Ordering::Relaxed);
                for attempt in 0..n {
                    let index = (start + attempt) % n;
                    if rr.is_down(index) && attempt + 1 < n {
                        continue;
                    }
                    let Some(node) = rr.nodes.get(index) else {
                        continue;
                    };
                    match node.clone().oneshot(request(sending)).await {
                        Ok(response) => return Some(reply(response).await),
                        Err(_) => rr.mark_down(index),
                    }
                }
                None
            }
        }
    }
}
