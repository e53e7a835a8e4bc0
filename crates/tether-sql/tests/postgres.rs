//! PostgreSQL beyond the conformance suite: concurrency on one session, corrupt rows, lost
//! connections, read-only transactions, the sweeper, names and migrations, the principal
//! columns. Each test works in a schema of its own, dropped at its end.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{OnPostgres, postgres, postgres_url, postgres_with};
use tether_core::{
    Applied, Changes, Codec, Created, Cycled, ErrorKind, Expiry, Id, KeyUpdate, KeyUpdated,
    Principal, Record, Renewal, Revoked, Seen, SessionHandle, SessionStore, Timestamp,
};
use tether_sql::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tether_sql::sqlx::{self, Connection as _};
use tether_sql::{PostgresStore, PostgresStoreBuilder};
use tracing_subscriber::layer::SubscriberExt as _;

const HOUR: Duration = Duration::from_secs(3600);

fn record(data: &[(&str, &[u8])]) -> Record {
    let now = Timestamp::now();
    let data = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Bytes::copy_from_slice(v)))
        .collect();
    Record::new(Id::random().unwrap(), Expiry::new(now, HOUR, None), now).with_data(data)
}

async fn create(store: &dyn SessionStore, record: &Record) {
    assert_eq!(store.create(record).await.unwrap(), Created::Created);
}

async fn count(fixture: &OnPostgres, sql: &str) -> i64 {
    let mut admin = fixture.admin().await;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    n
}

const TASKS: usize = 8;
const ROUNDS: usize = 50;

