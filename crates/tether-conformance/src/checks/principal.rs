//! The principal index contract: sessions by principal, listed and revoked.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tether_core::{
    Applied, Created, Cycled, Id, Principal, Record, Revoked, Seen, SessionHandle, SessionStore,
    Timestamp,
};

use super::{HOUR, changes, create, expiry_in, load, record_with};

/// Users in [`principal_index_has_no_leaks`].
pub const LEAK_USERS: usize = 100;
/// Sessions per user in [`principal_index_has_no_leaks`].
pub const LEAK_SESSIONS: usize = 100;

fn principal(name: &str) -> Principal {
    Principal::new(format!("{name}-{}", Id::random().expect("entropy"))).expect("principal")
}

fn bound(principal: &Principal, created_at: Timestamp) -> Record {
    let mut record = record_with(&[("k", b"v")]);
    record.created_at = created_at;
    record.with_principal(Some(principal.clone()))
}

async fn listed(store: &dyn SessionStore, principal: &Principal) -> Vec<SessionHandle> {
    store
        .sessions_of(principal)
        .await
        .expect("sessions_of")
        .into_iter()
        .map(|info| info.handle)
        .collect()
}

fn handles(records: &[&Record]) -> Vec<SessionHandle> {
    records.iter().map(|r| SessionHandle::of(&r.id)).collect()
}

/// The principal and the last use round-trip with a session, and `apply` replaces them only
/// when its changes carry them.
pub async fn metadata_round_trips(store: &dyn SessionStore) {
    let alice = principal("alice");
    let seen = Seen::new(Timestamp::from_millis(1_700_000_000_123))
        .with_device("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
        .with_address(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let record = record_with(&[("k", b"v")])
        .with_principal(Some(alice.clone()))
        .with_seen(Some(seen.clone()));
    create(store, &record).await;
    let found = load(store, &record.id)
        .await
        .expect("created session loads");
    assert_eq!(
        found.principal,
        Some(alice.clone()),
        "the principal round-trips"
    );
    assert_eq!(
        found.seen.as_deref(),
        Some(&seen),
        "the last use round-trips"
    );

    let untouched = changes(|c| c.insert("k2", Bytes::from_static(b"2")));
    assert_eq!(
        store
            .apply(&record.id, &untouched, &record.expiry)
            .await
            .expect("apply"),
        Applied::Applied
    );
    let found = load(store, &record.id).await.expect("loads");
    assert_eq!(
        found.principal,
        Some(alice),
        "changes without a principal keep it"
    );
    assert_eq!(
        found.seen.as_deref(),
        Some(&seen),
        "changes without a use keep it"
    );

    let bob = principal("bob");
    let later = Seen::new(Timestamp::from_millis(1_700_000_100_000));
    let rebind = changes(|c| {
        c.bind(bob.clone());
        c.set_seen(later.clone());
    });
    assert_eq!(
        store
            .apply(&record.id, &rebind, &record.expiry)
            .await
            .expect("apply"),
        Applied::Applied
    );
    let found = load(store, &record.id).await.expect("loads");
    assert_eq!(
        found.principal,
        Some(bob),
        "a binding replaces the principal"
    );
    assert_eq!(
        found.seen.as_deref(),
        Some(&later),
        "a use replaces the last one"
    );
    assert_eq!(found.data.len(), 2, "metadata changes leave data alone");

    let anonymous = record_with(&[("k", b"v")]);
    create(store, &anonymous).await;
    let found = load(store, &anonymous.id).await.expect("loads");
    assert_eq!(found.principal, None);
    assert_eq!(found.seen, None);
}

/// Sessions bound to a principal are listed under it, oldest first, with what was seen of
/// them; revoking one, all, or all others deletes exactly those, and never a session of
/// another principal.
pub async fn principal_index(store: &dyn SessionStore) {
    let alice = principal("alice");
    let bob = principal("bob");
    let t0 = Timestamp::now();
    let first = bound(&alice, t0);
    let second = bound(&alice, t0 + Duration::from_millis(1));
    create(store, &first).await;
    create(store, &second).await;
    // The third is bound by a later request, as a login does.
    let mut third = record_with(&[("k", b"v")]);
    third.created_at = t0 + Duration::from_millis(2);
    create(store, &third).await;
    let seen = Seen::new(t0).with_device("Safari");
    let login = changes(|c| {
        c.bind(alice.clone());
        c.set_seen(seen.clone());
    });
    assert_eq!(
        store
            .apply(&third.id, &login, &third.expiry)
            .await
            .expect("apply"),
        Applied::Applied
    );
    let bobs = bound(&bob, t0);
    create(store, &bobs).await;
    let anonymous = record_with(&[("k", b"v")]);
    create(store, &anonymous).await;

    let infos = store.sessions_of(&alice).await.expect("sessions_of");
    assert_eq!(
        infos.iter().map(|i| i.handle).collect::<Vec<_>>(),
        handles(&[&first, &second, &third]),
        "a principal's sessions are listed, oldest first, and nobody else's"
    );
    let info = infos.last().expect("three listed");
    assert_eq!(info.created_at, third.created_at);
    assert_eq!(info.expires_at, third.expiry.expires_at());
    assert_eq!(
        info.seen.as_ref(),
        Some(&seen),
        "the listing shows the last use"
    );
    assert_eq!(listed(store, &bob).await, handles(&[&bobs]));
    assert!(
        listed(store, &principal("nobody")).await.is_empty(),
        "an unknown principal has no sessions"
    );

    // Another principal's handle: nothing happens.
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&bobs.id))
            .await
            .expect("revoke"),
        Revoked::NotFound,
        "a handle of another principal's session revokes nothing"
    );
    assert!(
        load(store, &bobs.id).await.is_some(),
        "the other principal's session is untouched"
    );
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&anonymous.id))
            .await
            .expect("revoke"),
        Revoked::NotFound
    );
    assert!(load(store, &anonymous.id).await.is_some());

    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&second.id))
            .await
            .expect("revoke"),
        Revoked::Revoked
    );
    assert!(
        load(store, &second.id).await.is_none(),
        "a revoked session is gone"
    );
    assert_eq!(listed(store, &alice).await, handles(&[&first, &third]));
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&second.id))
            .await
            .expect("revoke"),
        Revoked::NotFound,
        "revoking twice finds nothing the second time"
    );

    let keep = SessionHandle::of(&third.id);
    assert_eq!(
        store
            .revoke_all(&alice, Some(&keep))
            .await
            .expect("revoke_all"),
        1,
        "revoking the others ends exactly one here"
    );
    assert!(load(store, &first.id).await.is_none());
    assert!(
        load(store, &third.id).await.is_some(),
        "the kept session lives"
    );
    assert_eq!(listed(store, &alice).await, handles(&[&third]));

    assert_eq!(store.revoke_all(&alice, None).await.expect("revoke_all"), 1);
    assert!(load(store, &third.id).await.is_none());
    assert!(listed(store, &alice).await.is_empty());
    assert_eq!(store.revoke_all(&alice, None).await.expect("revoke_all"), 0);
    assert!(
        load(store, &bobs.id).await.is_some(),
        "bob is still signed in"
    );
    assert!(load(store, &anonymous.id).await.is_some());
}

