//! Session events on SQLite beyond the conformance suite: every end of a session reported by
//! the transaction that ends it, delivery at least once across a restart, every group getting
//! every event, one consumer of a group at a time, corrupt rows, retention, and nothing written
//! without events.

mod common;

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{expect_event, expect_quiet, next_event, sqlite_builder};
use tether_core::{
    Applied, Changes, Created, Cycled, ErrorKind, EventKind, EventStream, Expiry, Id, Principal,
    Record, Revoked, SessionEvent, SessionHandle, SessionStore, Timestamp,
};
use tether_sql::sqlx;
use tether_sql::{EventLog, SqliteStore};

const DELIVERY: Duration = Duration::from_secs(10);

fn record() -> Record {
    let now = Timestamp::now();
    Record::new(
        Id::random().unwrap(),
        Expiry::new(now, Duration::from_secs(3600), None),
        now,
    )
    .with_data([("k".to_owned(), Bytes::from_static(b"v"))].into())
}

/// A session whose deadline passed ten seconds ago (stored as is: `create` does not check).
fn expired() -> Record {
    let past = Timestamp::from_millis(Timestamp::now().as_millis() - 10_000);
    Record::new(
        Id::random().unwrap(),
        Expiry::new(past, Duration::from_secs(1), None),
        past,
    )
}

async fn create(store: &dyn SessionStore, record: &Record) {
    assert_eq!(store.create(record).await.unwrap(), Created::Created);
}

fn handle(record: &Record) -> SessionHandle {
    SessionHandle::of(&record.id)
}

async fn rows(store: &SqliteStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Asks `events` for its next event (none must come) until the group's saved position is the
/// newest event: the consumer is done with everything, and says so.
async fn until_saved(store: &SqliteStore, events: &mut EventStream) {
    let saved = "SELECT count(*) FROM tether_session_event_cursors \
                 WHERE id = (SELECT max(id) FROM tether_session_events)";
    let deadline = Instant::now() + DELIVERY;
    loop {
        expect_quiet(events, Duration::from_millis(100)).await;
        if rows(store, saved).await == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the position is saved");
    }
}

async fn take(events: &mut EventStream, n: usize) -> Vec<SessionEvent> {
    let mut taken = Vec::new();
    for _ in 0..n {
        taken.push(expect_event(events, DELIVERY).await);
    }
    taken
}

/// Each write that ends a session reports it in its transaction, with the row's handle and
/// principal, in the order of the writes (SQLite has one writer at a time): a delete of a
/// session past its deadline is `Expired`, a create over an expired id reports the old session
/// expired, the cap, `revoke` and `revoke_all` report `Revoked`, the sweep `Expired`. Writes that
/// end nothing report nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_end_is_reported_by_the_write_that_ends_it() {
    let store = common::sqlite_memory_events(NonZeroUsize::new(2)).await;
    let mut events = store.events().await.unwrap();
    let alice = Principal::new("alice").unwrap();

    let stale = expired();
    create(&store, &stale).await;
    store.delete(&stale.id).await.unwrap();
    store.delete(&stale.id).await.unwrap();

    let taken_over = expired().with_principal(Some(alice.clone()));
    create(&store, &taken_over).await;
    let mut fresh = record();
    fresh.id = taken_over.id;
    create(&store, &fresh).await;

    let live = record();
    create(&store, &live).await;
    assert_eq!(
        store.touch(&live.id, &live.expiry).await.unwrap(),
        Applied::Applied
    );
    let mut bind = Changes::new();
    bind.bind(alice.clone());
    assert_eq!(
        store.apply(&live.id, &bind, &live.expiry).await.unwrap(),
        Applied::Applied
    );

    let login = record().with_principal(Some(alice.clone()));
    create(&store, &login).await;
    let moved = Id::random().unwrap();
    assert_eq!(store.cycle(&login.id, &moved).await.unwrap(), Cycled::Moved);
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&moved))
            .await
            .unwrap(),
        Revoked::Revoked
    );
    let logins: Vec<Record> = (0..3)
        .map(|n| {
            let mut session = record().with_principal(Some(alice.clone()));
            session.created_at = Timestamp::from_millis(session.created_at.as_millis() + n);
            session
        })
        .collect();
    for login in &logins {
        create(&store, login).await;
    }
    assert_eq!(store.revoke_all(&alice, None).await.unwrap(), 2);
    let swept = expired();
    create(&store, &swept).await;
    assert_eq!(store.delete_expired().await.unwrap(), 1);

    let reported = take(&mut events, 18).await;
    let got: Vec<(EventKind, SessionHandle, Option<Principal>)> = reported
        .iter()
        .map(|e| (e.kind, e.handle, e.principal.clone()))
        .collect();
    let a = || Some(alice.clone());
    // The cap revokes `live` (bound to alice, the oldest) when logins[1] is created and
    // logins[0] when logins[2] is, each after the `Created` of its transaction.
    let expected = vec![
        (EventKind::Created, handle(&stale), None),
        (EventKind::Expired, handle(&stale), None),
        (EventKind::Created, handle(&taken_over), a()),
        (EventKind::Expired, handle(&taken_over), a()),
        (EventKind::Created, handle(&fresh), None),
        (EventKind::Created, handle(&live), None),
        (EventKind::PrincipalSet, handle(&live), a()),
        (EventKind::Created, handle(&login), a()),
        (
            EventKind::Cycled {
                from: handle(&login),
            },
            SessionHandle::of(&moved),
            a(),
        ),
        (EventKind::Revoked, SessionHandle::of(&moved), a()),
        (EventKind::Created, handle(&logins[0]), a()),
        (EventKind::Created, handle(&logins[1]), a()),
        (EventKind::Revoked, handle(&live), a()),
        (EventKind::Created, handle(&logins[2]), a()),
        (EventKind::Revoked, handle(&logins[0]), a()),
        // `revoke_all` reports in the table's order; checked as a set below.
        (EventKind::Revoked, handle(&logins[1]), a()),
        (EventKind::Revoked, handle(&logins[2]), a()),
        (EventKind::Created, handle(&swept), None),
    ];
    let sorted = |mut v: Vec<(EventKind, SessionHandle, Option<Principal>)>| {
        v[15..17].sort_by_key(|(_, handle, _)| *handle);
        v
    };
    assert_eq!(sorted(got), sorted(expected));
    let last = expect_event(&mut events, DELIVERY).await;
    assert_eq!(
        (last.kind, last.handle),
        (EventKind::Expired, handle(&swept))
    );
    expect_quiet(&mut events, Duration::from_millis(300)).await;
}