/// Eight tasks each apply 50 deltas to one session: set a key of their own, remove their
/// previous one, bump their counter, set one key they all share, and touch now and then. Two
/// more read it 50 times each with `load_renewing` at threshold 0, so their reads renew it
/// too, taking the session row's lock in the same statement. Every apply and read succeeds (no
/// deadlock, no serialization error), the whole run is bounded, and the end state holds each
/// task's last writes and none of its removed keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_one_session_lose_nothing_and_never_deadlock() {
    let fixture = postgres().await;
    let store: Arc<dyn SessionStore> = Arc::new(fixture.store.clone());
    let session = record(&[("untouched", b"yes")]);
    create(&*store, &session).await;
    let codec = Codec::default();

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        let (id, expiry) = (session.id, session.expiry);
        tasks.spawn(async move {
            for round in 0..ROUNDS {
                let mut c = Changes::new();
                c.insert(format!("t{task}:{round}"), Bytes::from_static(b"1"));
                if round > 0 {
                    c.remove(format!("t{task}:{}", round - 1));
                }
                c.insert(format!("counter-{task}"), codec.encode(&round).unwrap());
                c.insert("shared", codec.encode(&(task, round)).unwrap());
                let expiry = expiry.renewed(Timestamp::now());
                assert_eq!(
                    store.apply(&id, &c, &expiry).await.unwrap(),
                    Applied::Applied
                );
                if round % 10 == 0 {
                    assert_eq!(store.touch(&id, &expiry).await.unwrap(), Applied::Applied);
                }
            }
        });
    }
    let renewed = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (store, renewed) = (Arc::clone(&store), Arc::clone(&renewed));
        let id = session.id;
        tasks.spawn(async move {
            for _ in 0..ROUNDS {
                let renewal = Renewal::new(Timestamp::now(), 0.0);
                let loaded = store.load_renewing(&id, &renewal).await.unwrap();
                let loaded = loaded.expect("the session stays live");
                assert_eq!(&loaded.record.data["untouched"][..], b"yes");
                if loaded.renewed {
                    renewed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    let all = async {
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect(
            "400 applies and 100 renewing reads of one session finish in bounded time (a \
             deadlock would not)",
        );
    assert!(
        renewed.load(Ordering::Relaxed) > 0,
        "some reads renewed, taking the row's lock among the applies"
    );

    let data = store.load(&session.id).await.unwrap().unwrap().data;
    for task in 0..TASKS {
        assert!(
            data.contains_key(&format!("t{task}:{}", ROUNDS - 1)),
            "task {task}'s last key"
        );
        for round in 0..ROUNDS - 1 {
            assert!(
                !data.contains_key(&format!("t{task}:{round}")),
                "task {task}'s removed key {round} came back"
            );
        }
        let counter: usize = codec.decode(&data[&format!("counter-{task}")]).unwrap();
        assert_eq!(counter, ROUNDS - 1, "task {task}'s last counter wins");
    }
    let (_, last_round): (usize, usize) = codec.decode(&data["shared"]).unwrap();
    assert_eq!(
        last_round,
        ROUNDS - 1,
        "the shared key holds some task's last write"
    );
    assert_eq!(&data["untouched"][..], b"yes");
    assert_eq!(data.len(), TASKS * 2 + 2);
}

/// Swaps of one key from one value at the same moment: in each round exactly one lands, and
/// every other reports the value it wrote (not the expected one, which the losers' snapshots
/// may still hold). Swaps from absent racing a delete of their session: each is `Updated` or
/// `Missing`, never an error (no key row is written for a session being deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_swaps_of_one_key_land_once() {
    let fixture = postgres().await;
    let store = Arc::new(fixture.store.clone());
    let session = record(&[]);
    create(&*store, &session).await;
    let swap = |expected: Option<Bytes>, new: Bytes| KeyUpdate::Swap {
        expected,
        new: Some(new),
    };

    let mut current: Option<Bytes> = None;
    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let update = swap(current.clone(), Bytes::from(format!("{round}:{task}")));
            tasks.spawn(async move {
                barrier.wait().await;
                store.update_key(&session.id, "k", &update).await.unwrap()
            });
        }
        let outcomes = tasks.join_all().await;
        let landed: Vec<&Option<Bytes>> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                KeyUpdated::Updated(new) => Some(new),
                _ => None,
            })
            .collect();
        assert_eq!(landed.len(), 1, "round {round}: {outcomes:?}");
        let winner = landed[0].clone();
        for outcome in &outcomes {
            assert!(
                matches!(outcome, KeyUpdated::Updated(_))
                    || *outcome == KeyUpdated::Conflict(winner.clone()),
                "round {round}: {outcome:?}, {winner:?} landed"
            );
        }
        current = winner;
    }
    let data = store.load(&session.id).await.unwrap().unwrap().data;
    assert_eq!(data.get("k"), current.as_ref());

    for _ in 0..ROUNDS / 5 {
        let session = record(&[]);
        create(&*store, &session).await;
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let store = Arc::clone(&store);
            let update = swap(None, Bytes::from_static(b"1"));
            tasks.spawn(async move {
                store
                    .update_key(&session.id, &format!("k{task}"), &update)
                    .await
                    .unwrap()
            });
        }
        store.delete(&session.id).await.unwrap();
        for outcome in tasks.join_all().await {
            assert!(
                matches!(outcome, KeyUpdated::Updated(_) | KeyUpdated::Missing),
                "{outcome:?}"
            );
        }
        assert!(store.load(&session.id).await.unwrap().is_none());
    }
    let orphans = count(&fixture, "SELECT count(*) FROM tether_session_keys").await;
    assert_eq!(orphans, 1, "only the first session's key");
}

/// Increments of one key from two stores (two servers, whose increments take no turns with
/// each other's): every one lands, its swaps retried from the value a conflict reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_servers_lose_nothing() {
    let fixture = postgres().await;
    let other = common::test_builder()
        .with_schema(&fixture.schema)
        .connect(&postgres_url())
        .await
        .unwrap();
    let session = record(&[]);
    create(&fixture.store, &session).await;
    let codec = Codec::default();
    let mut tasks = tokio::task::JoinSet::new();
    for store in [fixture.store.clone(), other] {
        for _ in 0..TASKS / 2 {
            let store = store.clone();
            tasks.spawn(async move {
                let add = KeyUpdate::Increment { by: 1, codec };
                for _ in 0..ROUNDS {
                    let updated = store.update_key(&session.id, "n", &add).await.unwrap();
                    assert!(
                        matches!(updated, KeyUpdated::Updated(Some(_))),
                        "{updated:?}"
                    );
                }
            });
        }
    }
    tasks.join_all().await;
    let data = fixture.store.load(&session.id).await.unwrap().unwrap().data;
    assert_eq!(
        codec.decode::<usize>(&data["n"]).unwrap(),
        TASKS / 2 * 2 * ROUNDS
    );
}

