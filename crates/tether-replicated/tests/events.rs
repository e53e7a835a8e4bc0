//! Session events on real nodes: each node reports the writes of the store calls it took and
//! the expiries of the sessions it is the primary of, to its own subscribers, once; a node
//! killed for real makes no survivor report anything twice.

mod common;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{capped_cluster, cluster, record};
use futures_util::StreamExt as _;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, EventKind, EventStream, Expiry, Id, Principal,
    Revoked, SessionEvent, SessionHandle, SessionStore, Timestamp,
};
use tether_replicated::{Ack, Membership as _, Mode, ReplicatedStore};

/// These tests time expiries and failure detection: one at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How often a node sweeps, and so the bound on how late an expiry is reported (the crate
/// docs, Session events).
const SWEEP: Duration = Duration::from_secs(1);

/// An event as these tests compare them: what happened, to which session, whose.
type Told = (EventKind, SessionHandle, Option<Principal>);

fn told(kind: EventKind, id: &Id, principal: Option<&Principal>) -> Told {
    (kind, SessionHandle::of(id), principal.cloned())
}

fn of(event: &SessionEvent) -> Told {
    (event.kind, event.handle, event.principal.clone())
}

fn principal(name: &str) -> Principal {
    Principal::new(format!("{name}-{}", Id::random().unwrap())).unwrap()
}

/// How many times each event occurs in `events`.
fn counted<'a>(events: impl IntoIterator<Item = &'a Told>) -> HashMap<Told, usize> {
    let mut counts = HashMap::new();
    for event in events {
        *counts.entry(event.clone()).or_insert(0) += 1;
    }
    counts
}

/// Events of `stream`, read in a task as they come until the stream ends (its node stopped)
/// or the handle is dropped; an error item fails the test when it is looked at.
#[derive(Clone, Default)]
struct Collected {
    events: Arc<Mutex<Vec<Result<SessionEvent, String>>>>,
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl Collected {
    fn start(mut stream: EventStream) -> Self {
        let collected = Self::default();
        let into = collected.clone();
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e: Error| e.to_string());
                into.events.lock().unwrap().push(item);
            }
            into.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        collected
    }

    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// The events so far; fails on an error item (a missed event, here a bug).
    fn events(&self) -> Vec<SessionEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|item| item.clone().expect("an event, not an error"))
            .collect()
    }

    fn told(&self) -> Vec<Told> {
        self.events().iter().map(of).collect()
    }

    fn ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Waits until the collectors hold `expected` events together, at most `within`, then `quiet`
/// more, so that an event reported once too often would show.
async fn settle(collectors: &[&Collected], expected: usize, within: Duration, quiet: Duration) {
    let deadline = Instant::now() + within;
    while collectors.iter().map(|c| c.len()).sum::<usize>() < expected && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(quiet).await;
}

/// Sessions of one principal per node bound: up to `CAP`.
const CAP: usize = 3;
/// Rounds of writes in the two-node test.
const ROUNDS: usize = 10;

