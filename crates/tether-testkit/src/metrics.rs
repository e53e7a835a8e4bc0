//! Reading what a [`DebuggingRecorder`](metrics_util::debugging::DebuggingRecorder) recorded,
//! for tests that make each metric move.

use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, Snapshotter};

/// The metrics recorded since the previous snapshot, by name and labels.
///
/// Taking a snapshot resets the recorder's counters and gauges to 0 and empties its histograms
/// (the debugging recorder works so): each snapshot holds what was recorded since the last.
#[derive(Debug)]
pub struct MetricsSnapshot(Vec<(CompositeKey, DebugValue)>);

impl MetricsSnapshot {
    /// What `snapshotter`'s recorder recorded since the last snapshot, which it forgets.
    pub fn take(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| (key, value))
                .collect(),
        )
    }

    /// The metric `name` with exactly `labels` (in any order), if recorded.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut wanted = labels.to_vec();
        wanted.sort_unstable();
        self.0.iter().find_map(|(key, value)| {
            let key = key.key();
            let mut found: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            found.sort_unstable();
            (key.name() == name && found == wanted).then_some(value)
        })
    }

    /// A counter's value; 0 when never recorded.
    ///
    /// # Panics
    ///
    /// When the metric is not a counter.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            other => panic!("{name} {labels:?} is not a counter: {other:?}"),
        }
    }

    /// A gauge's value, if recorded.
    ///
    /// # Panics
    ///
    /// When the metric is not a gauge.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.get(name, labels) {
            Some(DebugValue::Gauge(v)) => Some(v.into_inner()),
            None => None,
            other => panic!("{name} {labels:?} is not a gauge: {other:?}"),
        }
    }

    /// How many samples a histogram holds; 0 when never recorded.
    ///
    /// # Panics
    ///
    /// When the metric is not a histogram.
    pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.get(name, labels) {
            Some(DebugValue::Histogram(values)) => values.len(),
            None => 0,
            other => panic!("{name} {labels:?} is not a histogram: {other:?}"),
        }
    }
}