/// Rows edited by hand into what no write produces: each load is `Corrupt` with the typed
/// error naming the column, logged; other sessions are unaffected, and the corrupt session can
/// still be deleted. A deadline in the far past is just an expired session.
#[tokio::test]
async fn corrupt_rows_are_typed_errors() {
    let fixture = postgres().await;
    let store = &fixture.store;
    let healthy = record(&[("k", b"v")]);
    create(store, &healthy).await;
    let far_future = Timestamp::now().as_millis() + 100 * 365 * 24 * 3600 * 1000;
    let cases = [
        (
            "created_at",
            "UPDATE tether_sessions SET created_at = -1".to_owned(),
        ),
        (
            "idle_timeout_ms",
            "UPDATE tether_sessions SET idle_timeout_ms = -5".to_owned(),
        ),
        (
            "expires_at",
            "UPDATE tether_sessions SET absolute_deadline = expires_at - 1".to_owned(),
        ),
        (
            "expires_at",
            format!("UPDATE tether_sessions SET expires_at = {far_future}"),
        ),
        (
            "key",
            "UPDATE tether_session_keys SET key = '\\xff'::bytea".to_owned(),
        ),
    ];
    let mut admin = fixture.admin().await;
    for (column, edit) in cases {
        let victim = record(&[("n", b"\x01")]);
        create(store, &victim).await;
        let edit = format!(
            "{edit} WHERE {} = $1",
            if edit.contains("session_keys") {
                "session_id"
            } else {
                "id"
            }
        );
        let edited = sqlx::query(&edit)
            .bind(victim.id.to_string())
            .execute(&mut admin)
            .await
            .unwrap();
        assert_eq!(edited.rows_affected(), 1, "{edit}");

        let error = store.load(&victim.id).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{edit}: {error:?}");
        assert!(!error.is_transient());
        let source = std::error::Error::source(&error)
            .and_then(|s| s.downcast_ref::<tether_sql::Error>())
            .expect("the typed error is the source");
        assert!(
            matches!(source, tether_sql::Error::CorruptRow { column: c, .. } if *c == column),
            "{edit}: {source:?}"
        );
        assert!(store.load(&healthy.id).await.unwrap().is_some());
        store.delete(&victim.id).await.unwrap();
        assert!(store.load(&victim.id).await.unwrap().is_none());
    }

    // Far in the past: expired, so absent, and never renewed.
    let old = record(&[]);
    create(store, &old).await;
    sqlx::query("UPDATE tether_sessions SET expires_at = 5 WHERE id = $1")
        .bind(old.id.to_string())
        .execute(&mut admin)
        .await
        .unwrap();
    assert!(store.load(&old.id).await.unwrap().is_none());
    let renewed = Expiry::new(Timestamp::now(), HOUR, None);
    assert_eq!(
        store.touch(&old.id, &renewed).await.unwrap(),
        Applied::Missing
    );
    admin.close().await.unwrap();
}

/// Through the session layer, a corrupt session is no session: the request is answered 200
/// with a new session, not a 5xx.
#[tokio::test]
async fn a_corrupt_session_is_a_new_session_for_the_layer() {
    let fixture = postgres().await;
    let app = common::counter_app(fixture.store.clone());
    let (status, body, cookie) = common::incr(&app, None).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "1"));
    let cookie = cookie.expect("a session cookie");
    assert_eq!(common::incr(&app, Some(&cookie)).await.1, "2");

    let id = common::cookie_id(&cookie);
    let mut admin = fixture.admin().await;
    sqlx::query("UPDATE tether_sessions SET created_at = -1 WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (status, body, new_cookie) = common::incr(&app, Some(&cookie)).await;
    assert_eq!(status.as_u16(), 200, "a corrupt session is not a 5xx");
    assert_eq!(body, "1", "a corrupt session counts as absent");
    assert_ne!(new_cookie.as_deref(), Some(cookie.as_str()), "a new id");
}

