//! How fast a failed node is noticed, and what a node the others declared dead may still do.

mod common;

use std::time::Duration;

use common::{quick, record, time_until};
use tether_core::{Applied, Changes, Created, Expiry, SessionStore, Timestamp};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode};

fn views_lack(cluster: &LocalCluster, nodes: &[usize], gone: &str) -> bool {
    nodes
        .iter()
        .filter_map(|i| cluster.node(*i))
        .all(|node| !node.view().contains(gone))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_is_declared_dead_long_before_the_failure_timeout() {
    // The default failure detection: heartbeats every 200 ms, dead after 1.2 s of silence.
    let mut cluster = LocalCluster::start(3, |c| c.with_mode(Mode::Backup { copies: 1 }))
        .await
        .unwrap();
    assert!(cluster.settle(Duration::from_secs(10)).await);
    let failure_timeout = tether_replicated::DEFAULT_FAILURE_TIMEOUT;
    // Let every connection live past a heartbeat: only then is a loss tried again at once.
    tokio::time::sleep(Duration::from_millis(400)).await;

    cluster.kill(2);
    let detected = time_until(failure_timeout * 2, || {
        views_lack(&cluster, &[0, 1], "node-2")
    })
    .await
    .expect("the survivors drop the killed node from their views");
    eprintln!("a killed node left both views after {detected:?}");
    // A closed connection that cannot be opened again is a dead peer: no need to wait for the
    // heartbeats to stop (1.2 s). On loopback this takes well under 100 ms; the bound leaves
    // room for a loaded machine.
    assert!(
        detected < failure_timeout / 3,
        "detected after {detected:?}, the failure timeout is {failure_timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_others_declared_dead_does_not_answer_for_their_sessions() {
    let cluster = LocalCluster::start(3, |c| {
        quick(c)
            .with_mode(Mode::Backup { copies: 1 })
            .with_ack(Ack::Sync)
    })
    .await
    .unwrap();
    assert!(cluster.settle(Duration::from_secs(10)).await);
    let stale = cluster.node(0).unwrap();
    // A session node-0 is the primary of while everyone counts it a member.
    let record = loop {
        let record = record();
        if stale.view().primary(&record.id) == Some("node-0") {
            break record;
        }
    };
    let id = record.id;
    let store = stale.store();
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);

    // node-0 hangs for its peers (it answers nothing, not even heartbeats), while it still
    // hears them: a one-way cut, as a resumed node sees the world before it notices.
    stale.freeze(true);
    assert!(
        time_until(Duration::from_secs(5), || views_lack(
            &cluster,
            &[1, 2],
            "node-0"
        ))
        .await
        .is_some(),
        "the others declare node-0 dead"
    );
    assert!(
        stale.view().contains("node-0"),
        "node-0 still counts itself a member, the primary of the session"
    );

    let expiry = Expiry::new(Timestamp::now(), Duration::from_secs(300), None);
    let mut changes = Changes::default();
    changes.insert("k", bytes::Bytes::from_static(b"v"));
    let applied = store.apply(&id, &changes, &expiry).await.unwrap();
    assert_eq!(applied, Applied::Applied);

    // Its backup refused the copy: node-0 is no longer a member for it. node-0 stopped
    // serving, and the write was done by the session's primary in the others' view.
    let fenced: u64 = [1, 2]
        .iter()
        .map(|i| cluster.node(*i).unwrap().stats().fenced_writes)
        .sum();
    assert!(fenced >= 1, "a copy from node-0 was fenced");
    assert!(
        !stale.view().contains("node-0"),
        "node-0 stopped answering as a member"
    );
    for i in [1, 2] {
        let held = cluster.store(i).unwrap().load(&id).await.unwrap().unwrap();
        assert_eq!(
            held.data.get("k").map(|v| &v[..]),
            Some(&b"v"[..]),
            "node-{i}"
        );
    }

    // Thawed, it joins again and the three agree.
    stale.freeze(false);
    assert!(cluster.settle(Duration::from_secs(15)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_queued_while_its_node_stood_still_is_not_sent_once_its_caller_gave_up() {
    let cluster = LocalCluster::start(3, |c| {
        quick(c)
            .with_mode(Mode::Backup { copies: 1 })
            .with_ack(Ack::Sync)
            .with_sync_timeout(Duration::from_millis(200))
            .with_retry_deadline(Duration::ZERO)
    })
    .await
    .unwrap();
    assert!(cluster.settle(Duration::from_secs(10)).await);
    // A session node-0 does not hold: a write through node-0 is forwarded to its primary.
    let view = cluster.node(0).unwrap().view();
    let record = loop {
        let record = record();
        if !view.holders(&record.id).contains(&"node-0") {
            break record;
        }
    };
    let id = record.id;
    let holder = cluster.store(1).unwrap();
    assert_eq!(holder.create(&record).await.unwrap(), Created::Created);

    // node-0 stands still (its thread blocked, as under SIGSTOP) while a caller on another
    // thread writes through it: the forward waits in node-0's queue, and the caller gives up.
    let pause = Duration::from_millis(1_500);
    assert!(cluster.pause(0, pause));
    let expiry = Expiry::new(Timestamp::now(), Duration::from_secs(300), None);
    let mut changes = Changes::default();
    changes.insert("k", bytes::Bytes::from_static(b"late"));
    let answer = cluster
        .store(0)
        .unwrap()
        .apply(&id, &changes, &expiry)
        .await;
    assert!(
        answer.is_err(),
        "no answer while node-0 stands still: {answer:?}"
    );

    // When node-0 runs again the forward is still queued: sent now, it would apply a write
    // its caller was told failed, with values the application read before the pause.
    tokio::time::sleep(pause).await;
    assert!(cluster.settle(Duration::from_secs(15)).await);
    let held = holder.load(&id).await.unwrap().unwrap();
    assert_eq!(
        held.data.get("k"),
        None,
        "the abandoned write was applied late"
    );
    assert!(cluster.node(0).unwrap().stats().expired_requests >= 1);
}
