//! The network between the lab's parts: loopback, or one slowed to a given round trip.
//!
//! With a round-trip time set, the front waits half of it before it forwards a request to an
//! app node and half of it again when the answer comes, and every connection from an app node
//! to Redis and between replication nodes goes through a [`Relay`](crate::relay::Relay) that
//! holds each chunk of bytes half a round trip in each direction. The lab does it in process,
//! not with `tc netem` in network namespaces: its nodes are threads of one process on
//! loopback, it runs without root, and the delays stay exact on every machine.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;

use crate::timer::FineTimer;

/// The network the lab's parts talk over.
///
/// ```
/// use std::time::Duration;
/// use tether_lab::Network;
///
/// let lan = Network::new(Duration::from_micros(200), Duration::ZERO);
/// assert!(!lan.is_loopback());
/// assert_eq!(lan.to_string(), "round trip 200µs");
/// assert!(Network::default().is_loopback());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// Round-trip time added to every connection between the lab's parts.
    pub rtt: Duration,
    /// Up to this much more per round trip, uniformly random.
    pub jitter: Duration,
}

impl Network {
    /// A network of round trip `rtt`, plus up to `jitter` more.
    pub fn new(rtt: Duration, jitter: Duration) -> Self {
        Self { rtt, jitter }
    }

    /// Nothing added: plain loopback.
    pub fn is_loopback(&self) -> bool {
        self.rtt.is_zero() && self.jitter.is_zero()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_loopback() {
            return f.write_str("loopback");
        }
        write!(f, "round trip {:?}", self.rtt)?;
        if !self.jitter.is_zero() {
            write!(f, " + up to {:?} jitter", self.jitter)?;
        }
        Ok(())
    }
}

impl Serialize for Network {
    /// `{"rtt_ms": .., "jitter_ms": ..}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut fields = serializer.serialize_struct("Network", 2)?;
        fields.serialize_field("rtt_ms", &(self.rtt.as_secs_f64() * 1000.0))?;
        fields.serialize_field("jitter_ms", &(self.jitter.as_secs_f64() * 1000.0))?;
        fields.end()
    }
}

/// A [`Network`] in use: the delays of one lab run, on one timer.
#[derive(Debug)]
pub(crate) struct Delays {
    network: Network,
    timer: FineTimer,
    rng: Mutex<SmallRng>,
}

impl Delays {
    /// `None` on loopback: nothing to delay.
    pub(crate) fn start(network: Network) -> std::io::Result<Option<Self>> {
        if network.is_loopback() {
            return Ok(None);
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Some(Self {
            network,
            timer: FineTimer::start()?,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }))
    }

    /// One direction of a round trip: half of it, plus up to half the jitter.
    pub(crate) fn one_way(&self) -> Duration {
        let half = self.network.rtt / 2;
        let jitter = u64::try_from(self.network.jitter.as_nanos() / 2).unwrap_or(u64::MAX);
        if jitter == 0 {
            return half;
        }
        let extra = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .random_range(0..=jitter);
        half + Duration::from_nanos(extra)
    }

    /// Waits until `at`.
    pub(crate) async fn until(&self, at: Instant) {
        self.timer.sleep_until(at).await;
    }

    /// Waits one direction of a round trip.
    pub(crate) async fn one_way_trip(&self) {
        let at = Instant::now() + self.one_way();
        self.until(at).await;
    }

    /// How late the delays were on average, past what they were asked to last.
    pub(crate) fn mean_lateness(&self) -> Option<Duration> {
        self.timer.mean_lateness()
    }
}