/// The connections of the store's pool are killed by the server (`pg_terminate_backend`) while
/// requests run: the requests that hit a dead connection get a transient error (a 503), the
/// pool reconnects by itself, every later request succeeds, and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_fail_transiently_then_recover() {
    const MAX_CONNECTIONS: usize = 4;
    let app_name = common::unique_schema();
    let url = format!("{}?application_name={app_name}", postgres_url());
    let builder = PostgresStore::builder()
        .with_max_connections(MAX_CONNECTIONS as u32)
        .with_operation_timeout(Duration::from_secs(2));
    let fixture = postgres_with(builder, &url).await;
    let store: Arc<dyn SessionStore> = Arc::new(fixture.store.clone());
    let session = record(&[]);
    create(&*store, &session).await;

    let start = Instant::now();
    let kills_at = [Duration::from_millis(300), Duration::from_millis(900)];
    let run_for = Duration::from_millis(2_000);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..4 {
        let store = Arc::clone(&store);
        let (id, expiry) = (session.id, session.expiry);
        tasks.spawn(async move {
            let mut acknowledged = Vec::new();
            let mut outcomes = Vec::new();
            for round in 0..2_000 {
                if start.elapsed() > run_for {
                    break;
                }
                let key = format!("t{task}:{round}");
                let mut c = Changes::new();
                c.insert(key.clone(), Bytes::from_static(b"1"));
                match store.apply(&id, &c, &expiry).await {
                    Ok(Applied::Applied) => {
                        acknowledged.push(key);
                        outcomes.push(Ok(()));
                    }
                    Ok(Applied::Missing) => panic!("the session exists throughout"),
                    Err(error) => outcomes.push(Err(error)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acknowledged, outcomes)
        });
    }

    let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
    let mut killed = 0;
    for at in kills_at {
        tokio::time::sleep(at.saturating_sub(start.elapsed())).await;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) t",
        )
        .bind(&app_name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        killed += n;
    }
    admin.close().await.unwrap();
    assert!(
        killed >= 2,
        "the pool's connections were found and killed ({killed})"
    );

    let mut acknowledged = Vec::new();
    let mut failures = 0;
    while let Some(joined) = tasks.join_next().await {
        let (keys, outcomes) = joined.unwrap();
        acknowledged.extend(keys);
        for error in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert!(
                error.is_transient(),
                "a lost connection is transient: {error:?}"
            );
            failures += 1;
        }
    }
    assert!(
        failures >= 1,
        "killed connections fail the requests on them"
    );
    // Without a test before acquire, a killed connection that sat idle in the pool fails the
    // one request that next takes it, however late that is; so each killed connection costs at
    // most one request, and once the pool has been cycled through every request succeeds.
    assert!(
        failures <= killed,
        "{failures} failures for {killed} killed connections"
    );
    let mut probe = Vec::new();
    for round in 0..(MAX_CONNECTIONS + 5) {
        let mut c = Changes::new();
        let key = format!("probe:{round}");
        c.insert(key.clone(), Bytes::from_static(b"1"));
        let outcome = store.apply(&session.id, &c, &session.expiry).await;
        if matches!(outcome, Ok(Applied::Applied)) {
            acknowledged.push(key);
        }
        probe.push(outcome.map(|_| ()));
    }
    let stale = probe.iter().filter(|o| o.is_err()).count();
    assert!(
        stale as i64 <= killed - failures,
        "only connections killed and not yet used fail afterwards: {probe:?}"
    );
    assert!(
        probe[MAX_CONNECTIONS..].iter().all(Result::is_ok),
        "the store recovers without a restart: {probe:?}"
    );
    let data = store.load(&session.id).await.unwrap().unwrap().data;
    let lost = acknowledged
        .iter()
        .filter(|k| !data.contains_key(*k))
        .count();
    assert_eq!(lost, 0, "acknowledged writes lost");
    println!(
        "killed {killed} connections; {failures} transient failures; {} acknowledged writes, 0 lost",
        acknowledged.len()
    );
}

