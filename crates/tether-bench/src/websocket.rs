//! `websocket`: WebSocket echo messages per second straight to a backend, through tether-proxy
//! and through HAProxy, in interleaved rounds. The proxies run pinned to core 0 with `taskset`;
//! this process (the echo backend and the clients) runs on core 1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tether_core::BoxError;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::net::{bind_loopback, free_addr};
use crate::plan::{Plan, median};
use crate::proxy::{Under, start_haproxy, start_tether, wait_listening};

/// Bytes in each message.
const MESSAGE: usize = 32;

/// Accepts WebSocket connections and echoes every message, each connection on a task.
async fn echo_backend() -> Result<SocketAddr, BoxError> {
    let (listener, addr) = bind_loopback().await?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut stream) = socket.split();
                while let Some(Ok(message)) = stream.next().await {
                    if (message.is_binary() || message.is_text())
                        && sink.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Messages echoed per second over `plan.connections` WebSockets to `addr`, each keeping
/// `window` messages in flight (sending one whenever one comes back), after `plan.warmup`.
async fn echo_rate(addr: SocketAddr, plan: &Plan, window: usize) -> Result<f64, BoxError> {
    let counted = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..plan.connections {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut socket, _) =
            tokio_tungstenite::client_async(format!("ws://{addr}/"), stream).await?;
        let (counted, counting, stop) = (
            Arc::clone(&counted),
            Arc::clone(&counting),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            let payload = vec![b'x'; MESSAGE];
            for _ in 1..window {
                socket.send(Message::binary(payload.clone())).await?;
            }
            while !stop.load(Ordering::Relaxed) {
                socket.send(Message::binary(payload.clone())).await?;
                match socket.next().await {
                    Some(Ok(Message::Binary(echoed))) if echoed.len() == MESSAGE => {}
                    other => return Err(format!("no echo: {other:?}").into()),
                }
                if counting.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = socket.close(None).await;
            Ok::<_, BoxError>(())
        }));
    }
    tokio::time::sleep(plan.warmup).await;
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(plan.measure).await;
    counting.store(false, Ordering::Relaxed);
    let echoed = counted.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::time::timeout(Duration::from_secs(10), client).await???;
    }
    Ok(echoed as f64 / plan.measure.as_secs_f64())
}

/// Runs the three paths (direct, tether-proxy, HAProxy) `plan.repeat` times, interleaved,
/// and prints a table.
pub(crate) async fn compare(bin: &Path, plan: &Plan, window: usize) -> Result<(), BoxError> {
    let backend = echo_backend().await?;
    let paths = ["direct", "tether-proxy", "haproxy"];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for round in 0..plan.repeat {
        for (i, path) in paths.iter().enumerate() {
            let listen = free_addr()?;
            let proxy = match *path {
                "tether-proxy" => Some(start_tether(Under::Taskset, bin, listen, &[backend])?),
                "haproxy" => Some(start_haproxy(Under::Taskset, listen, &[backend])?),
                _ => None,
            };
            let rate = match proxy {
                Some(mut proxy) => {
                    wait_listening(listen, &mut proxy).await?;
                    let rate = echo_rate(listen, plan, window).await?;
                    drop(proxy);
                    rate
                }
                None => echo_rate(backend, plan, window).await?,
            };
            eprintln!(
                "round {}/{} {path:<13} {rate:>9.0} msg/s",
                round + 1,
                plan.repeat
            );
            if let Some(samples) = rates.get_mut(i) {
                samples.push(rate);
            }
        }
    }
    println!(
        "{} WebSockets echoing {MESSAGE}-byte messages, {window} in flight on each, median of {} run(s) of {}s; proxies on core 0, clients and backend on core 1",
        plan.connections,
        plan.repeat,
        plan.measure.as_secs()
    );
    println!("{:<13} {:>12} {:>10}", "path", "messages/s", "vs direct");
    let direct = rates.first().map_or(0.0, |r| median(r.iter().copied()));
    for (path, samples) in paths.iter().zip(&rates) {
        let rate = median(samples.iter().copied());
        println!(
            "{path:<13} {rate:>12.0} {:>9.2}x",
            rate / direct.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}
