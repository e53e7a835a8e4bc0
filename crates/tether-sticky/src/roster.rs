//! The set of backends, their ring for source hashing, and the routing decision.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use tether_core::Id;
use tether_core::placement::rendezvous_order;
use xxhash_rust::xxh3::xxh3_64;

use crate::backend::{Backend, Reason};
use crate::config::{Config, Failover};

/// Points per backend on the source-hashing ring.
const VIRTUAL_NODES: u64 = 64;

/// The backends, sorted by name, and the hash ring over them.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    backends: Vec<Arc<Backend>>,
    ring: Vec<(u64, usize)>,
}

/// Where one attempt goes.
#[derive(Debug)]
pub(crate) enum Route {
    To {
        backend: Arc<Backend>,
        reason: Reason,
        /// The client must learn a new pin.
        pin: bool,
        /// The request's unit of load is taken already (bounded-load routing).
        reserved: bool,
    },
    /// No backend may take the request.
    Unavailable,
}

/// What a request offers for routing.
#[derive(Debug, Default)]
pub(crate) struct Clues {
    /// Backend named by a valid affinity cookie.
    pub(crate) pinned: Option<String>,
    /// The request carried an affinity cookie or header, valid or not.
    pub(crate) had_pin: bool,
    /// The application's session id.
    pub(crate) session: Option<Id>,
    /// The client's address.
    pub(crate) client: Option<IpAddr>,
}

