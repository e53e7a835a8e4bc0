//! One statement (one round trip) per operation on PostgreSQL, counted from sqlx's own log of
//! every statement it runs (`sqlx::query` events).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tether_core::{Applied, Changes, Created, Expiry, Id, Record, SessionStore, Timestamp};
use tracing_subscriber::layer::SubscriberExt as _;

/// Counts the statements sqlx reports having run.
struct Statements(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn load_create_apply_touch_delete_are_one_statement_each() {
    let fixture = common::postgres().await;
    let store = &fixture.store;
    let counter = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(Statements(Arc::clone(&counter))),
    );
    let count = async |what: &str, op: std::pin::Pin<Box<dyn Future<Output = ()> + '_>>| {
        let before = counter.load(Ordering::SeqCst);
        op.await;
        let ran = counter.load(Ordering::SeqCst) - before;
        assert_eq!(ran, 1, "{what} ran {ran} statements");
    };

    let now = Timestamp::now();
    let expiry = Expiry::new(now, Duration::from_secs(60), None);
    let mut record = Record::new(Id::random().unwrap(), expiry, now);
    record.data.insert("a".into(), Bytes::from_static(b"1"));
    record.data.insert("b".into(), Bytes::from_static(b"2"));
    let id = record.id;
    let mut changes = Changes::new();
    changes.insert("c", Bytes::from_static(b"3"));
    changes.remove("a");

    // Warm the statement cache first: a statement's first use on a connection also prepares it.
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    store.delete(&id).await.unwrap();

    count(
        "create",
        Box::pin(async {
            assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        }),
    )
    .await;
    count(
        "load",
        Box::pin(async {
            assert_eq!(store.load(&id).await.unwrap().unwrap().data.len(), 2);
        }),
    )
    .await;
    count(
        "apply",
        Box::pin(async {
            assert_eq!(
                store.apply(&id, &changes, &expiry).await.unwrap(),
                Applied::Applied
            );
        }),
    )
    .await;
    count(
        "touch",
        Box::pin(async {
            assert_eq!(store.touch(&id, &expiry).await.unwrap(), Applied::Applied);
        }),
    )
    .await;
    count(
        "delete",
        Box::pin(async {
            store.delete(&id).await.unwrap();
        }),
    )
    .await;
    count(
        "apply of a missing session",
        Box::pin(async {
            assert_eq!(
                store.apply(&id, &changes, &expiry).await.unwrap(),
                Applied::Missing
            );
        }),
    )
    .await;
}
