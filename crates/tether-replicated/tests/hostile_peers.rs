//! Peers that never authenticate, peers whose clock is far ahead, and a member that answers
//! index requests with garbage, against real nodes on loopback ports.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{cluster, quick, record};
use futures_util::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, Mac as _};
use tether_core::{Created, Id, Principal, Record, SessionHandle, SessionStore as _, Timestamp};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode, Node, NodeConfig, PeerKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// These tests measure the memory of the whole test process or hold every handshake slot of a
/// node: one at a time, so they do not disturb each other.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Writes through one node and reads through another: the cluster still works.
async fn cluster_still_works(cluster: &LocalCluster) {
    for (writer, reader) in [(0, 1), (1, 2), (2, 0)] {
        let r = record();
        assert_eq!(
            cluster.store(writer).unwrap().create(&r).await.unwrap(),
            Created::Created
        );
        assert!(
            cluster
                .store(reader)
                .unwrap()
                .load(&r.id)
                .await
                .unwrap()
                .is_some()
        );
    }
    for i in 0..3 {
        assert_eq!(
            cluster.node(i).unwrap().view().members().len(),
            3,
            "node {i} dropped a peer from its view"
        );
    }
}

/// Waits until the node closes `stream` (EOF or reset), reading whatever it sent; false if it
/// kept it open for `within`.
async fn closed_within(stream: &mut tokio::net::tcp::OwnedReadHalf, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// 64 connections that never authenticate, each announcing a frame of almost 16 MiB: half send
/// it as fast as they can, half dribble a byte now and then. Before the fix the node accepted
/// the configured 16 MiB frame limit during the handshake and buffered every one of them (the
/// test process grew by about 1 GB); now a frame longer than a handshake frame is refused at its
/// length prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_floods_keep_memory_bounded() {
    let _alone = ALONE.lock().await;
    let cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let node = cluster.node(0).unwrap();
    let addr = node.local_addr();
    let rejected_before = node.stats().rejected_connections;

    let before = status_kib("VmRSS");
    // Resets the peak (VmHWM) to the current size, where the kernel allows it.
    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let sampled = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (stop, sampled) = (Arc::clone(&stop), Arc::clone(&sampled));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sampled.fetch_max(status_kib("VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    const ALMOST_16_MIB: u32 = (16 << 20) - 1;
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..64 {
        attackers.spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut read, mut write) = stream.into_split();
            let writer = tokio::spawn(async move {
                if write.write_all(&ALMOST_16_MIB.to_be_bytes()).await.is_err() {
                    return write;
                }
                if i % 2 == 0 {
                    let chunk = vec![0u8; 64 << 10];
                    let mut sent = 0;
                    while sent < ALMOST_16_MIB as usize - chunk.len() {
                        if write.write_all(&chunk).await.is_err() {
                            break;
                        }
                        sent += chunk.len();
                    }
                } else {
                    for _ in 0..200 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if write.write_all(&[0]).await.is_err() {
                            break;
                        }
                    }
                }
                // Keeps the connection open (dropping the write half would send a FIN).
                write
            });
            let closed = closed_within(&mut read, Duration::from_secs(10)).await;
            writer.abort();
            closed
        });
    }
    let mut closed = 0;
    while let Some(done) = attackers.join_next().await {
        closed += usize::from(done.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = if peak_reset {
        status_kib("VmHWM").max(sampled.load(Ordering::Relaxed))
    } else {
        sampled.load(Ordering::Relaxed)
    };
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "RSS before {} MiB, peak during the flood {} MiB (+{growth_mib} MiB; peak from {})",
        before / 1024,
        peak / 1024,
        if peak_reset { "VmHWM" } else { "sampling" }
    );
    assert_eq!(closed, 64, "the node dropped every unauthenticated flooder");
    assert!(
        growth_mib < 64,
        "64 unauthenticated connections grew the process by {growth_mib} MiB"
    );
    let rejected = node.stats().rejected_connections - rejected_before;
    assert!(rejected >= 64, "rejections counted: {rejected}");
    cluster_still_works(&cluster).await;
}

