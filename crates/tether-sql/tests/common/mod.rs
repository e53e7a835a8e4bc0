//! Fixtures: a store on its own PostgreSQL schema (dropped afterwards), or on a SQLite file in
//! a temporary directory, or in memory.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_core::{EventStream, SessionEvent, SessionStore};
use tether_sql::EventLog;
#[cfg(feature = "postgres")]
use tether_sql::sqlx::{self, Connection};
#[cfg(feature = "postgres")]
use tether_sql::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "sqlite")]
use tether_sql::{SqliteStore, SqliteStoreBuilder};
use tether_testkit::Fixture;

/// The operation timeout of the general fixtures: the conformance suite checks the contract,
/// not latency, and 32 writers queueing on one session of a machine busy with other tests may
/// wait longer than the default. Tests of the timeout set their own.
pub const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(feature = "postgres")]
/// Where the tests find PostgreSQL.
pub fn postgres_url() -> String {
    std::env::var("TETHER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test (of this run or another) uses.
pub fn unique_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "tether_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(feature = "postgres")]
/// A store whose tables live in a schema of their own, dropped when this drops.
pub struct OnPostgres {
    pub store: PostgresStore,
    pub schema: String,
}

#[cfg(feature = "postgres")]
impl Fixture for OnPostgres {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }
}

#[cfg(feature = "postgres")]
impl OnPostgres {
    /// A connection of its own, outside the store's pool, with the schema on its search path.
    pub async fn admin(&self) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(&postgres_url())
            .await
            .expect("connect to PostgreSQL");
        sqlx::raw_sql(&format!("SET search_path TO \"{}\"", self.schema))
            .execute(&mut conn)
            .await
            .expect("search_path");
        conn
    }
}

#[cfg(feature = "postgres")]
impl Drop for OnPostgres {
    fn drop(&mut self) {
        // Drop runs outside async code: a thread of its own with its own runtime and connection.
        let schema = std::mem::take(&mut self.schema);
        let url = postgres_url();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop the test schema: {dropped:?}");
        }
    }
}

#[cfg(feature = "postgres")]
/// The store on a fresh schema, migrated, built by `builder` with the schema set.
pub async fn postgres_with(builder: PostgresStoreBuilder, url: &str) -> OnPostgres {
    let schema = unique_schema();
    let store = builder
        .with_schema(&schema)
        .connect(url)
        .await
        .expect("connect to PostgreSQL (set TETHER_TEST_POSTGRES_URL)");
    store.migrate().await.expect("migrate");
    OnPostgres { store, schema }
}

/// Connections of the general PostgreSQL fixtures: the index leak check of the conformance
/// suite runs 16 workers at once.
pub const TEST_CONNECTIONS: u32 = 16;

#[cfg(feature = "postgres")]
/// The store with the defaults on a fresh schema (but the timeout and pool size above).
pub async fn postgres() -> OnPostgres {
    postgres_with(test_builder(), &postgres_url()).await
}

#[cfg(feature = "postgres")]
/// The store with events (and at most `max` sessions per principal) on a fresh schema.
pub async fn postgres_events(max: Option<std::num::NonZeroUsize>) -> OnPostgres {
    postgres_with(
        test_builder()
            .with_max_sessions_per_principal(max)
            .with_events(EventLog::new()),
        &postgres_url(),
    )
    .await
}

#[cfg(feature = "postgres")]
/// The builder of [`postgres`], to add to.
pub fn test_builder() -> PostgresStoreBuilder {
    PostgresStore::builder()
        .with_operation_timeout(TEST_TIMEOUT)
        .with_max_connections(TEST_CONNECTIONS)
}

#[cfg(feature = "sqlite")]
/// A store on a database file in a temporary directory, removed when this drops.
pub struct OnSqliteFile {
    pub store: SqliteStore,
    pub dir: tempfile::TempDir,
}

#[cfg(feature = "sqlite")]
impl Fixture for OnSqliteFile {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }
}

#[cfg(feature = "sqlite")]
pub async fn sqlite_file() -> OnSqliteFile {
    sqlite_file_with(None).await
}

#[cfg(feature = "sqlite")]
/// A store on a database file, with at most `max` sessions per principal.
pub async fn sqlite_file_with(max: Option<std::num::NonZeroUsize>) -> OnSqliteFile {
    sqlite_file_built(sqlite_builder().with_max_sessions_per_principal(max)).await
}