/// Two nodes, each with a subscriber, and a run of writes through both (creations, bindings,
/// touches, cycles, revokes, deletions, the bound per principal, and writes that change
/// nothing): each subscriber sees exactly the events of the calls its node took, once each, and
/// the two together see every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_reports_the_writes_it_took_and_together_every_one_once() {
    let _alone = ALONE.lock().await;
    let cap = NonZeroUsize::new(CAP).unwrap();
    let cluster = capped_cluster(2, Mode::Backup { copies: 1 }, Ack::Sync, cap).await;
    let stores = [cluster.store(0).unwrap(), cluster.store(1).unwrap()];
    let collectors = [
        Collected::start(stores[0].events().await.unwrap()),
        Collected::start(stores[1].events().await.unwrap()),
    ];
    let mut expected: [Vec<Told>; 2] = Default::default();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let (c, o) = (round % 2, (round + 1) % 2);
        let user = principal("user");
        let some = Some(&user);

        let first = record().with_principal(Some(user.clone()));
        assert_eq!(stores[c].create(&first).await.unwrap(), Created::Created);
        expected[c].push(told(EventKind::Created, &first.id, some));
        assert_eq!(
            stores[o].create(&first).await.unwrap(),
            Created::IdTaken,
            "a create that stores nothing reports nothing"
        );

        let second = record();
        assert_eq!(stores[o].create(&second).await.unwrap(), Created::Created);
        expected[o].push(told(EventKind::Created, &second.id, None));
        let mut bind = Changes::new();
        bind.bind(user.clone());
        assert_eq!(
            stores[c]
                .apply(&second.id, &bind, &second.expiry)
                .await
                .unwrap(),
            Applied::Applied
        );
        expected[c].push(told(EventKind::PrincipalSet, &second.id, some));
        assert_eq!(
            stores[o].touch(&second.id, &second.expiry).await.unwrap(),
            Applied::Applied,
            "a touch binds nothing: no event"
        );

        let moved = Id::random().unwrap();
        assert_eq!(
            stores[o].cycle(&second.id, &moved).await.unwrap(),
            Cycled::Moved
        );
        let from = SessionHandle::of(&second.id);
        expected[o].push(told(EventKind::Cycled { from }, &moved, some));

        assert_eq!(
            stores[c]
                .revoke(&user, &SessionHandle::of(&moved))
                .await
                .unwrap(),
            Revoked::Revoked
        );
        expected[c].push(told(EventKind::Revoked, &moved, some));
        assert_eq!(
            stores[o]
                .revoke(&user, &SessionHandle::of(&moved))
                .await
                .unwrap(),
            Revoked::NotFound
        );
        assert_eq!(
            stores[o]
                .revoke(&principal("mallory"), &SessionHandle::of(&first.id))
                .await
                .unwrap(),
            Revoked::NotFound
        );

        stores[o].delete(&first.id).await.unwrap();
        expected[o].push(told(EventKind::Deleted, &first.id, some));
        // Deletions that end no live session, and writes to a deleted one: nothing.
        stores[c].delete(&first.id).await.unwrap();
        stores[o].delete(&Id::random().unwrap()).await.unwrap();
        stores[c].delete(&second.id).await.unwrap();
        assert_eq!(
            stores[c]
                .apply(&first.id, &bind, &first.expiry)
                .await
                .unwrap(),
            Applied::Missing
        );

        // One session past the bound: the node that took the binding revokes the oldest.
        let many = principal("many");
        let base = Timestamp::now().as_millis();
        let mut ids = Vec::new();
        for k in 0..=CAP {
            let mut session = record().with_principal(Some(many.clone()));
            session.created_at = Timestamp::from_millis(base + k as u64);
            let node = (round + k) % 2;
            assert_eq!(
                stores[node].create(&session).await.unwrap(),
                Created::Created
            );
            expected[node].push(told(EventKind::Created, &session.id, Some(&many)));
            ids.push(session.id);
        }
        expected[(round + CAP) % 2].push(told(EventKind::Revoked, &ids[0], Some(&many)));
        let keep = SessionHandle::of(&ids[CAP]);
        assert_eq!(
            stores[c].revoke_all(&many, Some(&keep)).await.unwrap(),
            CAP - 1
        );
        for id in &ids[1..CAP] {
            expected[c].push(told(EventKind::Revoked, id, Some(&many)));
        }
    }
    let writes = started.elapsed();
    let total = expected[0].len() + expected[1].len();
    settle(
        &[&collectors[0], &collectors[1]],
        total,
        Duration::from_secs(10),
        Duration::from_millis(500),
    )
    .await;

    for node in 0..2 {
        let seen = collectors[node].told();
        assert_eq!(
            counted(&seen),
            counted(&expected[node]),
            "node-{node} reports exactly the events of the calls it took"
        );
        assert_eq!(seen.len(), expected[node].len());
    }
    let both: Vec<Told> = collectors.iter().flat_map(Collected::told).collect();
    let counts = counted(&both);
    assert!(
        counts.values().all(|&n| n == 1),
        "an event was reported twice"
    );
    assert_eq!(counts.len(), total);
    // The events of each node come in the order of its calls: per session, as they happened.
    for node in 0..2 {
        let order: Vec<Told> = collectors[node]
            .told()
            .into_iter()
            .filter(|(kind, ..)| *kind != EventKind::Revoked)
            .collect();
        let wanted: Vec<Told> = expected[node]
            .iter()
            .filter(|(kind, ..)| *kind != EventKind::Revoked)
            .cloned()
            .collect();
        assert_eq!(order, wanted, "node-{node}'s events in call order");
    }
    println!(
        "{total} events over {ROUNDS} rounds of writes in {writes:?}: node-0 {}, node-1 {}",
        expected[0].len(),
        expected[1].len()
    );
}

