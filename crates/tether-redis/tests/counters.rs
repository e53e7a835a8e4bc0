//! Increments run inside Redis, in Lua: the script must read every integer encoding the Rust
//! codecs accept, refuse what they refuse, and count exactly up to `COUNTER_MAX`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use tether_core::{
    COUNTER_MAX, Changes, Codec, ErrorKind, Expiry, Id, KeyUpdate, KeyUpdated, SessionStore,
    Timestamp,
};
use tether_redis::RedisStore;
use tether_testkit::RedisServer;

async fn session(store: &RedisStore) -> Id {
    common::stored_session(store, &[]).await
}

async fn put(store: &RedisStore, id: &Id, value: &[u8]) {
    let mut changes = Changes::new();
    changes.insert("n", Bytes::copy_from_slice(value));
    let expiry = Expiry::new(Timestamp::now(), Duration::from_secs(600), None);
    let _ = store.apply(id, &changes, &expiry).await.expect("apply");
}

#[tokio::test]
async fn the_script_reads_every_integer_encoding_rust_reads() {
    let server = RedisServer::start().expect("redis-server");
    let store = RedisStore::connect(server.url()).await.expect("connect");
    let id = session(&store).await;
    let codec = Codec::MessagePack;

    let mut values: Vec<i64> = vec![
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        4_294_967_295,
        4_294_967_296,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32_768,
        -32_769,
        -2_147_483_648,
        -2_147_483_649,
        COUNTER_MAX - 1,
        -COUNTER_MAX + 1,
    ];
    values.extend([1_i64 << 40, -(1_i64 << 40) - 7]);
    // Encodings wider than needed, as other MessagePack writers may produce them.
    let mut raw: Vec<(Vec<u8>, i64)> = values
        .iter()
        .map(|n| (codec.encode(n).expect("encode").to_vec(), *n))
        .collect();
    raw.push((
        vec![0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        -1,
    ));
    raw.push((vec![0xcf, 0, 0, 0, 0, 0, 0, 0, 5], 5));
    raw.push((vec![0xd0, 0x05], 5));
    raw.push((vec![0xd1, 0xff, 0x00], -256));

    for (bytes, n) in raw {
        put(&store, &id, &bytes).await;
        let update = KeyUpdate::Increment { by: 1, codec };
        let KeyUpdated::Updated(Some(value)) = store
            .update_key(&id, "n", &update)
            .await
            .expect("increment")
        else {
            panic!("increment of {bytes:x?} did not update");
        };
        assert_eq!(
            codec.decode::<i64>(&value).expect("a counter"),
            n + 1,
            "increment of {bytes:x?}"
        );
        assert_eq!(
            value,
            codec.encode(&(n + 1)).expect("encode"),
            "minimal encoding of {}",
            n + 1
        );
    }

    let refused: Vec<Vec<u8>> = vec![
        codec.encode(&1.0_f64).expect("encode").to_vec(),
        codec.encode(&()).expect("encode").to_vec(),
        codec.encode("7").expect("encode").to_vec(),
        codec.encode(&true).expect("encode").to_vec(),
        codec.encode(&COUNTER_MAX).expect("encode").to_vec(),
        codec.encode(&(COUNTER_MAX + 1)).expect("encode").to_vec(),
        codec.encode(&u64::MAX).expect("encode").to_vec(),
        codec.encode(&i64::MIN).expect("encode").to_vec(),
        vec![0x05, 0x05],
        vec![0xcd, 0x01],
        Vec::new(),
    ];
    for bytes in refused {
        put(&store, &id, &bytes).await;
        let error = store
            .update_key(&id, "n", &KeyUpdate::Increment { by: 1, codec })
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::NotACounter, "{bytes:x?}: {error}");
        let stored = store.load(&id).await.expect("load").expect("session");
        assert_eq!(
            &stored.data["n"][..],
            &bytes[..],
            "a refused increment writes nothing"
        );
    }
    for by in [COUNTER_MAX + 1, i64::MIN, i64::MAX] {
        let error = store
            .update_key(&id, "fresh", &KeyUpdate::Increment { by, codec })
            .await
            .expect_err("an amount past the range is refused");
        assert_eq!(error.kind(), ErrorKind::NotACounter);
    }
}

#[tokio::test]
async fn json_counters_count_exactly() {
    let server = RedisServer::start().expect("redis-server");
    let store = RedisStore::connect(server.url()).await.expect("connect");
    let id = session(&store).await;
    let json = Codec::Json;
    for (stored, by, expected) in [
        ("0", 1, "1"),
        ("-5", 3, "-2"),
        ("9007199254740990", 1, "9007199254740991"),
        ("-9007199254740991", COUNTER_MAX, "0"),
    ] {
        put(&store, &id, stored.as_bytes()).await;
        let update = KeyUpdate::Increment { by, codec: json };
        let updated = store
            .update_key(&id, "n", &update)
            .await
            .expect("increment");
        assert_eq!(
            updated,
            KeyUpdated::Updated(Some(Bytes::from(expected))),
            "{stored} + {by}"
        );
    }
    for stored in ["1.0", "007", "\"7\"", "9007199254740992", "1e3", ""] {
        put(&store, &id, stored.as_bytes()).await;
        let update = KeyUpdate::Increment { by: 1, codec: json };
        let error = store.update_key(&id, "n", &update).await.expect_err(stored);
        assert_eq!(error.kind(), ErrorKind::NotACounter, "{stored:?}");
    }
}