/// An event handed to a consumer that is dropped before it asks for the next one is delivered
/// again after the process restarts (the file opened again); once a consumer asked for the
/// next event, the group's position is saved and a later consumer starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_being_handled_when_the_process_dies_comes_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let open = || async {
        let store = sqlite_builder()
            .with_events(EventLog::new())
            .open(&path)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    };
    let first = record();
    let taken = {
        let store = open().await;
        let mut events = store.events().await.unwrap();
        create(&store, &first).await;
        let taken = expect_event(&mut events, DELIVERY).await;
        assert_eq!(taken.handle, handle(&first));
        drop(events);
        store.pool().close().await;
        taken
    };

    let store = open().await;
    let mut events = store.events().await.unwrap();
    assert_eq!(
        expect_event(&mut events, DELIVERY).await,
        taken,
        "delivered again, not lost"
    );
    let second = record();
    create(&store, &second).await;
    assert_eq!(
        expect_event(&mut events, DELIVERY).await.handle,
        handle(&second)
    );
    // Asking for the next one (none comes) means the second is done, and saved.
    until_saved(&store, &mut events).await;
    drop(events);
    store.pool().close().await;

    let store = open().await;
    let third = record();
    create(&store, &third).await;
    let mut events = store.events().await.unwrap();
    assert_eq!(
        expect_event(&mut events, DELIVERY).await.handle,
        handle(&third),
        "a consumer starts after what its group is done with"
    );
}

/// Two groups (two stores on one pool) each get every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_gets_every_event() {
    let store = common::sqlite_memory_events(None).await;
    let audit_store = sqlite_builder()
        .with_events(EventLog::new().with_group("audit"))
        .build(store.pool().clone())
        .unwrap();
    let mut tether = store.events().await.unwrap();
    let mut audit = audit_store.events().await.unwrap();
    let sessions: Vec<Record> = (0..5).map(|_| record()).collect();
    for session in &sessions {
        create(&store, session).await;
    }
    let handles: Vec<SessionHandle> = sessions.iter().map(handle).collect();
    let seen = |events: Vec<SessionEvent>| events.iter().map(|e| e.handle).collect::<Vec<_>>();
    assert_eq!(seen(take(&mut tether, 5).await), handles);
    assert_eq!(seen(take(&mut audit, 5).await), handles);
    assert_eq!(
        rows(&store, "SELECT count(*) FROM tether_session_event_cursors").await,
        2
    );
}