/// Connects and reads the node's challenge; `None` if the node closed the connection instead.
async fn challenged(addr: std::net::SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut header = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header))
        .await
        .expect("the node neither challenged nor closed the connection");
    read.ok()?;
    let mut challenge = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut challenge).await.ok()?;
    assert_eq!(challenge[..2], [VERSION, 0], "version 5, variant Challenge");
    Some(stream)
}

/// With every handshake slot (64 by default) held by a silent connection, one more is closed at
/// once, without a challenge. Before the fix every connection got a challenge and a task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_beyond_the_cap_are_closed_at_once() {
    let _alone = ALONE.lock().await;
    let cluster = cluster(3, Mode::Backup { copies: 1 }, Ack::Sync).await;
    let node = cluster.node(0).unwrap();
    let addr = node.local_addr();
    let rejected_before = node.stats().rejected_connections;

    let started = Instant::now();
    let mut held = Vec::new();
    for i in 0..64 {
        let stream = challenged(addr).await;
        held.push(stream.unwrap_or_else(|| panic!("handshake {i} was refused below the cap")));
    }
    let beyond = challenged(addr).await;
    let elapsed = started.elapsed();
    // The held handshakes expire after 2 s; past that a slot is free again by right.
    assert!(
        elapsed < Duration::from_secs(2),
        "opening 65 connections took {elapsed:?}; the test proves nothing"
    );
    assert!(
        beyond.is_none(),
        "a 65th concurrent handshake was challenged"
    );
    assert!(node.stats().rejected_connections > rejected_before);

    // Once the slots are free again, new connections are challenged.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if challenged(addr).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the slots were never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster_still_works(&cluster).await;
}

// A peer that knows the key but whose clock is an hour ahead. It speaks the protocol from
// hand-built frames: 4-byte big-endian length, then postcard: version, variant, fields.

/// The protocol version the nodes speak.
const VERSION: u8 = 5;

const KEY: [u8; 32] = *b"hostile-peers test key: 32 bytes";
const HOUR_MS: u64 = 3_600_000;

