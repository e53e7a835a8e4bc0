//! Session events on PostgreSQL beyond the conformance suite: every end of a session reported
//! by the write that ends it, delivery at least once across a restart, every group getting
//! every event, one consumer of a group at a time, a transaction that commits late not skipped,
//! corrupt rows, retention, lost connections, and nothing written without events. Each test
//! works in a schema of its own.

mod common;

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{OnPostgres, expect_event, expect_quiet, next_event, postgres_url, postgres_with};
use tether_core::{
    Applied, Changes, Created, Cycled, ErrorKind, EventKind, EventStream, Expiry, Id, Principal,
    Record, Revoked, SessionEvent, SessionHandle, SessionStore, Timestamp,
};
use tether_sql::sqlx::{self, Connection as _};
use tether_sql::{EventLog, PostgresStore, PostgresStoreBuilder};

/// How long a test waits for an event that must come.
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

fn events_on() -> PostgresStoreBuilder {
    common::test_builder().with_events(EventLog::new())
}

/// A second store on the fixture's schema (another server, or the same one restarted).
async fn another(fixture: &OnPostgres, events: EventLog) -> PostgresStore {
    common::test_builder()
        .with_schema(&fixture.schema)
        .with_events(events)
        .connect(&postgres_url())
        .await
        .unwrap()
}

async fn count(fixture: &OnPostgres, sql: &str) -> i64 {
    let mut admin = fixture.admin().await;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    n
}

/// Asks `events` for its next event (none must come) until the group's saved position is the
/// newest event: the consumer is done with everything, and says so.
async fn until_saved(fixture: &OnPostgres, events: &mut EventStream) {
    let saved = "SELECT count(*) FROM tether_session_event_cursors \
                 WHERE (xid, id) = (SELECT xid, id FROM tether_session_events \
                 ORDER BY xid DESC, id DESC LIMIT 1)";
    let deadline = Instant::now() + DELIVERY;
    loop {
        expect_quiet(events, Duration::from_millis(100)).await;
        if count(fixture, saved).await == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the position is saved");
    }
}

/// Reads `n` events, failing on an error or a wait past [`DELIVERY`].
async fn take(events: &mut EventStream, n: usize) -> Vec<SessionEvent> {
    let mut taken = Vec::new();
    for _ in 0..n {
        taken.push(expect_event(events, DELIVERY).await);
    }
    taken
}

fn kinds(events: &[SessionEvent]) -> Vec<(EventKind, SessionHandle)> {
    events.iter().map(|e| (e.kind, e.handle)).collect()
}

