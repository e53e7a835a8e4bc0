//! Exactly-once writes on real nodes: a write delivered twice (retried, forwarded again after a
//! failover, replayed by a peer) is applied once.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{cluster, record};
use tether_core::{
    Applied, Changes, Codec, Created, Error, Id, KeyUpdate, KeyUpdated, SessionStore,
};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode, ReplicatedStore};

/// The nodes' timed failure detection suffers from tests running beside it: one at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn set_n(n: u64) -> Changes {
    let mut changes = Changes::new();
    changes.insert("n", Bytes::from(n.to_string()));
    changes
}

async fn n_of(store: &ReplicatedStore, id: &Id) -> u64 {
    let record = store.load(id).await.unwrap().expect("the session lives");
    let n = record.data.get("n").expect("n is set");
    std::str::from_utf8(n).unwrap().parse().unwrap()
}

/// The index of the node that is the primary of `id` (by node 0's view).
fn primary_of(cluster: &LocalCluster, id: &Id) -> usize {
    let view = cluster.node(0).unwrap().view();
    let primary = view.primary(id).unwrap().to_owned();
    (0..cluster.len())
        .find(|i| cluster.node(*i).is_some_and(|n| n.name() == primary))
        .unwrap()
}

fn repeated(cluster: &LocalCluster) -> u64 {
    (0..cluster.len())
        .filter_map(|i| cluster.node(i))
        .map(|n| n.stats().repeated_writes)
        .sum()
}

/// A counter incremented twice, whose first increment (`n = 1`) comes again after the second:
/// it stays at 2. Without the dedupe the primary stamps the repeated write anew and the counter
/// falls back to 1 (a lost update).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_delivered_twice_is_applied_once() {
    let _alone = ALONE.lock().await;
    let cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let stores: Vec<_> = (0..3).map(|i| cluster.store(i).unwrap()).collect();
    let r = record();
    assert_eq!(stores[0].create(&r).await.unwrap(), Created::Created);
    let (first, second) = ([1u8; 16], [2u8; 16]);
    // Through different nodes: forwarded to the primary, or performed there.
    let applied = stores[1]
        .apply_with_write_id(first, &r.id, &set_n(1), &r.expiry)
        .await;
    assert_eq!(applied.unwrap(), Applied::Applied);
    let applied = stores[2]
        .apply_with_write_id(second, &r.id, &set_n(2), &r.expiry)
        .await;
    assert_eq!(applied.unwrap(), Applied::Applied);
    assert_eq!(repeated(&cluster), 0);
    for store in &stores {
        let again = store
            .apply_with_write_id(first, &r.id, &set_n(1), &r.expiry)
            .await;
        assert_eq!(
            again.unwrap(),
            Applied::Applied,
            "answered as the first time"
        );
    }
    for store in &stores {
        assert_eq!(
            n_of(store, &r.id).await,
            2,
            "the repeated write was applied again"
        );
    }
    assert_eq!(repeated(&cluster), 3, "each repetition is counted");
}

/// The primary applies a write and copies it to its backup, then dies before the caller got the
/// answer; the caller sends it again, now to the new primary (the old backup), which recognises
/// it from the write ids it holds with the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_again_after_a_failover_is_applied_once() {
    let _alone = ALONE.lock().await;
    let mut cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let r = record();
    let store = cluster.store(0).unwrap();
    assert_eq!(store.create(&r).await.unwrap(), Created::Created);
    let (first, second) = ([3u8; 16], [4u8; 16]);
    let primary = primary_of(&cluster, &r.id);
    let via = cluster.store(primary).unwrap();
    assert_eq!(
        via.apply_with_write_id(first, &r.id, &set_n(1), &r.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(
        via.apply_with_write_id(second, &r.id, &set_n(2), &r.expiry)
            .await
            .unwrap(),
        Applied::Applied
    );
    cluster.kill(primary);
    assert!(cluster.settle(Duration::from_secs(5)).await);
    let survivor = (0..3).find(|i| *i != primary).unwrap();
    let store = cluster.store(survivor).unwrap();
    let again = store
        .apply_with_write_id(first, &r.id, &set_n(1), &r.expiry)
        .await;
    assert_eq!(again.unwrap(), Applied::Applied);
    assert_eq!(
        n_of(&store, &r.id).await,
        2,
        "applied again after the failover"
    );
    assert_eq!(repeated(&cluster), 1);
}

/// A peer replaying an old write, stamped anew (so it would win over the newer value): the
/// backup recognises its write id, does not apply it and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_replaying_an_old_write_is_refused_and_counted() {
    let _alone = ALONE.lock().await;
    let cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let r = record();
    let primary = primary_of(&cluster, &r.id);
    let node = cluster.node(primary).unwrap();
    let store = node.store();
    assert_eq!(store.create(&r).await.unwrap(), Created::Created);
    assert_eq!(
        store.apply(&r.id, &set_n(1), &r.expiry).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        store.apply(&r.id, &set_n(2), &r.expiry).await.unwrap(),
        Applied::Applied
    );
    let holders: Vec<String> = node
        .view()
        .holders(&r.id)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let backup = (0..3)
        .find(|i| cluster.node(*i).unwrap().name() == holders[1])
        .unwrap();
    let before = cluster.node(backup).unwrap().stats().repeated_writes;
    // The `n = 2` delta, the creation, then the `n = 1` delta again: the last would win.
    for back in [0, 2, 1] {
        assert_eq!(
            node.replay_copied_write(back).await,
            1,
            "the backup answered"
        );
    }
    // The backup holds the session and serves it from its own copy.
    let from_backup = cluster.store(backup).unwrap();
    assert_eq!(n_of(&from_backup, &r.id).await, 2, "a replay was applied");
    assert_eq!(n_of(&store, &r.id).await, 2);
    assert_eq!(
        cluster.node(backup).unwrap().stats().repeated_writes - before,
        3,
        "every replay is counted"
    );
}

