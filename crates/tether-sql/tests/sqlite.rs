//! SQLite beyond the conformance suite: concurrency on one session, corrupt rows, sessions
//! surviving a restart, read-only databases, the sweeper, the principal columns and databases
//! made before them.

mod common;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::{
    Applied, Changes, Codec, Created, Cycled, ErrorKind, Expiry, Id, Principal, Record, Revoked,
    Seen, SessionHandle, SessionStore, Timestamp,
};
use tether_sql::SqliteStore;
use tether_sql::sqlx::{self, sqlite::SqliteConnectOptions, sqlite::SqlitePoolOptions};
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

/// Eight tasks each apply 50 deltas to one session (a key of their own, removing the previous
/// one, a counter); all succeed within bounded time and the end state holds every last write.
async fn concurrent_writers(store: Arc<dyn SessionStore>) {
    let session = record(&[("untouched", b"yes")]);
    create(&*store, &session).await;
    let codec = Codec::default();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let store = Arc::clone(&store);
        let (id, expiry) = (session.id, session.expiry);
        tasks.spawn(async move {
            for round in 0..50usize {
                let mut c = Changes::new();
                c.insert(format!("t{task}:{round}"), Bytes::from_static(b"1"));
                if round > 0 {
                    c.remove(format!("t{task}:{}", round - 1));
                }
                c.insert(format!("counter-{task}"), codec.encode(&round).unwrap());
                assert_eq!(
                    store.apply(&id, &c, &expiry).await.unwrap(),
                    Applied::Applied
                );
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
        .expect("bounded time");
    let data = store.load(&session.id).await.unwrap().unwrap().data;
    for task in 0..8 {
        assert!(data.contains_key(&format!("t{task}:49")));
        assert_eq!(
            codec
                .decode::<usize>(&data[&format!("counter-{task}")])
                .unwrap(),
            49
        );
    }
    assert_eq!(data.len(), 8 * 2 + 1, "removed keys stay removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_a_file() {
    let fixture = common::sqlite_file().await;
    concurrent_writers(Arc::new(fixture.store.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_in_memory() {
    concurrent_writers(Arc::new(common::sqlite_memory().await)).await;
}

/// SQLite columns take any type: a value edited into an integer, a timestamp into text, a
/// negative idle timeout are each `Corrupt` with the typed error naming the column; the
/// session can still be deleted, and through the layer it is a new session.
#[tokio::test]
async fn corrupt_rows_are_typed_errors_and_new_sessions() {
    let store = common::sqlite_memory().await;
    let healthy = record(&[("k", b"v")]);
    create(&store, &healthy).await;
    let cases = [
        (
            "value",
            "UPDATE tether_session_keys SET value = 42 WHERE session_id = ?1",
        ),
        (
            "created_at",
            "UPDATE tether_sessions SET created_at = 'yesterday' WHERE id = ?1",
        ),
        (
            "idle_timeout_ms",
            "UPDATE tether_sessions SET idle_timeout_ms = -1 WHERE id = ?1",
        ),
        (
            "key",
            "UPDATE tether_session_keys SET key = x'ff' WHERE session_id = ?1",
        ),
    ];
    for (column, edit) in cases {
        let victim = record(&[("n", b"\x01")]);
        create(&store, &victim).await;
        let edited = sqlx::query(edit)
            .bind(victim.id.to_string())
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(edited.rows_affected(), 1, "{edit}");
        let error = store.load(&victim.id).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{edit}: {error:?}");
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

    let app = common::counter_app(store.clone());
    let (_, _, cookie) = common::incr(&app, None).await;
    let cookie = cookie.expect("a cookie");
    let id = common::cookie_id(&cookie);
    sqlx::query("UPDATE tether_session_keys SET value = 'not msgpack' WHERE session_id = ?1")
        .bind(id.to_string())
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE tether_sessions SET created_at = -1 WHERE id = ?1")
        .bind(id.to_string())
        .execute(store.pool())
        .await
        .unwrap();
    let (status, body, _) = common::incr(&app, Some(&cookie)).await;
    assert_eq!(status.as_u16(), 200, "a corrupt session is not a 5xx");
    assert_eq!(body, "1", "a corrupt session counts as absent");
}

/// What a process stored is there after it restarts (the store is dropped and the file
/// opened again).
#[tokio::test]
async fn sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let session = record(&[("user", b"alice")]);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        create(&store, &session).await;
        let mut c = Changes::new();
        c.insert("cart", Bytes::from_static(b"3"));
        assert_eq!(
            store.apply(&session.id, &c, &session.expiry).await.unwrap(),
            Applied::Applied
        );
        store.pool().close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    let found = store.load(&session.id).await.unwrap().expect("survives");
    assert_eq!(&found.data["user"][..], b"alice");
    assert_eq!(&found.data["cart"][..], b"3");
    assert_eq!(found.expiry, session.expiry);
}

/// A database opened read-only: reads work, writes are transient errors, nothing changes.
#[tokio::test]
async fn a_read_only_database_is_transient() {
    let fixture = common::sqlite_file().await;
    let session = record(&[("k", b"v")]);
    create(&fixture.store, &session).await;
    let pool = SqlitePoolOptions::new()
        .connect_with(
            SqliteConnectOptions::new()
                .filename(fixture.dir.path().join("sessions.db"))
                .read_only(true),
        )
        .await
        .unwrap();
    let read_only = SqliteStore::builder().build(pool).unwrap();
    assert!(read_only.load(&session.id).await.unwrap().is_some());
    let mut c = Changes::new();
    c.insert("k", Bytes::from_static(b"w"));
    let error = read_only
        .apply(&session.id, &c, &session.expiry)
        .await
        .unwrap_err();
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

async fn rows(store: &SqliteStore, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// `delete_expired` removes expired sessions and their keys in batches, and leaves live ones;
/// the background sweeper does the same until it is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_deletes_expired_sessions_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::builder()
        .with_sweep_batch(10)
        .with_table_prefix("app_")
        .open(dir.path().join("s.db"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    for n in 0..35 {
        create(&store, &expired_record(n)).await;
    }
    let live = record(&[("k", b"v")]);
    create(&store, &live).await;
    assert_eq!(store.delete_expired().await.unwrap(), 35);
    assert_eq!(rows(&store, store.sessions_table()).await, 1);
    assert_eq!(rows(&store, store.keys_table()).await, 1, "keys cascade");

    for n in 0..5 {
        create(&store, &expired_record(n)).await;
    }
    let sweeper = store.spawn_sweeper(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(&store, store.sessions_table()).await > 1 {
        assert!(Instant::now() < deadline, "the sweeper deletes within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sweeper.stop().await;
    assert!(store.load(&live.id).await.unwrap().is_some());
}

/// A full disk (here a database capped at a few pages): the write fails with a transient
/// error, and what was stored before is intact.
#[tokio::test]
async fn a_full_database_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("small.db"))
        .create_if_missing(true)
        .pragma("max_page_count", "16");
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    let store = SqliteStore::builder().build(pool).unwrap();
    store.migrate().await.unwrap();
    let small = record(&[("k", b"v")]);
    create(&store, &small).await;
    let big = vec![7u8; 1 << 20];
    let error = store.create(&record(&[("big", &big)])).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
    let mut c = Changes::new();
    c.insert("big", Bytes::from(big));
    let error = store.apply(&small.id, &c, &small.expiry).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(
        &store.load(&small.id).await.unwrap().unwrap().data["k"][..],
        b"v"
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
                .with_address("2001:db8::1".parse().unwrap()),
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

/// Principal and last-use columns edited into what no write produces (SQLite columns take any
/// type, so also a principal that is a blob and a `last_seen` that is text): `load` is
/// `Corrupt` naming the column; `sessions_of` leaves the rows out, logged, and lists the rest.
#[tokio::test]
async fn corrupt_principal_and_seen_columns() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(Warnings(Arc::clone(&warnings))),
    );
    let store = common::sqlite_memory().await;
    let alice = Principal::new("alice").unwrap();
    let healthy = bound_to(&alice, 0);
    create(&store, &healthy).await;
    let cases = [
        ("principal", "principal = ''"),
        ("principal", "principal = 'a' || char(10) || 'b'"),
        ("principal", "principal = char(133)"),
        ("principal", "principal = printf('%.257c', 'x')"),
        ("principal", "principal = x'ff'"),
        ("address", "address = 'not an address'"),
        ("last_seen", "last_seen = -1"),
        ("last_seen", "last_seen = 'yesterday'"),
        ("last_seen", "last_seen = NULL"),
    ];
    for (n, (column, edit)) in cases.into_iter().enumerate() {
        let victim = bound_to(&alice, 1 + n as u64);
        create(&store, &victim).await;
        let edited = sqlx::query(&format!("UPDATE tether_sessions SET {edit} WHERE id = ?1"))
            .bind(victim.id.to_string())
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(edited.rows_affected(), 1, "{edit}");
        let error = store.load(&victim.id).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{edit}: {error:?}");
        assert_eq!(corrupt_column(&error), column, "{edit}");
    }
    let before = warnings.load(Ordering::SeqCst);
    let listed: Vec<SessionHandle> = store
        .sessions_of(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.handle)
        .collect();
    assert_eq!(listed, [SessionHandle::of(&healthy.id)]);
    assert_eq!(
        warnings.load(Ordering::SeqCst) - before,
        4,
        "each row left out is logged: an address, three last_seen"
    );
    assert_eq!(store.revoke_all(&alice, None).await.unwrap(), 5);
}

/// The tables as the previous version made them, before the principal columns.
const OLD_SCHEMA: &str = "
    CREATE TABLE tether_sessions (
      id TEXT PRIMARY KEY NOT NULL,
      created_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      idle_timeout_ms INTEGER NOT NULL,
      absolute_deadline INTEGER
    );
    CREATE INDEX tether_sessions_expires_at ON tether_sessions (expires_at);
    CREATE TABLE tether_session_keys (
      session_id TEXT NOT NULL REFERENCES tether_sessions (id) ON DELETE CASCADE ON UPDATE CASCADE,
      key BLOB NOT NULL,
      value BLOB NOT NULL,
      PRIMARY KEY (session_id, key)
    ) WITHOUT ROWID;";

/// A database file of the previous version with a session in it: `migrate` adds the missing
/// columns and the index (and may run again); the session loads, bound to nobody; a login
/// binds it, and it is listed, keeps its principal and last use through `cycle` (the handle
/// following the id) and can be revoked.
#[tokio::test]
async fn a_database_of_the_previous_version_gets_the_principal_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = record(&[("user", b"alice")]);
    {
        let pool = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        sqlx::raw_sql(OLD_SCHEMA).execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO tether_sessions (id, created_at, expires_at, idle_timeout_ms) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(old.id.to_string())
        .bind(old.created_at.as_millis() as i64)
        .bind(old.expiry.expires_at().as_millis() as i64)
        .bind(HOUR.as_millis() as i64)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO tether_session_keys VALUES (?1, CAST('user' AS BLOB), ?2)")
            .bind(old.id.to_string())
            .bind(&b"alice"[..])
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    let store = SqliteStore::builder()
        .with_max_sessions_per_principal(NonZeroUsize::new(2))
        .open(&path)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
        .bind("tether_sessions")
        .fetch_all(store.pool())
        .await
        .unwrap();
    for column in ["principal", "handle", "last_seen", "device", "address"] {
        assert!(columns.iter().any(|c| c == column), "{column}: {columns:?}");
    }
    let index: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' \
         AND name = 'tether_sessions_principal'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(index, 1);

    let found = store.load(&old.id).await.unwrap().expect("the old session");
    assert_eq!(&found.data["user"][..], b"alice");
    assert_eq!((found.principal, found.seen), (None, None));

    let alice = Principal::new("alice").unwrap();
    let seen = Seen::new(Timestamp::now()).with_address("192.0.2.1".parse().unwrap());
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
    let handle: Vec<u8> = sqlx::query_scalar("SELECT handle FROM tether_sessions WHERE id = ?1")
        .bind(new.to_string())
        .fetch_one(store.pool())
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
    assert_eq!(rows(&store, store.keys_table()).await, 0, "keys cascade");
}