/// In both modes, sessions written through every node expire: each expiry is reported once in
/// the cluster, by the node that is the session's primary, with the session's principal,
/// within a sweep period of its deadline; no node reports it again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_expiry_is_reported_once_by_its_primary() {
    let _alone = ALONE.lock().await;
    for mode in [Mode::Backup { copies: 1 }, Mode::AllToAll] {
        let cluster = cluster(3, mode, Ack::Sync).await;
        let stores: Vec<ReplicatedStore> = (0..3).map(|i| cluster.store(i).unwrap()).collect();
        let mut collectors = Vec::new();
        for store in &stores {
            collectors.push(Collected::start(store.events().await.unwrap()));
        }
        let user = principal("user");
        let ttl = Duration::from_millis(500);
        let mut sessions = Vec::new();
        for n in 0..30 {
            let mut session = record();
            if n % 2 == 0 {
                session = session.with_principal(Some(user.clone()));
            }
            let now = Timestamp::now();
            session.expiry = Expiry::new(now, ttl, None);
            assert_eq!(
                stores[n % 3].create(&session).await.unwrap(),
                Created::Created
            );
            sessions.push(session);
        }
        let refs: Vec<&Collected> = collectors.iter().collect();
        settle(
            &refs,
            2 * sessions.len(),
            ttl + SWEEP * 5,
            SWEEP + SWEEP / 2,
        )
        .await;

        let view = cluster.node(0).unwrap().view();
        let mut latest = Duration::ZERO;
        for session in &sessions {
            let handle = SessionHandle::of(&session.id);
            let reports: Vec<(usize, SessionEvent)> = collectors
                .iter()
                .enumerate()
                .flat_map(|(node, c)| c.events().into_iter().map(move |e| (node, e)))
                .filter(|(_, e)| e.handle == handle && e.kind == EventKind::Expired)
                .collect();
            assert_eq!(reports.len(), 1, "{mode}: reported once: {reports:?}");
            let (node, event) = &reports[0];
            assert_eq!(
                view.primary(&session.id),
                Some(format!("node-{node}").as_str()),
                "{mode}: by its primary"
            );
            assert_eq!(
                event.principal, session.principal,
                "{mode}: with its principal"
            );
            let late = event.at.duration_since(session.expiry.expires_at());
            assert!(
                late <= SWEEP + Duration::from_millis(500),
                "{mode}: reported {late:?} after the deadline"
            );
            latest = latest.max(late);
        }
        println!(
            "{mode}: {} expiries, each reported once by its primary, at most {latest:?} after the deadline",
            sessions.len()
        );
    }
}

/// Calls through the survivors while a node is killed for real, in both modes: no subscriber
/// on a survivor sees any event twice; each sees the events of the calls its node took that
/// succeeded, once (a deletion retried on a new primary after its first answer was lost may
/// go unreported: at most once); a session whose primary was killed well before its deadline
/// is reported expired once, by its new primary; one due around the kill by at most one node
/// (the killed one before it died, or the new primary); the killed node's stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_kill_makes_no_survivor_report_an_event_twice() {
    let _alone = ALONE.lock().await;
    for mode in [Mode::Backup { copies: 1 }, Mode::AllToAll] {
        kill_during_writes(mode).await;
    }
}

/// What a writer expects a survivor to report: the node that took the call and the event.
type Expected = (usize, Told);