fn counter(value: &Option<Bytes>) -> i64 {
    Codec::default()
        .decode(value.as_ref().expect("a counter"))
        .expect("a counter")
}

async fn counter_of(store: &ReplicatedStore, id: &Id, key: &str) -> i64 {
    let record = store.load(id).await.unwrap().expect("the session lives");
    counter(&record.data.get(key).cloned())
}

/// Increments of one key sent at once through two nodes, the session's primary (decided
/// there) and another (forwarded to it): none is lost, each answer is a different count, and
/// every node reads the total afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_through_two_nodes_count_exactly() {
    const TASKS: usize = 4;
    const ROUNDS: usize = 25;
    let _alone = ALONE.lock().await;
    let cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let r = record();
    assert_eq!(
        cluster.store(0).unwrap().create(&r).await.unwrap(),
        Created::Created
    );
    let primary = primary_of(&cluster, &r.id);
    let other = (primary + 1) % cluster.len();
    let mut tasks = tokio::task::JoinSet::new();
    for via in [primary, other] {
        for _ in 0..TASKS {
            let store = cluster.store(via).unwrap();
            let id = r.id;
            tasks.spawn(async move {
                let add = KeyUpdate::Increment {
                    by: 1,
                    codec: Codec::default(),
                };
                let mut counts = Vec::new();
                for _ in 0..ROUNDS {
                    match store.update_key(&id, "hits", &add).await.unwrap() {
                        KeyUpdated::Updated(value) => counts.push(counter(&value)),
                        other => panic!("{other:?}"),
                    }
                }
                counts
            });
        }
    }
    let mut counts: Vec<i64> = Vec::new();
    while let Some(task) = tasks.join_next().await {
        counts.extend(task.unwrap());
    }
    let total = (2 * TASKS * ROUNDS) as i64;
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=total).collect::<Vec<_>>(),
        "each increment answered its own count"
    );
    for i in 0..cluster.len() {
        let store = cluster.store(i).unwrap();
        assert_eq!(counter_of(&store, &r.id, "hits").await, total, "node {i}");
    }
    assert_eq!(repeated(&cluster), 0);
}

/// An increment delivered again (its answer lost), through any node and after its primary
/// died, counts once and is answered with the count it made; a failed one writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_delivered_twice_counts_once() {
    let _alone = ALONE.lock().await;
    let mut cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let r = record();
    let store = cluster.store(0).unwrap();
    assert_eq!(store.create(&r).await.unwrap(), Created::Created);
    let add = KeyUpdate::Increment {
        by: 5,
        codec: Codec::default(),
    };
    let (first, second) = ([5u8; 16], [6u8; 16]);
    let primary = primary_of(&cluster, &r.id);
    let other = (primary + 1) % cluster.len();
    let via_other = cluster.store(other).unwrap();
    let five = via_other
        .update_key_with_write_id(first, &r.id, "n", &add)
        .await
        .unwrap();
    assert!(matches!(&five, KeyUpdated::Updated(v) if counter(v) == 5));
    let ten = cluster
        .store(primary)
        .unwrap()
        .update_key_with_write_id(second, &r.id, "n", &add)
        .await
        .unwrap();
    assert!(matches!(&ten, KeyUpdated::Updated(v) if counter(v) == 10));
    for i in 0..cluster.len() {
        let again = cluster
            .store(i)
            .unwrap()
            .update_key_with_write_id(first, &r.id, "n", &add)
            .await
            .unwrap();
        assert_eq!(again, five, "answered as the first time, through node {i}");
    }
    assert_eq!(counter_of(&via_other, &r.id, "n").await, 10);
    assert_eq!(repeated(&cluster), 3);

    // An increment of something that is not a counter fails as such through a forward too.
    let mut text = Changes::new();
    text.insert("text", Codec::default().encode("words").unwrap());
    assert_eq!(
        store.apply(&r.id, &text, &r.expiry).await.unwrap(),
        Applied::Applied
    );
    let error = via_other
        .update_key(&r.id, "text", &add)
        .await
        .expect_err("not a counter");
    assert!(
        matches!(&error, Error::NotACounter { key, by: 5 } if key == "text"),
        "{error:?}"
    );

    cluster.kill(primary);
    assert!(cluster.settle(Duration::from_secs(5)).await);
    let survivor = (0..3).find(|i| *i != primary).unwrap();
    let store = cluster.store(survivor).unwrap();
    let again = store
        .update_key_with_write_id(second, &r.id, "n", &add)
        .await
        .unwrap();
    assert_eq!(again, ten, "the new primary remembers the answer");
    assert_eq!(counter_of(&store, &r.id, "n").await, 10, "counted again");
}
