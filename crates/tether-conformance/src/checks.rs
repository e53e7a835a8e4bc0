//! The checks of the store conformance suite: what every [`SessionStore`] must do.
//!
//! Each check is an `async fn` that panics with a message naming the broken rule, as `assert!`
//! does: that is how it fails the test that calls it. The
//! [`store_conformance!`](crate::store_conformance) macro runs them all as tests; call them one
//! by one to run some of them, or to run one against a store in a particular state.
//!
//! # Example
//!
//! ```
//! # mod my_store { pub use tether_memory::MemoryStore as MyStore; }
//! use std::sync::Arc;
//! use tether_conformance::checks;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let store = my_store::MyStore::new();
//! // ... bring the store into the state to test, then:
//! checks::contract(&store).await;
//! checks::concurrent_create_has_one_winner(Arc::new(store)).await;
//! # }
//! ```
// A check reports a broken rule by panicking (`expect` on a store error included): that is how
// a test fails. Nothing else in the crate may panic.
#![allow(clippy::expect_used, clippy::panic)]

mod events;
mod key_update;
mod principal;
mod renewal;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tether_core::{
    Applied, Changes, Codec, Created, Cycled, Expiry, Id, Record, SessionStore, Timestamp,
};

pub use events::session_events;
pub use key_update::{KEY_ROUNDS, KEY_WRITERS, concurrent_key_updates_lose_nothing, key_updates};
pub use principal::{
    LEAK_SESSIONS, LEAK_USERS, metadata_round_trips, principal_cap, principal_index,
    principal_index_follows_the_session, principal_index_has_no_leaks,
};
pub use renewal::load_renewing;

/// What a conformance test needs from the code under test: a store to exercise.
///
/// Every `SessionStore + Clone` is a fixture. A fixture that must keep something alive while the
/// test runs (a `redis-server` process, say) implements this for a struct that holds both.
pub trait Fixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn SessionStore>;
}

impl<S: SessionStore + Clone> Fixture for S {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.clone())
    }
}

/// Writers in [`concurrent_writers_lose_nothing`].
pub const WRITERS: usize = 32;
/// Changes per writer in [`concurrent_writers_lose_nothing`].
pub const ROUNDS: usize = 100;

const HOUR: Duration = Duration::from_secs(3600);

fn expiry_in(ttl: Duration) -> Expiry {
    Expiry::new(Timestamp::now(), ttl, None)
}

fn record_with(data: &[(&str, &[u8])]) -> Record {
    let now = Timestamp::now();
    let data = data
        .iter()
        .map(|(k, v)| ((*k).to_string(), Bytes::copy_from_slice(v)))
        .collect();
    Record::new(Id::random().expect("entropy"), expiry_in(HOUR), now).with_data(data)
}

async fn create(store: &dyn SessionStore, record: &Record) {
    let created = store.create(record).await.expect("create");
    assert_eq!(
        created,
        Created::Created,
        "create of a fresh id must store it"
    );
}

async fn load(store: &dyn SessionStore, id: &Id) -> Option<Record> {
    store.load(id).await.expect("load")
}

fn changes(f: impl FnOnce(&mut Changes)) -> Changes {
    let mut c = Changes::new();
    f(&mut c);
    c
}

/// Expiry deadlines are compared at millisecond precision, which every store keeps.
fn assert_same_expiry(found: &Expiry, expected: &Expiry) {
    assert_eq!(
        found.expires_at(),
        expected.expires_at(),
        "expires_at must round-trip"
    );
    assert_eq!(
        found.idle_timeout(),
        expected.idle_timeout(),
        "idle timeout must round-trip"
    );
    assert_eq!(
        found.absolute_deadline(),
        expected.absolute_deadline(),
        "absolute deadline must round-trip"
    );
}