#[cfg(feature = "sqlite")]
/// The builder of the SQLite fixtures (the test timeout), to add to.
pub fn sqlite_builder() -> SqliteStoreBuilder {
    SqliteStore::builder().with_operation_timeout(TEST_TIMEOUT)
}

#[cfg(feature = "sqlite")]
/// A store built by `builder` on a database file in a temporary directory, migrated.
pub async fn sqlite_file_built(builder: SqliteStoreBuilder) -> OnSqliteFile {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = builder
        .open(dir.path().join("sessions.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    OnSqliteFile { store, dir }
}

#[cfg(feature = "sqlite")]
/// A store with events (and at most `max` sessions per principal) on a database file.
pub async fn sqlite_file_events(max: Option<std::num::NonZeroUsize>) -> OnSqliteFile {
    sqlite_file_built(
        sqlite_builder()
            .with_max_sessions_per_principal(max)
            .with_events(EventLog::new()),
    )
    .await
}

#[cfg(feature = "sqlite")]
/// A store with events (and at most `max` sessions per principal) in memory.
pub async fn sqlite_memory_events(max: Option<std::num::NonZeroUsize>) -> SqliteStore {
    let store = sqlite_builder()
        .with_max_sessions_per_principal(max)
        .with_events(EventLog::new())
        .in_memory()
        .await
        .expect("in memory");
    store.migrate().await.expect("migrate");
    store
}

#[cfg(feature = "sqlite")]
pub async fn sqlite_memory() -> SqliteStore {
    sqlite_memory_with(None).await
}

#[cfg(feature = "sqlite")]
/// A store in memory, with at most `max` sessions per principal.
pub async fn sqlite_memory_with(max: Option<std::num::NonZeroUsize>) -> SqliteStore {
    let store = SqliteStore::builder()
        .with_operation_timeout(TEST_TIMEOUT)
        .with_max_sessions_per_principal(max)
        .in_memory()
        .await
        .expect("in memory");
    store.migrate().await.expect("migrate");
    store
}

/// The counter app: `/incr` adds one to the session's `n` and answers it.
pub fn counter_app(store: impl SessionStore) -> axum::Router {
    use axum::routing::get;
    use tether_sessions::{Session, SessionLayer};

    axum::Router::new()
        .route(
            "/incr",
            get(|session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
                session.insert("n", &n).await?;
                Ok::<_, tether_sessions::Error>(n.to_string())
            }),
        )
        .layer(SessionLayer::new(store).with_secure(false))
}

/// Sends `/incr` with `cookie`; returns the status, the body and the new cookie if one was set.
pub async fn incr(
    app: &axum::Router,
    cookie: Option<&str>,
) -> (axum::http::StatusCode, String, Option<String>) {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt as _;

    let mut request = Request::get("/incr");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let set = response.headers().get(header::SET_COOKIE).map(|v| {
        let v = v.to_str().expect("ascii cookie");
        v.split(';').next().unwrap_or(v).to_owned()
    });
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned(), set)
}

/// The session id in a `name=value` cookie.
pub fn cookie_id(cookie: &str) -> tether_core::Id {
    cookie
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or(cookie)
        .parse()
        .expect("a session id")
}

/// The next item of `events`, or `None` if none comes within `within`.
pub async fn next_event(
    events: &mut EventStream,
    within: Duration,
) -> Option<Result<SessionEvent, tether_core::Error>> {
    let next = std::future::poll_fn(|cx| futures_core::Stream::poll_next(events.as_mut(), cx));
    match tokio::time::timeout(within, next).await {
        Ok(Some(item)) => Some(item),
        Ok(None) => panic!("the event stream ended"),
        Err(_) => None,
    }
}

/// The next event of `events`, failing the test on an error or after `within`.
pub async fn expect_event(events: &mut EventStream, within: Duration) -> SessionEvent {
    match next_event(events, within).await {
        Some(Ok(event)) => event,
        Some(Err(error)) => panic!("the event stream failed: {error:?}"),
        None => panic!("no event within {within:?}"),
    }
}

/// No item comes from `events` within `within`.
pub async fn expect_quiet(events: &mut EventStream, within: Duration) {
    if let Some(item) = next_event(events, within).await {
        panic!("expected no event, got {item:?}");
    }
}