/// Through the layer: while the server is unreachable the request is a 503; the same app
/// answers 200 once it is back. Here "unreachable" is a pool pointed at a closed port.
#[tokio::test]
async fn an_unreachable_server_is_a_503() {
    let options: PgConnectOptions = "postgres://postgres@127.0.0.1:1/test".parse().unwrap();
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(options);
    let store = PostgresStore::builder()
        .with_operation_timeout(Duration::from_secs(1))
        .build(pool)
        .unwrap();
    let started = Instant::now();
    let error = store.load(&Id::random().unwrap()).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the timeouts"
    );
    let app = common::counter_app(store);
    assert_eq!(common::incr(&app, None).await.0.as_u16(), 503);
}

/// A read-only transaction (a standby, a demoted primary): reads work, writes are transient
/// errors.
#[tokio::test]
async fn a_read_only_transaction_is_transient() {
    let fixture = postgres().await;
    let session = record(&[("k", b"v")]);
    create(&fixture.store, &session).await;
    let options: PgConnectOptions = postgres_url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.options([("default_transaction_read_only", "on")]))
        .await
        .unwrap();
    let read_only = PostgresStore::builder()
        .with_schema(&fixture.schema)
        .build(pool)
        .unwrap();
    assert!(read_only.load(&session.id).await.unwrap().is_some());
    let mut c = Changes::new();
    c.insert("k", Bytes::from_static(b"w"));
    let error = read_only
        .apply(&session.id, &c, &session.expiry)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
    let error = read_only.create(&record(&[])).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(
        &fixture.store.load(&session.id).await.unwrap().unwrap().data["k"][..],
        b"v"
    );
}

fn expired_record(n: u8) -> Record {
    let past = Timestamp::from_millis(Timestamp::now().as_millis() - 10_000);
    Record::new(
        Id::random().unwrap(),
        Expiry::new(past, Duration::from_secs(1), None),
        past,
    )
    .with_data(HashMap::from([("n".to_owned(), Bytes::from(vec![n]))]))
}

/// `delete_expired` removes expired sessions and their keys in batches, and leaves live ones;
/// the background sweeper does the same until it is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_deletes_expired_sessions_in_batches() {
    let fixture = postgres_with(
        PostgresStore::builder().with_sweep_batch(10),
        &postgres_url(),
    )
    .await;
    let store = &fixture.store;
    for n in 0..35 {
        create(store, &expired_record(n)).await;
    }
    let live = record(&[("k", b"v")]);
    create(store, &live).await;
    assert_eq!(store.delete_expired().await.unwrap(), 35);
    assert_eq!(
        count(&fixture, "SELECT count(*) FROM tether_sessions").await,
        1
    );
    assert_eq!(
        count(&fixture, "SELECT count(*) FROM tether_session_keys").await,
        1
    );
    assert_eq!(store.delete_expired().await.unwrap(), 0);

    for n in 0..5 {
        create(store, &expired_record(n)).await;
    }
    let sweeper = store.spawn_sweeper(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&fixture, "SELECT count(*) FROM tether_sessions").await > 1 {
        assert!(Instant::now() < deadline, "the sweeper deletes within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!sweeper.is_finished());
    sweeper.stop().await;
    assert!(store.load(&live.id).await.unwrap().is_some());
}

/// `migrate` may run on several servers at once and again on every start; the schema and the
/// prefix name the tables; names that are not plain identifiers are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_names_and_prefixes() {
    let fixture = postgres_with(
        PostgresStore::builder().with_table_prefix("app_"),
        &postgres_url(),
    )
    .await;
    let mut migrations = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = fixture.store.clone();
        migrations.spawn(async move { store.migrate().await });
    }
    while let Some(migrated) = migrations.join_next().await {
        migrated.unwrap().unwrap();
    }
    let tables = count(
        &fixture,
        &format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}' \
             AND table_name IN ('app_sessions', 'app_session_keys')",
            fixture.schema
        ),
    )
    .await;
    assert_eq!(tables, 2);
    assert_eq!(
        fixture.store.sessions_table(),
        format!("\"{}\".\"app_sessions\"", fixture.schema)
    );
    assert!(fixture.store.migration_sql().contains("ON DELETE CASCADE"));
    let session = record(&[("k", b"v")]);
    create(&fixture.store, &session).await;

    let pool = fixture.store.pool().clone();
    for builder in [
        PostgresStore::builder().with_schema("a;drop"),
        PostgresStore::builder().with_table_prefix("x\"y"),
        PostgresStore::builder().with_schema("1a"),
    ] {
        let error = builder_error(builder, pool.clone());
        assert!(
            matches!(error, tether_sql::Error::InvalidName { .. }),
            "{error:?}"
        );
    }
}

