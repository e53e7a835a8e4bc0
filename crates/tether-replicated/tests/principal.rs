//! Sessions by principal on real nodes: listed and revoked across a cluster in `Backup` mode,
//! where each node holds only some sessions, while a node is killed or hangs for real.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{cluster, quick, record, until_views};
use tether_core::{
    Applied, Changes, Created, Id, Principal, Revoked, Seen, SessionHandle, SessionStore, Timestamp,
};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode, ReplicatedStore};

/// These tests time failure detection and request timeouts: one at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn principal(name: &str) -> Principal {
    Principal::new(format!("{name}-{}", Id::random().unwrap())).unwrap()
}

/// The handles `store` lists for `principal`, sorted.
async fn listed(store: &ReplicatedStore, principal: &Principal) -> Vec<SessionHandle> {
    let mut handles: Vec<SessionHandle> = store
        .sessions_of(principal)
        .await
        .expect("sessions_of")
        .into_iter()
        .map(|info| info.handle)
        .collect();
    handles.sort();
    handles
}

fn handles<'a>(ids: impl IntoIterator<Item = &'a Id>) -> Vec<SessionHandle> {
    let mut handles: Vec<SessionHandle> = ids.into_iter().map(SessionHandle::of).collect();
    handles.sort();
    handles
}

/// `count` sessions of `principal` written through the nodes in turn: every other one bound
/// at its creation, the others bound (with their last use) by a later write through the next
/// node, as a login does.
async fn sessions_of(cluster: &LocalCluster, principal: &Principal, count: usize) -> Vec<Id> {
    let nodes = cluster.len();
    let mut ids = Vec::new();
    for n in 0..count {
        let writer = cluster.store(n % nodes).unwrap();
        let mut session = record();
        if n % 2 == 0 {
            session = session.with_principal(Some(principal.clone()));
            assert_eq!(writer.create(&session).await.unwrap(), Created::Created);
        } else {
            assert_eq!(writer.create(&session).await.unwrap(), Created::Created);
            let mut login = Changes::new();
            login.bind(principal.clone());
            login.set_seen(Seen::new(Timestamp::now()).with_device(&format!("device {n}")));
            let binder = cluster.store((n + 1) % nodes).unwrap();
            assert_eq!(
                binder
                    .apply(&session.id, &login, &session.expiry)
                    .await
                    .unwrap(),
                Applied::Applied
            );
        }
        ids.push(session.id);
    }
    ids
}

