//! One statement (one round trip) per operation on PostgreSQL, counted from sqlx's own log of
//! every statement it runs (`sqlx::query` events): the session operations (a swap by
//! `update_key` among them), the principal index (`sessions_of`, `revoke`, `revoke_all`), and
//! a binding `create` or `apply` whose principal is over the cap (the revocation is part of
//! the statement). The same with events on (each write's event is part of its statement);
//! `cycle` runs as many statements either way, and `delete_expired` one more with events
//! (deleting events past the retention). Without events the events table is not even there.

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tether_core::{
    Applied, Changes, Created, Cycled, Expiry, Id, KeyUpdate, KeyUpdated, Principal, Record,
    Renewal, Revoked, Seen, SessionHandle, SessionStore, Timestamp,
};
use tether_sql::sqlx;
use tether_sql::{EventLog, PostgresStoreBuilder};
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

// One test: which statements sqlx logs is decided per call site, for the whole process, from
// the subscribers in place; two tests setting subscribers of their own on two threads at once
// miss each other's events.
#[tokio::test]
async fn every_operation_is_one_statement() {
    let mut counted = Vec::new();
    for events in [false, true] {
        let others = load_create_apply_touch_delete_are_one_statement_each(events).await;
        the_principal_index_and_the_cap_are_one_statement_each(events).await;
        counted.push(others);
    }
    let (without, with) = (&counted[0], &counted[1]);
    assert_eq!(with[0], without[0], "cycle: as many statements with events");
    assert_eq!(
        with[1].1,
        without[1].1 + 1,
        "delete_expired: the same sweep statement, and one more that deletes events past \
         the retention"
    );
    println!("statements without and with events: {counted:?}");
}

/// The builder of the fixtures, with or without events.
fn builder(events: bool) -> PostgresStoreBuilder {
    let builder = common::test_builder();
    if events {
        builder.with_events(EventLog::new())
    } else {
        builder
    }
}

/// How many events the fixture's table holds; `None` when there is no such table.
async fn events_written(fixture: &common::OnPostgres) -> Option<i64> {
    let mut admin = fixture.admin().await;
    let table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('tether_session_events')::text")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    table.as_ref()?;
    Some(
        sqlx::query_scalar("SELECT count(*) FROM tether_session_events")
            .fetch_one(&mut admin)
            .await
            .unwrap(),
    )
}

/// Runs `op` and answers how many statements sqlx logged for it.
async fn statements_of(counter: &AtomicUsize, op: impl Future<Output = ()>) -> usize {
    let before = counter.load(Ordering::SeqCst);
    op.await;
    counter.load(Ordering::SeqCst) - before
}

