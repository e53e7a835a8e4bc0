//! Store calls retried inside the store, on real nodes: a node dying under a write costs the
//! write time, not an error.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{cluster, quick, record};
use tether_core::{Applied, Changes, Created, Id, SessionStore};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode};

/// The nodes' timed failure detection suffers from tests running beside it: one at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn set(key: &str, value: &'static str) -> Changes {
    let mut changes = Changes::new();
    changes.insert(key, Bytes::from_static(value.as_bytes()));
    changes
}

/// The indexes of the nodes holding `id`, primary first (by node 0's view).
fn holders_of(cluster: &LocalCluster, id: &Id) -> Vec<usize> {
    let view = cluster.node(0).unwrap().view();
    view.holders(id)
        .into_iter()
        .map(|name| {
            (0..cluster.len())
                .find(|i| cluster.node(*i).is_some_and(|n| n.name() == name))
                .unwrap()
        })
        .collect()
}

/// Three backup-1 nodes with one session: the cluster, the session, its holders (primary
/// first) and the node that holds no copy.
async fn one_session() -> (LocalCluster, tether_core::Record, Vec<usize>, usize) {
    let cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let r = record();
    assert_eq!(
        cluster.store(0).unwrap().create(&r).await.unwrap(),
        Created::Created
    );
    let holders = holders_of(&cluster, &r.id);
    let other = (0..3).find(|i| !holders.contains(i)).unwrap();
    (cluster, r, holders, other)
}

/// The primary dies; a write sent at once (its peers still count it a member) waits for the
/// view without it and is performed by the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_primary_dies_is_retried_on_the_new_one() {
    let _alone = ALONE.lock().await;
    let (mut cluster, r, holders, other) = one_session().await;
    cluster.kill(holders[0]);
    let store = cluster.store(other).unwrap();
    let applied = store.apply(&r.id, &set("k", "after"), &r.expiry).await;
    assert_eq!(applied.unwrap(), Applied::Applied);
    for i in [holders[1], other] {
        let record = cluster
            .store(i)
            .unwrap()
            .load(&r.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.data["k"], Bytes::from_static(b"after"), "node {i}");
    }
}

/// A backup dies under `Sync` writes: each is answered `Ok` once the session's holders by the
/// new view have it, not with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_writes_whose_backup_dies_are_answered_once_the_new_holders_have_them() {
    let _alone = ALONE.lock().await;
    let (mut cluster, r, holders, other) = one_session().await;
    let store = cluster.store(holders[0]).unwrap();
    cluster.kill(holders[1]);
    let applied = store.apply(&r.id, &set("k", "after"), &r.expiry).await;
    assert_eq!(applied.unwrap(), Applied::Applied);
    let view = cluster.node(holders[0]).unwrap().view();
    assert_eq!(view.members().len(), 2, "answered after the view changed");
    // The new backup holds the write, whatever its own view says yet.
    let record = cluster
        .store(other)
        .unwrap()
        .load(&r.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.data["k"], Bytes::from_static(b"after"));
}

/// A backup hangs: the writes of its sessions fail their first attempt after the sync
/// timeout, and succeed once heartbeats have declared it dead, within the retry deadline.
/// (`faults.rs` has the same with one attempt, which fails.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_held_up_by_a_hung_backup_succeed_within_the_deadline() {
    let _alone = ALONE.lock().await;
    let sync_timeout = Duration::from_millis(300);
    let deadline = Duration::from_secs(2);
    let cluster = LocalCluster::start(3, |c| {
        quick(c)
            .with_mode(Mode::Backup { copies: 1 })
            .with_sync_timeout(sync_timeout)
            .with_retry_deadline(deadline)
    })
    .await
    .unwrap();
    let store = cluster.store(0).unwrap();
    let mut records = Vec::new();
    for _ in 0..30 {
        let r = record();
        assert_eq!(store.create(&r).await.unwrap(), Created::Created);
        records.push(r);
    }
    cluster.node(2).unwrap().freeze(true);
    let mut slow = 0;
    for r in &records {
        let begun = Instant::now();
        let result = store.apply(&r.id, &set("k", "v"), &r.expiry).await;
        assert_eq!(result.unwrap(), Applied::Applied);
        // The deadline plus one attempt: a forward waits for two sync timeouts.
        assert!(
            begun.elapsed() < deadline + sync_timeout * 2 + Duration::from_millis(300),
            "took {:?}",
            begun.elapsed()
        );
        if begun.elapsed() >= sync_timeout {
            slow += 1;
        }
    }
    assert!(slow > 0, "sessions held by the frozen node waited for it");
    let retries = cluster.node(0).unwrap().stats().retries;
    assert!(
        retries >= 1,
        "the writes that waited were tried again: {retries} retries"
    );
    cluster.node(2).unwrap().freeze(false);
}

/// A store whose node was stopped does not retry: nothing it could try again would succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_of_a_stopped_node_fails_at_once() {
    let _alone = ALONE.lock().await;
    let mut cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let r = record();
    let store = cluster.store(1).unwrap();
    assert_eq!(store.create(&r).await.unwrap(), Created::Created);
    cluster.kill(1);
    let begun = Instant::now();
    // A read may still find the node's own copy; one that asks a peer fails.
    if let Err(error) = store.load(&r.id).await {
        assert!(error.is_transient(), "{error}");
    }
    let error = store
        .apply(&r.id, &set("k", "v"), &r.expiry)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        begun.elapsed() < Duration::from_millis(500),
        "took {:?}",
        begun.elapsed()
    );
}