/// Each write that ends a session reports it, in its statement, with the row's handle and
/// principal: a delete of a session past its deadline is `Expired` (nothing else would report
/// it), a create over an expired id reports the old session expired, `revoke_all` and the cap
/// report `Revoked` for each session they delete, the sweep `Expired`. Writes that end nothing
/// (a second delete, a touch, an apply that binds nobody) report nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_end_is_reported_by_the_write_that_ends_it() {
    let fixture = postgres_with(
        events_on().with_max_sessions_per_principal(NonZeroUsize::new(2)),
        &postgres_url(),
    )
    .await;
    let store = &fixture.store;
    let mut events = store.events().await.unwrap();
    let alice = Principal::new("alice").unwrap();

    let stale = expired();
    create(store, &stale).await;
    store.delete(&stale.id).await.unwrap();
    store.delete(&stale.id).await.unwrap();

    let taken_over = expired().with_principal(Some(alice.clone()));
    create(store, &taken_over).await;
    let mut fresh = record();
    fresh.id = taken_over.id;
    create(store, &fresh).await;

    let live = record();
    create(store, &live).await;
    assert_eq!(
        store.touch(&live.id, &live.expiry).await.unwrap(),
        Applied::Applied
    );
    let mut data_only = Changes::new();
    data_only.insert("k", Bytes::from_static(b"w"));
    assert_eq!(
        store
            .apply(&live.id, &data_only, &live.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );

    let logins: Vec<Record> = (0..3)
        .map(|n| {
            let mut session = record().with_principal(Some(alice.clone()));
            session.created_at = Timestamp::from_millis(session.created_at.as_millis() + n);
            session
        })
        .collect();
    for login in &logins {
        create(store, login).await;
    }
    let moved = Id::random().unwrap();
    assert_eq!(
        store.cycle(&logins[2].id, &moved).await.unwrap(),
        Cycled::Moved
    );
    assert_eq!(store.revoke_all(&alice, None).await.unwrap(), 2);
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&moved))
            .await
            .unwrap(),
        Revoked::NotFound
    );

    let swept = expired().with_principal(Some(alice.clone()));
    create(store, &swept).await;
    assert_eq!(store.delete_expired().await.unwrap(), 1);

    let reported = take(&mut events, 15).await;
    let expected = vec![
        (EventKind::Created, handle(&stale)),
        (EventKind::Expired, handle(&stale)),
        (EventKind::Created, handle(&taken_over)),
        (EventKind::Expired, handle(&taken_over)),
        (EventKind::Created, handle(&fresh)),
        (EventKind::Created, handle(&live)),
        (EventKind::Created, handle(&logins[0])),
        (EventKind::Created, handle(&logins[1])),
        (EventKind::Created, handle(&logins[2])),
        (EventKind::Revoked, handle(&logins[0])),
        (
            EventKind::Cycled {
                from: handle(&logins[2]),
            },
            SessionHandle::of(&moved),
        ),
        (EventKind::Revoked, handle(&logins[1])),
        (EventKind::Revoked, SessionHandle::of(&moved)),
        (EventKind::Created, handle(&swept)),
        (EventKind::Expired, handle(&swept)),
    ];
    // The parts of one statement come in either order: the third login's create and the
    // revocation of the oldest by the cap, and the two revocations of `revoke_all`.
    let sorted = |mut v: Vec<(EventKind, SessionHandle)>| {
        for range in [8..10, 11..13] {
            v[range].sort_by_key(|(kind, handle)| (kind.name(), *handle));
        }
        v
    };
    assert_eq!(sorted(kinds(&reported)), sorted(expected));
    for event in &reported[2..4] {
        assert_eq!(event.principal, Some(alice.clone()), "{event:?}");
    }
    for event in &reported[6..] {
        assert_eq!(event.principal, Some(alice.clone()), "{event:?}");
    }
    assert_eq!(reported[0].principal, None);
    expect_quiet(&mut events, Duration::from_millis(300)).await;
}

/// An event handed to a consumer that is dropped before it asks for the next one (a process
/// that dies while handling it) is delivered again to the group's next consumer, here on
/// another pool (a restarted server). Once a consumer asked for the next event, the group's
/// position is saved and a later consumer starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_being_handled_when_the_consumer_dies_comes_again() {
    let fixture = postgres_with(events_on(), &postgres_url()).await;
    let store = &fixture.store;
    let mut dying = store.events().await.unwrap();
    let first = record();
    create(store, &first).await;
    let taken = expect_event(&mut dying, DELIVERY).await;
    assert_eq!(
        (taken.kind, taken.handle),
        (EventKind::Created, handle(&first))
    );
    drop(dying);

    let restarted = another(&fixture, EventLog::new()).await;
    let mut events = restarted.events().await.unwrap();
    let again = expect_event(&mut events, DELIVERY).await;
    assert_eq!(again, taken, "delivered again, not lost");
    let second = record();
    create(&restarted, &second).await;
    assert_eq!(
        expect_event(&mut events, DELIVERY).await.handle,
        handle(&second)
    );
    // Asking for the next one (none comes) means the second is done, and saved.
    until_saved(&fixture, &mut events).await;
    drop(events);

    let third = record();
    create(store, &third).await;
    let mut later = store.events().await.unwrap();
    assert_eq!(
        expect_event(&mut later, DELIVERY).await.handle,
        handle(&third),
        "a consumer starts after what its group is done with"
    );
    restarted.pool().close().await;
}

