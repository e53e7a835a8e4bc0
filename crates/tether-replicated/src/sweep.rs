//! Garbage collection: expired sessions, and tombstones past their retention, are forgotten.
//! A session forgotten at its deadline is reported expired by the node that was its primary
//! at the deadline.

use std::sync::Arc;
use std::time::Duration;

use tether_core::{EventKind, Timestamp};

use crate::events::Events;
use crate::link::Link;
use crate::membership::Members;
use crate::state::LocalState;
use crate::view::View;

/// How often expired sessions and tombstones are collected: a session is forgotten, and its
/// expiry reported, within this long after its deadline (plus the time the node's runtime
/// takes to get to the sweep).
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Sweeps `state` every [`SWEEP_EVERY`] until the node stops, keeping tombstones at least
/// `tombstone_retention`.
///
/// While someone subscribes to `events`, each sweep reports [`EventKind::Expired`] for the
/// sessions it forgot at their deadline when
///
/// - their deadline came since the sweep before, so a node reports a session's expiry at most
///   once, even when a copy of it comes again (pushed by a holder that had not swept it yet);
/// - this node was the session's primary at the deadline, by the view it went by then: backups
///   forget their copies without a word, and a node that took over from a dead primary
///   reports only the deadlines that came after it took over (the dead primary's sweep may
///   have reported the earlier ones before it died), so no two nodes report one expiry while
///   their views agree;
/// - this node served throughout the period since the sweep before: it served at both sweeps
///   and did not stop serving to join again in between (it stood still, or was fenced: see
///   [`Members::notice_stall`]). Meanwhile the others may have taken its sessions over and
///   reported their expiries; what expired while it stood still or joined again is reported
///   by nobody rather than twice.
pub(crate) async fn run(
    link: Arc<Link>,
    members: Arc<Members>,
    state: Arc<LocalState>,
    events: Arc<Events>,
    tombstone_retention: Duration,
) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    let mut changes = members.watch();
    let mut last = Timestamp::now();
    let mut views = Views::new(last, changes.borrow_and_update().clone());
    // Whether the node served at the last sweep, and in which join epoch.
    let mut served = (members.is_serving(), members.stalls());
    loop {
        tokio::select! {
            () = link.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                views.adopted(Timestamp::now(), changes.borrow_and_update().clone());
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Timestamp::now();
        let since = std::mem::replace(&mut last, now);
        let window = events.wanted().then_some(since);
        let (forgotten, expired) = state.sweep_reporting(now, tombstone_retention, window);
        if forgotten > 0 {
            tracing::debug!(node = %link.name(), forgotten, "collected expired sessions and tombstones");
        }
        if !expired.is_empty() {
            // A stall not noticed yet would leave the epoch as it was.
            members.notice_stall();
        }
        let serving = (members.is_serving(), members.stalls());
        let steady = serving.0 && serving == std::mem::replace(&mut served, serving);
        if steady {
            let me = members.name();
            for session in expired {
                let primary = views
                    .at(session.deadline)
                    .and_then(|v| v.primary(&session.id));
                if primary == Some(me) {
                    events.emit(EventKind::Expired, &session.id, session.principal.as_ref());
                }
            }
        }
        views.forget_before(now);
    }
}

/// The views a node went by since its last sweep, each with when it was adopted: which one
/// was in force at a session's deadline.
struct Views {
    /// Oldest first; never empty.
    adopted: Vec<(Timestamp, View)>,
}

impl Views {
    /// `view` in force from `at`.
    fn new(at: Timestamp, view: View) -> Self {
        Self {
            adopted: vec![(at, view)],
        }
    }

    /// `view` was adopted at `at`.
    fn adopted(&mut self, at: Timestamp, view: View) {
        self.adopted.push((at, view));
    }

    /// The view in force at `at`: the last one adopted at or before it (the oldest kept, for a
    /// time before it).
    fn at(&self, at: Timestamp) -> Option<&View> {
        self.adopted
            .iter()
            .rev()
            .find(|(from, _)| *from <= at)
            .or_else(|| self.adopted.first())
            .map(|(_, view)| view)
    }

    /// Keeps only what [`Views::at`] needs for times from `at` on.
    fn forget_before(&mut self, at: Timestamp) {
        let in_force = self
            .adopted
            .iter()
            .rposition(|(from, _)| *from <= at)
            .unwrap_or(0);
        self.adopted.drain(..in_force);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;

    #[test]
    fn the_view_in_force_at_a_time_is_the_last_adopted_before_it() {
        let view = |members: &[&str]| View::new(members.iter().copied(), Mode::AllToAll);
        let t = Timestamp::from_millis;
        let mut views = Views::new(t(1_000), view(&["a", "b", "c"]));
        views.adopted(t(1_400), view(&["a", "b"]));
        views.adopted(t(1_700), view(&["a"]));
        assert_eq!(
            views.at(t(900)),
            Some(&view(&["a", "b", "c"])),
            "the oldest kept"
        );
        assert_eq!(views.at(t(1_000)), Some(&view(&["a", "b", "c"])));
        assert_eq!(views.at(t(1_399)), Some(&view(&["a", "b", "c"])));
        assert_eq!(views.at(t(1_400)), Some(&view(&["a", "b"])));
        assert_eq!(views.at(t(9_000)), Some(&view(&["a"])));
        views.forget_before(t(1_500));
        assert_eq!(views.adopted.len(), 2);
        assert_eq!(views.at(t(1_500)), Some(&view(&["a", "b"])));
        views.forget_before(t(2_000));
        assert_eq!(views.adopted.len(), 1);
        assert_eq!(views.at(t(1_500)), Some(&view(&["a"])));
    }
}
