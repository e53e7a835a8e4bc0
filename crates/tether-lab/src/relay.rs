//! A delaying TCP relay on loopback: what a real network between two of the lab's parts
//! costs, for protocols the lab does not speak itself (Redis, replication).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::network::Delays;

/// Chunks in flight in one direction of one connection before the relay stops reading: a
/// peer that stops reading slows its sender, as TCP's window would.
const IN_FLIGHT: usize = 256;
/// The largest chunk read at once.
const CHUNK: usize = 64 * 1024;

/// Listens on a loopback port and forwards each connection to `target`, holding every chunk
/// one way of a round trip in each direction. A connection to a target that is down is closed.
/// Dropping the relay closes its port and every connection through it.
#[derive(Debug)]
pub(crate) struct Relay {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts a relay to `target` on a free loopback port. Needs a Tokio runtime.
    pub(crate) fn start(target: SocketAddr, delays: &Arc<Delays>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = TcpListener::from_std(listener)?;
        let task = tokio::spawn(accept(listener, target, Arc::clone(delays)));
        Ok(Self { addr, task })
    }

    /// Where to connect instead of the target.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, delays: Arc<Delays>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(forward(client, target, Arc::clone(&delays)));
                }
                // Out of descriptors, say: the next accept may work.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn forward(client: TcpStream, target: SocketAddr, delays: Arc<Delays>) {
    // The handshake's round trip too.
    delays.one_way_trip().await;
    let Ok(server) = TcpStream::connect(target).await else {
        drop(client);
        return;
    };
    delays.one_way_trip().await;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, &delays),
        pump(server_read, client_write, &delays),
    );
}

/// Carries one direction: each chunk is written one way of a round trip after it was read,
/// never before an earlier one; the end of the stream follows the last chunk.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delays: &Delays) {
    let (chunks, mut due) = mpsc::channel::<(Instant, Bytes)>(IN_FLIGHT);
    let read = async move {
        let mut last = Instant::now();
        loop {
            let mut buffer = BytesMut::with_capacity(CHUNK);
            match from.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let at = (Instant::now() + delays.one_way()).max(last);
            last = at;
            if chunks.send((at, buffer.freeze())).await.is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            delays.until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Network;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_trip_through_the_relay_takes_the_round_trip_time() {
        let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = echo.accept().await.unwrap();
            let mut buffer = [0u8; 5];
            for _ in 0..3 {
                socket.read_exact(&mut buffer).await.unwrap();
                socket.write_all(&buffer).await.unwrap();
            }
        });
        let rtt = Duration::from_millis(20);
        let delays = Arc::new(
            Delays::start(Network::new(rtt, Duration::ZERO))
                .unwrap()
                .unwrap(),
        );
        let relay = Relay::start(target, &delays).unwrap();
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        let mut buffer = [0u8; 5];
        // The first round trip also connects the relay to its target: one more.
        client.write_all(b"hello").await.unwrap();
        client.read_exact(&mut buffer).await.unwrap();
        for _ in 0..2 {
            let sent = Instant::now();
            client.write_all(b"again").await.unwrap();
            client.read_exact(&mut buffer).await.unwrap();
            let took = sent.elapsed();
            assert_eq!(&buffer, b"again");
            assert!(took >= rtt, "{took:?}");
            assert!(took < rtt * 3, "{took:?}");
        }
    }

    #[tokio::test]
    async fn a_connection_to_a_target_that_is_down_is_closed() {
        let gone = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let target = gone.local_addr().unwrap();
        drop(gone);
        let delays = Arc::new(
            Delays::start(Network::new(Duration::from_millis(1), Duration::ZERO))
                .unwrap()
                .unwrap(),
        );
        let relay = Relay::start(target, &delays).unwrap();
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        let mut buffer = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buffer)).await;
        assert!(
            matches!(read, Ok(Err(_)) | Ok(Ok(0))),
            "the relay must end the connection: {read:?}"
        );
    }
}
