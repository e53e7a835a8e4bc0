//! Simulated users: each keeps a counter in its session and checks every answer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::front::Front;

/// Width of one point of the timelines.
pub(crate) const BUCKET: Duration = Duration::from_millis(250);

/// What the requests sent in one [`BUCKET`] came to.
#[derive(Debug, Default)]
struct Bucket {
    ok: AtomicU64,
    errors: AtomicU64,
    sessions_lost: AtomicU64,
    updates_lost: AtomicU64,
}

/// One bucket's counts, as read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Successful answers.
    pub(crate) ok: u64,
    /// Failed requests.
    pub(crate) errors: u64,
    /// Answers that showed a session lost.
    pub(crate) sessions_lost: u64,
    /// Increments those answers showed lost.
    pub(crate) updates_lost: u64,
}

/// What all users of one strategy saw.
#[derive(Debug)]
pub(crate) struct Tally {
    start: Instant,
    measure_from: Instant,
    pub(crate) ok: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Of the errors: answered 503 (the store could not be reached).
    pub(crate) unavailable: AtomicU64,
    /// Of the errors: no answer (no server reachable, or none within the request bound).
    pub(crate) unanswered: AtomicU64,
    /// A counter came back as 1 after a higher value: the session was lost.
    pub(crate) sessions_lost: AtomicU64,
    /// Increments that vanished (the reset's lost count, or a step back).
    pub(crate) updates_lost: AtomicU64,
    /// A counter jumped ahead: a write counted twice (the user sends a failed request again
    /// with the same id, so a failed write that was applied all the same is not one).
    pub(crate) wrong_values: AtomicU64,
    /// Of the errors: those of requests the front sent to node `i` (last, if it tried several).
    pub(crate) errors_by_node: Vec<AtomicU64>,
    latencies: Mutex<Vec<Latency>>,
    /// False for long runs: the latency list would grow with every request.
    keep_latencies: bool,
    /// By the time the request was sent, from `start`.
    buckets: Vec<Bucket>,
}

/// One answered request: when it was sent, and how long it took.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Latency {
    /// Milliseconds from the start of the run.
    pub(crate) sent_ms: u32,
    pub(crate) micros: u32,
}

impl Tally {
    /// A tally for a run of `nodes` nodes (spare ones included) that lasts `total`, the first
    /// `warmup` unmeasured.
    pub(crate) fn new(start: Instant, warmup: Duration, total: Duration, nodes: usize) -> Self {
        let buckets = (total.as_millis() / BUCKET.as_millis()) as usize + 2;
        Self {
            start,
            measure_from: start + warmup,
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
            sessions_lost: AtomicU64::new(0),
            updates_lost: AtomicU64::new(0),
            wrong_values: AtomicU64::new(0),
            errors_by_node: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            latencies: Mutex::new(Vec::new()),
            keep_latencies: true,
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
        }
    }

    /// A tally for a long run: counts, but no latency list and no timeline.
    pub(crate) fn counting_only(start: Instant, nodes: usize) -> Self {
        Self {
            keep_latencies: false,
            ..Self::new(start, Duration::ZERO, Duration::ZERO, nodes)
        }
    }

    /// The bucket of a request sent at `sent`; `None` past the end of the run.
    fn bucket(&self, sent: Instant) -> Option<&Bucket> {
        let index = (sent.duration_since(self.start).as_millis() / BUCKET.as_millis()) as usize;
        self.buckets.get(index)
    }

    /// A failed request sent at `sent`, last to `node` if to any.
    fn record_error(&self, node: Option<usize>, sent: Instant) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(count) = node.and_then(|i| self.errors_by_node.get(i)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bucket) = self.bucket(sent) {
            bucket.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The answer to a request sent at `sent` showed the session lost, and `updates` with it.
    fn record_session_lost(&self, sent: Instant, updates: u64) {
        self.sessions_lost.fetch_add(1, Ordering::Relaxed);
        if let Some(bucket) = self.bucket(sent) {
            bucket.sessions_lost.fetch_add(1, Ordering::Relaxed);
        }
        self.record_updates_lost(sent, updates);
    }

    /// The answer to a request sent at `sent` showed `updates` increments lost.
    fn record_updates_lost(&self, sent: Instant, updates: u64) {
        self.updates_lost.fetch_add(updates, Ordering::Relaxed);
        if let Some(bucket) = self.bucket(sent) {
            bucket.updates_lost.fetch_add(updates, Ordering::Relaxed);
        }
    }

    fn record_ok(&self, sent: Instant) {
        if let Some(bucket) = self.bucket(sent) {
            bucket.ok.fetch_add(1, Ordering::Relaxed);
        }
        if sent >= self.measure_from {
            self.ok.fetch_add(1, Ordering::Relaxed);
            if !self.keep_latencies {
                return;
            }
            let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
            let sent_ms =
                u32::try_from(sent.duration_since(self.start).as_millis()).unwrap_or(u32::MAX);
            self.latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Latency { sent_ms, micros });
        }
    }