/// The five session operations, one statement each; answers the statements of a `cycle` (a
/// transaction) and of a `delete_expired` that deletes one batch.
async fn load_create_apply_touch_delete_are_one_statement_each(
    events: bool,
) -> Vec<(&'static str, usize)> {
    let fixture = common::postgres_with(builder(events), &common::postgres_url()).await;
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
    let one = Bytes::from_static(b"1");
    let set_one = KeyUpdate::Swap {
        expected: None,
        new: Some(one.clone()),
    };

    // Warm the statement cache first: a statement's first use on a connection also prepares it.
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    let _ = store.update_key(&id, "n", &set_one).await.unwrap();
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
    // A read that renews: the store sends its renewing statement only for a session it has
    // read before and knows due, so it reads and renews once first (uncounted).
    let renewal_at = |seconds: u64| Renewal::new(now + Duration::from_secs(seconds), 0.25);
    let first = store.load_renewing(&id, &renewal_at(0)).await.unwrap();
    assert!(!first.unwrap().renewed, "not due at its creation");
    let warm = store.load_renewing(&id, &renewal_at(20)).await.unwrap();
    assert!(warm.unwrap().renewed, "due 20 s into a 60 s idle timeout");
    count(
        "load_renewing of a session not due",
        Box::pin(async {
            let loaded = store.load_renewing(&id, &renewal_at(21)).await.unwrap();
            assert!(!loaded.unwrap().renewed);
        }),
    )
    .await;
    let last_use = Seen::new(now + Duration::from_secs(40)).with_device("Firefox");
    count(
        "load_renewing past the touch threshold",
        Box::pin(async {
            let renewal = renewal_at(40).with_seen(last_use.clone());
            let loaded = store.load_renewing(&id, &renewal).await.unwrap().unwrap();
            assert!(loaded.renewed, "renewed by the read");
            assert_eq!(
                loaded.record.expiry.expires_at(),
                now + Duration::from_secs(100)
            );
            assert_eq!(loaded.record.seen.as_deref(), Some(&last_use));
            assert_eq!(loaded.record.data.len(), 2);
        }),
    )
    .await;
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.expiry.expires_at(), now + Duration::from_secs(100));
    assert_eq!(stored.seen.as_deref(), Some(&last_use));
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
        "update_key",
        Box::pin(async {
            let updated = store.update_key(&id, "n", &set_one).await.unwrap();
            assert_eq!(updated, KeyUpdated::Updated(Some(one.clone())));
        }),
    )
    .await;
    count(
        "update_key that conflicts",
        Box::pin(async {
            let updated = store.update_key(&id, "n", &set_one).await.unwrap();
            assert_eq!(updated, KeyUpdated::Conflict(Some(one.clone())));
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
    count(
        "update_key of a missing session",
        Box::pin(async {
            let updated = store.update_key(&id, "n", &set_one).await.unwrap();
            assert_eq!(updated, KeyUpdated::Missing);
        }),
    )
    .await;

    // Warmed as above, then counted.
    let moving = Record::new(Id::random().unwrap(), expiry, now);
    assert_eq!(store.create(&moving).await.unwrap(), Created::Created);
    let moved = Id::random().unwrap();
    assert_eq!(
        store.cycle(&moving.id, &moved).await.unwrap(),
        Cycled::Moved
    );
    assert_eq!(store.create(&moving).await.unwrap(), Created::Created);
    let cycle = statements_of(&counter, async {
        let moved = Id::random().unwrap();
        assert_eq!(
            store.cycle(&moving.id, &moved).await.unwrap(),
            Cycled::Moved
        );
    })
    .await;
    let past = Timestamp::from_millis(now.as_millis() - 10_000);
    let expired = Record::new(
        Id::random().unwrap(),
        Expiry::new(past, Duration::from_secs(1), None),
        past,
    );
    assert_eq!(store.create(&expired).await.unwrap(), Created::Created);
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    let expired = Record::new(Id::random().unwrap(), expired.expiry, past);
    assert_eq!(store.create(&expired).await.unwrap(), Created::Created);
    let sweep = statements_of(&counter, async {
        assert_eq!(store.delete_expired().await.unwrap(), 1);
    })
    .await;

    drop(_guard);
    let written = events_written(&fixture).await;
    if events {
        // 6 creates, 2 deletes, 2 cycles, 2 expiries; the applies bind nobody, so report
        // nothing, and neither does a touch.
        assert_eq!(written, Some(12), "each change wrote its event");
    } else {
        assert_eq!(written, None, "without events there is no events table");
    }
    vec![("cycle", cycle), ("delete_expired", sweep)]
}

/// Runs `op` and asserts sqlx logged exactly one statement for it.
async fn one_statement(counter: &AtomicUsize, what: &str, op: impl Future<Output = ()>) {
    let before = counter.load(Ordering::SeqCst);
    op.await;
    let ran = counter.load(Ordering::SeqCst) - before;
    assert_eq!(ran, 1, "{what} ran {ran} statements");
}

fn bound(principal: &Principal, created_at: Timestamp) -> Record {
    let expiry = Expiry::new(Timestamp::now(), Duration::from_secs(60), None);
    let mut record = Record::new(Id::random().unwrap(), expiry, created_at)
        .with_principal(Some(principal.clone()))
        .with_seen(Some(
            Seen::new(created_at)
                .with_device("Firefox")
                .with_address("192.0.2.7".parse().unwrap()),
        ));
    record.data.insert("k".into(), Bytes::from_static(b"v"));
    record
}

async fn the_principal_index_and_the_cap_are_one_statement_each(events: bool) {
    let fixture = common::postgres_with(
        builder(events).with_max_sessions_per_principal(NonZeroUsize::new(2)),
        &common::postgres_url(),
    )
    .await;
    let store = &fixture.store;
    let alice = Principal::new("alice").unwrap();
    let bob = Principal::new("bob").unwrap();
    let t0 = Timestamp::now();
    let at = |n: u64| t0 + Duration::from_millis(n);

    // Warm the statement cache: every statement below runs once first.
    let warm = bound(&bob, at(0));
    assert_eq!(store.create(&warm).await.unwrap(), Created::Created);
    let mut bind_bob = Changes::new();
    bind_bob.bind(bob.clone());
    bind_bob.set_seen(Seen::new(at(0)));
    assert_eq!(
        store
            .apply(&warm.id, &bind_bob, &warm.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );
    let mut seen_only = Changes::new();
    seen_only.set_seen(Seen::new(at(1)).with_device("Safari"));
    assert_eq!(
        store
            .apply(&warm.id, &seen_only, &warm.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(store.sessions_of(&bob).await.unwrap().len(), 1);
    let warm_handle = SessionHandle::of(&warm.id);
    assert_eq!(
        store.revoke(&alice, &warm_handle).await.unwrap(),
        Revoked::NotFound
    );
    assert_eq!(store.revoke_all(&alice, None).await.unwrap(), 0);
    assert_eq!(
        store.revoke_all(&alice, Some(&warm_handle)).await.unwrap(),
        0
    );

    let counter = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(Statements(Arc::clone(&counter))),
    );

    let sessions: Vec<Record> = (0..3).map(|n| bound(&alice, at(10 + n))).collect();
    for (n, session) in sessions.iter().enumerate() {
        one_statement(&counter, &format!("binding create #{n}"), async {
            assert_eq!(store.create(session).await.unwrap(), Created::Created);
        })
        .await;
    }
    assert!(
        store.load(&sessions[0].id).await.unwrap().is_none(),
        "the third binding create revoked the oldest, in its one statement"
    );

    // A login: an anonymous session, bound by an apply over the cap.
    let expiry = Expiry::new(Timestamp::now(), Duration::from_secs(60), None);
    let login = Record::new(Id::random().unwrap(), expiry, at(20));
    assert_eq!(store.create(&login).await.unwrap(), Created::Created);
    let mut bind_alice = Changes::new();
    bind_alice.bind(alice.clone());
    bind_alice.insert("user", Bytes::from_static(b"alice"));
    one_statement(&counter, "binding apply", async {
        assert_eq!(
            store.apply(&login.id, &bind_alice, &expiry).await.unwrap(),
            Applied::Applied
        );
    })
    .await;
    assert!(store.load(&sessions[1].id).await.unwrap().is_none());
    one_statement(&counter, "apply recording a use", async {
        assert_eq!(
            store.apply(&login.id, &seen_only, &expiry).await.unwrap(),
            Applied::Applied
        );
    })
    .await;

    one_statement(&counter, "sessions_of", async {
        let listed: Vec<SessionHandle> = store
            .sessions_of(&alice)
            .await
            .unwrap()
            .into_iter()
            .map(|info| info.handle)
            .collect();
        assert_eq!(
            listed,
            [
                SessionHandle::of(&sessions[2].id),
                SessionHandle::of(&login.id)
            ]
        );
    })
    .await;
    one_statement(&counter, "revoke of another principal's session", async {
        assert_eq!(
            store.revoke(&alice, &warm_handle).await.unwrap(),
            Revoked::NotFound
        );
    })
    .await;
    one_statement(&counter, "revoke", async {
        assert_eq!(
            store
                .revoke(&alice, &SessionHandle::of(&sessions[2].id))
                .await
                .unwrap(),
            Revoked::Revoked
        );
    })
    .await;
    let again = bound(&alice, at(30));
    assert_eq!(store.create(&again).await.unwrap(), Created::Created);
    one_statement(&counter, "revoke_all keeping one", async {
        let kept = SessionHandle::of(&login.id);
        assert_eq!(store.revoke_all(&alice, Some(&kept)).await.unwrap(), 1);
    })
    .await;
    one_statement(&counter, "revoke_all", async {
        assert_eq!(store.revoke_all(&alice, None).await.unwrap(), 1);
    })
    .await;
    assert!(
        store.load(&warm.id).await.unwrap().is_some(),
        "bob's session stays"
    );
    drop(_guard);
    let written = events_written(&fixture).await;
    assert_eq!(written.is_some(), events, "{written:?}");
}