/// Two groups each get every event, each from its own position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_gets_every_event() {
    let fixture = postgres_with(events_on(), &postgres_url()).await;
    let store = &fixture.store;
    let audit_store = another(&fixture, EventLog::new().with_group("audit")).await;
    let mut tether = store.events().await.unwrap();
    let mut audit = audit_store.events().await.unwrap();
    let sessions: Vec<Record> = (0..5).map(|_| record()).collect();
    for session in &sessions {
        create(store, session).await;
    }
    let handles: Vec<SessionHandle> = sessions.iter().map(handle).collect();
    let seen = |events: Vec<SessionEvent>| events.iter().map(|e| e.handle).collect::<Vec<_>>();
    assert_eq!(seen(take(&mut tether, 5).await), handles);
    assert_eq!(seen(take(&mut audit, 5).await), handles);
    assert_eq!(
        count(
            &fixture,
            "SELECT count(*) FROM tether_session_event_cursors"
        )
        .await,
        2
    );
    audit_store.pool().close().await;
}

/// One consumer of a group reads at a time: a second one waits, and takes over (from the
/// group's saved position) when the first goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_consumer_of_a_group_waits_and_takes_over() {
    let fixture = postgres_with(events_on(), &postgres_url()).await;
    let store = &fixture.store;
    let mut first = store.events().await.unwrap();
    let mut second = store.events().await.unwrap();
    let session = record();
    create(store, &session).await;
    let taken = expect_event(&mut first, DELIVERY).await;
    expect_quiet(&mut second, Duration::from_millis(1500)).await;
    drop(first);
    let again = expect_event(&mut second, DELIVERY).await;
    assert_eq!(again, taken);
}

/// PostgreSQL commits are not in id order: a transaction that took an event id and stays open
/// while later events commit must not be skipped. The consumer holds the later events back
/// until it ends (they belong to newer transactions), then delivers all of them, the late one
/// first; a rolled back transaction's event is never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_commits_late_is_not_skipped() {
    let fixture = postgres_with(events_on(), &postgres_url()).await;
    let store = &fixture.store;
    let mut events = store.events().await.unwrap();
    let before = record();
    create(store, &before).await;
    assert_eq!(
        expect_event(&mut events, DELIVERY).await.handle,
        handle(&before)
    );

    let insert = "INSERT INTO tether_session_events (kind, handle, principal, occurred_at) \
                  VALUES ('created', $1, NULL, $2)";
    let late = Id::random().unwrap();
    let mut admin = fixture.admin().await;
    let mut open = admin.begin().await.unwrap();
    sqlx::query(insert)
        .bind(&SessionHandle::of(&late).as_bytes()[..])
        .bind(Timestamp::now().as_millis() as i64)
        .execute(&mut *open)
        .await
        .unwrap();

    let after: Vec<Record> = (0..3).map(|_| record()).collect();
    for session in &after {
        create(store, session).await;
    }
    // The later events are committed, with higher ids than the open transaction's: a reader
    // going by id would hand them out now and move past the late one for good.
    let ids: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, handle FROM tether_session_events ORDER BY id")
            .fetch_all(&mut *open)
            .await
            .unwrap();
    let late_id = ids
        .iter()
        .find(|(_, h)| h[..] == SessionHandle::of(&late).as_bytes()[..])
        .map(|(id, _)| *id)
        .unwrap();
    assert!(
        ids.iter()
            .filter(|(_, h)| after.iter().any(|s| h[..] == handle(s).as_bytes()[..]))
            .all(|(id, _)| *id > late_id),
        "the late event has the lowest id: {ids:?}"
    );
    expect_quiet(&mut events, Duration::from_millis(800)).await;

    open.commit().await.unwrap();
    let delivered: Vec<SessionHandle> = take(&mut events, 4)
        .await
        .iter()
        .map(|e| e.handle)
        .collect();
    let mut expected = vec![SessionHandle::of(&late)];
    expected.extend(after.iter().map(handle));
    assert_eq!(delivered, expected, "nothing skipped, the late one first");

    let mut rolled_back = admin.begin().await.unwrap();
    sqlx::query(insert)
        .bind(&[7u8; 16][..])
        .bind(Timestamp::now().as_millis() as i64)
        .execute(&mut *rolled_back)
        .await
        .unwrap();
    let last = record();
    create(store, &last).await;
    rolled_back.rollback().await.unwrap();
    assert_eq!(
        expect_event(&mut events, DELIVERY).await.handle,
        handle(&last)
    );
    expect_quiet(&mut events, Duration::from_millis(300)).await;
    admin.close().await.unwrap();
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
/// `Corrupt`, naming the column, and skipped: the stream goes on with the next event, and the
/// group's next consumer does not see them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_event_rows_are_reported_once_and_skipped() {
    let fixture = postgres_with(events_on(), &postgres_url()).await;
    let store = &fixture.store;
    let mut events = store.events().await.unwrap();
    let mut admin = fixture.admin().await;
    let good = SessionHandle::of(&Id::random().unwrap());
    let rows = [
        ("kind", "'evicted_by_aliens'", "$1", "NULL", "NULL", "$2"),
        (
            "handle",
            "'created'",
            "'\\x010203'::bytea",
            "NULL",
            "NULL",
            "$2",
        ),
        ("handle", "'deleted'", "NULL", "NULL", "NULL", "$2"),
        (
            "principal",
            "'principal_set'",
            "$1",
            "E'a\\nb'",
            "NULL",
            "$2",
        ),
        ("from_handle", "'cycled'", "$1", "NULL", "NULL", "$2"),
    ];
    for (_, kind, handle, principal, from, at) in rows {
        sqlx::query(&format!(
            "INSERT INTO tether_session_events (kind, handle, principal, from_handle, occurred_at) \
             VALUES ({kind}, {handle}, {principal}, {from}, {at})"
        ))
        .bind(&good.as_bytes()[..])
        .bind(Timestamp::now().as_millis() as i64)
        .execute(&mut admin)
        .await
        .unwrap();
    }
    let session = record();
    create(store, &session).await;
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
    until_saved(&fixture, &mut events).await;
    drop(events);
    let mut again = store.events().await.unwrap();
    expect_quiet(&mut again, Duration::from_millis(500)).await;
    admin.close().await.unwrap();
}