/// The index follows a session through `cycle`, a rebinding, `delete` and expiry.
pub async fn principal_index_follows_the_session(store: &dyn SessionStore) {
    let alice = principal("alice");
    let bob = principal("bob");
    let session = bound(&alice, Timestamp::now());
    create(store, &session).await;

    let new = Id::random().expect("entropy");
    assert_eq!(
        store.cycle(&session.id, &new).await.expect("cycle"),
        Cycled::Moved
    );
    assert_eq!(
        listed(store, &alice).await,
        vec![SessionHandle::of(&new)],
        "after cycle the new id is listed, the old one is not"
    );
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&session.id))
            .await
            .expect("revoke"),
        Revoked::NotFound,
        "the old id's handle names nothing after cycle"
    );
    assert_eq!(
        load(store, &new).await.expect("moved").principal,
        Some(alice.clone()),
        "the principal moves with the session"
    );

    let rebind = changes(|c| c.bind(bob.clone()));
    assert_eq!(
        store
            .apply(&new, &rebind, &session.expiry)
            .await
            .expect("apply"),
        Applied::Applied
    );
    assert!(
        listed(store, &alice).await.is_empty(),
        "a session bound to another principal leaves the first one's list"
    );
    assert_eq!(listed(store, &bob).await, vec![SessionHandle::of(&new)]);

    store.delete(&new).await.expect("delete");
    assert!(
        listed(store, &bob).await.is_empty(),
        "a deleted session is not listed"
    );

    let ttl = Duration::from_millis(400);
    let mut short = bound(&alice, Timestamp::now());
    short.expiry = expiry_in(ttl);
    let long = bound(&alice, Timestamp::now() + Duration::from_millis(1));
    create(store, &short).await;
    create(store, &long).await;
    assert_eq!(listed(store, &alice).await.len(), 2);
    tokio::time::sleep(ttl + Duration::from_millis(400)).await;
    assert_eq!(
        listed(store, &alice).await,
        handles(&[&long]),
        "an expired session is not listed"
    );
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&short.id))
            .await
            .expect("revoke"),
        Revoked::NotFound,
        "an expired session cannot be revoked"
    );
    let renewed = expiry_in(HOUR);
    let late_bind = changes(|c| c.bind(alice.clone()));
    assert_eq!(
        store
            .apply(&short.id, &late_bind, &renewed)
            .await
            .expect("apply"),
        Applied::Missing,
        "binding an expired session brings nothing back"
    );
    assert_eq!(listed(store, &alice).await, handles(&[&long]));
}