fn builder_error(builder: PostgresStoreBuilder, pool: sqlx::PgPool) -> tether_sql::Error {
    builder.build(pool).unwrap_err()
}

/// A statement that waits on a lock (here one an administrator's transaction holds) ends at
/// the operation timeout with a transient error, and does not land later when the lock is
/// released: the server gave up on it too (`statement_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_timed_out_does_not_land_later() {
    let builder = PostgresStore::builder().with_operation_timeout(Duration::from_millis(500));
    let fixture = postgres_with(builder, &postgres_url()).await;
    let store = &fixture.store;
    let session = record(&[]);
    create(store, &session).await;

    let mut admin = fixture.admin().await;
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM tether_sessions WHERE id = $1 FOR UPDATE")
        .bind(session.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut late = Changes::new();
    late.insert("late", Bytes::from_static(b"1"));
    let started = Instant::now();
    let error = store
        .apply(&session.id, &late, &session.expiry)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the timeout"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    tx.rollback().await.unwrap();
    admin.close().await.unwrap();

    let mut next = Changes::new();
    next.insert("next", Bytes::from_static(b"1"));
    // The store goes on; on a machine busy with other tests an attempt may itself time out.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match store.apply(&session.id, &next, &session.expiry).await {
            Ok(applied) => {
                assert_eq!(applied, Applied::Applied);
                break;
            }
            Err(error) if error.is_transient() && attempts < 10 => {}
            Err(error) => panic!("after {attempts} attempts: {error:?}"),
        }
    }
    let data = store.load(&session.id).await.unwrap().unwrap().data;
    assert!(data.contains_key("next"));
    assert!(
        !data.contains_key("late"),
        "the write reported failed did not land"
    );
}

/// Counts the warnings the store logs.
struct Warnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::WARN && meta.target().starts_with("tether_sql") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn bound_to(principal: &Principal, n: u64) -> Record {
    let mut session = record(&[("k", b"v")]);
    session.created_at = Timestamp::from_millis(session.created_at.as_millis() + n);
    session
        .with_principal(Some(principal.clone()))
        .with_seen(Some(
            Seen::new(Timestamp::now())
                .with_device("Firefox")
                .with_address("192.0.2.7".parse().unwrap()),
        ))
}

fn corrupt_column(error: &tether_core::Error) -> &'static str {
    let source = std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<tether_sql::Error>())
        .expect("the typed error is the source");
    match source {
        tether_sql::Error::CorruptRow { column, .. } => column,
        other => panic!("not a corrupt row: {other:?}"),
    }
}