/// One consumer of a group reads at a time among a store's clones: a second one waits, and
/// takes over when the first goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_consumer_of_a_group_waits_and_takes_over() {
    let store = common::sqlite_memory_events(None).await;
    let mut first = store.events().await.unwrap();
    let mut second = store.clone().events().await.unwrap();
    let session = record();
    create(&store, &session).await;
    let taken = expect_event(&mut first, DELIVERY).await;
    expect_quiet(&mut second, Duration::from_millis(1000)).await;
    drop(first);
    assert_eq!(expect_event(&mut second, DELIVERY).await, taken);
}

fn corrupt_column(error: &tether_core::Error) -> &'static str {
    let source = std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<tether_sql::Error>())
        .expect("the typed error is the source");
    match source {
        tether_sql::Error::CorruptEvent { column, .. } => column,
        other => panic!("not a corrupt event: {other:?}"),
    }
}

/// Rows of the events table that are not events this version writes are each reported once as
/// `Corrupt`, naming the column, and skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_event_rows_are_reported_once_and_skipped() {
    let store = common::sqlite_memory_events(None).await;
    let mut events = store.events().await.unwrap();
    let good = SessionHandle::of(&Id::random().unwrap());
    let rows = [
        ("kind", "'evicted_by_aliens'", "?1", "NULL", "NULL", "?2"),
        // Stored as the text '42' (the column's affinity).
        ("kind", "42", "?1", "NULL", "NULL", "?2"),
        ("handle", "'created'", "x'010203'", "NULL", "NULL", "?2"),
        (
            "handle",
            "'created'",
            "'text, not bytes'",
            "NULL",
            "NULL",
            "?2",
        ),
        (
            "principal",
            "'principal_set'",
            "?1",
            "char(97, 10, 98)",
            "NULL",
            "?2",
        ),
        ("from_handle", "'cycled'", "?1", "NULL", "NULL", "?2"),
        // (A negative time is older than any retention: trimmed before it is read.)
        (
            "occurred_at",
            "'created'",
            "?1",
            "NULL",
            "NULL",
            "'yesterday'",
        ),
    ];
    for (_, kind, handle, principal, from, at) in rows {
        sqlx::query(&format!(
            "INSERT INTO tether_session_events (kind, handle, principal, from_handle, occurred_at) \
             VALUES ({kind}, {handle}, {principal}, {from}, {at})"
        ))
        .bind(&good.as_bytes()[..])
        .bind(Timestamp::now().as_millis() as i64)
        .execute(store.pool())
        .await
        .unwrap();
    }
    let session = record();
    create(&store, &session).await;
    for (column, ..) in rows {
        let error = next_event(&mut events, DELIVERY)
            .await
            .expect("an item")
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{error:?}");
        assert_eq!(corrupt_column(&error), column);
    }
    assert_eq!(
        expect_event(&mut events, DELIVERY).await.handle,
        handle(&session)
    );
    until_saved(&store, &mut events).await;
    drop(events);
    let mut again = store.events().await.unwrap();
    expect_quiet(&mut again, Duration::from_millis(500)).await;
}

/// Events older than the retention are deleted in batches by `delete_expired` and by a running
/// consumer; event ids are never given again, even once every event was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_the_retention_are_deleted_in_batches() {
    let store = sqlite_builder()
        .with_sweep_batch(10)
        .with_events(EventLog::new().with_retention(Duration::from_secs(3600)))
        .in_memory()
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let old = |n: usize| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO tether_session_events (kind, handle, principal, occurred_at) \
             SELECT 'created', zeroblob(16), NULL, {} FROM n",
            Timestamp::now().as_millis() - 2 * 3600 * 1000
        )
    };
    sqlx::query(&old(25)).execute(store.pool()).await.unwrap();
    for _ in 0..3 {
        create(&store, &record()).await;
    }
    assert_eq!(
        rows(&store, "SELECT count(*) FROM tether_session_events").await,
        28
    );
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(
        rows(&store, "SELECT count(*) FROM tether_session_events").await,
        3,
        "25 old events deleted in batches of 10, the 3 recent ones kept"
    );

    sqlx::query(&old(5)).execute(store.pool()).await.unwrap();
    let mut events = store.events().await.unwrap();
    let deadline = Instant::now() + DELIVERY;
    while rows(&store, "SELECT count(*) FROM tether_session_events").await > 3 {
        assert!(Instant::now() < deadline, "a running consumer trims");
        let _ = next_event(&mut events, Duration::from_millis(200)).await;
    }

    // Every event gone: the next one still gets a new id, after the group's position.
    sqlx::query("DELETE FROM tether_session_events")
        .execute(store.pool())
        .await
        .unwrap();
    let last = record();
    create(&store, &last).await;
    assert_eq!(
        expect_event(&mut events, DELIVERY).await.handle,
        handle(&last)
    );
}

