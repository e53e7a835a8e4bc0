//! The layer's spans around store calls: a store's own spans open inside `session.load`,
//! `session.create` or `session.apply`, which open inside the span the request runs in, so an
//! operator's trace goes from the request down to the store (and, for tether-replicated, on to
//! the other nodes).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use tether_core::{Applied, Changes, Created, Cycled, Error, Expiry, Id, Record, SessionStore};
use tether_memory::MemoryStore;
use tether_sessions::{Session, SessionLayer};
use tower::ServiceExt as _;
use tracing::Instrument as _;
use tracing::span::{Attributes, Id as SpanId};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// A span's name and its parent's.
type Opened = (&'static str, Option<&'static str>);

/// Every span opened.
struct Spans(Arc<Mutex<Vec<Opened>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &SpanId, context: Context<'_, S>) {
        let parent = context
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.name());
        self.0
            .lock()
            .unwrap()
            .push((attributes.metadata().name(), parent));
    }
}

/// A memory store that opens a span of its own in each call, as a networked store would.
#[derive(Debug)]
struct Traced(MemoryStore);

#[async_trait::async_trait]
impl SessionStore for Traced {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.0
            .load(id)
            .instrument(tracing::info_span!("store.load"))
            .await
    }
    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.0
            .create(record)
            .instrument(tracing::info_span!("store.create"))
            .await
    }
    async fn apply(&self, id: &Id, changes: &Changes, expiry: &Expiry) -> Result<Applied, Error> {
        self.0
            .apply(id, changes, expiry)
            .instrument(tracing::info_span!("store.apply"))
            .await
    }
    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.0.delete(id).await
    }
    async fn cycle(&self, old: &Id, new: &Id) -> Result<Cycled, Error> {
        self.0.cycle(old, new).await
    }
}

#[tokio::test]
async fn store_spans_are_children_of_the_layers_which_are_children_of_the_request() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(Spans(Arc::clone(&spans))),
    );
    let app = Router::new()
        .route(
            "/",
            get(|session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0);
                session.insert("n", &(n + 1)).await?;
                Ok::<_, tether_sessions::Error>(())
            }),
        )
        .layer(SessionLayer::new(Traced(MemoryStore::new())).with_secure(false));

    let response = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    app.oneshot(
        Request::get("/")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .instrument(tracing::info_span!("request"))
    .await
    .unwrap();

    let spans = spans.lock().unwrap().clone();
    for (store, layer) in [
        ("store.create", "session.create"),
        ("store.load", "session.load"),
        ("store.apply", "session.apply"),
    ] {
        assert!(
            spans.contains(&(store, Some(layer))),
            "{store} inside {layer}: {spans:?}"
        );
        assert!(
            spans.contains(&(layer, Some("request"))),
            "{layer} inside the request's span: {spans:?}"
        );
    }
}