impl Roster {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.backends.iter().any(|b| b.name == name) {
            return;
        }
        inner.backends.push(Arc::new(Backend::new(name.to_owned())));
        inner.backends.sort_by(|a, b| a.name.cmp(&b.name));
        inner.rebuild_ring();
    }

    pub(crate) fn remove(&self, name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.backends.retain(|b| b.name != name);
        inner.rebuild_ring();
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Backend>> {
        self.read()
            .backends
            .iter()
            .find(|b| b.name == name)
            .cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Backend>> {
        self.read().backends.clone()
    }

    /// Decides where an attempt goes. `excluded` holds backends that failed this request.
    /// Health decides, unless every backend that could serve is unhealthy (see
    /// [`Inner::panic`]): only then is the decision taken again without it.
    pub(crate) fn route(
        &self,
        config: &Config,
        clues: &Clues,
        excluded: &[String],
        redispatch: bool,
    ) -> Route {
        let inner = self.read();
        match inner.route(config, clues, excluded, redispatch, false) {
            Route::Unavailable if inner.panic() => {
                inner.route(config, clues, excluded, redispatch, true)
            }
            route => route,
        }
    }
}

impl Route {
    /// A session-id route taken instead of a dead pin re-pins the client.
    fn repin(self, redispatched: bool) -> Self {
        match self {
            Self::To { backend, .. } if redispatched => Self::To {
                backend,
                reason: Reason::Redispatched,
                pin: true,
                reserved: false,
            },
            other => other,
        }
    }
}

impl Inner {
    /// [`Roster::route`] on this roster; `panic`: health is disregarded.
    fn route(
        &self,
        config: &Config,
        clues: &Clues,
        excluded: &[String],
        redispatch: bool,
        panic: bool,
    ) -> Route {
        let usable = |b: &&Arc<Backend>| !excluded.contains(&b.name);
        let mut redispatched = redispatch;

        if config.pinning == crate::Pinning::Source {
            return match clues.client {
                Some(ip) => self.bounded_load(ip, config.epsilon, excluded, panic),
                None => self.least_loaded(config, excluded, Reason::New, panic),
            };
        }
        let by_session = || -> Option<Route> {
            let id = clues.session.as_ref()?;
            let names: Vec<&str> = self.backends.iter().map(|b| b.name.as_str()).collect();
            rendezvous_order(id, &names)
                .into_iter()
                .filter_map(|name| self.backends.iter().find(|b| b.name == name))
                .filter(usable)
                .find(|b| b.takes_pinned(panic))
                .map(|b| Route::To {
                    backend: Arc::clone(b),
                    reason: Reason::BySession,
                    pin: false,
                    reserved: false,
                })
        };
        if config.pinning == crate::Pinning::SessionId
            && let Some(route) = by_session()
        {
            return route;
        }
        if let Some(pinned) = &clues.pinned {
            let backend = self
                .backends
                .iter()
                .filter(usable)
                .find(|b| &b.name == pinned);
            match (backend, config.failover) {
                (Some(b), Failover::Persist) if b.state() != crate::BackendState::Maintenance => {
                    return Route::To {
                        backend: Arc::clone(b),
                        reason: Reason::Pinned,
                        pin: false,
                        reserved: false,
                    };
                }
                (Some(b), _) if b.takes_pinned(panic) => {
                    return Route::To {
                        backend: Arc::clone(b),
                        reason: Reason::Pinned,
                        pin: false,
                        reserved: false,
                    };
                }
                (_, Failover::Strict) => return Route::Unavailable,
                _ => redispatched = true,
            }
        }
        if config.pinning == crate::Pinning::Cookie
            && let Some(route) = by_session()
        {
            return route.repin(redispatched);
        }
        let reason = if redispatched {
            Reason::Redispatched
        } else {
            Reason::New
        };
        self.least_loaded(config, excluded, reason, panic)
    }

    fn rebuild_ring(&mut self) {
        self.ring = self
            .backends
            .iter()
            .enumerate()
            .flat_map(|(index, backend)| {
                (0..VIRTUAL_NODES).map(move |v| {
                    let point = xxh3_64(format!("{}#{v}", backend.name).as_bytes());
                    (point, index)
                })
            })
            .collect();
        self.ring.sort_unstable();
    }

    /// Every backend that could serve (not in maintenance) is unhealthy: ejected or down by
    /// active checks. Health then stops deciding, as in Envoy's panic mode: a burst of slow
    /// answers (all backends waiting on one failed peer, say) or a health path broken
    /// everywhere must not turn into 503s for everyone, when the backends may well answer.
    /// Backends that failed this request stay excluded.
    fn panic(&self) -> bool {
        let mut serving = self
            .backends
            .iter()
            .filter(|b| b.state() != crate::BackendState::Maintenance)
            .peekable();
        serving.peek().is_some() && serving.all(|b| !b.is_healthy())
    }

    /// Power of two choices among the backends that take new sessions: two at random, each
    /// drawn in proportion to its weight, and the one with fewer requests in flight per unit
    /// of weight (the operator's, ramped during slow start) wins.
    fn least_loaded(
        &self,
        config: &Config,
        excluded: &[String],
        reason: Reason,
        panic: bool,
    ) -> Route {
        let candidates: Vec<&Arc<Backend>> = self
            .backends
            .iter()
            .filter(|b| !excluded.contains(&b.name) && b.takes_new(panic))
            .collect();
        let weights: Vec<f64> = candidates
            .iter()
            .map(|b| b.weight(config.slow_start))
            .collect();
        // On a tie (idle backends, say) the first drawn wins, so idle backends get new
        // sessions in the ratio of their weights.
        let load = |b: &Backend, weight: f64| b.in_flight() as f64 / weight;
        let chosen = match candidates.len() {
            0 => return Route::Unavailable,
            1 => candidates.first().copied(),
            _ => {
                let (i, j) = two_weighted(&weights);
                let weight = |k: usize| weights.get(k).copied().unwrap_or(1.0);
                let (a, b) = (candidates.get(i).copied(), candidates.get(j).copied());
                match (a, b) {
                    (Some(a), Some(b)) => Some(if load(b, weight(j)) < load(a, weight(i)) {
                        b
                    } else {
                        a
                    }),
                    (a, b) => a.or(b),
                }
            }
        };
        match chosen {
            Some(backend) => Route::To {
                backend: Arc::clone(backend),
                reason,
                pin: true,
                reserved: false,
            },
            None => Route::Unavailable,
        }
    }

    /// Consistent hashing with bounded loads: the client's point on the ring, then clockwise to
    /// the first backend below `(1 + epsilon)` times its share of the load (the average, with
    /// equal weights; in proportion to its weight otherwise).
    fn bounded_load(&self, ip: IpAddr, epsilon: f64, excluded: &[String], panic: bool) -> Route {
        let eligible: Vec<&Arc<Backend>> = self
            .backends
            .iter()
            .filter(|b| !excluded.contains(&b.name) && b.takes_new(panic))
            .collect();
        if eligible.is_empty() || self.ring.is_empty() {
            return Route::Unavailable;
        }
        let total: usize = eligible.iter().map(|b| b.in_flight()).sum();
        let total_weight: f64 = eligible
            .iter()
            .map(|b| f64::from(b.configured_weight().get()))
            .sum();
        let bound = (1.0 + epsilon) * (total + 1) as f64 / total_weight.max(1.0);
        let cap = |b: &Backend| (bound * f64::from(b.configured_weight().get())).ceil() as usize;
        let point = xxh3_64(ip.to_string().as_bytes());
        let start = self.ring.partition_point(|(p, _)| *p < point);
        let walk = self
            .ring
            .iter()
            .skip(start)
            .chain(self.ring.iter().take(start));
        let mut fallback = None;
        for (_, index) in walk {
            let Some(backend) = self.backends.get(*index) else {
                continue;
            };
            if excluded.contains(&backend.name) || !backend.takes_new(panic) {
                continue;
            }
            if backend.try_reserve(cap(backend)) {
                return Route::To {
                    backend: Arc::clone(backend),
                    reason: Reason::New,
                    pin: false,
                    reserved: true,
                };
            }
            fallback.get_or_insert(backend);
        }
        // Every backend is at the cap (possible only while the total moves): the first one.
        match fallback {
            Some(backend) => Route::To {
                backend: Arc::clone(backend),
                reason: Reason::New,
                pin: false,
                reserved: false,
            },
            None => Route::Unavailable,
        }
    }
}

/// Two distinct indexes of `weights` (at least two, each above 0), each drawn at random in
/// proportion to its weight: the second among the others.
fn two_weighted(weights: &[f64]) -> (usize, usize) {
    let i = draw(weights, None);
    let j = draw(weights, Some(i));
    (i, j)
}

/// One index of `weights` other than `skip`, at random in proportion to its weight.
fn draw(weights: &[f64], skip: Option<usize>) -> usize {
    let offered = || weights.iter().enumerate().filter(|(k, _)| Some(*k) != skip);
    let total: f64 = offered().map(|(_, w)| w).sum();
    // 53 random bits: a uniform point in [0, total).
    let unit = (getrandom::u64().unwrap_or(0) >> 11) as f64 / (1_u64 << 53) as f64;
    let mut point = unit * total;
    let mut last = 0;
    for (k, w) in offered() {
        if point < *w {
            return k;
        }
        point -= w;
        last = k;
    }
    last
}
