//! Network partitions: five nodes split 3/2 under load, then healed. With a majority quorum the
//! smaller side refuses writes and nothing acknowledged is lost; without one both sides serve
//! and converge once the split heals.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{quick, record, time_until};
use tether_core::{Applied, Changes, Codec, Created, Id, Record, SessionStore as _};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode, Quorum};

const NODES: usize = 5;
const SESSIONS: usize = 40;
const MAJORITY: [usize; 3] = [0, 1, 2];

/// `copies` 2: every session has three holders, so at least one on the larger side of a 3/2
/// split.
async fn cluster(quorum: Quorum, copies: usize) -> LocalCluster {
    let cluster = LocalCluster::start(NODES, |c| {
        quick(c)
            .with_mode(Mode::Backup { copies })
            .with_ack(Ack::Sync)
            .with_quorum(quorum)
    })
    .await
    .unwrap();
    assert!(cluster.settle(Duration::from_secs(10)).await);
    cluster
}

async fn sessions(cluster: &LocalCluster) -> Vec<Record> {
    let mut records = Vec::new();
    for i in 0..SESSIONS {
        let record = record();
        let store = cluster.store(i % NODES).unwrap();
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        records.push(record);
    }
    records
}

/// What the writers of [`load`] saw.
#[derive(Debug, Default)]
struct Outcome {
    acknowledged: HashMap<Id, Vec<String>>,
    /// Writes that failed (no quorum, or waiting for the view to change).
    refused: usize,
    /// Writes to a session the writer's side of the split holds no copy of.
    missing: usize,
}

/// Writes a key of its own into the sessions through every node in turn for `duration`.
async fn load(cluster: &LocalCluster, records: &[Record], duration: Duration) -> Outcome {
    let stores: Vec<_> = (0..NODES).map(|i| cluster.store(i).unwrap()).collect();
    let mut writers = tokio::task::JoinSet::new();
    for (node, store) in stores.into_iter().enumerate() {
        let records = records.to_vec();
        writers.spawn(async move {
            let mut acknowledged = Vec::new();
            let (mut refused, mut missing) = (0, 0);
            let until = Instant::now() + duration;
            for k in 0..100_000usize {
                if Instant::now() >= until {
                    break;
                }
                let record = &records[(k * 7 + node) % records.len()];
                let key = format!("w-{node}-{k}");
                let mut changes = Changes::new();
                changes.insert(key.clone(), Codec::default().encode(&k).unwrap());
                match store.apply(&record.id, &changes, &record.expiry).await {
                    Ok(Applied::Applied) => acknowledged.push((record.id, key)),
                    Ok(Applied::Missing) => missing += 1,
                    Err(_) => refused += 1,
                }
            }
            (acknowledged, refused, missing)
        });
    }
    let mut outcome = Outcome::default();
    while let Some(done) = writers.join_next().await {
        let (mine, refused, missing) = done.unwrap();
        outcome.refused += refused;
        outcome.missing += missing;
        for (id, key) in mine {
            outcome.acknowledged.entry(id).or_default().push(key);
        }
    }
    outcome
}

/// The copies of `id` on the holders the nodes' (agreed) view names.
fn copies(cluster: &LocalCluster, id: &Id) -> Vec<(String, Option<Record>)> {
    let view = cluster.node(0).unwrap().view();
    view.holders(id)
        .into_iter()
        .map(|holder| {
            let index: usize = holder.strip_prefix("node-").unwrap().parse().unwrap();
            (holder.to_owned(), cluster.node(index).unwrap().held(id))
        })
        .collect()
}

/// Every acknowledged key present in every holder's copy; the misses, if not.
fn lacking(cluster: &LocalCluster, acknowledged: &HashMap<Id, Vec<String>>) -> Vec<String> {
    acknowledged
        .iter()
        .flat_map(|(id, keys)| {
            copies(cluster, id)
                .into_iter()
                .filter_map(move |(holder, copy)| {
                    let lacks = keys
                        .iter()
                        .filter(|k| !copy.as_ref().is_some_and(|r| r.data.contains_key(*k)))
                        .count();
                    (lacks > 0).then(|| format!("{id:?} on {holder}: {lacks} keys"))
                })
        })
        .collect()
}

fn written_through_the_smaller_side(acknowledged: &HashMap<Id, Vec<String>>) -> usize {
    acknowledged
        .values()
        .flatten()
        .filter(|key| key.starts_with("w-3-") || key.starts_with("w-4-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_majority_quorum_the_smaller_side_refuses_writes_and_nothing_acknowledged_is_lost() {
    let cluster = cluster(Quorum::Majority, 2).await;
    let records = sessions(&cluster).await;
    cluster.split(&MAJORITY);
    // Until the sides notice the split (the failure timeout), writes wait or fail; then the
    // larger side serves alone.
    let outcome = load(&cluster, &records, Duration::from_secs(3)).await;
    eprintln!(
        "split with quorum: {} sessions written, {} through the smaller side; {} writes refused, {} to missing sessions",
        outcome.acknowledged.len(),
        written_through_the_smaller_side(&outcome.acknowledged),
        outcome.refused,
        outcome.missing
    );
    for i in [3, 4] {
        let view = cluster.node(i).unwrap().view();
        assert!(view.members().len() < 3, "node-{i} still sees {view:?}");
    }
    assert!(outcome.refused > 0, "the smaller side refused nothing");
    assert_eq!(
        written_through_the_smaller_side(&outcome.acknowledged),
        0,
        "the smaller side acknowledged writes"
    );
    assert_eq!(
        outcome.missing, 0,
        "a session had no holder on the larger side"
    );
    assert!(
        !outcome.acknowledged.is_empty(),
        "the larger side acknowledged nothing"
    );

    cluster.heal();
    assert!(
        cluster.settle(Duration::from_secs(10)).await,
        "the views did not merge"
    );
    let converged = time_until(Duration::from_secs(5), || {
        lacking(&cluster, &outcome.acknowledged).is_empty()
    })
    .await;
    let missing = lacking(&cluster, &outcome.acknowledged);
    assert!(
        converged.is_some(),
        "acknowledged writes missing after the heal: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_both_sides_serve_and_converge_after_the_heal() {
    let cluster = cluster(Quorum::Off, 1).await;
    let records = sessions(&cluster).await;
    cluster.split(&MAJORITY);
    let outcome = load(&cluster, &records, Duration::from_secs(3)).await;
    let minority = written_through_the_smaller_side(&outcome.acknowledged);
    eprintln!(
        "split without quorum: {} sessions written, {minority} writes through the smaller side; {} refused, {} to missing sessions",
        outcome.acknowledged.len(),
        outcome.refused,
        outcome.missing
    );
    assert!(minority > 0, "the smaller side acknowledged nothing");

    cluster.heal();
    assert!(
        cluster.settle(Duration::from_secs(10)).await,
        "the views did not merge"
    );
    let equal = || {
        records.iter().all(|record| {
            let copies = copies(&cluster, &record.id);
            let data: Vec<_> = copies
                .iter()
                .map(|(_, c)| c.as_ref().map(|r| &r.data))
                .collect();
            data.iter().all(Option::is_some) && data.windows(2).all(|pair| pair[0] == pair[1])
        })
    };
    let converged = time_until(Duration::from_secs(2), equal).await;
    eprintln!("holders equal {converged:?} after the views merged");
    assert!(
        converged.is_some(),
        "the holders of some sessions still differ 2 s after the heal"
    );
}