/// Events older than the retention are deleted, in batches, by `delete_expired` (and so the
/// sweeper) and by a running consumer; younger ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_the_retention_are_deleted_in_batches() {
    let fixture = postgres_with(
        common::test_builder()
            .with_sweep_batch(10)
            .with_events(EventLog::new().with_retention(Duration::from_secs(3600))),
        &postgres_url(),
    )
    .await;
    let store = &fixture.store;
    let old = |n: usize| {
        format!(
            "INSERT INTO tether_session_events (kind, handle, principal, occurred_at) \
             SELECT 'created', '\\x00000000000000000000000000000000'::bytea, NULL, {} \
             FROM generate_series(1, {n})",
            Timestamp::now().as_millis() - 2 * 3600 * 1000
        )
    };
    let mut admin = fixture.admin().await;
    sqlx::query(&old(25)).execute(&mut admin).await.unwrap();
    for _ in 0..3 {
        create(store, &record()).await;
    }
    assert_eq!(
        count(&fixture, "SELECT count(*) FROM tether_session_events").await,
        28
    );
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(
        count(&fixture, "SELECT count(*) FROM tether_session_events").await,
        3,
        "25 old events deleted in batches of 10, the 3 recent ones kept"
    );

    sqlx::query(&old(5)).execute(&mut admin).await.unwrap();
    let mut events = store.events().await.unwrap();
    let deadline = Instant::now() + DELIVERY;
    while count(&fixture, "SELECT count(*) FROM tether_session_events").await > 3 {
        assert!(Instant::now() < deadline, "a running consumer trims");
        let _ = next_event(&mut events, Duration::from_millis(200)).await;
    }
    admin.close().await.unwrap();
}

