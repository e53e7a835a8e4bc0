//! The access log: one line per request on standard output, as JSON or in a template's words.
//! Off by default. Lines go through a bounded queue to a thread of their own, so a slow reader
//! of the log never holds up a request: when the queue is full, lines are dropped and counted.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode, Uri, Version};
use serde::de::{self, Deserialize, Deserializer};
use tower::Service;

/// Lines waiting for the writer thread at most.
const QUEUE: usize = 8192;

/// One field a template can name, as `{name}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    Time,
    /// The client's address and port (from the PROXY header when there is one).
    Client,
    Method,
    /// Path and query as the client sent them.
    Uri,
    Version,
    Status,
    /// The backend that answered, `-` when the proxy answered itself.
    Backend,
    /// From the request head to the response head, in milliseconds.
    DurationMs,
}

impl Field {
    const ALL: [(&'static str, Self); 8] = [
        ("time", Self::Time),
        ("client", Self::Client),
        ("method", Self::Method),
        ("uri", Self::Uri),
        ("version", Self::Version),
        ("status", Self::Status),
        ("backend", Self::Backend),
        ("duration_ms", Self::DurationMs),
    ];
}

/// A piece of a template: words as they are, or a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Field(Field),
}

/// How access-log lines are written: `json` (one object per line, every field), `text`
/// ([`AccessLogFormat::TEXT`]) or a template naming fields in braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AccessLogFormat {
    Json,
    Template(Vec<Part>),
}

/// Why an access-log format was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidFormat {
    #[error(
        "{{{0}}} is no access-log field; fields are {{time}}, {{client}}, {{method}}, {{uri}}, {{version}}, {{status}}, {{backend}} and {{duration_ms}}"
    )]
    UnknownField(String),
    #[error("an unclosed {{ in the access-log format")]
    Unclosed,
}

impl AccessLogFormat {
    /// The `text` format.
    pub(crate) const TEXT: &'static str =
        r#"{time} {client} "{method} {uri} {version}" {status} {backend} {duration_ms}ms"#;
}

impl FromStr for AccessLogFormat {
    type Err = InvalidFormat;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let template = match text.trim() {
            "json" => return Ok(Self::Json),
            "text" => Self::TEXT,
            _ => text,
        };
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some((text, after)) = rest.split_once('{') {
            if !text.is_empty() {
                parts.push(Part::Text(text.to_owned()));
            }
            let (name, after) = after.split_once('}').ok_or(InvalidFormat::Unclosed)?;
            let field = Field::ALL
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, field)| *field)
                .ok_or_else(|| InvalidFormat::UnknownField(name.to_owned()))?;
            parts.push(Part::Field(field));
            rest = after;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self::Template(parts))
    }
}

impl<'de> Deserialize<'de> for AccessLogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// What one request left for the log.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) time: SystemTime,
    pub(crate) client: SocketAddr,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) status: StatusCode,
    pub(crate) backend: Option<ServedBy>,
    pub(crate) duration: Duration,
}

impl Entry {
    fn backend(&self) -> &str {
        self.backend.as_ref().map_or("-", |b| &b.0)
    }

    fn uri(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    fn write(&self, format: &AccessLogFormat, line: &mut String) {
        let time = humantime::format_rfc3339_millis(self.time);
        let duration_ms = self.duration.as_secs_f64() * 1000.0;
        match format {
            AccessLogFormat::Json => {
                let object = serde_json::json!({
                    "time": time.to_string(),
                    "client": self.client.to_string(),
                    "method": self.method.as_str(),
                    "uri": self.uri(),
                    "version": format!("{:?}", self.version),
                    "status": self.status.as_u16(),
                    "backend": self.backend.as_ref().map(|b| &*b.0),
                    "duration_ms": (duration_ms * 1000.0).round() / 1000.0,
                });
                let _ = write!(line, "{object}");
            }
            AccessLogFormat::Template(parts) => {
                for part in parts {
                    let _ = match part {
                        Part::Text(text) => write!(line, "{text}"),
                        Part::Field(Field::Time) => write!(line, "{time}"),
                        Part::Field(Field::Client) => write!(line, "{}", self.client),
                        Part::Field(Field::Method) => write!(line, "{}", self.method),
                        Part::Field(Field::Uri) => write!(line, "{}", self.uri()),
                        Part::Field(Field::Version) => write!(line, "{:?}", self.version),
                        Part::Field(Field::Status) => write!(line, "{}", self.status.as_u16()),
                        Part::Field(Field::Backend) => write!(line, "{}", self.backend()),
                        Part::Field(Field::DurationMs) => write!(line, "{duration_ms:.3}"),
                    };
                }
            }
        }
        line.push('\n');
    }
}

/// The access log of a running proxy.
#[derive(Debug)]
pub(crate) struct AccessLog {
    format: AccessLogFormat,
    lines: SyncSender<String>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread, which writes to standard output until the log is dropped.
    pub(crate) fn to_stdout(format: AccessLogFormat) -> std::io::Result<Arc<Self>> {
        let (lines, queued) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || write_lines(&queued, &mut std::io::stdout()))?;
        Ok(Arc::new(Self {
            format,
            lines,
            dropped: AtomicU64::new(0),
        }))
    }