/// Four nodes, one backup per session: a principal's sessions written through every node are
/// listed through every node; once a node is killed (its process gone, its port closed), the
/// survivors still list every one of them (their copies answer for the killed node's), and
/// revoke them: those whose primary was the killed node too, once its backups took over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_hides_no_session_of_a_principal() {
    let _alone = ALONE.lock().await;
    let mut cluster = cluster(4, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let alice = principal("alice");
    let bob = principal("bob");
    let alices = sessions_of(&cluster, &alice, 40).await;
    let bobs = sessions_of(&cluster, &bob, 8).await;

    let victim = 1;
    let view = cluster.node(0).unwrap().view();
    let victim_name = cluster.node(victim).unwrap().name().to_owned();
    let primaried = alices
        .iter()
        .filter(|id| view.primary(id) == Some(victim_name.as_str()))
        .count();
    let held = alices
        .iter()
        .filter(|id| view.holders(id).contains(&victim_name.as_str()))
        .count();
    assert!(
        primaried > 0,
        "the victim is the primary of none of alice's sessions"
    );
    assert!(held < alices.len(), "the victim holds every session");
    for i in 0..4 {
        let node = cluster.node(i).unwrap();
        let here = alices.iter().filter(|id| node.held(id).is_some()).count();
        assert!(
            here < alices.len(),
            "node-{i} holds every session: nothing to gather"
        );
        assert_eq!(
            listed(&cluster.store(i).unwrap(), &alice).await,
            handles(&alices),
            "listed through node-{i}"
        );
    }
    let infos = cluster.store(2).unwrap().sessions_of(&alice).await.unwrap();
    assert_eq!(
        infos.iter().filter(|info| info.device().is_some()).count(),
        20,
        "a listing shows the last use of the sessions bound by a later write"
    );
    assert!(
        infos
            .windows(2)
            .all(|w| (w[0].created_at, w[0].handle) <= (w[1].created_at, w[1].handle)),
        "oldest first"
    );

    cluster.kill(victim);
    let survivors = [0, 2, 3];
    for i in survivors {
        let started = Instant::now();
        assert_eq!(
            listed(&cluster.store(i).unwrap(), &alice).await,
            handles(&alices),
            "listed through node-{i} right after node-{victim} was killed"
        );
        eprintln!(
            "node-{i} listed alice's {} sessions in {:?} with node-{victim} killed",
            alices.len(),
            started.elapsed()
        );
    }
    let names: Vec<String> = {
        let mut names: Vec<String> = survivors
            .iter()
            .map(|i| cluster.node(*i).unwrap().name().to_owned())
            .collect();
        names.sort();
        names
    };
    let nodes: Vec<_> = survivors
        .iter()
        .map(|i| cluster.node(*i).unwrap())
        .collect();
    until_views(&nodes, &names, Duration::from_secs(5))
        .await
        .expect("the survivors dropped the killed node");
    for i in survivors {
        assert_eq!(
            listed(&cluster.store(i).unwrap(), &alice).await,
            handles(&alices),
            "listed through node-{i} once the killed node left the views"
        );
    }

    // Revoking through the survivors: one the killed node was the primary of, then all but one.
    let orphan = *alices
        .iter()
        .find(|id| view.primary(id) == Some(victim_name.as_str()))
        .unwrap();
    let keep = *alices.iter().find(|id| **id != orphan).unwrap();
    let store = cluster.store(0).unwrap();
    assert_eq!(
        store
            .revoke(&alice, &SessionHandle::of(&orphan))
            .await
            .unwrap(),
        Revoked::Revoked
    );
    assert_eq!(
        store.revoke(&bob, &SessionHandle::of(&keep)).await.unwrap(),
        Revoked::NotFound,
        "bob cannot revoke alice's session"
    );
    let revoked = cluster
        .store(2)
        .unwrap()
        .revoke_all(&alice, Some(&SessionHandle::of(&keep)))
        .await
        .unwrap();
    assert_eq!(revoked, alices.len() - 2);
    for i in survivors {
        let store = cluster.store(i).unwrap();
        assert_eq!(listed(&store, &alice).await, handles([&keep]));
        for id in &alices {
            assert_eq!(
                store.load(id).await.unwrap().is_some(),
                *id == keep,
                "node-{i} loads a revoked session, or lost the kept one"
            );
        }
        assert_eq!(listed(&store, &bob).await, handles(&bobs), "bob's stay");
    }

    // Restarted, the node receives its sessions by state transfer, principal and last use
    // included, and its index with them.
    cluster.restart(victim).await.unwrap();
    let node = cluster.node(victim).unwrap();
    let view = node.view();
    assert!(view.contains(&victim_name));
    let mut received = 0;
    for (id, owner) in bobs.iter().map(|id| (id, &bob)).chain([(&keep, &alice)]) {
        if view.holders(id).contains(&victim_name.as_str()) {
            let held = node
                .held(id)
                .expect("a session it holds by the view came to it");
            assert_eq!(held.principal.as_ref(), Some(owner));
            received += 1;
        }
    }
    assert!(node.indexed_sessions() >= received);
    assert_eq!(
        listed(&cluster.store(victim).unwrap(), &alice).await,
        handles([&keep])
    );
    assert_eq!(
        listed(&cluster.store(victim).unwrap(), &bob).await,
        handles(&bobs)
    );
}

