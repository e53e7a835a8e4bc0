//! Mutual TLS between peers: a cluster whose nodes hold certificates of its CA replicates; a
//! node without one, with one of another CA, an expired one, one not made for clients, one
//! naming another node, or speaking plain TCP, is refused and counted, and the others keep
//! serving.

mod common;

use std::time::{Duration, Instant};

use common::{quick, record};
use tether_core::{Created, SessionStore as _};
use tether_replicated::{LocalCluster, Membership as _, Mode, NodeConfig, PeerTls};
use tether_testkit::TestCa;
use tether_testkit::rcgen::{self, ExtendedKeyUsagePurpose};

/// `PeerTls` trusting `ca`, with `(cert, key)`.
fn tls(ca: &TestCa, (cert, key): &(String, String)) -> PeerTls {
    PeerTls::from_pem(ca.pem().as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap()
}

/// What node-2 brings to a cluster whose other nodes are certified by the cluster's CA.
#[derive(Clone, Copy, Debug)]
enum Third {
    Certified,
    OtherCa,
    Expired,
    ServerOnly,
    NamedAsAnother,
    PlainTcp,
}

async fn cluster(third: Third) -> LocalCluster {
    let ca = TestCa::new("tether test CA");
    let stranger = TestCa::new("another CA");
    let tls_of = |c: &NodeConfig| -> Option<PeerTls> {
        let name = c.name();
        if name != "node-2" {
            return Some(tls(&ca, &ca.node(name)));
        }
        match third {
            Third::Certified => Some(tls(&ca, &ca.node(name))),
            Third::OtherCa => Some(tls(&stranger, &stranger.node(name))),
            Third::Expired => Some(tls(
                &ca,
                &ca.issue(name, |p| {
                    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
                }),
            )),
            Third::ServerOnly => Some(tls(
                &ca,
                &ca.issue(name, |p| {
                    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                }),
            )),
            Third::NamedAsAnother => Some(tls(&ca, &ca.node("node-1"))),
            Third::PlainTcp => None,
        }
    };
    LocalCluster::start(3, |c| {
        let secured = tls_of(&c);
        let c = quick(c).with_mode(Mode::Backup { copies: 1 });
        match secured {
            Some(tls) => c.with_tls(tls),
            None => c,
        }
    })
    .await
    .unwrap()
}

fn members(cluster: &LocalCluster, index: usize) -> Vec<String> {
    let mut members: Vec<String> = cluster.node(index).unwrap().view().members().to_vec();
    members.sort();
    members
}

/// A write through node-0 is read back through node-1.
async fn serves(cluster: &LocalCluster) {
    let record = record();
    let id = record.id;
    let first = cluster.store(0).unwrap();
    assert_eq!(first.create(&record).await.unwrap(), Created::Created);
    let read = cluster.store(1).unwrap().load(&id).await.unwrap();
    assert!(read.is_some(), "node-1 does not see node-0's session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_nodes_form_a_cluster_over_tls() {
    let cluster = cluster(Third::Certified).await;
    assert!(cluster.settle(Duration::from_secs(10)).await);
    serves(&cluster).await;
    for i in 0..3 {
        assert_eq!(cluster.node(i).unwrap().stats().rejected_connections, 0);
    }
}

/// node-2 with `third` stays out of the cluster; the others count its connections as
/// rejected and keep serving.
async fn refused(third: Third) {
    let cluster = cluster(third).await;
    // Long enough for node-2 to try to connect many times (reconnects back off from 50 ms).
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until
        && (members(&cluster, 0) != ["node-0", "node-1"]
            || members(&cluster, 1) != ["node-0", "node-1"])
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..2 {
        assert_eq!(
            members(&cluster, i),
            ["node-0", "node-1"],
            "{third:?}: node-{i}"
        );
    }
    assert!(
        !cluster.node(2).unwrap().view().contains("node-0"),
        "{third:?}: node-2 counts node-0 a member"
    );
    let rejected: u64 = (0..3)
        .map(|i| cluster.node(i).unwrap().stats().rejected_connections)
        .sum();
    assert!(
        rejected > 0,
        "{third:?}: no connection was counted as rejected"
    );
    serves(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_valid_certificate_is_refused_and_counted() {
    let thirds = [
        Third::OtherCa,
        Third::Expired,
        Third::ServerOnly,
        Third::NamedAsAnother,
        Third::PlainTcp,
    ];
    futures_util::future::join_all(thirds.map(refused)).await;
}

#[test]
fn unusable_pem_is_a_typed_error_that_says_what_is_wrong() {
    let ca = TestCa::new("tether test CA");
    let (cert, key) = ca.node("node-0");
    let other_key = ca.node("node-1").1;
    let cases: [(&str, &str, &str, &str); 4] = [
        ("garbage", &cert, &key, "holds no certificate"),
        (ca.pem(), "garbage", &key, "holds no certificate"),
        (ca.pem(), &cert, "garbage", "private key"),
        (ca.pem(), &cert, &other_key, "certificate or key"),
    ];
    for (ca_pem, cert, key, says) in cases {
        let error = PeerTls::from_pem(ca_pem.as_bytes(), cert.as_bytes(), key.as_bytes())
            .expect_err("unusable PEM was accepted");
        let message = tether_core::error_chain(&error).to_string();
        assert!(message.contains(says), "{message:?} does not say {says:?}");
    }
    let missing = PeerTls::from_pem_files("/nonexistent/ca.pem", "c.pem", "k.pem").unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/ca.pem"),
        "{missing}"
    );
}
