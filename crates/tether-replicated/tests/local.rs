//! `LocalCluster`'s faults are real: a paused node stops for real (its peers declare it dead
//! while its sockets stay open) and rejoins after; a node that left or was killed has closed
//! its sockets and starts again on its address.

mod common;

use std::time::{Duration, Instant};

use tether_core::{Created, SessionStore as _};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode};

use common::{cluster, record};

/// Waits until `check` holds, at most `within`.
async fn eventually(within: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

fn members(cluster: &LocalCluster, index: usize) -> usize {
    cluster.node(index).unwrap().view().members().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_declared_dead_with_its_sockets_open_and_rejoins() {
    let cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let addr = cluster.node(2).unwrap().local_addr();
    // The failure timeout is 600 ms: a 3 s pause is long past it.
    let pause = Duration::from_secs(3);
    let paused_at = Instant::now();
    assert!(cluster.pause(2, pause));
    assert!(
        eventually(pause / 2, || members(&cluster, 0) == 2).await,
        "the others never declared the paused node dead"
    );
    assert!(
        paused_at.elapsed() < pause,
        "the pause ended too early to tell"
    );
    // Its listener is still open: the kernel accepts the connection the node cannot serve.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_ok(),
        "a paused node's listener was closed"
    );
    // While paused, its view stands still: it still lists all three.
    assert_eq!(members(&cluster, 2), 3);

    // After the pause it notices the stall and joins again; then all agree on three.
    assert!(cluster.settle(Duration::from_secs(15)).await);
    assert!(paused_at.elapsed() >= pause);
    for i in 0..3 {
        assert_eq!(members(&cluster, i), 3, "node-{i}");
    }
    let r = record();
    assert_eq!(
        cluster.store(2).unwrap().create(&r).await.unwrap(),
        Created::Created
    );
    assert!(
        cluster
            .store(0)
            .unwrap()
            .load(&r.id)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_left_or_was_killed_has_closed_its_sockets_and_restarts() {
    let mut cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    assert!(!cluster.pause(3, Duration::from_secs(1)), "no node-3");
    for (index, leave) in [(1, true), (2, false)] {
        let addr = cluster.node(index).unwrap().local_addr();
        if leave {
            let handover = cluster.leave(index).await.expect("node runs");
            assert!(handover.complete, "{handover:?}");
        } else {
            cluster.kill(index);
        }
        assert!(cluster.node(index).is_none());
        assert!(!cluster.pause(index, Duration::from_secs(1)));
        // Its runtime is gone: nothing listens on its address any more.
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "node-{index} still listens after it stopped (left: {leave})"
        );
        cluster.restart(index).await.unwrap();
        assert_eq!(cluster.node(index).unwrap().local_addr(), addr);
        assert!(cluster.settle(Duration::from_secs(10)).await);
    }
    // Leaving a node that does not run does nothing.
    cluster.kill(0);
    assert!(cluster.leave(0).await.is_none());
    assert!(cluster.node(0).is_none());
}
