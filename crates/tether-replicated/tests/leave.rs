//! Graceful leave: a node shut down with `Node::shutdown` hands its sessions over first, so a
//! planned restart, one node after another, loses nothing and fails nothing.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{quick, record};
use tether_core::{Applied, Changes, Created, Expiry, Id, SessionStore, Timestamp};
use tether_replicated::{Ack, LocalCluster, Mode, ReplicatedStore};

const NODES: usize = 3;

async fn cluster(ack: Ack) -> LocalCluster {
    let cluster = LocalCluster::start(NODES, |c| {
        quick(c).with_mode(Mode::Backup { copies: 1 }).with_ack(ack)
    })
    .await
    .unwrap();
    assert!(cluster.settle(Duration::from_secs(10)).await);
    cluster
}

fn expiry() -> Expiry {
    Expiry::new(Timestamp::now(), Duration::from_secs(300), None)
}

fn counter(n: u64) -> Changes {
    let mut changes = Changes::default();
    changes.insert("n", Bytes::from(n.to_string()));
    changes
}

async fn count(store: &ReplicatedStore, id: &Id) -> Option<u64> {
    let record = store.load(id).await.ok()??;
    std::str::from_utf8(record.data.get("n")?)
        .ok()?
        .parse()
        .ok()
}

async fn sessions(store: &ReplicatedStore, how_many: usize) -> Vec<Id> {
    let mut ids = Vec::with_capacity(how_many);
    for _ in 0..how_many {
        let record = record();
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        assert_eq!(
            store
                .apply(&record.id, &counter(0), &expiry())
                .await
                .unwrap(),
            Applied::Applied
        );
        ids.push(record.id);
    }
    ids
}

/// The sessions a leaving node was the primary of are on both of their next holders the
/// moment it has left: even if the other holder dies right after, none is lost. A node that
/// merely dies leaves them on one holder until the survivors notice and copy them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_hands_its_sessions_to_the_next_holders_before_it_goes() {
    let mut cluster = cluster(Ack::Sync).await;
    let ids = sessions(&cluster.store(0).unwrap(), 90).await;
    let view = tether_replicated::Membership::view(cluster.node(0).unwrap());
    let handed: Vec<Id> = ids
        .iter()
        .copied()
        .filter(|id| view.holders(id) == ["node-1", "node-0"])
        .collect();
    assert!(
        !handed.is_empty(),
        "node-1 is the primary of some of the 90, node-0 their backup"
    );

    let handover = cluster.leave(1).await.expect("node-1 runs");
    assert!(handover.complete, "{handover:?}");
    assert_eq!(handover.peers_told, 2, "{handover:?}");
    assert!(handover.sessions >= handed.len(), "{handover:?}");
    // Their other holder goes too, at once: node-2 must have them already.
    cluster.kill(0);
    let survivor = cluster.store(2).unwrap();
    for id in &handed {
        assert_eq!(count(&survivor, id).await, Some(0), "session {id:?}");
    }
}

/// The sessions a leaving node was a backup of are on both of their next holders too the
/// moment it has left: their primary may die right after (a scale-down followed by a crash)
/// and none is lost. (Before, only the sessions it was the primary of were handed over; these
/// waited for the survivors' background copy, and a kill right after the leave lost them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_backup_hands_its_copies_to_the_next_holders_before_it_goes() {
    let mut cluster = cluster(Ack::Sync).await;
    let ids = sessions(&cluster.store(0).unwrap(), 300).await;
    let view = tether_replicated::Membership::view(cluster.node(0).unwrap());
    let backed: Vec<Id> = ids
        .iter()
        .copied()
        .filter(|id| view.holders(id) == ["node-0", "node-1"])
        .collect();
    assert!(
        !backed.is_empty(),
        "node-0 is the primary of some of the 300, node-1 their backup"
    );

    let handover = cluster.leave(1).await.expect("node-1 runs");
    assert!(handover.complete, "{handover:?}");
    let next = cluster.node(2).unwrap();
    let missing = backed.iter().filter(|id| next.held(id).is_none()).count();
    assert_eq!(missing, 0, "of {} sessions node-2 lacks", backed.len());
    cluster.kill(0);
    let survivor = cluster.store(2).unwrap();
    for id in &backed {
        assert_eq!(count(&survivor, id).await, Some(0), "session {id:?}");
    }
}

