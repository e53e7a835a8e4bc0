//! Sleeps finer than Tokio's timer. Tokio's timer wheel has a resolution of a millisecond, so a
//! network delay of 100 µs each way would last a millisecond or more; one thread here sleeps on
//! a condition variable until the earliest deadline, which the kernel keeps to some tens of
//! microseconds.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A timer thread shared by every delay of a lab run; stopped when dropped.
#[derive(Debug)]
pub(crate) struct FineTimer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// How late the sleeps woke, summed, and how many there were: the report says it.
    late_nanos: AtomicU64,
    sleeps: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    due: BinaryHeap<Due>,
    next: u64,
    stopped: bool,
}

/// A sleeper: earliest deadline first, then first come.
#[derive(Debug)]
struct Due {
    at: Instant,
    order: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// Reversed: `BinaryHeap` pops the greatest, and the earliest must come first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes every sleeper whose deadline has come, then waits for the next deadline or a new
    /// sleeper, until stopped.
    fn run(&self) {
        let mut state = self.lock();
        while !state.stopped {
            let now = Instant::now();
            while state.due.peek().is_some_and(|due| due.at <= now) {
                if let Some(due) = state.due.pop() {
                    let _ = due.wake.send(());
                }
            }
            state = match state.due.peek().map(|due| due.at - now) {
                Some(wait) => {
                    self.wake
                        .wait_timeout(state, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .wake
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

impl FineTimer {
    /// Starts the timer thread.
    pub(crate) fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("tether-lab-timer".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shared.run()
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Returns at `at` (soon after: see [`FineTimer::mean_lateness`]).
    pub(crate) async fn sleep_until(&self, at: Instant) {
        if at <= Instant::now() {
            return;
        }
        let (wake, woken) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if state.stopped {
                return;
            }
            let order = state.next;
            state.next += 1;
            state.due.push(Due { at, order, wake });
        }
        self.shared.wake.notify_one();
        let _ = woken.await;
        let late = u64::try_from(Instant::now().saturating_duration_since(at).as_nanos())
            .unwrap_or(u64::MAX);
        self.shared.late_nanos.fetch_add(late, Ordering::Relaxed);
        self.shared.sleeps.fetch_add(1, Ordering::Relaxed);
    }

    /// How late, on average, the sleeps so far returned; `None` before the first.
    pub(crate) fn mean_lateness(&self) -> Option<Duration> {
        let sleeps = self.shared.sleeps.load(Ordering::Relaxed);
        (sleeps > 0)
            .then(|| Duration::from_nanos(self.shared.late_nanos.load(Ordering::Relaxed) / sleeps))
    }
}

impl Drop for FineTimer {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleeps_do_not_end_before_their_deadline() {
        let timer = Arc::new(FineTimer::start().unwrap());
        // Deadlines well ahead: on a busy machine a task may start late, and a deadline
        // already past when it sleeps is not a sleep.
        let start = Instant::now() + Duration::from_millis(200);
        let mut sleeps = tokio::task::JoinSet::new();
        for micros in [900_u64, 300, 600] {
            let timer = Arc::clone(&timer);
            sleeps.spawn(async move {
                let at = start + Duration::from_micros(micros);
                timer.sleep_until(at).await;
                assert!(Instant::now() >= at);
                micros
            });
        }
        let mut ended = Vec::new();
        while let Some(done) = sleeps.join_next().await {
            ended.push(done.unwrap());
        }
        assert_eq!(ended.len(), 3);
        assert!(timer.mean_lateness().is_some());
        // A deadline already past returns at once and is not counted.
        timer.sleep_until(Instant::now()).await;
        assert_eq!(timer.shared.sleeps.load(Ordering::Relaxed), 3);
    }
}
