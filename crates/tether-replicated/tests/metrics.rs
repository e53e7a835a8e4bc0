//! A node's figures reach the metrics facade (feature `metrics`): traffic, entries and the view.
#![cfg(feature = "metrics")]

mod common;

use std::time::Duration;

use common::{cluster, record};
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use tether_core::SessionStore as _;
use tether_replicated::{Ack, Mode};
use tether_testkit::MetricsSnapshot;

/// The value of `name` of `node`: a counter (`..._total`) or a gauge.
fn value(snapshotter: &Snapshotter, name: &str, node: &str) -> Option<f64> {
    let snapshot = MetricsSnapshot::take(snapshotter);
    let labels = [("node", node)];
    if name.ends_with("_total") {
        snapshot.get(name, &labels)?;
        Some(snapshot.counter(name, &labels) as f64)
    } else {
        snapshot.gauge(name, &labels)
    }
}

/// Waits (bounded) until `name` for `node` satisfies `wanted`; its last value.
async fn until(
    snapshotter: &Snapshotter,
    name: &str,
    node: &str,
    wanted: impl Fn(f64) -> bool,
) -> Option<f64> {
    let mut last = None;
    for _ in 0..60 {
        last = value(snapshotter, name, node);
        if last.is_some_and(&wanted) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

// One test: the recorder is global to this test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_entries_and_the_view_are_published() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");

    let mut cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let store = cluster.store(0).unwrap();
    for _ in 0..20 {
        assert_eq!(
            store.create(&record()).await.unwrap(),
            tether_core::Created::Created
        );
    }
    // A snapshot drains histograms: take this one first.
    let snapshot = MetricsSnapshot::take(&snapshotter);
    let acks: usize = ["node-0", "node-1", "node-2"]
        .iter()
        .map(|node| snapshot.samples("tether_replicated_ack_duration_seconds", &[("node", node)]))
        .sum();
    assert!(
        acks >= 20,
        "each Sync create's primary waited for its backup: {acks} samples"
    );
    let sent = until(
        &snapshotter,
        "tether_replicated_messages_sent_total",
        "node-0",
        |n| n > 0.0,
    )
    .await;
    assert!(sent.is_some_and(|n| n > 0.0), "{sent:?}");
    let bytes = until(
        &snapshotter,
        "tether_replicated_bytes_sent_total",
        "node-0",
        |n| n > 0.0,
    )
    .await;
    assert!(bytes.is_some_and(|n| n > 0.0), "{bytes:?}");
    let entries = until(&snapshotter, "tether_replicated_entries", "node-0", |n| {
        n > 0.0
    })
    .await;
    assert!(entries.is_some_and(|n| n > 0.0), "{entries:?}");
    let members = until(&snapshotter, "tether_replicated_members", "node-1", |n| {
        n == 3.0
    })
    .await;
    assert_eq!(members, Some(3.0));

    cluster.kill(2);
    let members = until(&snapshotter, "tether_replicated_members", "node-1", |n| {
        n == 2.0
    })
    .await;
    assert_eq!(
        members,
        Some(2.0),
        "the killed node leaves the view, and the gauge"
    );
    let changes = until(
        &snapshotter,
        "tether_replicated_view_changes_total",
        "node-1",
        |n| n >= 2.0,
    )
    .await;
    assert!(
        changes.is_some_and(|n| n >= 2.0),
        "joining and the kill each changed node-1's view: {changes:?}"
    );
    // The sessions node-2 held get a new holder among the other two: one of them receives.
    let mut received = 0.0;
    for _ in 0..60 {
        received = ["node-0", "node-1"]
            .iter()
            .filter_map(|node| {
                value(
                    &snapshotter,
                    "tether_replicated_sessions_received_total",
                    node,
                )
            })
            .sum();
        if received > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(received > 0.0, "rebalancing after the kill pushed sessions");

    let snapshot = MetricsSnapshot::take(&snapshotter);
    assert!(
        snapshot
            .gauge("tether_replicated_queued_requests", &[("node", "node-0")])
            .is_some(),
        "the queue depth is published"
    );
}