async fn kill_during_writes(mode: Mode) {
    let mut cluster = cluster(3, mode, Ack::Sync).await;
    let stores: Vec<ReplicatedStore> = (0..3).map(|i| cluster.store(i).unwrap()).collect();
    let mut collectors = Vec::new();
    for store in &stores {
        collectors.push(Collected::start(store.events().await.unwrap()));
    }
    let view = cluster.node(0).unwrap().view();
    let started = Instant::now();
    let kill_after = Duration::from_millis(1500);
    let user = principal("user");

    // Sessions node-2 is the primary of, due 2.5 s after the kill; and sessions of any
    // primary due from 0.5 s before the kill to 0.5 s after it.
    let mut doomed = Vec::new();
    let mut around = Vec::new();
    let mut expected: Vec<Expected> = Vec::new();
    let mut n = 0;
    while doomed.len() < 10 || around.len() < 20 {
        let mut session = record().with_principal(Some(user.clone()));
        let primary_is_killed = view.primary(&session.id) == Some("node-2");
        let due = if primary_is_killed && doomed.len() < 10 {
            kill_after + Duration::from_millis(2500)
        } else if around.len() < 20 {
            kill_after - Duration::from_millis(500)
                + Duration::from_millis(50) * around.len() as u32
        } else {
            continue;
        };
        let now = Timestamp::now();
        let ttl = (started + due).saturating_duration_since(Instant::now());
        session.expiry = Expiry::new(now, ttl, None);
        let node = n % 2;
        n += 1;
        assert_eq!(
            stores[node].create(&session).await.unwrap(),
            Created::Created
        );
        expected.push((node, told(EventKind::Created, &session.id, Some(&user))));
        if due == kill_after + Duration::from_millis(2500) {
            doomed.push(session);
        } else {
            around.push(session);
        }
    }

    // A writer through the survivors, from before the kill to after it.
    let writer = {
        let stores = [stores[0].clone(), stores[1].clone()];
        let until = started + kill_after + Duration::from_millis(1500);
        tokio::spawn(async move {
            let mut expected: Vec<(usize, Told, bool)> = Vec::new();
            let mut failed = 0;
            let mut round = 0;
            while Instant::now() < until {
                let (c, o) = (round % 2, (round + 1) % 2);
                round += 1;
                let user = principal("writer");
                let some = Some(&user);
                let session = record();
                match stores[c].create(&session).await {
                    Ok(Created::Created) => {
                        expected.push((c, told(EventKind::Created, &session.id, None), true))
                    }
                    Ok(Created::IdTaken) => panic!("a fresh id taken"),
                    Err(_) => {
                        failed += 1;
                        continue;
                    }
                }
                let mut bind = Changes::new();
                bind.bind(user.clone());
                match stores[o].apply(&session.id, &bind, &session.expiry).await {
                    Ok(Applied::Applied) => {
                        expected.push((o, told(EventKind::PrincipalSet, &session.id, some), true))
                    }
                    Ok(Applied::Missing) => panic!("the session was lost"),
                    Err(_) => failed += 1,
                }
                let moved = Id::random().unwrap();
                let from = SessionHandle::of(&session.id);
                match stores[c].cycle(&session.id, &moved).await {
                    Ok(Cycled::Moved) => {
                        expected.push((c, told(EventKind::Cycled { from }, &moved, some), true))
                    }
                    Ok(other) => panic!("cycle: {other:?}"),
                    Err(_) => {
                        failed += 1;
                        continue;
                    }
                }
                if round % 2 == 0 {
                    match stores[o].revoke(&user, &SessionHandle::of(&moved)).await {
                        Ok(Revoked::Revoked) => {
                            expected.push((o, told(EventKind::Revoked, &moved, some), true))
                        }
                        Ok(Revoked::NotFound) => panic!("the moved session was not found"),
                        Err(_) => failed += 1,
                    }
                } else {
                    match stores[o].delete(&moved).await {
                        Ok(()) => expected.push((o, told(EventKind::Deleted, &moved, some), false)),
                        Err(_) => failed += 1,
                    }
                }
            }
            (expected, failed, round)
        })
    };

    tokio::time::sleep((started + kill_after).saturating_duration_since(Instant::now())).await;
    cluster.kill(2);
    let killed_at = Instant::now();
    let (written, failed, rounds) = writer.await.unwrap();
    // The doomed sessions' deadlines, a sweep, and a sweep more to see nothing come twice.
    let last_due = started + kill_after + Duration::from_millis(2500);
    tokio::time::sleep(last_due.saturating_duration_since(Instant::now()) + SWEEP * 3).await;

    let survivors = cluster.node(0).unwrap().view();
    assert!(!survivors.contains("node-2"));
    assert!(
        collectors[2].ended(),
        "{mode}: the killed node's stream ended"
    );

    let seen: Vec<Vec<Told>> = collectors.iter().map(Collected::told).collect();
    // No survivor saw anything twice.
    for (node, seen) in seen.iter().enumerate().take(2) {
        let twice: Vec<_> = counted(seen).into_iter().filter(|(_, n)| *n > 1).collect();
        assert!(twice.is_empty(), "{mode}: node-{node} reported {twice:?}");
    }
    // The writes: each on its node, once (deletions at most once).
    let mut missed_deletions = 0;
    let wanted: Vec<(usize, Told, bool)> = expected
        .into_iter()
        .map(|(node, t)| (node, t, true))
        .chain(written)
        .collect();
    for (node, event, must) in &wanted {
        let count = seen[*node].iter().filter(|seen| *seen == event).count();
        if *must {
            assert_eq!(
                count, 1,
                "{mode}: node-{node} reported {event:?} {count} times"
            );
        } else {
            assert!(count <= 1);
            missed_deletions += 1 - count;
        }
        let elsewhere = seen[1 - *node].iter().filter(|seen| *seen == event).count();
        assert_eq!(elsewhere, 0, "{mode}: {event:?} reported by the other node");
    }
    // Nothing but the writes and expiries.
    let writes: Vec<&Told> = wanted.iter().map(|(_, t, _)| t).collect();
    for (node, seen) in seen.iter().enumerate().take(2) {
        for event in seen {
            assert!(
                event.0 == EventKind::Expired || writes.contains(&event),
                "{mode}: node-{node} reported {event:?}, of no call it took"
            );
        }
    }
    // The killed node's sessions due well after the kill: once, by their new primary.
    for session in &doomed {
        let handle = SessionHandle::of(&session.id);
        let reports: Vec<usize> = (0..2)
            .filter(|&node| {
                seen[node]
                    .iter()
                    .any(|(kind, h, _)| *kind == EventKind::Expired && *h == handle)
            })
            .collect();
        let primary = survivors.primary(&session.id).unwrap();
        assert_eq!(
            reports
                .iter()
                .map(|node| format!("node-{node}"))
                .collect::<Vec<_>>(),
            [primary],
            "{mode}: reported once, by the new primary"
        );
    }
    // Due around the kill: at most once on each survivor (checked above); how many in all.
    let mut by_count = [0usize; 4];
    for session in &around {
        let handle = SessionHandle::of(&session.id);
        let count = seen
            .iter()
            .map(|told| {
                told.iter()
                    .filter(|(kind, h, _)| *kind == EventKind::Expired && *h == handle)
                    .count()
            })
            .sum::<usize>();
        by_count[count.min(3)] += 1;
    }
    assert_eq!(
        by_count[2] + by_count[3],
        0,
        "{mode}: an expiry due around the kill was reported by two nodes"
    );
    println!(
        "{mode}: {rounds} rounds of writes ({failed} failed), node-2 killed at {:?}; {} events \
         on the survivors, none twice; {missed_deletions} deletions unreported; {} expiries of \
         the killed primary's sessions, each once by the new primary; of {} sessions due \
         within 0.5 s of the kill, reported by no node / one / two: {:?}",
        killed_at - started,
        seen[0].len() + seen[1].len(),
        doomed.len(),
        around.len(),
        &by_count[..3],
    );
}
