//! The events contract: what happens to sessions is reported.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tether_core::{
    Applied, Cycled, EventKind, EventStream, Id, Principal, Revoked, SessionEvent, SessionHandle,
    SessionStore, Timestamp,
};

use super::{changes, create, expiry_in, record_with};

/// An event as the check compares it: what happened, to whose session.
type Reported = (EventKind, Option<Principal>);

/// How long a check waits for an event other than an expiry.
const DELIVERY: Duration = Duration::from_secs(10);

fn principal(name: &str) -> Principal {
    Principal::new(format!("{name}-{}", Id::random().expect("entropy"))).expect("principal")
}

/// Reads events until every handle in `expected` has shown its kinds, in order, or the time
/// is up. Events of other sessions (other tests on a shared store) are skipped; an event
/// delivered twice (stores that deliver at least once) counts once.
async fn expect_events(
    events: &mut EventStream,
    expected: &[(SessionHandle, Vec<Reported>)],
    within: Duration,
) {
    let mut seen: HashMap<SessionHandle, Vec<Reported>> = HashMap::new();
    let deadline = Instant::now() + within;
    let done = |seen: &HashMap<SessionHandle, Vec<Reported>>| {
        expected
            .iter()
            .all(|(handle, kinds)| seen.get(handle).map(Vec::len).unwrap_or(0) >= kinds.len())
    };
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, events.next()).await;
        let event: SessionEvent = match next {
            Err(_) => break,
            Ok(None) => panic!("the event stream ended"),
            Ok(Some(Err(error))) => panic!("the event stream failed: {error}"),
            Ok(Some(Ok(event))) => event,
        };
        if !expected.iter().any(|(handle, _)| *handle == event.handle) {
            continue;
        }
        let list = seen.entry(event.handle).or_default();
        let item = (event.kind, event.principal);
        if list.last() != Some(&item) {
            list.push(item);
        }
    }
    for (handle, kinds) in expected {
        assert_eq!(
            seen.get(handle).cloned().unwrap_or_default(),
            *kinds,
            "events of session {handle}"
        );
    }
}

/// Creating, binding, cycling, revoking, deleting and expiring sessions are reported, each
/// with the session's handle and principal; an expiry within `expired_within` of the deadline.
pub async fn session_events(store: &dyn SessionStore, expired_within: Duration) {
    let mut events = store.events().await.expect("subscribe to events");
    let alice = principal("alice");

    let first = record_with(&[("k", b"v")]).with_principal(Some(alice.clone()));
    create(store, &first).await;
    let second = record_with(&[("k", b"v")]);
    create(store, &second).await;
    let bind = changes(|c| c.bind(alice.clone()));
    assert_eq!(
        store
            .apply(&second.id, &bind, &second.expiry)
            .await
            .expect("apply"),
        Applied::Applied
    );
    let moved = Id::random().expect("entropy");
    assert_eq!(
        store.cycle(&second.id, &moved).await.expect("cycle"),
        Cycled::Moved
    );
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&moved))
            .await
            .expect("revoke"),
        Revoked::Revoked
    );
    store.delete(&first.id).await.expect("delete");
    // Writes that change no session report nothing.
    store.delete(&first.id).await.expect("delete twice");

    let some = |p: &Principal| Some(p.clone());
    expect_events(
        &mut events,
        &[
            (
                SessionHandle::of(&first.id),
                vec![
                    (EventKind::Created, some(&alice)),
                    (EventKind::Deleted, some(&alice)),
                ],
            ),
            (
                SessionHandle::of(&second.id),
                vec![
                    (EventKind::Created, None),
                    (EventKind::PrincipalSet, some(&alice)),
                ],
            ),
            (
                SessionHandle::of(&moved),
                vec![
                    (
                        EventKind::Cycled {
                            from: SessionHandle::of(&second.id),
                        },
                        some(&alice),
                    ),
                    (EventKind::Revoked, some(&alice)),
                ],
            ),
        ],
        DELIVERY,
    )
    .await;

    let ttl = Duration::from_millis(300);
    let mut short = record_with(&[("k", b"v")]).with_principal(Some(alice.clone()));
    short.expiry = expiry_in(ttl);
    create(store, &short).await;
    let deadline = short.expiry.expires_at();
    expect_events(
        &mut events,
        &[(
            SessionHandle::of(&short.id),
            vec![
                (EventKind::Created, some(&alice)),
                (EventKind::Expired, some(&alice)),
            ],
        )],
        ttl + expired_within + DELIVERY,
    )
    .await;
    let late = Timestamp::now().duration_since(deadline);
    assert!(
        late <= expired_within + Duration::from_millis(500),
        "the expiry was reported {late:?} after the deadline, past the store's {expired_within:?}"
    );
}
