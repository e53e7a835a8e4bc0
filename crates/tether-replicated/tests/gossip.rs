//! Peers found by gossip: five nodes join through a seed, one leaves gracefully, one is
//! killed, one is added later under load; every view agrees within a bound, no call fails,
//! and packets from another cluster or garbage are refused without changing any view.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{members, quick, record, until_views};
use tether_core::{Changes, Created, SessionStore as _};
use tether_replicated::{Gossip, Mode, Node, NodeConfig, PeerKey};

fn name(i: usize) -> String {
    format!("node-{i}")
}

async fn start(i: usize, key: &PeerKey, seeds: &[SocketAddr]) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gossip = Gossip::new("127.0.0.1:0".parse().unwrap())
        .with_seeds(seeds.iter().copied())
        .with_join_timeout(Duration::from_secs(3));
    let config = NodeConfig::new(name(i), listener.local_addr().unwrap(), key.clone())
        .with_mode(Mode::Backup { copies: 1 })
        .with_gossip(gossip);
    Node::start_with_listener(quick(config), listener)
        .await
        .unwrap()
}

fn names(of: &[usize]) -> Vec<String> {
    of.iter().map(|i| name(*i)).collect()
}

fn views(nodes: &[&Node]) -> Vec<Vec<String>> {
    nodes.iter().map(|n| members(n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_join_leave_die_and_grow_by_gossip() {
    let key = PeerKey::new([5u8; 32]).unwrap();
    let n0 = start(0, &key, &[]).await;
    let seed = [n0.gossip_addr().unwrap()];
    let (n1, n2, n3) = tokio::join!(
        start(1, &key, &seed),
        start(2, &key, &seed),
        start(3, &key, &seed)
    );
    let all = [&n0, &n1, &n2, &n3];
    let agreed = until_views(&all, &names(&[0, 1, 2, 3]), Duration::from_secs(5)).await;
    assert!(agreed.is_some(), "views never agreed: {:?}", views(&all));
    eprintln!("four nodes agreed {agreed:?} after the last started");

    let mut written = Vec::new();
    for i in 0..40 {
        let record = record();
        let store = all[i % all.len()].store();
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        written.push(record.id);
    }

    // A graceful leave: gone from every view at once, nothing lost.
    let handover = n1.shutdown().await;
    assert!(handover.complete, "{handover:?}");
    let rest = [&n0, &n2, &n3];
    let left = until_views(&rest, &names(&[0, 2, 3]), Duration::from_secs(3)).await;
    assert!(left.is_some(), "after a leave: {:?}", views(&rest));
    eprintln!("a node that left was out of every view after {left:?}");

    // Copies lost with the leave are made again in the background: one fault at a time.
    let copied = common::time_until(Duration::from_secs(5), || {
        written
            .iter()
            .all(|id| rest.iter().filter(|n| n.held(id).is_some()).count() >= 2)
    })
    .await;
    assert!(copied.is_some(), "sessions without their second copy");

    // A kill: the others notice by themselves.
    n2.abort();
    let rest = [&n0, &n3];
    let died = until_views(&rest, &names(&[0, 3]), Duration::from_secs(5)).await;
    assert!(died.is_some(), "after a kill: {:?}", views(&rest));
    eprintln!("a killed node was out of every view after {died:?}");
    for id in &written {
        assert!(
            n0.store().load(id).await.unwrap().is_some(),
            "a session is gone"
        );
    }

    // A node added later, seeded with another node than the first, while both serve a
    // steady stream of writes: it is in every view and serves every session within 2 s, and
    // no call anywhere fails meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = tokio::task::JoinSet::new();
    for (task, node) in rest.iter().enumerate() {
        let (store, stop) = (node.store(), Arc::clone(&stop));
        let (calls, failures) = (Arc::clone(&calls), Arc::clone(&failures));
        let ids = written.clone();
        load.spawn(async move {
            for round in 0..20_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = ids[(round * 2 + task) % ids.len()];
                let mut changes = Changes::new();
                changes.insert(format!("k{task}"), bytes::Bytes::from(round.to_string()));
                let expiry = tether_core::Expiry::new(
                    tether_core::Timestamp::now(),
                    Duration::from_secs(300),
                    None,
                );
                calls.fetch_add(1, Ordering::Relaxed);
                if let Err(error) = store.apply(&id, &changes, &expiry).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("a call failed while a node was added: {error}");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let added = Instant::now();
    let n4 = start(4, &key, &[n3.gossip_addr().unwrap()]).await;
    eprintln!(
        "the added node's start returned after {:?}",
        added.elapsed()
    );
    let grown = [&n0, &n3, &n4];
    let joined = until_views(&grown, &names(&[0, 3, 4]), Duration::from_secs(5)).await;
    assert!(joined.is_some(), "after an add: {:?}", views(&grown));
    let mut missing = written.len();
    while missing > 0 && added.elapsed() < Duration::from_secs(5) {
        missing = 0;
        for id in &written {
            if n4.store().load(id).await.unwrap().is_none() {
                missing += 1;
            }
        }
    }
    let serving = added.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    eprintln!(
        "a node added by gossip was in every view and served every session {serving:?} after \
         it started; {} calls meanwhile, {} failed",
        calls.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );
    assert_eq!(missing, 0, "sessions the new node cannot serve");
    assert!(serving < Duration::from_secs(2), "took {serving:?}");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "calls failed while a node was added"
    );
    assert!(calls.load(Ordering::Relaxed) > 100, "the load ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_from_another_cluster_or_garbage_is_refused() {
    let key = PeerKey::new([6u8; 32]).unwrap();
    let n0 = start(0, &key, &[]).await;
    let seed = n0.gossip_addr().unwrap();
    let n1 = start(1, &key, &[seed]).await;
    let both = [&n0, &n1];
    assert!(
        until_views(&both, &names(&[0, 1]), Duration::from_secs(5))
            .await
            .is_some(),
        "{:?}",
        views(&both)
    );

    // A node of another cluster (another key) seeded with this one: never a member.
    let stranger = start(7, &PeerKey::new([7u8; 32]).unwrap(), &[seed]).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(views(&both), [names(&[0, 1]), names(&[0, 1])]);
    assert_eq!(members(&stranger), names(&[7]), "the stranger found nobody");
    let refused = n0.stats().rejected_gossip;
    assert!(
        refused >= 1,
        "the stranger's packets were refused ({refused})"
    );

    // A flood of garbage and of truncated or re-tagged packets: refused and counted, the
    // views kept, the cluster still serving.
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut garbage = vec![0u8; 1_435];
    for i in 0..5_000u32 {
        let len = (i as usize * 37) % garbage.len();
        for (j, byte) in garbage.iter_mut().enumerate() {
            *byte = (i as usize).wrapping_mul(31).wrapping_add(j * 7) as u8;
        }
        if i % 3 == 0 {
            garbage[..3].copy_from_slice(b"tg\x01");
        }
        let _ = sender.send_to(&garbage[..len], seed).await;
        // Paced, so the loopback socket's receive buffer does not drop most of them.
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = n0.stats().rejected_gossip;
    assert!(
        after > refused + 1_000,
        "garbage counted: {refused} then {after}"
    );
    assert_eq!(views(&both), [names(&[0, 1]), names(&[0, 1])]);
    let record = record();
    assert_eq!(n1.store().create(&record).await.unwrap(), Created::Created);
    assert!(n0.store().load(&record.id).await.unwrap().is_some());
    stranger.abort();
}

#[tokio::test]
async fn gossip_needs_a_reachable_address_and_no_second_discovery() {
    let key = PeerKey::new([8u8; 32]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = NodeConfig::new("a", listener.local_addr().unwrap(), key.clone())
        .with_gossip(Gossip::new("0.0.0.0:0".parse().unwrap()));
    let error = Node::start_with_listener(config, listener)
        .await
        .expect_err("an unspecified gossip address without an advertised one is refused");
    assert!(error.to_string().contains("reach"), "{error}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = NodeConfig::new("a", listener.local_addr().unwrap(), key)
        .with_gossip(Gossip::new("127.0.0.1:0".parse().unwrap()))
        .with_discovery(tether_replicated::StaticPeers::default());
    let error = Node::start_with_listener(config, listener)
        .await
        .expect_err("gossip with a discovery is refused");
    assert!(error.to_string().contains("gossip"), "{error}");
}
