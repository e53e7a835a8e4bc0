//! An HTTP/1.1 keep-alive load generator on hyper, bounded in time and request count.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{COOKIE, HOST, HeaderValue, SET_COOKIE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use tether_core::BoxError;

use crate::error::Doing as _;

/// No connection sends more than this many requests in one run, whatever the duration.
const MAX_REQUESTS_PER_CONNECTION: u64 = 5_000_000;

/// One keep-alive connection that remembers the session cookie it was given.
pub(crate) struct Client {
    sender: SendRequest<Empty<Bytes>>,
    host: HeaderValue,
    cookie: Option<HeaderValue>,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let at = || format!("connecting to {addr}");
        let stream = TcpStream::connect(addr).await.doing(at)?;
        stream.set_nodelay(true).doing(at)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .doing(at)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            host: HeaderValue::from_str(&addr.to_string())?,
            cookie: None,
        })
    }

    /// Uses the session cookie another client was given.
    pub(crate) fn with_cookie(mut self, cookie: Option<HeaderValue>) -> Self {
        self.cookie = cookie;
        self
    }

    pub(crate) fn cookie(&self) -> Option<HeaderValue> {
        self.cookie.clone()
    }

    /// GET `path`; keeps the first cookie the server sets.
    pub(crate) async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes), BoxError> {
        let mut request = Request::get(path).header(HOST, self.host.clone());
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie.clone());
        }
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(request.body(Empty::new())?)
            .await?;
        if self.cookie.is_none()
            && let Some(set) = response.headers().get(SET_COOKIE)
        {
            let pair = set.to_str()?.split(';').next().unwrap_or_default();
            self.cookie = Some(HeaderValue::from_str(pair)?);
        }
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Which requests a run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    /// Every request reads the session (`/read`).
    Read,
    /// Every request reads and changes it (`/write`).
    Write,
    /// Four reads, then one write, repeated (20% writes).
    Mixed,
}

impl Workload {
    /// The workload's name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Mixed => "mixed",
        }
    }

    /// The path of request `n`.
    pub(crate) fn path(self, n: u64) -> &'static str {
        match self {
            Self::Read => "/read",
            Self::Write => "/write",
            Self::Mixed if n % 5 == 4 => "/write",
            Self::Mixed => "/read",
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) errors: u64,
    pub(crate) rps: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

/// Drives `connections` simulated users against the servers at `addrs` for `warmup + seconds`;
/// only the part after the warm-up is measured. Each user keeps one keep-alive connection to
/// every server and sends its requests to them in turn (round robin, as a balancer without
/// stickiness would), all in one session, which its first request (a write) creates.
pub(crate) async fn run(
    addrs: &[SocketAddr],
    workload: Workload,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Sample, BoxError> {
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for user in 0..connections {
        let addrs = addrs.to_vec();
        tasks.spawn(async move {
            let mut clients = Vec::with_capacity(addrs.len());
            for addr in &addrs {
                clients.push(Client::connect(*addr).await?);
            }
            let first = user % clients.len();
            let cookie = match clients.get_mut(first) {
                Some(client) => {
                    client.get("/write").await?;
                    client.cookie()
                }
                None => return Err("no server to send to".into()),
            };
            let mut clients: Vec<Client> = clients
                .into_iter()
                .map(|c| c.with_cookie(cookie.clone()))
                .collect();
            let servers = clients.len() as u64;
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            for n in 0..MAX_REQUESTS_PER_CONNECTION {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let index = usize::try_from((user as u64 + n) % servers).unwrap_or(0);
                let Some(client) = clients.get_mut(index) else {
                    break;
                };
                let (status, _) = client.get(workload.path(n)).await?;
                if sent >= start {
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    if status != StatusCode::OK {
                        errors += 1;
                    }
                }
            }
            Ok::<_, BoxError>((latencies, errors))
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (mut l, e) = joined??;
        latencies.append(&mut l);
        errors += e;
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        Duration::from_micros(latencies.get(index).copied().unwrap_or(0).into())
    };
    Ok(Sample {
        errors,
        rps: latencies.len() as f64 / measure.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    })
}

/// A GET for the in-process router, with the session cookie if there is one.
fn in_process_get(
    path: &str,
    cookie: Option<&HeaderValue>,
) -> Result<Request<axum::body::Body>, BoxError> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie.clone());
    }
    Ok(request.body(axum::body::Body::empty())?)
}

/// Creates a session with one `/write` straight into `router`; returns its cookie.
pub(crate) async fn in_process_session(
    router: &axum::Router,
) -> Result<Option<HeaderValue>, BoxError> {
    use tower::ServiceExt as _;

    let first = router
        .clone()
        .oneshot(in_process_get("/write", None)?)
        .await?;
    Ok(match first.headers().get(SET_COOKIE) {
        Some(set) => Some(HeaderValue::from_str(
            set.to_str()?.split(';').next().unwrap_or_default(),
        )?),
        None => None,
    })
}

/// Sends `requests` requests of `workload` straight into `router`, one after another.
pub(crate) async fn in_process_requests(
    router: &axum::Router,
    workload: Workload,
    requests: u32,
    cookie: Option<&HeaderValue>,
) -> Result<(), BoxError> {
    for n in 0..requests {
        in_process_request(router, workload, n, cookie).await?;
    }
    Ok(())
}

/// Request `n` of `workload`, straight into `router`, answered `200 OK`.
pub(crate) async fn in_process_request(
    router: &axum::Router,
    workload: Workload,
    n: u32,
    cookie: Option<&HeaderValue>,
) -> Result<(), BoxError> {
    use tower::ServiceExt as _;

    let request = in_process_get(workload.path(n.into()), cookie)?;
    let response = router.clone().oneshot(request).await?;
    if response.status() != StatusCode::OK {
        return Err(format!("request {n}: {}", response.status()).into());
    }
    response.into_body().collect().await?;
    Ok(())
}

/// Mean nanoseconds per request when `requests` requests of `workload` go straight into
/// `router`, one after another, with one session (created by a first write).
pub(crate) async fn in_process(
    router: axum::Router,
    workload: Workload,
    requests: u32,
) -> Result<f64, BoxError> {
    let cookie = in_process_session(&router).await?;
    let started = Instant::now();
    in_process_requests(&router, workload, requests, cookie.as_ref()).await?;
    Ok(started.elapsed().as_nanos() as f64 / f64::from(requests.max(1)))
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum as _;

    use super::*;

    #[test]
    fn command_line_names_are_the_workload_names() {
        for workload in Workload::value_variants() {
            let value = workload.to_possible_value().unwrap();
            assert_eq!(value.get_name(), workload.name());
            assert_eq!(workload.to_string(), workload.name());
        }
    }
}
