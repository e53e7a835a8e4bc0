//! A node's figures as metrics (feature `metrics`), through the
//! [`metrics`](https://docs.rs/metrics) facade: its [`NodeStats`] and the size of its view,
//! published once a second with the node's name as the `node` label. Reading the counters the
//! node keeps anyway costs the replication path nothing; only the acknowledgement time of
//! `Sync` copies is recorded where it happens (`Writes`). The names are listed in
//! docs/operations.md.

use std::sync::Weak;
use std::time::Duration;

use crate::NodeStats;
use crate::node::Parts;

/// How often the figures are published.
const EVERY: Duration = Duration::from_secs(1);

/// Publishes `parts`' figures every [`EVERY`] until the node is gone.
pub(crate) async fn run(parts: Weak<Parts>) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let Some(parts) = parts.upgrade() else {
            return;
        };
        if parts.is_stopped() {
            return;
        }
        publish(parts.name(), &parts.stats(), parts.view_size());
    }
}

fn publish(node: &str, stats: &NodeStats, members: usize) {
    let counters = [
        ("tether_replicated_messages_sent_total", stats.messages_sent),
        ("tether_replicated_bytes_sent_total", stats.bytes_sent),
        ("tether_replicated_dropped_copies_total", stats.dropped),
        (
            "tether_replicated_rejected_connections_total",
            stats.rejected_connections,
        ),
        (
            "tether_replicated_rejected_frames_total",
            stats.rejected_frames,
        ),
        (
            "tether_replicated_repeated_writes_total",
            stats.repeated_writes,
        ),
        ("tether_replicated_fenced_writes_total", stats.fenced_writes),
        (
            "tether_replicated_expired_requests_total",
            stats.expired_requests,
        ),
        (
            "tether_replicated_rejected_gossip_total",
            stats.rejected_gossip,
        ),
        ("tether_replicated_retries_total", stats.retries),
        ("tether_replicated_view_changes_total", stats.view_changes),
        (
            "tether_replicated_sessions_received_total",
            stats.sessions_received,
        ),
    ];
    for (name, value) in counters {
        metrics::counter!(name, "node" => node.to_owned()).absolute(value);
    }
    metrics::gauge!("tether_replicated_entries", "node" => node.to_owned())
        .set(stats.entries as f64);
    metrics::gauge!("tether_replicated_members", "node" => node.to_owned()).set(members as f64);
    metrics::gauge!("tether_replicated_queued_requests", "node" => node.to_owned())
        .set(stats.queued as f64);
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    /// Every figure reaches its own metric: each field gets a distinct value and must come out
    /// under its name (the tests of `NodeStats` make each field move).
    #[test]
    fn each_figure_is_published_under_its_name() {
        let stats = NodeStats {
            messages_sent: 1,
            bytes_sent: 2,
            dropped: 3,
            rejected_connections: 4,
            rejected_frames: 5,
            repeated_writes: 6,
            fenced_writes: 7,
            expired_requests: 8,
            rejected_gossip: 9,
            retries: 10,
            view_changes: 11,
            sessions_received: 12,
            entries: 13,
            queued: 14,
        };
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || publish("node-a", &stats, 15));
        let mut published: Vec<(String, f64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                assert_eq!(
                    key.labels()
                        .map(|l| (l.key(), l.value()))
                        .collect::<Vec<_>>(),
                    [("node", "node-a")]
                );
                let value = match value {
                    DebugValue::Counter(n) => n as f64,
                    DebugValue::Gauge(v) => v.into_inner(),
                    DebugValue::Histogram(_) => f64::NAN,
                };
                (key.name().to_owned(), value)
            })
            .collect();
        published.sort_by(|a, b| a.1.total_cmp(&b.1));
        let expected = [
            "tether_replicated_messages_sent_total",
            "tether_replicated_bytes_sent_total",
            "tether_replicated_dropped_copies_total",
            "tether_replicated_rejected_connections_total",
            "tether_replicated_rejected_frames_total",
            "tether_replicated_repeated_writes_total",
            "tether_replicated_fenced_writes_total",
            "tether_replicated_expired_requests_total",
            "tether_replicated_rejected_gossip_total",
            "tether_replicated_retries_total",
            "tether_replicated_view_changes_total",
            "tether_replicated_sessions_received_total",
            "tether_replicated_entries",
            "tether_replicated_queued_requests",
            "tether_replicated_members",
        ];
        let names: Vec<&str> = published.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, expected);
        let values: Vec<f64> = published.iter().map(|(_, value)| *value).collect();
        assert_eq!(values, (1..=15).map(f64::from).collect::<Vec<_>>());
    }
}