/// create / load / apply / touch / delete behave as the contract says.
pub async fn contract(store: &dyn SessionStore) {
    let unknown = Id::random().expect("entropy");
    assert!(
        load(store, &unknown).await.is_none(),
        "an unknown id loads as None"
    );

    let mut record = record_with(&[("a", b"1"), ("b", b"2")]);
    record.expiry = Expiry::new(
        Timestamp::now(),
        HOUR,
        Some(Timestamp::now() + Duration::from_secs(7200)),
    );
    create(store, &record).await;
    assert_eq!(
        store
            .create(&record_with(&[]).with_id(record.id))
            .await
            .expect("create"),
        Created::IdTaken,
        "create must not overwrite a live session"
    );

    let found = load(store, &record.id)
        .await
        .expect("created session loads");
    assert_eq!(found.id, record.id);
    assert_eq!(
        found.data, record.data,
        "data must round-trip, untouched by the IdTaken create"
    );
    assert_eq!(found.created_at, record.created_at);
    assert_same_expiry(&found.expiry, &record.expiry);

    let later = found
        .expiry
        .renewed(Timestamp::now() + Duration::from_secs(5));
    let delta = changes(|c| {
        c.insert("b", Bytes::from_static(b"22"));
        c.insert("c", Bytes::from_static(b"3"));
        c.remove("a");
        c.remove("never-there");
    });
    assert_eq!(
        store
            .apply(&record.id, &delta, &later)
            .await
            .expect("apply"),
        Applied::Applied
    );
    let found = load(store, &record.id).await.expect("session still there");
    let expected: HashMap<String, Bytes> = [("b", "22"), ("c", "3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Bytes::from(v)))
        .collect();
    assert_eq!(
        found.data, expected,
        "apply changes exactly the keys in the delta"
    );
    assert_same_expiry(&found.expiry, &later);

    let cleared = changes(|c| {
        c.clear();
        c.insert("d", Bytes::from_static(b"4"));
    });
    assert_eq!(
        store
            .apply(&record.id, &cleared, &later)
            .await
            .expect("apply"),
        Applied::Applied
    );
    let found = load(store, &record.id).await.expect("session still there");
    assert_eq!(
        found.data.keys().collect::<Vec<_>>(),
        ["d"],
        "clear drops every older key"
    );

    let touched = later.renewed(Timestamp::now() + Duration::from_secs(10));
    assert_eq!(
        store.touch(&record.id, &touched).await.expect("touch"),
        Applied::Applied
    );
    let found = load(store, &record.id).await.expect("session still there");
    assert_same_expiry(&found.expiry, &touched);
    assert_eq!(found.data.len(), 1, "touch leaves data alone");

    let empty = Changes::new();
    assert_eq!(
        store.apply(&unknown, &empty, &later).await.expect("apply"),
        Applied::Missing
    );
    assert_eq!(
        store.touch(&unknown, &later).await.expect("touch"),
        Applied::Missing
    );
    assert!(
        load(store, &unknown).await.is_none(),
        "apply/touch on an unknown id create nothing"
    );

    store.delete(&record.id).await.expect("delete");
    assert!(
        load(store, &record.id).await.is_none(),
        "a deleted session is gone"
    );
    store
        .delete(&record.id)
        .await
        .expect("deleting twice is not an error");
    store
        .delete(&unknown)
        .await
        .expect("deleting an unknown id is not an error");
}

/// Sessions end at their deadline: they stop loading and cannot be renewed afterwards.
pub async fn expiry(store: &dyn SessionStore) {
    let ttl = Duration::from_millis(400);
    let mut short = record_with(&[("k", b"v")]);
    short.expiry = expiry_in(ttl);
    let long = record_with(&[("k", b"v")]);
    create(store, &short).await;
    create(store, &long).await;
    assert!(
        load(store, &short.id).await.is_some(),
        "live before its deadline"
    );

    tokio::time::sleep(ttl + Duration::from_millis(400)).await;
    assert!(
        load(store, &short.id).await.is_none(),
        "an expired session must not load"
    );
    assert!(
        load(store, &long.id).await.is_some(),
        "expiry of one session leaves others alone"
    );

    let renewed = expiry_in(HOUR);
    let delta = changes(|c| c.insert("late", Bytes::from_static(b"x")));
    assert_eq!(
        store
            .apply(&short.id, &delta, &renewed)
            .await
            .expect("apply"),
        Applied::Missing
    );
    assert_eq!(
        store.touch(&short.id, &renewed).await.expect("touch"),
        Applied::Missing
    );
    assert!(
        load(store, &short.id).await.is_none(),
        "an expired session is never resurrected"
    );

    // An id whose session expired is free again.
    let mut reuse = record_with(&[]);
    reuse.id = short.id;
    assert_eq!(
        store.create(&reuse).await.expect("create"),
        Created::Created
    );
}

/// A late `apply`, `touch` or `cycle` never brings back a deleted session.
pub async fn deletion_is_final(store: &dyn SessionStore) {
    let record = record_with(&[("user", b"alice")]);
    create(store, &record).await;
    store.delete(&record.id).await.expect("delete");

    let delta = changes(|c| c.insert("cart", Bytes::from_static(b"1")));
    let expiry = expiry_in(HOUR);
    assert_eq!(
        store
            .apply(&record.id, &delta, &expiry)
            .await
            .expect("apply"),
        Applied::Missing,
        "apply must not bring back a deleted session"
    );
    assert_eq!(
        store.touch(&record.id, &expiry).await.expect("touch"),
        Applied::Missing,
        "touch must not bring back a deleted session"
    );
    let new = Id::random().expect("entropy");
    assert_eq!(
        store.cycle(&record.id, &new).await.expect("cycle"),
        Cycled::Missing,
        "cycle must not bring back a deleted session"
    );
    assert!(
        load(store, &record.id).await.is_none(),
        "deleted stays deleted"
    );
    assert!(
        load(store, &new).await.is_none(),
        "cycle of a deleted session creates nothing"
    );
}

/// `cycle` moves data and expiry to the new id and leaves the old id empty.
pub async fn cycle(store: &dyn SessionStore) {
    let record = record_with(&[("user", b"alice"), ("empty", b"")]);
    create(store, &record).await;
    let new = Id::random().expect("entropy");
    assert_eq!(
        store.cycle(&record.id, &new).await.expect("cycle"),
        Cycled::Moved
    );
    assert!(
        load(store, &record.id).await.is_none(),
        "the old id names nothing after cycle"
    );
    let moved = load(store, &new)
        .await
        .expect("the new id holds the session");
    assert_eq!(moved.id, new);
    assert_eq!(moved.data, record.data);
    assert_eq!(moved.created_at, record.created_at);
    assert_same_expiry(&moved.expiry, &record.expiry);

    let delta = changes(|c| c.insert("late", Bytes::from_static(b"x")));
    assert_eq!(
        store
            .apply(&record.id, &delta, &record.expiry)
            .await
            .expect("apply"),
        Applied::Missing,
        "a late write to the old id is refused"
    );

    let unknown = Id::random().expect("entropy");
    let target = Id::random().expect("entropy");
    assert_eq!(
        store.cycle(&unknown, &target).await.expect("cycle"),
        Cycled::Missing
    );
    assert!(load(store, &target).await.is_none());

    // Moving onto a live session's id must not overwrite it.
    let other = record_with(&[("owner", b"bob")]);
    create(store, &other).await;
    assert_eq!(
        store.cycle(&new, &other.id).await.expect("cycle"),
        Cycled::IdTaken
    );
    assert_eq!(
        load(store, &other.id).await.expect("other").data,
        other.data
    );
    assert_eq!(
        load(store, &new).await.expect("unchanged").data,
        record.data
    );
}

/// Empty values, an empty key, non-ASCII keys, binary values, many keys and a 1 MiB value
/// round-trip exactly.
pub async fn empty_and_large_values(store: &dyn SessionStore) {
    let big = vec![0xa5u8; 1 << 20];
    let binary: Vec<u8> = (0..=255u8).collect();
    let record = record_with(&[
        ("", b"empty key"),
        ("empty", b""),
        ("größe/ключ/🔑", b"unicode key"),
        ("binary", &binary),
        ("big", &big),
    ]);
    create(store, &record).await;
    assert_eq!(
        load(store, &record.id).await.expect("loads").data,
        record.data
    );

    let empty = record_with(&[]);
    create(store, &empty).await;
    assert!(
        load(store, &empty.id)
            .await
            .expect("empty session loads")
            .data
            .is_empty()
    );

    let many = changes(|c| {
        for i in 0..1_000 {
            c.insert(
                format!("key-{i}"),
                Codec::default().encode(&i).expect("encode"),
            );
        }
    });
    assert_eq!(
        store
            .apply(&empty.id, &many, &empty.expiry)
            .await
            .expect("apply"),
        Applied::Applied
    );
    assert_eq!(
        load(store, &empty.id).await.expect("loads").data.len(),
        1_000
    );
}

/// Writers each change their own key of one session concurrently: every change is present.
///
/// [`WRITERS`] tasks each apply [`ROUNDS`] deltas, each inserting a fresh key and bumping the
/// writer's counter key; afterwards all `WRITERS * ROUNDS` keys exist and every counter holds
/// its last value. Whole-record saves fail this.
pub async fn concurrent_writers_lose_nothing(store: Arc<dyn SessionStore>) {
    let record = record_with(&[("shared", b"untouched")]);
    create(&*store, &record).await;
    let codec = Codec::default();

    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let (id, expiry) = (record.id, record.expiry);
        tasks.spawn(async move {
            for round in 0..ROUNDS {
                let delta = changes(|c| {
                    c.insert(format!("w{writer}:{round}"), Bytes::from_static(b"1"));
                    c.insert(
                        format!("counter-{writer}"),
                        codec.encode(&round).expect("encode"),
                    );
                });
                let applied = store.apply(&id, &delta, &expiry).await.expect("apply");
                assert_eq!(applied, Applied::Applied, "the session exists throughout");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("writer task");
    }

    let data = load(&*store, &record.id).await.expect("session").data;
    let present = (0..WRITERS)
        .flat_map(|w| (0..ROUNDS).map(move |r| format!("w{w}:{r}")))
        .filter(|key| data.contains_key(key))
        .count();
    assert_eq!(
        present,
        WRITERS * ROUNDS,
        "lost {} changes",
        WRITERS * ROUNDS - present
    );
    for writer in 0..WRITERS {
        let counter = data
            .get(&format!("counter-{writer}"))
            .expect("counter present");
        let last: usize = codec.decode(counter).expect("decode");
        assert_eq!(last, ROUNDS - 1, "writer {writer}'s last value must win");
    }
    assert_eq!(data.get("shared").map(|b| &b[..]), Some(&b"untouched"[..]));
}

/// Many concurrent `create`s of one id: exactly one wins.
pub async fn concurrent_create_has_one_winner(store: Arc<dyn SessionStore>) {
    let id = Id::random().expect("entropy");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16u8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut record = record_with(&[("n", &[n])]);
            record.id = id;
            store.create(&record).await.expect("create")
        });
    }
    let mut winners = 0;
    while let Some(created) = tasks.join_next().await {
        if created.expect("task") == Created::Created {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "insert-if-absent must be atomic");
}

/// Generates the conformance suite as `#[tokio::test]` functions in a module `conformance`.
///
/// The argument is an expression evaluating to a future of a [`Fixture`] (any
/// `SessionStore + Clone` is one); it is evaluated once per test, so each test gets a fresh
/// fixture. The calling crate needs `tokio` with `macros` and `rt-multi-thread`.
///
/// ```
/// # mod my_store { pub use tether_memory::MemoryStore as MyStore; }
/// tether_conformance::store_conformance!(async { my_store::MyStore::new() });
/// # fn main() {}
/// ```
///
/// A store with the principal index (sessions by user) also runs its contract:
/// [`metadata_round_trips`](crate::checks::metadata_round_trips),
/// [`principal_index`](crate::checks::principal_index),
/// [`principal_index_follows_the_session`](crate::checks::principal_index_follows_the_session),
/// [`principal_index_has_no_leaks`](crate::checks::principal_index_has_no_leaks) and
/// [`principal_cap`](crate::checks::principal_cap). Give a second expression: a closure from the cap
/// (a `NonZeroUsize`) to a future of a fixture whose store bounds each principal to that many
/// sessions.
///
/// ```
/// # mod my_store { pub use tether_memory::MemoryStore as MyStore; }
/// tether_conformance::store_conformance!(async { my_store::MyStore::new() }, principal_index: |max| async move {
///     my_store::MyStore::new().with_max_sessions_per_principal(Some(max))
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
            by_ref: contract, expiry, deletion_is_final, cycle, empty_and_large_values, key_updates,
                load_renewing;
            shared: concurrent_writers_lose_nothing, concurrent_create_has_one_winner,
                concurrent_key_updates_lose_nothing;
            extra: );
    };
    ($make:expr, principal_index: $capped:expr) => {
        $crate::store_conformance!(@index $make; $capped; extra: );
    };
    ($make:expr, principal_index: $capped:expr, events: $expired_within:expr) => {
        $crate::store_conformance!(@index $make; $capped; extra:
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn session_events() {
                let fixture = $make.await;
                $crate::checks::session_events(&*fixture.store(), $expired_within).await;
            }
        );
    };
    (@index $make:expr; $capped:expr; extra: $($extra:item)*) => {
        $crate::store_conformance!(@tests $make;
            by_ref: contract, expiry, deletion_is_final, cycle, empty_and_large_values,
                key_updates, load_renewing, metadata_round_trips, principal_index,
                principal_index_follows_the_session;
            shared: concurrent_writers_lose_nothing, concurrent_create_has_one_winner,
                concurrent_key_updates_lose_nothing, principal_index_has_no_leaks;
            extra:
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn principal_cap() {
                    const MAX: usize = 3;
                    let max = ::std::num::NonZeroUsize::new(MAX).expect("non-zero");
                    let fixture = ($capped)(max).await;
                    $crate::checks::principal_cap(&*fixture.store(), MAX).await;
                }
                $($extra)*
        );
    };
    (@tests $make:expr; by_ref: $($check:ident),*; shared: $($shared:ident),*; extra: $($extra:item)*) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::Fixture as _;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let fixture = $make.await;
                    $crate::checks::$check(&*fixture.store()).await;
                }
            )*

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    let fixture = $make.await;
                    $crate::checks::$shared(fixture.store()).await;
                }
            )*

            $($extra)*
        }
    };
}
