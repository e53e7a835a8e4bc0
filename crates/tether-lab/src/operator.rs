//! What the nodes' own metrics say: each app node's layer records into a recorder of its own
//! (given to the layer when it is built, since the layer registers its handles then), so the
//! lab reads the same counters an operator's dashboard shows, per node, even with several labs
//! in one process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use serde::Serialize;

/// The layer's request counter, by outcome.
const REQUESTS: &str = "tether_session_requests_total";
/// The layer's failed store calls, by operation and kind.
const STORE_ERRORS: &str = "tether_session_store_errors_total";

/// One node's metrics. Clones share them: a node started again counts on.
#[derive(Clone)]
pub(crate) struct NodeMetrics {
    registry: Arc<Registry<Key, AtomicStorage>>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    pub(crate) fn new() -> Self {
        Self {
            registry: Arc::new(Registry::atomic()),
        }
    }

    /// Runs `build` with this node's recorder as the current one: what registers its metric
    /// handles in it (the session layer) records here from then on.
    pub(crate) fn recording<T>(&self, build: impl FnOnce() -> T) -> T {
        let recorder = NodeRecorder(Arc::clone(&self.registry));
        metrics::with_local_recorder(&recorder, build)
    }

    /// The counter `name`'s values by their labels (`label=value` pairs joined by `/`).
    fn counter(&self, name: &str) -> BTreeMap<String, u64> {
        let mut values = BTreeMap::new();
        self.registry.visit_counters(|key, counter| {
            if key.name() == name {
                let labels: Vec<&str> = key.labels().map(metrics::Label::value).collect();
                *values.entry(labels.join("/")).or_default() += counter.load(Ordering::Relaxed);
            }
        });
        values
    }

    /// Requests the node's layer took, whatever became of them.
    pub(crate) fn requests(&self) -> u64 {
        self.counter(REQUESTS).values().sum()
    }
}

/// What the nodes' metrics counted over a strategy's run, warm-up included: the figures an
/// operator watching `tether_session_requests_total` and `tether_session_store_errors_total`
/// would have seen, summed over the nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OperatorView {
    /// Requests through the nodes' session layers, by outcome (`loaded`, `changed`,
    /// `created`, `discarded`, `save_failed`, `late`, ...); outcomes never seen are left out.
    pub requests: BTreeMap<String, u64>,
    /// Requests per node, in node order (the figure the table's max node share comes from).
    pub requests_by_node: Vec<u64>,
    /// Failed store calls, by `operation/kind` (`load/unavailable`, ...); none: empty.
    pub store_errors: BTreeMap<String, u64>,
}

impl OperatorView {
    pub(crate) fn of(nodes: &[&NodeMetrics]) -> Self {
        let mut view = Self::default();
        for node in nodes {
            let requests = node.counter(REQUESTS);
            view.requests_by_node.push(requests.values().sum());
            for (outcome, n) in requests {
                *view.requests.entry(outcome).or_default() += n;
            }
            for (what, n) in node.counter(STORE_ERRORS) {
                *view.store_errors.entry(what).or_default() += n;
            }
        }
        view.requests.retain(|_, n| *n > 0);
        view.store_errors.retain(|_, n| *n > 0);
        view
    }

    /// All requests the layers took.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    /// One line: `41,200 requests (loaded 20,100, changed 21,100); store errors: apply/unavailable 3`.
    pub(crate) fn line(&self) -> String {
        let by_outcome: Vec<String> = self
            .requests
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect();
        let errors = if self.store_errors.is_empty() {
            "none".to_owned()
        } else {
            let errors: Vec<String> = self
                .store_errors
                .iter()
                .map(|(what, n)| format!("{what} {n}"))
                .collect();
            errors.join(", ")
        };
        format!(
            "{} requests ({}); store errors: {errors}",
            self.total_requests(),
            by_outcome.join(", ")
        )
    }
}

/// A recorder over one node's registry.
struct NodeRecorder(Arc<Registry<Key, AtomicStorage>>);

impl Recorder for NodeRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reach_the_node_they_were_registered_for() {
        let (a, b) = (NodeMetrics::new(), NodeMetrics::new());
        let loaded = a.recording(|| metrics::counter!(REQUESTS, "outcome" => "loaded"));
        let failed = b.recording(
            || metrics::counter!(STORE_ERRORS, "operation" => "load", "kind" => "unavailable"),
        );
        let changed = b.recording(|| metrics::counter!(REQUESTS, "outcome" => "changed"));
        loaded.increment(3);
        changed.increment(2);
        failed.increment(1);
        // Outside `recording`, nothing reaches either node.
        metrics::counter!(REQUESTS, "outcome" => "loaded").increment(100);

        let view = OperatorView::of(&[&a, &b]);
        assert_eq!(view.requests_by_node, [3, 2]);
        assert_eq!(view.total_requests(), 5);
        assert_eq!(
            view.store_errors,
            BTreeMap::from([("load/unavailable".to_owned(), 1)])
        );
        assert_eq!(
            view.line(),
            "5 requests (changed 2, loaded 3); store errors: load/unavailable 1"
        );
    }
}