    /// Queues `entry`'s line; drops it, counted, when the writer is behind.
    pub(crate) fn record(&self, entry: &Entry) {
        let mut line = String::with_capacity(160);
        entry.write(&self.format, &mut line);
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "access log behind: lines dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Writes queued lines, flushing whenever the queue runs dry.
fn write_lines(queued: &Receiver<String>, out: &mut impl std::io::Write) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(line) = queued.recv() {
        let mut written = out.write_all(line.as_bytes());
        while written.is_ok() {
            match queued.try_recv() {
                Ok(line) => written = out.write_all(line.as_bytes()),
                Err(_) => break,
            }
        }
        if written.and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

/// The backend that answered a response, put in its extensions by [`Tagged`].
#[derive(Clone, Debug)]
pub(crate) struct ServedBy(Arc<str>);

/// A backend service that names its backend in each response's extensions, for the access log;
/// with no name (the log is off) it passes responses through untouched.
#[derive(Clone, Debug)]
pub(crate) struct Tagged<S> {
    inner: S,
    name: Option<ServedBy>,
}

impl<S> Tagged<S> {
    pub(crate) fn new(inner: S, name: Option<&str>) -> Self {
        Self {
            inner,
            name: name.map(|name| ServedBy(Arc::from(name))),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Tagged<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = TaggedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        TaggedFuture {
            inner: self.inner.call(request),
            name: self.name.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Tagged`].
    pub(crate) struct TaggedFuture<F> {
        #[pin]
        inner: F,
        name: Option<ServedBy>,
    }
}

impl<F, RB, E> Future for TaggedFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(name) = this.name.take() {
            response.extensions_mut().insert(name);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            client: "203.0.113.7:51000".parse().unwrap(),
            method: Method::POST,
            uri: "http://example.com/cart?item=1".parse().unwrap(),
            version: Version::HTTP_11,
            status: StatusCode::CREATED,
            backend: Some(ServedBy(Arc::from("node-1"))),
            duration: Duration::from_micros(1_234),
        }
    }

    fn line(format: &str, entry: &Entry) -> String {
        let mut line = String::new();
        entry.write(&format.parse().unwrap(), &mut line);
        line
    }

    #[test]
    fn text_json_and_templates() {
        assert_eq!(
            line("text", &entry()),
            "2023-11-14T22:13:20.123Z 203.0.113.7:51000 \"POST /cart?item=1 HTTP/1.1\" 201 node-1 1.234ms\n"
        );
        let json: serde_json::Value = serde_json::from_str(&line("json", &entry())).unwrap();
        assert_eq!(json["backend"], "node-1");
        assert_eq!(json["status"], 201);
        assert_eq!(json["duration_ms"], 1.234);
        assert_eq!(json["uri"], "/cart?item=1");
        let mut own = entry();
        own.backend = None;
        assert_eq!(line("{status} by {backend}", &own), "201 by -\n");
    }

    #[test]
    fn unknown_fields_and_unclosed_braces_are_refused() {
        let unknown = "{status} {user}".parse::<AccessLogFormat>().unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("{user} is no access-log field"),
            "{unknown}"
        );
        assert!(matches!(
            "{status".parse::<AccessLogFormat>(),
            Err(InvalidFormat::Unclosed)
        ));
    }

    #[test]
    fn the_writer_writes_every_queued_line() {
        let (lines, queued) = std::sync::mpsc::sync_channel(4);
        lines.send("a\n".to_owned()).unwrap();
        lines.send("b\n".to_owned()).unwrap();
        drop(lines);
        let mut out = Vec::new();
        write_lines(&queued, &mut out);
        assert_eq!(out, b"a\nb\n");
    }
}