/// A store made with a cap of `max` sessions per principal revokes the oldest when one more
/// is bound, by `create` or by `apply`.
pub async fn principal_cap(store: &dyn SessionStore, max: usize) {
    assert!(max >= 1, "the cap check needs a cap of at least 1");
    let alice = principal("alice");
    let t0 = Timestamp::now();
    let mut sessions = Vec::new();
    for n in 0..max {
        let session = bound(&alice, t0 + Duration::from_millis(n as u64));
        create(store, &session).await;
        sessions.push(session);
    }
    assert_eq!(
        listed(store, &alice).await.len(),
        max,
        "up to the cap, all stay"
    );

    let newer = bound(&alice, t0 + Duration::from_millis(max as u64));
    create(store, &newer).await;
    let oldest = sessions.remove(0);
    assert!(
        load(store, &oldest.id).await.is_none(),
        "binding one past the cap revokes the oldest"
    );
    sessions.push(newer);
    assert_eq!(
        listed(store, &alice).await,
        handles(&sessions.iter().collect::<Vec<_>>())
    );

    // A login binds an existing session: the oldest goes again.
    let mut login = record_with(&[("k", b"v")]);
    login.created_at = t0 + Duration::from_millis(max as u64 + 1);
    create(store, &login).await;
    let bind = changes(|c| c.bind(alice.clone()));
    assert_eq!(
        store
            .apply(&login.id, &bind, &login.expiry)
            .await
            .expect("apply"),
        Applied::Applied
    );
    let oldest = sessions.remove(0);
    assert!(load(store, &oldest.id).await.is_none());
    assert!(
        load(store, &login.id).await.is_some(),
        "the session just bound stays"
    );
    sessions.push(login);
    assert_eq!(
        listed(store, &alice).await,
        handles(&sessions.iter().collect::<Vec<_>>())
    );

    // Binding it again (a second login in the same session) revokes nothing.
    let newest = sessions.last().expect("sessions up to the cap");
    assert_eq!(
        store
            .apply(&newest.id, &bind, &newest.expiry)
            .await
            .expect("apply"),
        Applied::Applied
    );
    assert_eq!(listed(store, &alice).await.len(), max);

    // Another principal's sessions are not counted.
    let bobs = bound(&principal("bob"), t0);
    create(store, &bobs).await;
    assert_eq!(listed(store, &alice).await.len(), max);
}

/// [`LEAK_USERS`] principals with [`LEAK_SESSIONS`] sessions each: half expire, a quarter are
/// deleted, some are cycled. Once the expired ones are past their deadline, every principal's
/// list names exactly its live sessions.
pub async fn principal_index_has_no_leaks(store: Arc<dyn SessionStore>) {
    let ttl = Duration::from_millis(1500);
    let users: Vec<Principal> = (0..LEAK_USERS).map(|_| principal("user")).collect();
    let mut jobs = Vec::new();
    for user in &users {
        for n in 0..LEAK_SESSIONS {
            jobs.push((user.clone(), n));
        }
    }
    let jobs = Arc::new(std::sync::Mutex::new(jobs));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = Arc::clone(&store);
        let jobs = Arc::clone(&jobs);
        workers.spawn(async move {
            let mut live = Vec::new();
            loop {
                let Some((user, n)) = jobs.lock().expect("jobs").pop() else {
                    break;
                };
                let mut record = bound(&user, Timestamp::now());
                if n % 2 == 0 {
                    record.expiry = expiry_in(ttl);
                }
                let created = store.create(&record).await.expect("create");
                assert_eq!(created, Created::Created);
                match n % 8 {
                    1 | 3 => store.delete(&record.id).await.expect("delete"),
                    5 => {
                        let new = Id::random().expect("entropy");
                        let cycled = store.cycle(&record.id, &new).await.expect("cycle");
                        assert_eq!(cycled, Cycled::Moved);
                        live.push((user, new));
                    }
                    0 | 2 | 4 | 6 => {}
                    _ => live.push((user, record.id)),
                }
            }
            live
        });
    }
    let mut expected: HashMap<Principal, HashSet<SessionHandle>> = HashMap::new();
    while let Some(live) = workers.join_next().await {
        for (user, id) in live.expect("worker") {
            expected
                .entry(user)
                .or_default()
                .insert(SessionHandle::of(&id));
        }
    }
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    for user in &users {
        let found: HashSet<SessionHandle> = listed(&*store, user).await.into_iter().collect();
        let want = expected.remove(user).unwrap_or_default();
        assert_eq!(
            found.len(),
            want.len(),
            "{user} must list exactly its {} live sessions",
            want.len()
        );
        assert_eq!(
            found, want,
            "{user} lists other sessions than its live ones"
        );
    }
}