fn now_ms() -> u64 {
    Timestamp::now().as_millis()
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &mut &[u8]) -> u64 {
    let mut value = 0;
    for shift in (0..64).step_by(7) {
        let (byte, rest) = bytes.split_first().expect("truncated varint");
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

/// A request (variant 3) or response (variant 4) with id `id`, stamped `millis`, then `body`.
fn stamped(variant: u8, id: u64, millis: u64, body: &[u8]) -> Bytes {
    let mut out = vec![VERSION, variant];
    varint(id, &mut out);
    varint(millis, &mut out);
    out.extend_from_slice(&[0, 0]); // counter, node tag
    out.extend_from_slice(body);
    Bytes::from(out)
}

const PING: &[u8] = &[0];
const FAILED: u8 = 6;

/// A response: its id, clock milliseconds and body.
fn parse_stamped(frame: &[u8], variant: u8) -> (u64, u64, Vec<u8>) {
    assert_eq!(
        frame[..2],
        [VERSION, variant],
        "version {VERSION}, variant {variant}"
    );
    let mut rest = &frame[2..];
    let id = read_varint(&mut rest);
    let millis = read_varint(&mut rest);
    let _counter = read_varint(&mut rest);
    let _node = read_varint(&mut rest);
    (id, millis, rest.to_vec())
}

fn proof(role: &[u8], first: &[u8], second: &[u8], node: &str) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(&KEY).unwrap();
    mac.update(b"tether-replicated v1 ");
    mac.update(role);
    mac.update(first);
    mac.update(second);
    mac.update(node.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

type Wire = Framed<TcpStream, LengthDelimitedCodec>;

async fn next_frame(wire: &mut Wire) -> Option<Vec<u8>> {
    match tokio::time::timeout(Duration::from_secs(5), wire.next()).await {
        Ok(Some(Ok(frame))) => Some(frame.to_vec()),
        _ => None,
    }
}

/// Connects to a node as "rogue" and authenticates with the key.
async fn rogue_client(addr: std::net::SocketAddr) -> Wire {
    let mut wire = Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        LengthDelimitedCodec::new(),
    );
    let challenge = next_frame(&mut wire).await.expect("a challenge");
    assert_eq!(challenge[..2], [VERSION, 0]);
    let server_nonce = &challenge[2..34];
    let client_nonce = [0x5a; 32];
    let mut hello = vec![VERSION, 1, 5];
    hello.extend_from_slice(b"rogue");
    hello.extend_from_slice(&client_nonce);
    hello.extend_from_slice(&proof(b"client", server_nonce, &client_nonce, "rogue"));
    wire.send(Bytes::from(hello)).await.unwrap();
    let welcome = next_frame(&mut wire).await.expect("a welcome");
    assert_eq!(welcome[..2], [VERSION, 2], "authenticated");
    wire
}

/// Sends request `id` stamped `millis` and returns the answer: its clock and body.
async fn ask(wire: &mut Wire, id: u64, millis: u64, body: &[u8]) -> (u64, Vec<u8>) {
    wire.send(stamped(3, id, millis, body)).await.unwrap();
    let answer = next_frame(wire).await.expect("an answer");
    let (answered, clock, body) = parse_stamped(&answer, 4);
    assert_eq!(answered, id);
    (clock, body)
}

/// The clock of the node at `addr`, read from its answer to a well-stamped ping.
async fn clock_of(addr: std::net::SocketAddr) -> u64 {
    let mut wire = rogue_client(addr).await;
    let (clock, body) = ask(&mut wire, 1, now_ms(), PING).await;
    assert_eq!(body[0], 0, "a pong");
    clock
}

/// The server half of the handshake on a node's connection to "rogue": authenticates as it.
/// The connection, and the name of the node that opened it.
async fn accept_as_rogue(stream: TcpStream) -> Option<(Wire, String)> {
    let mut wire = Framed::new(stream, LengthDelimitedCodec::new());
    let server_nonce = [0xa5; 32];
    let mut challenge = vec![VERSION, 0];
    challenge.extend_from_slice(&server_nonce);
    wire.send(Bytes::from(challenge)).await.ok()?;
    let hello = next_frame(&mut wire).await?;
    let name_len = usize::from(hello[2]);
    let client_nonce = &hello[3 + name_len..3 + name_len + 32];
    let mut welcome = vec![VERSION, 2, 5];
    welcome.extend_from_slice(b"rogue");
    welcome.extend_from_slice(&proof(b"server", client_nonce, &server_nonce, "rogue"));
    wire.send(Bytes::from(welcome)).await.ok()?;
    let node = String::from_utf8_lossy(&hello[3..3 + name_len]).into_owned();
    Some((wire, node))
}

/// Serves the nodes' connections to "rogue": authenticates as it, and answers every ping with a
/// not-ready pong stamped an hour ahead, so the nodes count it alive but never a member.
async fn rogue_server(listener: TcpListener, pongs: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let pongs = Arc::clone(&pongs);
        tokio::spawn(async move {
            let Some((mut wire, _)) = accept_as_rogue(stream).await else {
                return;
            };
            while let Some(request) = next_frame(&mut wire).await {
                let (id, _, body) = parse_stamped(&request, 3);
                let answer = if body == PING {
                    vec![0, 0]
                } else {
                    vec![FAILED, 1, 0]
                };
                let frame = stamped(4, id, now_ms() + HOUR_MS, &answer);
                if wire.send(frame).await.is_err() {
                    return;
                }
                pongs.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Three nodes that also list "rogue" as a peer, on `rogue`'s address.
async fn nodes_with_a_rogue_peer(rogue: std::net::SocketAddr) -> Vec<Node> {
    let key = PeerKey::new(KEY).unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let members: Vec<(String, std::net::SocketAddr)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("node-{i}"), l.local_addr().unwrap()))
        .collect();
    let starts = listeners.into_iter().enumerate().map(|(i, listener)| {
        let (name, addr) = members[i].clone();
        let config = members
            .iter()
            .filter(|(other, _)| *other != name)
            .fold(
                NodeConfig::new(name.clone(), addr, key.clone()),
                |c, (n, a)| c.with_peer(n.clone(), *a),
            )
            .with_peer("rogue", rogue)
            .with_mode(Mode::Backup { copies: 1 });
        Node::start_with_listener(quick(config), listener)
    });
    let nodes = futures_util::future::try_join_all(starts).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| n.view().members().len() == 3) {
        assert!(
            Instant::now() < deadline,
            "the nodes never agreed on a view"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes
}

/// A session created through `nodes[0]` that `nodes[0]` holds.
async fn session_held_by_first(nodes: &[Node]) -> Record {
    for _ in 0..100 {
        let r = record();
        assert_eq!(nodes[0].store().create(&r).await.unwrap(), Created::Created);
        if nodes[0].view().holders(&r.id).contains(&nodes[0].name()) {
            return r;
        }
    }
    panic!("node-0 holds none of 100 sessions");
}

/// A peer with the right key and a clock an hour ahead: its frames are refused and counted,
/// and no node's clock follows it. Before the fix every node's clock jumped an hour ahead (the
/// first through the rogue's frames, the others through the first's), and a deletion stamped an
/// hour ahead was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_clock_far_ahead_drags_no_node() {
    let _alone = ALONE.lock().await;
    let rogue = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nodes = nodes_with_a_rogue_peer(rogue.local_addr().unwrap()).await;
    let addrs: Vec<_> = nodes.iter().map(Node::local_addr).collect();
    let bound = now_ms() + 60_000;

    // Requests stamped an hour ahead, over an authenticated connection to node-0.
    let r = session_held_by_first(&nodes).await;
    let mut wire = rogue_client(addrs[0]).await;
    let (clock, _) = ask(&mut wire, 1, now_ms(), PING).await;
    assert!(clock < bound, "node-0 was ahead already");
    let mut delete = vec![4, 16];
    delete.extend_from_slice(r.id.as_bytes());
    varint(now_ms() + HOUR_MS, &mut delete);
    delete.extend_from_slice(&[0, 0]);
    delete.extend_from_slice(&[0x77; 16]); // its write id
    let (_, answer) = ask(&mut wire, 2, now_ms() + HOUR_MS, &delete).await;
    assert_eq!(
        answer[0], FAILED,
        "a deletion stamped an hour ahead was applied"
    );
    let (_, answer) = ask(&mut wire, 3, now_ms() + HOUR_MS, PING).await;
    assert_eq!(answer[0], 0, "a ping is answered whatever its clock");
    let (clock, _) = ask(&mut wire, 4, now_ms(), PING).await;
    assert!(
        clock < now_ms() + 60_000,
        "node-0's clock was dragged {} s ahead",
        (clock - now_ms()) / 1000
    );
    assert!(
        nodes[0].stats().rejected_frames >= 2,
        "{:?}",
        nodes[0].stats()
    );
    for node in &nodes {
        assert!(node.store().load(&r.id).await.unwrap().is_some());
    }

    // Now its answers to the nodes' heartbeats are stamped an hour ahead too.
    let pongs = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn(rogue_server(rogue, Arc::clone(&pongs)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes.iter().any(|n| n.stats().rejected_frames < 3) {
        assert!(
            Instant::now() < deadline,
            "the rogue answered {} pings; rejected: {:?}",
            pongs.load(Ordering::Relaxed),
            nodes
                .iter()
                .map(|n| n.stats().rejected_frames)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Writes through every node, so that any dragged clock would spread.
    for i in 0..3 {
        let r = record();
        assert_eq!(nodes[i].store().create(&r).await.unwrap(), Created::Created);
        let other = &nodes[(i + 1) % 3];
        assert!(other.store().load(&r.id).await.unwrap().is_some());
    }
    for (i, addr) in addrs.iter().enumerate() {
        let clock = clock_of(*addr).await;
        assert!(
            clock < now_ms() + 60_000,
            "node-{i}'s clock was dragged {} s ahead",
            (clock - now_ms()) / 1000
        );
        assert_eq!(nodes[i].view().members().len(), 3, "node-{i}'s view");
    }
    server.abort();
    for node in &nodes {
        node.abort();
    }
}

/// Request variant `SessionsOf`: a node asks for the sessions of a principal.
const SESSIONS_OF: u8 = 9;
/// Response variant `Sessions`: a page of them.
const SESSIONS: u8 = 8;

/// What the rogue member answers to an index request.
#[derive(Clone, Copy, Debug)]
enum IndexAnswer {
    /// A `Sessions` page whose one entry is cut short.
    Garbage,
    /// A well-formed page, in the protocol version before this one.
    OldVersion,
    /// Well-formed empty pages whose `next` never moves on.
    Endless(Id),
    /// A well-formed page listing a session that is another principal's (a real one).
    Lie(Id),
}

/// What the rogue member saw.
#[derive(Debug, Default)]
struct RogueMember {
    /// Index requests answered.
    asked: AtomicU64,
    /// Connections the node closed right after an index answer.
    dropped: AtomicU64,
    /// The nodes whose connection to the rogue is open and has carried a heartbeat.
    connected: Mutex<std::collections::HashSet<String>>,
}

/// Serves the nodes' connections to "rogue" as a member: authenticates as it, answers pings
/// "ready" with a sound clock, index requests with `answer`, and anything else with a
/// transient failure.
async fn rogue_member(
    listener: TcpListener,
    answer: Arc<Mutex<IndexAnswer>>,
    seen: Arc<RogueMember>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (answer, seen) = (Arc::clone(&answer), Arc::clone(&seen));
        tokio::spawn(async move {
            let Some((mut wire, node)) = accept_as_rogue(stream).await else {
                return;
            };
            let mut answered_index = false;
            while let Some(request) = next_frame(&mut wire).await {
                let (id, _, body) = parse_stamped(&request, 3);
                let frame = if body == PING {
                    seen.connected.lock().unwrap().insert(node.clone());
                    stamped(4, id, now_ms(), &[0, 1])
                } else if body[0] == SESSIONS_OF {
                    answered_index = true;
                    seen.asked.fetch_add(1, Ordering::Relaxed);
                    let kind = *answer.lock().unwrap();
                    match kind {
                        IndexAnswer::Garbage => stamped(4, id, now_ms(), &[SESSIONS, 1, 16, 1, 2]),
                        IndexAnswer::OldVersion => {
                            let mut frame = stamped(4, id, now_ms(), &[SESSIONS, 0, 0]).to_vec();
                            frame[0] = VERSION - 1;
                            Bytes::from(frame)
                        }
                        IndexAnswer::Endless(next) => {
                            let mut page = vec![SESSIONS, 0, 1, 16];
                            page.extend_from_slice(next.as_bytes());
                            stamped(4, id, now_ms(), &page)
                        }
                        IndexAnswer::Lie(other) => {
                            // One entry: id, created and expiring now and in an hour, no last
                            // use, not deleted; no next page.
                            let mut page = vec![SESSIONS, 1, 16];
                            page.extend_from_slice(other.as_bytes());
                            varint(now_ms(), &mut page);
                            varint(now_ms() + HOUR_MS, &mut page);
                            page.extend_from_slice(&[0, 0, 0]);
                            stamped(4, id, now_ms(), &page)
                        }
                    }
                } else {
                    stamped(4, id, now_ms(), &[FAILED, 1, 0])
                };
                if wire.send(frame).await.is_err() {
                    break;
                }
            }
            seen.connected.lock().unwrap().remove(&node);
            if answered_index {
                seen.dropped.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// A member (it holds the key, answers heartbeats, counts in every view) that answers the
/// index request with garbage, in the old protocol version, with pages that never end, or with
/// a session of another principal. Garbage and the old version are malformed frames: the node
/// drops the connection, as for any malformed frame, and the listing goes on without that
/// member; so it does past pages that do not move on. A well-formed lie about a session whose
/// primary answered is overruled by the primary. Each listing is complete and correct, and the
/// cluster works on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_answering_the_index_with_garbage_is_dropped_and_skipped() {
    let _alone = ALONE.lock().await;
    let rogue = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nodes = nodes_with_a_rogue_peer(rogue.local_addr().unwrap()).await;
    let answer = Arc::new(Mutex::new(IndexAnswer::Garbage));
    let seen = Arc::new(RogueMember::default());
    let server = tokio::spawn(rogue_member(rogue, Arc::clone(&answer), Arc::clone(&seen)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| n.view().contains("rogue")) {
        assert!(Instant::now() < deadline, "the rogue never became a member");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Sessions the real nodes hold: the rogue, a member, would refuse their writes.
    let view = nodes[0].view();
    let held_by_nodes = |principal: &Principal| {
        let mut r = record();
        while view.holders(&r.id).contains(&"rogue") {
            r = r.with_id(Id::random().unwrap());
        }
        r.with_principal(Some(principal.clone()))
    };
    let alice = Principal::new("alice").unwrap();
    let bob = Principal::new("bob").unwrap();
    let mut alices = Vec::new();
    for i in 0..12 {
        let r = held_by_nodes(&alice);
        assert_eq!(
            nodes[i % 3].store().create(&r).await.unwrap(),
            Created::Created
        );
        alices.push(SessionHandle::of(&r.id));
    }
    alices.sort();
    let bobs = held_by_nodes(&bob);
    assert_eq!(
        nodes[1].store().create(&bobs).await.unwrap(),
        Created::Created
    );

    let kinds = [
        (IndexAnswer::Garbage, true),
        (IndexAnswer::OldVersion, true),
        (IndexAnswer::Endless(Id::from_bytes([0x42; 16])), false),
        (IndexAnswer::Lie(bobs.id), false),
    ];
    for (kind, malformed) in kinds {
        *answer.lock().unwrap() = kind;
        // After a dropped connection, node-0 connects to the rogue again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(nodes[0].view().contains("rogue")
            && seen.connected.lock().unwrap().contains("node-0"))
        {
            assert!(
                Instant::now() < deadline,
                "node-0 never took the rogue back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (asked, dropped) = (
            seen.asked.load(Ordering::Relaxed),
            seen.dropped.load(Ordering::Relaxed),
        );
        // Every listing must be alice's sessions, and fast. The first after a dropped
        // connection may find the link to the rogue still coming back up (the node then skips
        // it, as it skips any member it cannot reach): list again until the rogue was asked.
        let asked_within = Instant::now() + Duration::from_secs(5);
        loop {
            let started = Instant::now();
            let infos = nodes[0].store().sessions_of(&alice).await.unwrap();
            let took = started.elapsed();
            let mut listed: Vec<SessionHandle> = infos.iter().map(|i| i.handle).collect();
            listed.sort();
            assert_eq!(
                listed, alices,
                "{kind:?}: the listing is not alice's sessions"
            );
            assert!(
                took < Duration::from_millis(500),
                "{kind:?}: the listing took {took:?}"
            );
            if seen.asked.load(Ordering::Relaxed) > asked {
                break;
            }
            assert!(
                Instant::now() < asked_within,
                "{kind:?}: the rogue was not asked"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let closed = Instant::now() + Duration::from_secs(5);
        if malformed {
            while seen.dropped.load(Ordering::Relaxed) == dropped {
                assert!(
                    Instant::now() < closed,
                    "{kind:?}: the node kept the connection"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            assert_eq!(
                seen.dropped.load(Ordering::Relaxed),
                dropped,
                "{kind:?}: a well-formed answer cost the connection"
            );
        }
        assert_eq!(
            nodes[0]
                .store()
                .revoke(&alice, &SessionHandle::of(&bobs.id))
                .await
                .unwrap(),
            tether_core::Revoked::NotFound,
            "{kind:?}: alice revoked bob's session"
        );
    }

    // The cluster works on, and bob is still signed in.
    for i in 0..3 {
        assert!(nodes[i].store().load(&bobs.id).await.unwrap().is_some());
        let r = held_by_nodes(&bob);
        assert_eq!(nodes[i].store().create(&r).await.unwrap(), Created::Created);
        assert!(
            nodes[(i + 1) % 3]
                .store()
                .load(&r.id)
                .await
                .unwrap()
                .is_some()
        );
    }
    server.abort();
    for node in &nodes {
        node.abort();
    }
}