/// Principal and last-use columns edited by hand into what no write produces (a principal
/// `Principal::new` refuses, an address that does not parse, a negative or missing
/// `last_seen`, a handle of the wrong length): `load` is `Corrupt` naming the column;
/// `sessions_of` leaves the row out, logs a warning and lists the principal's other sessions;
/// `revoke_all` still ends the principal's sessions, damaged ones included.
#[tokio::test]
async fn corrupt_principal_and_seen_columns() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(Warnings(Arc::clone(&warnings))),
    );
    let fixture = postgres().await;
    let store = &fixture.store;
    let mut admin = fixture.admin().await;
    let alice = Principal::new("alice").unwrap();
    let healthy = bound_to(&alice, 0);
    create(store, &healthy).await;

    let loads = [
        ("principal", "principal = ''"),
        ("principal", "principal = E'a\\nb'"),
        ("principal", "principal = E'\\u0085'"),
        ("principal", "principal = repeat('x', 257)"),
        ("address", "address = 'not an address'"),
        ("address", "address = '192.0.2.300'"),
        ("last_seen", "last_seen = -1"),
        ("last_seen", "last_seen = NULL"),
    ];
    for (n, (column, edit)) in loads.into_iter().enumerate() {
        let victim = bound_to(&alice, 1 + n as u64);
        create(store, &victim).await;
        let edited = sqlx::query(&format!("UPDATE tether_sessions SET {edit} WHERE id = $1"))
            .bind(victim.id.to_string())
            .execute(&mut admin)
            .await
            .unwrap();
        assert_eq!(edited.rows_affected(), 1, "{edit}");
        let error = store.load(&victim.id).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{edit}: {error:?}");
        assert_eq!(corrupt_column(&error), column, "{edit}");
    }
    assert_eq!(
        store.load(&healthy.id).await.unwrap().unwrap().principal,
        Some(alice.clone())
    );

    // What `sessions_of` reads: alice's damaged rows that still name her are left out.
    let before = warnings.load(Ordering::SeqCst);
    let listed: Vec<SessionHandle> = store
        .sessions_of(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.handle)
        .collect();
    assert_eq!(
        listed,
        [SessionHandle::of(&healthy.id)],
        "only the healthy session is listed"
    );
    assert_eq!(
        warnings.load(Ordering::SeqCst) - before,
        4,
        "each row left out is logged: two addresses, two last_seen"
    );
    let damaged_handle = bound_to(&alice, 20);
    create(store, &damaged_handle).await;
    sqlx::query("UPDATE tether_sessions SET handle = '\\x0102'::bytea WHERE id = $1")
        .bind(damaged_handle.id.to_string())
        .execute(&mut admin)
        .await
        .unwrap();
    assert!(
        store.load(&damaged_handle.id).await.unwrap().is_some(),
        "load does not read the handle"
    );
    let before = warnings.load(Ordering::SeqCst);
    assert_eq!(store.sessions_of(&alice).await.unwrap().len(), 1);
    assert_eq!(warnings.load(Ordering::SeqCst) - before, 5);

    // Signing out everywhere ends them all: the healthy one, the four damaged ones that still
    // name alice, and the one with a damaged handle.
    assert_eq!(store.revoke_all(&alice, None).await.unwrap(), 6);
    assert!(store.load(&healthy.id).await.unwrap().is_none());
    admin.close().await.unwrap();
}

/// The `ALTER TABLE` of `migrate` on a table made before the principal columns existed; the
/// previous version's statements, run by hand.
const OLD_SCHEMA: &str = "
    CREATE TABLE tether_sessions (
      id text PRIMARY KEY,
      created_at bigint NOT NULL,
      expires_at bigint NOT NULL,
      idle_timeout_ms bigint NOT NULL,
      absolute_deadline bigint
    );
    CREATE INDEX tether_sessions_expires_at ON tether_sessions (expires_at);
    CREATE TABLE tether_session_keys (
      session_id text NOT NULL REFERENCES tether_sessions (id) ON DELETE CASCADE ON UPDATE CASCADE,
      key bytea NOT NULL,
      value bytea NOT NULL,
      PRIMARY KEY (session_id, key)
    );";

