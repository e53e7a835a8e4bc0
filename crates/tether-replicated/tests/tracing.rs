//! One write followed through the cluster by its spans: the store call's span is a child of the
//! caller's (the session layer's), and the primary it was forwarded to and the backup that
//! copied it each open a span carrying the same write id.

mod common;

use std::sync::{Arc, Mutex};

use common::{cluster, record};
use tether_core::{Created, SessionStore as _};
use tether_replicated::{Ack, Mode};
use tracing::Instrument as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// A span as opened: its name, its parent's name, and its `node`, `from` and `write` fields.
#[derive(Clone, Debug, Default)]
struct Opened {
    name: &'static str,
    parent: Option<&'static str>,
    node: String,
    from: String,
    write: String,
}

impl Visit for Opened {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        match field.name() {
            "node" => self.node = value,
            "from" => self.from = value,
            "write" => self.write = value,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// Keeps every span opened.
struct Spans(Arc<Mutex<Vec<Opened>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut opened = Opened {
            name: attributes.metadata().name(),
            parent: context
                .span(id)
                .and_then(|span| span.parent())
                .map(|parent| parent.name()),
            ..Opened::default()
        };
        attributes.record(&mut opened);
        self.0.lock().unwrap().push(opened);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_carries_its_id_to_the_primary_and_the_backup() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(Spans(Arc::clone(&spans))),
    )
    .expect("the only subscriber of this test binary");

    let cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let store = cluster.store(0).unwrap();
    // A third of the sessions have node-0 as their primary; the others are forwarded.
    for _ in 0..12 {
        let created = store
            .create(&record())
            .instrument(tracing::info_span!("request"))
            .await;
        assert_eq!(created.unwrap(), Created::Created);
    }

    let spans = spans.lock().unwrap().clone();
    let of = |name: &'static str| spans.iter().filter(move |s| s.name == name);
    let writes: Vec<&Opened> = of("replicated.write")
        .filter(|s| s.node == "node-0")
        .collect();
    assert_eq!(writes.len(), 12, "one span per store call: {spans:#?}");
    assert!(
        writes
            .iter()
            .all(|w| w.parent == Some("request") && w.write.len() == 32),
        "each store call's span is a child of the caller's: {writes:#?}"
    );
    let followed = writes.iter().find_map(|write| {
        let forwarded = of("replicated.forwarded")
            .find(|f| f.write == write.write && f.from == "node-0" && f.node != "node-0")?;
        let copied = of("replicated.copy").find(|c| {
            c.write == write.write && c.from == forwarded.node && c.node != forwarded.node
        })?;
        Some((forwarded, copied))
    });
    let (forwarded, copied) = followed.unwrap_or_else(|| panic!("no write followed: {spans:#?}"));
    assert_ne!(copied.node, forwarded.node);
}