/// A member that hangs (its sockets open, nothing answered) holds a listing up for one sync
/// timeout, no longer, and hides nothing: the other holders answer for its sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_hangs_is_skipped_after_the_sync_timeout() {
    let _alone = ALONE.lock().await;
    let sync_timeout = Duration::from_millis(300);
    let cluster = LocalCluster::start(3, |c| {
        quick(c)
            .with_mode(Mode::Backup { copies: 1 })
            .with_sync_timeout(sync_timeout)
    })
    .await
    .unwrap();
    let alice = principal("alice");
    let alices = sessions_of(&cluster, &alice, 30).await;

    cluster.node(2).unwrap().freeze(true);
    let started = Instant::now();
    let found = listed(&cluster.store(0).unwrap(), &alice).await;
    let took = started.elapsed();
    cluster.node(2).unwrap().freeze(false);
    assert_eq!(
        found,
        handles(&alices),
        "every session listed without node-2"
    );
    eprintln!("listed with node-2 hanging in {took:?}");
    assert!(
        took < sync_timeout * 3,
        "the listing waited {took:?} for a node that hangs"
    );
}

/// The index of each node names exactly the sessions it holds with a principal: after
/// creations, bindings, rebindings, deletions, revokes, moves and expiry, and once the sweep
/// forgot the ended ones (a tombstone lives until its session's deadline and the retention),
/// nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_leave_every_index() {
    let _alone = ALONE.lock().await;
    let cluster = LocalCluster::start(3, |c| {
        quick(c)
            .with_mode(Mode::Backup { copies: 1 })
            .with_tombstone_retention(Duration::from_millis(200))
    })
    .await
    .unwrap();
    let alice = principal("alice");
    let bob = principal("bob");
    let short = Duration::from_millis(600);
    let mut live = HashSet::new();
    let mut moved_away = 0;
    for n in 0..120usize {
        let store = cluster.store(n % 3).unwrap();
        let mut session = record().with_principal(Some(alice.clone()));
        // Those that end (expire, deleted, revoked) end for good within the test.
        let stays = n % 4 == 2 || n % 8 == 3;
        if !stays {
            session.expiry = tether_core::Expiry::new(Timestamp::now(), short, None);
        }
        assert_eq!(store.create(&session).await.unwrap(), Created::Created);
        match n % 4 {
            0 => {}
            1 => store.delete(&session.id).await.unwrap(),
            2 => {
                let moved = Id::random().unwrap();
                let _ = store.cycle(&session.id, &moved).await.unwrap();
                live.insert(moved);
                moved_away += 1;
            }
            _ if stays => {
                let mut rebind = Changes::new();
                rebind.bind(bob.clone());
                let _ = store
                    .apply(&session.id, &rebind, &session.expiry)
                    .await
                    .unwrap();
                live.insert(session.id);
            }
            _ => {
                let revoked = store
                    .revoke(&alice, &SessionHandle::of(&session.id))
                    .await
                    .unwrap();
                assert_eq!(revoked, Revoked::Revoked);
            }
        }
    }
    // Past the deadline of the short ones and the tombstones' retention, and a sweep or two.
    tokio::time::sleep(short + Duration::from_millis(2_500)).await;
    let mut held_total = 0;
    let mut entries_total = 0;
    for i in 0..3 {
        let node = cluster.node(i).unwrap();
        let held = live.iter().filter(|id| node.held(id).is_some()).count();
        let entries = node.stats().entries;
        held_total += held;
        entries_total += entries;
        assert_eq!(
            node.indexed_sessions(),
            entries,
            "node-{i}'s index is out of step with the entries it holds (each has a principal)"
        );
    }
    assert_eq!(
        held_total,
        live.len() * 2,
        "each live session has two holders"
    );
    assert_eq!(
        entries_total,
        (live.len() + moved_away) * 2,
        "what ended was forgotten; only the tombstones of moved sessions, which live until \
         their deadline, remain"
    );
    let store = cluster.store(1).unwrap();
    let mut everyone = listed(&store, &alice).await;
    everyone.extend(listed(&store, &bob).await);
    everyone.sort();
    assert_eq!(everyone, handles(&live));
}
