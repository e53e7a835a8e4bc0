//! Peers found through DNS: a name server on loopback whose SRV records the test changes; the
//! cluster follows them without a restart, and keeps its view when the answers are garbage.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{members, quick, record, until_views};
use hickory_resolver::proto::op::{Message, MessageType, OpCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tether_core::{Created, SessionStore as _};
use tether_replicated::{DnsDiscovery, Mode, Node, NodeConfig, PeerKey};

const SERVICE: &str = "_peer._tcp.tether.test.";

/// The SRV targets the name server answers, by node name, with their ports.
type Table = Arc<Mutex<Vec<(String, u16)>>>;
/// The addresses the name server answers for [`HOSTS`].
type Hosts = Arc<Mutex<Vec<Ipv4Addr>>>;

const HOSTS: &str = "tether-hosts.test.";

/// A name server on a loopback UDP port: SRV records for [`SERVICE`] from the table, an A
/// record of 127.0.0.1 for every name ending in `.tether.test.`, and A records for [`HOSTS`]
/// from the hosts.
async fn name_server() -> (SocketAddr, Table, Hosts, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let table: Table = Arc::default();
    let hosts: Hosts = Arc::default();
    let records = Arc::clone(&table);
    let addresses = Arc::clone(&hosts);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut answer = Message::new();
            answer
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(OpCode::Query)
                .set_authoritative(true)
                .set_recursion_desired(query.recursion_desired())
                .set_recursion_available(true);
            answer.add_queries(query.queries().to_vec());
            for q in query.queries() {
                let name = q.name().to_ascii();
                match q.query_type() {
                    RecordType::SRV if name.eq_ignore_ascii_case(SERVICE) => {
                        let table = records.lock().unwrap().clone();
                        for (node, port) in table {
                            let target = Name::from_ascii(format!("{node}.")).unwrap();
                            let srv = SRV::new(0, 0, port, target);
                            answer.add_answer(Record::from_rdata(
                                q.name().clone(),
                                0,
                                RData::SRV(srv),
                            ));
                        }
                    }
                    RecordType::A if name.eq_ignore_ascii_case(HOSTS) => {
                        for ip in addresses.lock().unwrap().iter() {
                            let a = RData::A(A(*ip));
                            answer.add_answer(Record::from_rdata(q.name().clone(), 0, a));
                        }
                    }
                    RecordType::A if name.ends_with(".tether.test.") => {
                        let a = RData::A(A(Ipv4Addr::LOCALHOST));
                        answer.add_answer(Record::from_rdata(q.name().clone(), 0, a));
                    }
                    _ => {}
                }
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    (addr, table, hosts, task)
}

fn node_name(i: usize) -> String {
    format!("node-{i}.tether.test")
}

async fn listener() -> (tokio::net::TcpListener, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

async fn start(
    i: usize,
    listener: tokio::net::TcpListener,
    dns: SocketAddr,
    key: &PeerKey,
) -> Node {
    let discovery = DnsDiscovery::srv(SERVICE).unwrap().with_name_server(dns);
    let config = NodeConfig::new(node_name(i), listener.local_addr().unwrap(), key.clone())
        .with_mode(Mode::Backup { copies: 1 })
        .with_discovery(discovery)
        .with_discovery_interval(Duration::from_millis(200));
    Node::start_with_listener(quick(config), listener)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_follows_its_srv_records_and_ignores_garbage() {
    let (dns, table, _, server) = name_server().await;
    let key = PeerKey::new([9u8; 32]).unwrap();
    let (l0, p0) = listener().await;
    let (l1, p1) = listener().await;
    let (l2, p2) = listener().await;
    *table.lock().unwrap() = vec![(node_name(0), p0), (node_name(1), p1)];
    let (n0, n1) = tokio::join!(start(0, l0, dns, &key), start(1, l1, dns, &key));
    let two = vec![node_name(0), node_name(1)];
    assert!(
        until_views(&[&n0, &n1], &two, Duration::from_secs(5))
            .await
            .is_some(),
        "{:?} {:?}",
        members(&n0),
        members(&n1)
    );
    let mut written = Vec::new();
    for _ in 0..20 {
        let record = record();
        assert_eq!(n0.store().create(&record).await.unwrap(), Created::Created);
        written.push(record.id);
    }

    // A node appears in DNS and starts: every node counts it within 2 s.
    let appeared = Instant::now();
    table.lock().unwrap().push((node_name(2), p2));
    let n2 = start(2, l2, dns, &key).await;
    let three = vec![node_name(0), node_name(1), node_name(2)];
    assert!(
        until_views(&[&n0, &n1, &n2], &three, Duration::from_secs(5))
            .await
            .is_some()
    );
    let joined = appeared.elapsed();
    eprintln!("a node added to DNS was in every view after {joined:?}");
    assert!(joined < Duration::from_secs(2), "took {joined:?}");
    for id in &written {
        assert!(
            n2.store().load(id).await.unwrap().is_some(),
            "a session is gone"
        );
    }

    // Garbage: no record at all, then a flood of records (too many for one datagram, so the
    // question fails; an answer naming more nodes than MAX_DISCOVERED is refused by count, as
    // the unit tests show). The view stays.
    table.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(members(&n0), three, "an empty answer changed the view");
    *table.lock().unwrap() = (0..2_000)
        .map(|i| (format!("x{i}.tether.test"), 1))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(members(&n0), three, "a flood of records changed the view");

    // node-1 leaves DNS and shuts down: the others drop it.
    *table.lock().unwrap() = vec![(node_name(0), p0), (node_name(2), p2)];
    let handover = n1.shutdown().await;
    assert!(handover.complete);
    let left = vec![node_name(0), node_name(2)];
    assert!(
        until_views(&[&n0, &n2], &left, Duration::from_secs(5))
            .await
            .is_some()
    );
    for id in &written {
        assert!(
            n0.store().load(id).await.unwrap().is_some(),
            "a session is gone"
        );
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_named_by_their_address_find_each_other_in_a_records() {
    let (dns, _, hosts, server) = name_server().await;
    let key = PeerKey::new([7u8; 32]).unwrap();
    // Two nodes on one port of two loopback addresses, as two pods on one port.
    let (first, second, port) = loop {
        let first = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        if let Ok(second) = tokio::net::TcpListener::bind(("127.0.0.3", port)).await {
            break (first, second, port);
        }
    };
    *hosts.lock().unwrap() = vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    let node = |listener: tokio::net::TcpListener| {
        let addr = listener.local_addr().unwrap();
        let discovery = DnsDiscovery::hosts(HOSTS, port)
            .unwrap()
            .with_name_server(dns);
        let config = NodeConfig::new(addr.to_string(), addr, key.clone())
            .with_discovery(discovery)
            .with_discovery_interval(Duration::from_millis(200));
        Node::start_with_listener(quick(config), listener)
    };
    let (a, b) = tokio::join!(node(first), node(second));
    let (a, b) = (a.unwrap(), b.unwrap());
    let expected = vec![format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")];
    assert!(
        until_views(&[&a, &b], &expected, Duration::from_secs(5))
            .await
            .is_some(),
        "{:?} {:?}",
        members(&a),
        members(&b)
    );
    server.abort();
}
