//! How long and how hard a run drives a server, and the figures drawn from its samples.

use std::time::Duration;

/// How long and how hard a throughput run drives each stack.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) measure: Duration,
    pub(crate) warmup: Duration,
    pub(crate) connections: usize,
    pub(crate) repeat: usize,
}

impl Plan {
    /// From the command line's figures (which refuses zero seconds, connections and rounds).
    pub(crate) fn new(seconds: u64, warmup: u64, connections: usize, repeat: usize) -> Self {
        Self {
            measure: Duration::from_secs(seconds),
            warmup: Duration::from_secs(warmup),
            connections,
            repeat,
        }
    }
}

/// `d` in milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of `values` (the upper one of an even count); 0 without values.
pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0].into_iter()), 4.0);
        assert_eq!(median(std::iter::empty()), 0.0);
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