/// A consumer whose connection the server kills (`pg_terminate_backend`, as for a restart)
/// yields a transient error, reconnects by itself, and delivers what was written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_recovers_from_lost_connections() {
    let app_name = common::unique_schema();
    let url = format!("{}?application_name={app_name}", postgres_url());
    let fixture = postgres_with(
        PostgresStore::builder()
            .with_operation_timeout(Duration::from_secs(2))
            .with_events(EventLog::new()),
        &url,
    )
    .await;
    let store = &fixture.store;
    let mut events = store.events().await.unwrap();
    let before = record();
    create(store, &before).await;
    assert_eq!(
        expect_event(&mut events, DELIVERY).await.handle,
        handle(&before)
    );

    let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) t",
    )
    .bind(&app_name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    assert!(
        killed >= 2,
        "the pool's and the consumer's connections ({killed})"
    );

    // Writes on killed pool connections fail transiently; the pool replaces them.
    let after = record();
    let started = Instant::now();
    loop {
        match store.create(&after).await {
            Ok(created) => {
                assert_eq!(created, Created::Created);
                break;
            }
            Err(error) => assert!(error.is_transient(), "{error:?}"),
        }
        assert!(started.elapsed() < DELIVERY, "the pool recovers");
    }

    let mut errors = 0;
    let deadline = Instant::now() + DELIVERY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(&mut events, left).await {
            Some(Ok(event)) if event.handle == handle(&after) => break,
            // The event handed out before the outage may come again.
            Some(Ok(event)) => assert_eq!(event.handle, handle(&before)),
            Some(Err(error)) => {
                assert!(error.is_transient(), "{error:?}");
                errors += 1;
            }
            None => panic!("no event after the outage within {DELIVERY:?}"),
        }
    }
    assert!(errors >= 1, "the lost connection was reported");
}

/// Without `with_events`: `migrate` makes no events tables, `events()` is `Unsupported`, and
/// the writes of a store without events write no event even where the tables exist (another
/// store of the same database keeps events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_events_nothing_is_written() {
    let plain = common::postgres().await;
    assert!(!plain.store.migration_sql().contains("session_events"));
    assert_eq!(
        count(
            &plain,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tether_session_event%' \
             AND schemaname = current_schema()"
        )
        .await,
        0
    );
    let error = plain.store.events().await.err().expect("unsupported");
    assert_eq!(error.kind(), ErrorKind::Unsupported);

    let fixture = postgres_with(events_on(), &postgres_url()).await;
    assert!(fixture.store.migration_sql().contains("pg_current_xact_id"));
    let without = common::test_builder()
        .with_schema(&fixture.schema)
        .with_max_sessions_per_principal(NonZeroUsize::new(1))
        .connect(&postgres_url())
        .await
        .unwrap();
    let alice = Principal::new("alice").unwrap();
    let session = record().with_principal(Some(alice.clone()));
    create(&without, &session).await;
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
        count(&fixture, "SELECT count(*) FROM tether_session_events").await,
        0
    );
    without.pool().close().await;
}

/// A session row written before the handle column (its handle `NULL`) that expires is
/// reported with the handle of its id, computed by the sweep statement as `SessionHandle::of`
/// does; a row whose id is no session id is reported corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_without_a_handle_are_reported_by_their_id() {
    let fixture = postgres_with(events_on(), &postgres_url()).await;
    let store = &fixture.store;
    let mut events = store.events().await.unwrap();
    let mut admin = fixture.admin().await;
    let ids: Vec<Id> = (0..20).map(|_| Id::random().unwrap()).collect();
    for id in &ids {
        sqlx::query(
            "INSERT INTO tether_sessions (id, created_at, expires_at, idle_timeout_ms) \
             VALUES ($1, 0, 1, 1000)",
        )
        .bind(id.to_string())
        .execute(&mut admin)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO tether_sessions (id, created_at, expires_at, idle_timeout_ms) \
         VALUES ('not a session id', 0, 1, 1000)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    assert_eq!(store.delete_expired().await.unwrap(), 21);
    let mut reported = Vec::new();
    let mut corrupt = 0;
    for _ in 0..21 {
        match next_event(&mut events, DELIVERY).await.expect("an item") {
            Ok(event) => {
                assert_eq!(event.kind, EventKind::Expired);
                reported.push(event.handle);
            }
            Err(error) => {
                assert_eq!(corrupt_column(&error), "handle");
                corrupt += 1;
            }
        }
    }
    assert_eq!(corrupt, 1);
    let mut expected: Vec<SessionHandle> = ids.iter().map(SessionHandle::of).collect();
    expected.sort();
    reported.sort();
    assert_eq!(reported, expected);
    admin.close().await.unwrap();
}