    /// The latencies of the measured requests, in the order they were answered.
    pub(crate) fn latencies(&self) -> Vec<Latency> {
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Successful requests per second, bucket by bucket.
    pub(crate) fn timeline(&self) -> Vec<f64> {
        let per_second = 1000.0 / BUCKET.as_millis() as f64;
        self.buckets
            .iter()
            .map(|b| b.ok.load(Ordering::Relaxed) as f64 * per_second)
            .collect()
    }

    /// Every bucket's counts, from the start of the run.
    pub(crate) fn counts(&self) -> Vec<Counts> {
        self.buckets
            .iter()
            .map(|b| Counts {
                ok: b.ok.load(Ordering::Relaxed),
                errors: b.errors.load(Ordering::Relaxed),
                sessions_lost: b.sessions_lost.load(Ordering::Relaxed),
                updates_lost: b.updates_lost.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// One user: a cookie jar and the last counter value it was given.
#[derive(Debug, Default)]
pub(crate) struct User {
    cookies: Vec<(String, String)>,
    last: u64,
    sent: u64,
    /// Four reads (`/count`) for each write (`/incr`) instead of writes only.
    mixed: bool,
    /// Start a new session (forget every cookie) after this many requests.
    churn: Option<u64>,
    /// The last request failed: the next step sends it again, with the same id.
    retry: bool,
}

impl User {
    fn cookie_header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        Some(
            self.cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn keep(&mut self, set_cookie: &str) {
        let pair = set_cookie.split(';').next().unwrap_or_default();
        let Some((name, value)) = pair.split_once('=') else {
            return;
        };
        self.cookies.retain(|(n, _)| n != name);
        if !value.is_empty() && !set_cookie.contains("Max-Age=0") {
            self.cookies.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Sends one request and checks the answer against the last value. After an error the
    /// user sends the same request again (the same `x-request-id`), as a client does that
    /// retries with an idempotency key: a write it was told failed but that was applied is
    /// then not counted twice, and a wrong value is a store's double count.
    pub(crate) async fn step(&mut self, front: &Front, tally: &Tally) {
        if !std::mem::take(&mut self.retry) {
            self.sent += 1;
            if self
                .churn
                .is_some_and(|every| self.sent.is_multiple_of(every))
            {
                self.cookies.clear();
                self.last = 0;
            }
        }
        let write = !self.mixed || self.sent.is_multiple_of(5);
        let path = if write { "/incr" } else { "/count" };
        let sent = Instant::now();
        let cookies = self.cookie_header();
        let (reply, node) = front.send(path, cookies.as_deref(), self.sent).await;
        let Some(reply) = reply else {
            self.retry = true;
            tally.record_error(node, sent);
            tally.unanswered.fetch_add(1, Ordering::Relaxed);
            return;
        };
        for set in &reply.set_cookies {
            self.keep(set);
        }
        let count: Option<u64> = reply.body.trim().parse().ok();
        let (true, Some(count)) = (reply.status.is_success(), count) else {
            self.retry = true;
            tally.record_error(node, sent);
            if reply.status == http::StatusCode::SERVICE_UNAVAILABLE {
                tally.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        if !write {
            self.check_read(count, tally, sent);
            tally.record_ok(sent);
            return;
        }
        if count > self.last + 1 {
            tally.wrong_values.fetch_add(1, Ordering::Relaxed);
        } else if count == 1 && self.last > 0 {
            tally.record_session_lost(sent, self.last);
        } else if count <= self.last {
            tally.record_updates_lost(sent, self.last + 1 - count);
        }
        self.last = count;
        tally.record_ok(sent);
    }

    /// A read, sent at `sent`, must show the last value written.
    fn check_read(&mut self, count: u64, tally: &Tally, sent: Instant) {
        if count > self.last {
            tally.wrong_values.fetch_add(1, Ordering::Relaxed);
        } else if count == 0 && self.last > 0 {
            tally.record_session_lost(sent, self.last);
        } else if count < self.last {
            tally.record_updates_lost(sent, self.last - count);
        }
        self.last = count;
    }
}

/// How a group of users behaves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    pub(crate) users: usize,
    pub(crate) think: Duration,
    pub(crate) deadline: Instant,
    pub(crate) mixed: bool,
    pub(crate) churn: Option<u64>,
}

/// Starts the users: each steps until the deadline or `stop`, pausing `think` between requests.
pub(crate) fn spawn_users(
    load: Load,
    front: &Arc<Front>,
    tally: &Arc<Tally>,
    stop: &watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut users = JoinSet::new();
    for _ in 0..load.users {
        let (front, tally, mut stop) = (Arc::clone(front), Arc::clone(tally), stop.clone());
        users.spawn(async move {
            let mut user = User {
                mixed: load.mixed,
                churn: load.churn,
                ..User::default()
            };
            // Bounded in time and in count.
            for _ in 0..1_000_000_000u64 {
                if Instant::now() >= load.deadline || *stop.borrow() {
                    break;
                }
                user.step(&front, &tally).await;
                tokio::select! {
                    () = tokio::time::sleep(load.think) => {}
                    _ = stop.changed() => {}
                }
            }
        });
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_and_errors_count_in_the_bucket_of_the_request_that_showed_them() {
        let start = Instant::now();
        let tally = Tally::new(start, Duration::ZERO, Duration::from_secs(1), 2);
        let at = |ms| start + Duration::from_millis(ms);
        tally.record_error(Some(1), at(300));
        tally.record_session_lost(at(600), 5);
        tally.record_updates_lost(at(610), 2);
        tally.record_updates_lost(at(60_000), 1);
        let counts = tally.counts();
        assert_eq!(counts.len(), 6);
        assert_eq!(
            counts[1],
            Counts {
                errors: 1,
                ..Counts::default()
            }
        );
        assert_eq!(
            counts[2],
            Counts {
                sessions_lost: 1,
                updates_lost: 7,
                ..Counts::default()
            }
        );
        assert_eq!(tally.errors_by_node[1].load(Ordering::Relaxed), 1);
        // Past the last bucket: in the totals only.
        assert_eq!(tally.updates_lost.load(Ordering::Relaxed), 8);
        assert_eq!(tally.sessions_lost.load(Ordering::Relaxed), 1);
    }
}
