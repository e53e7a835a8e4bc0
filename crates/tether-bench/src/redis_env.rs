//! The Redis server the Redis stacks run against: started by the bench on a free loopback port
//! (`redis-server` on PATH), or given with `--redis-url`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tether_core::BoxError;
use tether_testkit::RedisServer;

use crate::error::Doing as _;

/// A Redis for the benchmarks.
pub(crate) struct RedisEnv {
    url: String,
    /// Kept alive for the run when the bench started the server.
    server: Option<RedisServer>,
}

impl RedisEnv {
    /// Uses `url`, or starts a private redis-server when it is `None`.
    pub(crate) fn new(url: Option<String>) -> Result<Self, BoxError> {
        Ok(match url {
            Some(url) => Self { url, server: None },
            None => {
                let server = RedisServer::start()
                    .doing(|| "starting redis-server (is it on PATH?)".to_owned())?;
                Self {
                    url: server.url(),
                    server: Some(server),
                }
            }
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The process id of the redis-server the bench started, if it started one.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(RedisServer::pid)
    }

    /// `host:port` of `url`, without scheme, credentials or database: what error messages
    /// name (no password ends up in them).
    pub(crate) fn addr_of(url: &str) -> &str {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        rest.split(['/', '?']).next().unwrap_or(rest)
    }

    /// `host:port` of this Redis.
    fn addr(&self) -> &str {
        Self::addr_of(&self.url)
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, BoxError> {
        let at = || format!("connecting to the benchmark's Redis at {}", self.addr());
        redis::Client::open(self.url.as_str())
            .doing(at)?
            .get_multiplexed_async_connection()
            .await
            .doing(at)
    }

    /// Empties the database between runs, so each stack starts from the same state.
    pub(crate) async fn flush(&self) -> Result<(), BoxError> {
        let mut conn = self.connection().await?;
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut conn)
            .await
            .doing(|| format!("FLUSHALL on {}", self.addr()))?;
        Ok(())
    }

    /// Starts recording every command the server executes (`MONITOR`).
    pub(crate) fn monitor(&self) -> Result<Monitor, BoxError> {
        let addr = self.addr();
        let at = || format!("MONITOR on {addr}");
        let mut stream = TcpStream::connect(addr).doing(at)?;
        stream.write_all(b"MONITOR\r\n").doing(at)?;
        let mut reader = BufReader::new(stream.try_clone().doing(at)?);
        // Recording starts with the server's `+OK`: commands sent before it are not shown.
        let mut ok = String::new();
        reader.read_line(&mut ok).doing(at)?;
        if !ok.starts_with("+OK") {
            return Err(format!("MONITOR on {addr} answered {ok:?}").into());
        }
        let counts = Arc::new(Mutex::new(CommandCounts::default()));
        let sink = Arc::clone(&counts);
        let thread = std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Ok(mut counts) = sink.lock() {
                    counts.record(&line);
                }
            }
        });
        Ok(Monitor {
            stream,
            counts,
            thread: Some(thread),
        })
    }
}

/// The argument of the `ECHO` that ends a recording.
const MARKER: &str = "tether-bench-end-of-recording";

/// A running `MONITOR`.
pub(crate) struct Monitor {
    stream: TcpStream,
    counts: Arc<Mutex<CommandCounts>>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Stops recording and returns what was seen. `MONITOR` output trails the commands a little,
    /// so a marker command goes last and recording ends when it shows up.
    pub(crate) async fn finish(mut self, env: &RedisEnv) -> Result<CommandCounts, BoxError> {
        let mut conn = env.connection().await?;
        redis::cmd("ECHO")
            .arg(MARKER)
            .query_async::<String>(&mut conn)
            .await
            .doing(|| format!("ECHO on {}", env.addr()))?;
        Ok(tokio::task::spawn_blocking(move || self.collect()).await?)
    }

    fn collect(&mut self) -> CommandCounts {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if self.counts.lock().is_ok_and(|c| c.saw_marker) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Commands seen by `MONITOR`: those clients sent and those scripts ran inside Redis.
#[derive(Clone, Debug, Default)]
pub(crate) struct CommandCounts {
    pub(crate) from_clients: std::collections::BTreeMap<String, u64>,
    pub(crate) from_scripts: std::collections::BTreeMap<String, u64>,
    saw_marker: bool,
}

impl CommandCounts {
    /// A MONITOR line: `1700000000.123456 [0 127.0.0.1:5000] "HGETALL" "tether:..."`, with
    /// `[0 lua]` for commands run by a script.
    fn record(&mut self, line: &str) {
        let Some((source, rest)) = line.split_once("] ") else {
            return;
        };
        let name = rest
            .split('"')
            .nth(1)
            .unwrap_or_default()
            .to_ascii_uppercase();
        if name == "ECHO" && rest.contains(MARKER) {
            self.saw_marker = true;
            return;
        }
        let table = if source.ends_with("lua") {
            &mut self.from_scripts
        } else {
            &mut self.from_clients
        };
        *table.entry(name).or_default() += 1;
    }

    /// Commands clients sent, in all.
    pub(crate) fn client_total(&self) -> u64 {
        self.from_clients.values().sum()
    }

    /// Round trips clients made: every command they sent but `CLIENT`, which tether-redis's
    /// near cache sends (`CLIENT TRACKING ON`) only in the pipeline of the `HGETALL` after it.
    pub(crate) fn round_trips(&self) -> u64 {
        self.client_total() - self.from_clients.get("CLIENT").copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_leave_credentials_out() {
        for (url, addr) in [
            ("redis://127.0.0.1:6379", "127.0.0.1:6379"),
            ("redis://127.0.0.1:6379/", "127.0.0.1:6379"),
            ("redis://:secret@cache:6380/2", "cache:6380"),
            ("cache:6379", "cache:6379"),
        ] {
            assert_eq!(RedisEnv::addr_of(url), addr, "{url}");
        }
    }

    #[test]
    fn pipelined_tracking_is_no_round_trip_of_its_own() {
        let mut counts = CommandCounts::default();
        for line in [
            r#"1700000000.1 [0 127.0.0.1:5000] "CLIENT" "TRACKING" "ON" "NOLOOP""#,
            r#"1700000000.2 [0 127.0.0.1:5000] "HGETALL" "tether:abc""#,
            r#"1700000000.3 [0 127.0.0.1:5000] "EVALSHA" "f00" "1" "tether:abc""#,
            r#"1700000000.4 [0 lua] "HSET" "tether:abc" "k" "v""#,
        ] {
            counts.record(line);
        }
        assert_eq!(counts.client_total(), 3);
        assert_eq!(counts.round_trips(), 2);
        assert_eq!(counts.from_scripts.get("HSET"), Some(&1));
    }
}
