//! The contract of atomic key updates: compare-and-set and increments of one key.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tether_core::{
    COUNTER_MAX, Codec, ErrorKind, Expiry, Id, KeyUpdate, KeyUpdated, SessionStore, Timestamp,
};

use super::{create, load, record_with};

/// Writers in [`concurrent_key_updates_lose_nothing`], each on both keys.
pub const KEY_WRITERS: usize = 8;
/// Updates per writer and key in [`concurrent_key_updates_lose_nothing`].
pub const KEY_ROUNDS: usize = 25;

fn encoded(codec: Codec, n: i64) -> Bytes {
    codec.encode(&n).expect("encode")
}

async fn update(store: &dyn SessionStore, id: &Id, key: &str, update: KeyUpdate) -> KeyUpdated {
    store
        .update_key(id, key, &update)
        .await
        .expect("update_key")
}

fn swap(expected: Option<&Bytes>, new: Option<&Bytes>) -> KeyUpdate {
    KeyUpdate::Swap {
        expected: expected.cloned(),
        new: new.cloned(),
    }
}

/// `update_key` swaps only from the expected value and reports the current one on a
/// conflict; increments count from absent as 0, refuse what is not a counter and stay in
/// range; neither touches other keys or the expiry; an unknown, deleted or expired session is
/// `Missing` and is not created.
pub async fn key_updates(store: &dyn SessionStore) {
    let codec = Codec::default();
    let record = record_with(&[("other", b"untouched"), ("text", b"\xa5hello")]);
    create(store, &record).await;
    let id = record.id;
    let (one, two) = (encoded(codec, 1), encoded(codec, 2));

    assert_eq!(
        update(store, &id, "n", swap(None, Some(&one))).await,
        KeyUpdated::Updated(Some(one.clone())),
        "a swap from absent creates the key"
    );
    assert_eq!(
        update(store, &id, "n", swap(None, Some(&two))).await,
        KeyUpdated::Conflict(Some(one.clone())),
        "a swap from a stale value is refused and reports the current value"
    );
    assert_eq!(
        update(store, &id, "n", swap(Some(&two), Some(&two))).await,
        KeyUpdated::Conflict(Some(one.clone())),
    );
    assert_eq!(
        update(store, &id, "n", swap(Some(&one), Some(&two))).await,
        KeyUpdated::Updated(Some(two.clone())),
        "a swap from the current value lands"
    );
    let found = load(store, &id).await.expect("session");
    assert_eq!(found.data.get("n"), Some(&two), "the swap is stored");
    assert_eq!(
        found.data.get("other").map(|b| &b[..]),
        Some(&b"untouched"[..]),
        "a key update leaves other keys alone"
    );
    assert_eq!(
        found.expiry.expires_at(),
        record.expiry.expires_at(),
        "a key update leaves the expiry alone"
    );

    assert_eq!(
        update(store, &id, "n", swap(Some(&two), None)).await,
        KeyUpdated::Updated(None),
        "a swap to None removes the key"
    );
    assert!(
        !load(store, &id)
            .await
            .expect("session")
            .data
            .contains_key("n")
    );
    assert_eq!(
        update(store, &id, "n", swap(Some(&two), None)).await,
        KeyUpdated::Conflict(None),
        "a removed key is absent"
    );

    let add = |by| KeyUpdate::Increment { by, codec };
    assert_eq!(
        update(store, &id, "count", add(5)).await,
        KeyUpdated::Updated(Some(encoded(codec, 5))),
        "an increment counts an absent key as 0"
    );
    assert_eq!(
        update(store, &id, "count", add(-7)).await,
        KeyUpdated::Updated(Some(encoded(codec, -2))),
    );
    let stored = load(store, &id)
        .await
        .expect("session")
        .data
        .remove("count")
        .expect("the counter is stored");
    assert_eq!(codec.decode::<i64>(&stored).expect("a counter"), -2);
    let counter_max = encoded(codec, COUNTER_MAX);
    assert_eq!(
        update(store, &id, "count", swap(Some(&stored), Some(&counter_max))).await,
        KeyUpdated::Updated(Some(counter_max.clone())),
    );
    for (key, by) in [("count", 1), ("text", 1), ("other", 1), ("count", i64::MIN)] {
        let error = store
            .update_key(&id, key, &add(by))
            .await
            .expect_err("an increment past the range or of a non-integer fails");
        assert_eq!(
            error.kind(),
            ErrorKind::NotACounter,
            "increment of {key:?} by {by}: {error}"
        );
    }
    let found = load(store, &id).await.expect("session");
    assert_eq!(
        found.data.get("count"),
        Some(&counter_max),
        "a refused increment writes nothing"
    );
    assert_eq!(
        found.data.get("text").map(|b| &b[..]),
        Some(&b"\xa5hello"[..])
    );
    assert_eq!(
        update(store, &id, "count", add(-COUNTER_MAX)).await,
        KeyUpdated::Updated(Some(encoded(codec, 0))),
    );

    {
        let json = Codec::Json;
        let add = |by| KeyUpdate::Increment { by, codec: json };
        let _ = update(store, &id, "j", add(COUNTER_MAX - 1)).await;
        let KeyUpdated::Updated(Some(value)) = update(store, &id, "j", add(1)).await else {
            panic!("a JSON counter increments");
        };
        assert_eq!(
            json.decode::<i64>(&value).expect("JSON counter"),
            COUNTER_MAX
        );
    }

    let unknown = Id::random().expect("entropy");
    for key_update in [swap(None, Some(&one)), add(1)] {
        assert_eq!(
            update(store, &unknown, "n", key_update).await,
            KeyUpdated::Missing,
            "an update of an unknown session is Missing"
        );
    }
    assert!(load(store, &unknown).await.is_none(), "and creates nothing");

    store.delete(&id).await.expect("delete");
    for key_update in [swap(None, Some(&one)), add(1)] {
        assert_eq!(
            update(store, &id, "fresh", key_update).await,
            KeyUpdated::Missing,
            "an update of a deleted session is Missing"
        );
    }
    assert!(
        load(store, &id).await.is_none(),
        "a key update never revives a session"
    );

    let mut short = record_with(&[]);
    short.expiry = Expiry::new(Timestamp::now(), Duration::from_millis(300), None);
    create(store, &short).await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    for key_update in [swap(None, Some(&one)), add(1)] {
        assert_eq!(
            update(store, &short.id, "n", key_update).await,
            KeyUpdated::Missing,
            "an update of an expired session is Missing"
        );
    }
    assert!(load(store, &short.id).await.is_none());
}

