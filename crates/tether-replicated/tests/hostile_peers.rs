//! Peers that never authenticate, and peers whose clock is far ahead, against real nodes on
//! loopback ports.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cluster;
use tether_core::{Created, Expiry, Id, Record, SessionStore as _, Timestamp};
use tether_replicated::{Ack, LocalCluster, Membership as _, Mode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// These tests measure the memory of the whole test process or hold every handshake slot of a
/// node: one at a time, so they do not disturb each other.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn record() -> Record {
    let now = Timestamp::now();
    Record::new(
        Id::random().unwrap(),
        Expiry::new(now, Duration::from_secs(300), None),
        now,
    )
}

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
    assert_eq!(challenge[..2], [1, 0], "version 1, variant Challenge");
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