/// Without `with_events`: `migrate` makes no events tables, `events()` is `Unsupported`, and a
/// store without events writes no event even where the tables exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_events_nothing_is_written() {
    let plain = common::sqlite_memory().await;
    assert!(!plain.migration_sql().contains("session_events"));
    assert_eq!(
        rows(
            &plain,
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'tether_session_event%'"
        )
        .await,
        0
    );
    let error = plain.events().await.err().expect("unsupported");
    assert_eq!(error.kind(), ErrorKind::Unsupported);

    let fixture = common::sqlite_file_events(None).await;
    let without = sqlite_builder()
        .with_max_sessions_per_principal(NonZeroUsize::new(1))
        .open(fixture.dir.path().join("sessions.db"))
        .await
        .unwrap();
    let alice = Principal::new("alice").unwrap();
    create(&without, &record().with_principal(Some(alice.clone()))).await;
    create(&without, &record().with_principal(Some(alice.clone()))).await;
    let other = record();
    create(&without, &other).await;
    let mut bind = Changes::new();
    bind.bind(alice.clone());
    assert_eq!(
        without
            .apply(&other.id, &bind, &other.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(
        without
            .cycle(&other.id, &Id::random().unwrap())
            .await
            .unwrap(),
        Cycled::Moved
    );
    assert_eq!(without.revoke_all(&alice, None).await.unwrap(), 1);
    create(&without, &expired()).await;
    assert_eq!(without.delete_expired().await.unwrap(), 1);
    assert_eq!(
        rows(&fixture.store, "SELECT count(*) FROM tether_session_events").await,
        0
    );
}

/// Session rows written before the handle column (handle `NULL`) that expire are named from
/// their ids by the sweep, in its transaction, and reported with `SessionHandle::of` their id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_without_a_handle_are_reported_by_their_id() {
    let store = common::sqlite_memory_events(None).await;
    let mut events = store.events().await.unwrap();
    let ids: Vec<Id> = (0..20).map(|_| Id::random().unwrap()).collect();
    for id in &ids {
        sqlx::query(
            "INSERT INTO tether_sessions (id, created_at, expires_at, idle_timeout_ms) \
             VALUES (?1, 0, 1, 1000)",
        )
        .bind(id.to_string())
        .execute(store.pool())
        .await
        .unwrap();
    }
    assert_eq!(store.delete_expired().await.unwrap(), 20);
    let mut reported: Vec<SessionHandle> = take(&mut events, 20)
        .await
        .into_iter()
        .map(|event| {
            assert_eq!(event.kind, EventKind::Expired);
            event.handle
        })
        .collect();
    let mut expected: Vec<SessionHandle> = ids.iter().map(SessionHandle::of).collect();
    expected.sort();
    reported.sort();
    assert_eq!(reported, expected);
}

/// A caller that stops waiting for an event (a timeout, a `select!`) leaves no statement of the
/// consumer half done with a connection in hand: the store's writes go on at once, even in
/// memory, where the pool has one connection. The consumer's work runs in a task of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_given_up_holds_no_connection() {
    let store = sqlite_builder()
        .with_operation_timeout(Duration::from_secs(2))
        .with_events(EventLog::new())
        .in_memory()
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mut events = store.events().await.unwrap();
    let mut created = Vec::new();
    let mut seen = Vec::new();
    for n in 0..40u64 {
        // Given up at varying points of the consumer's reads, sweeps and saves.
        if let Some(item) = next_event(&mut events, Duration::from_millis(1 + n % 9)).await {
            seen.push(item.unwrap().handle);
        }
        let session = record();
        create(&store, &session).await;
        created.push(handle(&session));
    }
    while seen.len() < created.len() {
        seen.push(expect_event(&mut events, DELIVERY).await.handle);
    }
    assert_eq!(seen, created, "every event, in order, once");
}