/// Users, each with a session and a home node (as behind a sticky balancer), count up without
/// a pause while every node in turn is drained, shut down gracefully and started again: no
/// call fails and no increment is lost or applied twice.
async fn rolling_restart_under_load(ack: Ack) {
    const USERS: usize = 24;
    let mut cluster = cluster(ack).await;
    let ids = sessions(&cluster.store(0).unwrap(), USERS).await;
    let stores: Arc<RwLock<Vec<Option<ReplicatedStore>>>> =
        Arc::new(RwLock::new((0..NODES).map(|i| cluster.store(i)).collect()));
    // The node the balancer no longer sends to; `NODES` when none is drained.
    let drained = Arc::new(AtomicU64::new(NODES as u64));
    let in_flight: Arc<Vec<AtomicU64>> = Arc::new((0..NODES).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let increments = Arc::new(AtomicU64::new(0));
    // Reads that did not answer the user's last write: a lost or a doubled increment.
    let wrong = Arc::new(AtomicU64::new(0));
    let mut users = tokio::task::JoinSet::new();
    for (user, id) in ids.iter().copied().enumerate() {
        let (stores, drained, in_flight) = (stores.clone(), drained.clone(), in_flight.clone());
        let (stop, failures, increments) = (stop.clone(), failures.clone(), increments.clone());
        let wrong = wrong.clone();
        users.spawn(async move {
            let home = user % NODES;
            let mut expected = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let node = if drained.load(Ordering::SeqCst) == home as u64 {
                    (home + 1) % NODES
                } else {
                    home
                };
                in_flight[node].fetch_add(1, Ordering::SeqCst);
                // Checked again after counting itself in: the drain waits for calls counted.
                let store = if drained.load(Ordering::SeqCst) == node as u64 {
                    None
                } else {
                    stores.read().unwrap()[node].clone()
                };
                if let Some(store) = store {
                    match count(&store, &id).await {
                        Some(n) if n != expected => {
                            eprintln!(
                                "user {user} on node-{node}: read {n}, wrote {expected} last"
                            );
                            wrong.fetch_add(1, Ordering::Relaxed);
                            expected = n;
                        }
                        Some(n) => match store.apply(&id, &counter(n + 1), &expiry()).await {
                            Ok(Applied::Applied) => {
                                expected = n + 1;
                                increments.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                eprintln!("user {user} on node-{node}: apply {other:?}");
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        None => {
                            eprintln!("user {user} on node-{node}: the session did not load");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                in_flight[node].fetch_sub(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (id, expected)
        });
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in 0..NODES {
        // The balancer takes the node out of rotation and its requests drain; then it leaves.
        drained.store(node as u64, Ordering::SeqCst);
        while in_flight[node].load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        eprintln!("draining node-{node}");
        let handover = cluster.leave(node).await.expect("the node runs");
        eprintln!("node-{node} left: {handover:?}");
        assert!(handover.complete, "node-{node}: {handover:?}");
        stores.write().unwrap()[node] = None;
        cluster.restart(node).await.unwrap();
        eprintln!("node-{node} restarted");
        stores.write().unwrap()[node] = cluster.store(node);
        drained.store(NODES as u64, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut finals = Vec::new();
    while let Some(done) = users.join_next().await {
        finals.push(done.unwrap());
    }
    let increments = increments.load(Ordering::Relaxed);
    eprintln!("{ack}: {increments} increments through a rolling restart of {NODES} nodes");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no call failed");
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "no read missed the user's last write"
    );
    assert!(increments > USERS as u64 * 10, "the users kept counting");
    for i in 0..NODES {
        let store = cluster.store(i).unwrap();
        for (id, expected) in &finals {
            assert_eq!(count(&store, id).await, Some(*expected), "node-{i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_and_fails_nothing() {
    rolling_restart_under_load(Ack::Sync).await;
}