/// A database migrated by the previous version (no principal columns) with a session in it:
/// `migrate` adds the columns and the index, the old session loads, bound to nobody; a login
/// binds it, and then it is listed, keeps its principal and last use through `cycle` (the
/// handle following the id), and can be revoked. `migrate` may run again.
#[tokio::test]
async fn a_database_of_the_previous_version_gets_the_principal_columns() {
    let schema = common::unique_schema();
    let store = common::test_builder()
        .with_schema(&schema)
        .connect(&postgres_url())
        .await
        .unwrap();
    let fixture = OnPostgres {
        store: store.clone(),
        schema: schema.clone(),
    };
    let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"; {OLD_SCHEMA}"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let old = record(&[("user", b"alice")]);
    sqlx::query(
        "INSERT INTO tether_sessions (id, created_at, expires_at, idle_timeout_ms) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(old.id.to_string())
    .bind(old.created_at.as_millis() as i64)
    .bind(old.expiry.expires_at().as_millis() as i64)
    .bind(HOUR.as_millis() as i64)
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("INSERT INTO tether_session_keys VALUES ($1, 'user'::bytea, 'alice'::bytea)")
        .bind(old.id.to_string())
        .execute(&mut admin)
        .await
        .unwrap();

    store.migrate().await.unwrap();
    // Again, while a reader holds its lock on the table: with every column there, `migrate`
    // alters nothing, so it needs no exclusive lock and does not wait for the reader.
    let mut reader = fixture.admin().await;
    let mut reading = reader.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM tether_sessions")
        .execute(&mut *reading)
        .await
        .unwrap();
    let mut migrating = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    let early = tokio::time::timeout(Duration::from_secs(5), &mut migrating).await;
    let waited = early.is_err();
    // The reader ends either way, so a migrate that waits for it finishes before the check.
    reading.rollback().await.unwrap();
    reader.close().await.unwrap();
    let migrated = match early {
        Ok(joined) => joined,
        Err(_) => migrating.await,
    };
    migrated.unwrap().unwrap();
    assert!(
        !waited,
        "migrate waited for a reader: it locked the table exclusively"
    );
    let columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 \
         AND table_name = 'tether_sessions' \
         AND column_name IN ('principal', 'handle', 'last_seen', 'device', 'address')",
    )
    .bind(&schema)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(columns, 5);
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 \
         AND indexname = 'tether_sessions_principal'",
    )
    .bind(&schema)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(indexes, 1);

    let found = store.load(&old.id).await.unwrap().expect("the old session");
    assert_eq!(&found.data["user"][..], b"alice");
    assert_eq!((found.principal, found.seen), (None, None));

    let alice = Principal::new("alice").unwrap();
    let seen = Seen::new(Timestamp::now()).with_device("Safari");
    let mut login = Changes::new();
    login.bind(alice.clone());
    login.set_seen(seen.clone());
    assert_eq!(
        store.apply(&old.id, &login, &old.expiry).await.unwrap(),
        Applied::Applied
    );
    let infos = store.sessions_of(&alice).await.unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].handle, SessionHandle::of(&old.id));
    assert_eq!(infos[0].seen.as_ref(), Some(&seen));

    let new = Id::random().unwrap();
    assert_eq!(store.cycle(&old.id, &new).await.unwrap(), Cycled::Moved);
    let moved = store.load(&new).await.unwrap().unwrap();
    assert_eq!(moved.principal, Some(alice.clone()));
    assert_eq!(moved.seen.as_deref(), Some(&seen));
    let handle: Vec<u8> = sqlx::query_scalar("SELECT handle FROM tether_sessions WHERE id = $1")
        .bind(new.to_string())
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        handle,
        SessionHandle::of(&new).as_bytes(),
        "the handle follows the id"
    );
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&old.id))
            .await
            .unwrap(),
        Revoked::NotFound
    );
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&new))
            .await
            .unwrap(),
        Revoked::Revoked
    );
    assert!(store.load(&new).await.unwrap().is_none());
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM tether_session_keys")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(keys, 0, "the key rows went with the revoked session");
    admin.close().await.unwrap();
    drop(fixture);
}

/// The longest idle timeout a row holds: the read that renews computes `now + idle` as
/// `Timestamp` does, saturating, where it used to fail with `bigint out of range` on every read
/// once the session was known due.
#[tokio::test]
async fn a_renewing_read_of_the_longest_idle_timeout_does_not_overflow() {
    let fixture = postgres().await;
    let store = &fixture.store;
    let now = Timestamp::now();
    let idle = Duration::from_millis(i64::MAX.unsigned_abs());
    let record = Record::new(Id::random().unwrap(), Expiry::new(now, idle, None), now);
    create(store, &record).await;
    // Threshold 0: due as soon as the deadline would move. The first read tells the store when.
    for after in [0, 5] {
        let renewal = Renewal::new(now + Duration::from_secs(after), 0.0);
        let loaded = store
            .load_renewing(&record.id, &renewal)
            .await
            .unwrap_or_else(|e| panic!("read {after} s in: {e}"))
            .expect("the session is live");
        assert!(
            !loaded.renewed,
            "a deadline at the end of time does not move"
        );
    }
}