/// [`KEY_WRITERS`] tasks each make [`KEY_ROUNDS`] increments of one key and as many
/// compare-and-set read-modify-writes (retried from the reported value on conflict) of
/// another key of one session, while a plain `apply` writes a third key; both counters end
/// at exactly `KEY_WRITERS * KEY_ROUNDS`.
pub async fn concurrent_key_updates_lose_nothing(store: Arc<dyn SessionStore>) {
    let record = record_with(&[]);
    create(&*store, &record).await;
    let codec = Codec::default();
    let id = record.id;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..KEY_WRITERS {
        let incrementing = Arc::clone(&store);
        tasks.spawn(async move {
            let store = incrementing;
            let add = KeyUpdate::Increment { by: 1, codec };
            for _ in 0..KEY_ROUNDS {
                let updated = update(&*store, &id, "incremented", add.clone()).await;
                assert!(
                    matches!(updated, KeyUpdated::Updated(Some(_))),
                    "{updated:?}"
                );
            }
        });
        let swapping = Arc::clone(&store);
        tasks.spawn(async move {
            let store = swapping;
            let mut current: Option<Bytes> = None;
            for _ in 0..KEY_ROUNDS {
                loop {
                    let n = current
                        .as_ref()
                        .map_or(0, |bytes| codec.decode::<i64>(bytes).expect("counter"));
                    let new = encoded(codec, n + 1);
                    match update(&*store, &id, "swapped", swap(current.as_ref(), Some(&new))).await
                    {
                        KeyUpdated::Updated(now) => {
                            current = now;
                            break;
                        }
                        KeyUpdated::Conflict(now) => current = now,
                        KeyUpdated::Missing => panic!("the session exists throughout"),
                    }
                }
            }
        });
    }
    {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            for round in 0..KEY_ROUNDS {
                let mut changes = tether_core::Changes::new();
                changes.insert("plain", encoded(codec, round as i64));
                let applied = store
                    .apply(&id, &changes, &record.expiry)
                    .await
                    .expect("apply");
                assert_eq!(applied, tether_core::Applied::Applied);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("writer task");
    }

    let data = load(&*store, &id).await.expect("session").data;
    let total = (KEY_WRITERS * KEY_ROUNDS) as i64;
    for key in ["incremented", "swapped"] {
        let value: i64 = codec
            .decode(data.get(key).expect("counter present"))
            .expect("counter");
        assert_eq!(value, total, "{key}: lost {} updates", total - value);
    }
    assert!(data.contains_key("plain"), "apply beside key updates lands");
}
