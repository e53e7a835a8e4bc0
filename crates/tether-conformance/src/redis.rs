//! Real Redis servers for tests: a standalone server, a 3-master cluster, and a Sentinel setup,
//! each on free loopback ports, each stopped when dropped.
//!
//! The binaries come from `REDIS_SERVER_BIN` and `REDIS_CLI_BIN`, or `redis-server` and
//! `redis-cli` on `PATH` (Debian: `apt-get install redis-server redis-tools`). Servers keep
//! nothing on disk (`--save ""`, no AOF) and run in a temporary directory. A Redis-backed store
//! runs the conformance suite against one with a [`Fixture`](crate::Fixture) that keeps the
//! server alive (see the crate docs).
//!
//! # Example
//!
//! ```
//! use tether_conformance::redis::RedisServer;
//!
//! let mut server = RedisServer::start()?;
//! assert_eq!(server.command("SET greeting hello")?, "OK\n");
//! assert_eq!(server.command("GET greeting")?, "hello\n");
//!
//! server.restart()?; // killed and started again on the same port, empty
//! assert_eq!(server.command("EXISTS greeting")?, "0\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// Ports are drawn below this, so a cluster node's bus port (port + 10000) stays valid.
const MAX_PORT: u16 = 55_535;
const MIN_PORT: u16 = 20_000;
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts of a server or a setup before it is given up.
const ATTEMPTS: usize = 5;
/// How long [`SentinelSetup::fail_over`] waits for the replica's promotion.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn binary(env: &'static str, default: &'static str) -> Result<PathBuf, Error> {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    let found = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        Ok(path)
    } else {
        Err(Error::NotInstalled {
            program: default,
            path,
            env,
        })
    }
}

/// A free loopback port below [`MAX_PORT`] whose `+ 10000` bus port is free too.
fn free_port() -> u16 {
    loop {
        let mut seed = [0u8; 2];
        let _ = getrandom::fill(&mut seed);
        let port = MIN_PORT + u16::from_le_bytes(seed) % (MAX_PORT - MIN_PORT);
        let bound = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if bound(port) && bound(port + 10_000) {
            return port;
        }
    }
}

/// Sends one inline command and returns its reply flattened to text: simple strings, errors
/// (with their `-`), integers and bulk strings one per line, arrays element by element.
fn command(port: u16, line: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{line}\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut text = String::new();
    read_reply(&mut reader, &mut text, 0)?;
    Ok(text)
}

fn read_reply(
    reader: &mut impl std::io::BufRead,
    out: &mut String,
    depth: usize,
) -> std::io::Result<()> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    if depth > 8 {
        return Err(invalid("reply nested too deeply"));
    }
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at_checked(1).unwrap_or((line, ""));
    match kind {
        "$" => {
            let Ok(len) = rest.parse::<usize>() else {
                return Ok(()); // $-1: nil
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            out.push_str(&String::from_utf8_lossy(&body));
            out.push('\n');
        }
        "*" => {
            let count = rest.parse::<i64>().unwrap_or(0);
            for _ in 0..count.max(0) {
                read_reply(reader, out, depth + 1)?;
            }
        }
        "+" | ":" => {
            out.push_str(rest);
            out.push('\n');
        }
        "-" => {
            out.push_str(line);
            out.push('\n');
        }
        _ => return Err(invalid("not a RESP reply")),
    }
    Ok(())
}

/// PING over TLS with redis-cli, trusting `ca`.
fn tls_ping(port: u16, ca: &Path) -> bool {
    binary("REDIS_CLI_BIN", "redis-cli").is_ok_and(|cli| {
        Command::new(cli)
            .args([
                "--tls",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--cacert",
            ])
            .arg(ca)
            .arg("PING")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("PONG"))
    })
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), Error> {
    let start = Instant::now();
    while start.elapsed() < START_TIMEOUT {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error::Timeout {
        what: what.to_owned(),
        after: START_TIMEOUT,
    })
}

/// One `redis-server` process.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
    /// Set for a TLS server: the port is TLS-only and this CA signed its certificate.
    tls_ca: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a standalone server on a free loopback port and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// When `redis-server` is missing (the message says how to install it) or does not start.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(&[])
    }

    /// Starts a server with extra configuration arguments (`["--maxmemory", "1mb"]`, say).
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start`].
    pub fn start_with(args: &[&str]) -> Result<Self, Error> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Self::launch(|server| {
            server.args.clone_from(&args);
            server.spawn()
        })
    }

    /// Starts a server on a fresh port and directory with `spawn`. Another process may take the
    /// port between the check and redis-server's bind: then it tries again with a new one rather
    /// than fail.
    fn launch(mut spawn: impl FnMut(&mut Self) -> Result<(), Error>) -> Result<Self, Error> {
        let mut attempt = 1;
        loop {
            let mut server = Self {
                port: free_port(),
                dir: tempfile::tempdir().map_err(io("creating a temporary directory"))?,
                args: Vec::new(),
                child: None,
                tls_ca: None,
            };
            match spawn(&mut server) {
                Ok(()) => return Ok(server),
                Err(e) if attempt >= ATTEMPTS => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }

    /// Starts a server that speaks only TLS, with a certificate for `127.0.0.1` signed by a
    /// throw-away CA ([`RedisServer::tls_ca_pem`]). Needs `openssl` on PATH and a redis-server
    /// built with TLS (Debian's is).
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start`], and when the certificates cannot be made.
    pub fn start_tls() -> Result<Self, Error> {
        Self::launch(|server| {
            let ca = server.make_certificates()?;
            let dir = server.dir.path().to_string_lossy().into_owned();
            server.args = vec![
                "--tls-cert-file".into(),
                format!("{dir}/server.pem"),
                "--tls-key-file".into(),
                format!("{dir}/server.key"),
                "--tls-ca-cert-file".into(),
                format!("{dir}/ca.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            server.tls_ca = Some(ca);
            server.spawn()
        })
    }

    /// A CA and a server certificate for 127.0.0.1, made with the openssl command line.
    fn make_certificates(&self) -> Result<PathBuf, Error> {
        let dir = self.dir.path();
        let openssl = |args: &[&str]| -> Result<(), Error> {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .map_err(io("running openssl (is it installed?)"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(Error::Command {
                    command: format!("openssl {}", args.join(" ")),
                    output: String::from_utf8_lossy(&output.stderr).into_owned(),
                })
            }
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tether test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
            .map_err(io("writing san.ext"))?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ])?;
        Ok(dir.join("ca.pem"))
    }

    /// The PEM of the CA that signed a TLS server's certificate ([`RedisServer::start_tls`]).
    pub fn tls_ca_pem(&self) -> Option<Vec<u8>> {
        self.tls_ca
            .as_ref()
            .and_then(|path| std::fs::read(path).ok())
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let bin = binary("REDIS_SERVER_BIN", "redis-server")?;
        let log = self.dir.path().join("redis.log");
        let port = self.port.to_string();
        let listen: Vec<&str> = if self.tls_ca.is_some() {
            vec!["--port", "0", "--tls-port", &port]
        } else {
            vec!["--port", &port]
        };
        let child = Command::new(bin)
            .args(listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("spawning redis-server"))?;
        self.child = Some(child);
        let port = self.port;
        let answers = || match &self.tls_ca {
            Some(ca) => tls_ping(port, ca),
            None => command(port, "PING").is_ok_and(|reply| reply.starts_with("PONG")),
        };
        let ready = wait_until(
            &format!("redis-server on port {port} to answer PING"),
            answers,
        );
        if ready.is_err() {
            self.kill();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Error::NotStarted {
                port,
                log: tail.join("\n"),
            });
        }
        Ok(())
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends one inline command (`"CONFIG SET maxmemory 1mb"`) and returns its reply as text,
    /// one line per string or integer (errors keep their leading `-`).
    ///
    /// # Errors
    ///
    /// When the server cannot be reached.
    pub fn command(&self, line: &str) -> std::io::Result<String> {
        command(self.port, line)
    }

    /// Kills the process (SIGKILL: no goodbye to clients), keeping the port for a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (nothing was persisted).
    ///
    /// # Errors
    ///
    /// When it does not start, for instance because the port was taken meanwhile.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.spawn()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of masters without replicas, created with `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers (at least 3), joins them and waits until every
    /// node reports `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// When a server does not start or the cluster does not form.
    pub fn start(masters: usize) -> Result<Self, Error> {
        let masters = masters.max(3);
        let nodes = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cli = binary("REDIS_CLI_BIN", "redis-cli")?;
        let output = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(io("running redis-cli --cluster create"))?;
        if !output.status.success() {
            return Err(Error::Command {
                command: "redis-cli --cluster create".to_owned(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        for node in &nodes {
            wait_until(&format!("cluster_state:ok on port {}", node.port()), || {
                node.command("CLUSTER INFO")
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })?;
        }
        Ok(Self { nodes })
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

/// The name Sentinel monitors the master under.
pub const SENTINEL_MASTER: &str = "tether-master";

/// A master, one replica of it, and one Sentinel watching them (quorum 1, a failover after one
/// second without answers).
#[derive(Debug)]
pub struct SentinelSetup {
    master: RedisServer,
    replica: RedisServer,
    sentinel: RedisServer,
}

impl SentinelSetup {
    /// Starts the three processes and waits until the replica is in sync and the Sentinel knows
    /// both.
    ///
    /// # Errors
    ///
    /// When a process does not start or they do not find each other.
    pub fn start() -> Result<Self, Error> {
        let master = RedisServer::start()?;
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port])?;
        wait_until("the replica to sync with the master", || {
            replica
                .command("INFO replication")
                .is_ok_and(|info| info.contains("master_link_status:up"))
        })?;
        let sentinel = Self::start_sentinel(master.port())?;
        wait_until("Sentinel to discover the replica", || {
            sentinel
                .command(&format!("SENTINEL REPLICAS {SENTINEL_MASTER}"))
                .is_ok_and(|reply| reply.contains(&replica.port().to_string()))
        })?;
        Ok(Self {
            master,
            replica,
            sentinel,
        })
    }

    fn start_sentinel(master_port: u16) -> Result<RedisServer, Error> {
        let config = format!(
            "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
             sentinel failover-timeout {SENTINEL_MASTER} 5000\n\
             sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
        );
        RedisServer::start_sentinel(&config)
    }

    /// `redis://127.0.0.1:<port>` of the Sentinel.
    pub fn sentinel_url(&self) -> String {
        self.sentinel.url()
    }

    /// The current master process (the one started as master).
    pub fn master(&mut self) -> &mut RedisServer {
        &mut self.master
    }

    /// The replica process.
    pub fn replica(&self) -> &RedisServer {
        &self.replica
    }

    /// Kills the master and waits until Sentinel names the replica as the new master and the
    /// replica has taken the role.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no failover happens within 30 s.
    pub fn fail_over(&mut self) -> Result<(), Error> {
        self.master.kill();
        let replica_port = self.replica.port().to_string();
        let start = Instant::now();
        while start.elapsed() < FAILOVER_TIMEOUT {
            let named = self
                .sentinel
                .command(&format!(
                    "SENTINEL GET-MASTER-ADDR-BY-NAME {SENTINEL_MASTER}"
                ))
                .is_ok_and(|addr| addr.lines().nth(1) == Some(replica_port.as_str()));
            let promoted = self
                .replica
                .command("ROLE")
                .is_ok_and(|role| role.starts_with("master"));
            if named && promoted {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Timeout {
            what: "Sentinel to promote the replica".to_owned(),
            after: FAILOVER_TIMEOUT,
        })
    }
}

impl RedisServer {
    fn start_sentinel(config: &str) -> Result<Self, Error> {
        Self::launch(|server| server.spawn_sentinel(config))
    }

    /// Sentinel rewrites its configuration file, so it lives in the server's own directory.
    fn spawn_sentinel(&mut self, config: &str) -> Result<(), Error> {
        let bin = binary("REDIS_SERVER_BIN", "redis-server")?;
        let path = self.dir.path().join("sentinel.conf");
        std::fs::write(&path, config).map_err(io("writing sentinel.conf"))?;
        let child = Command::new(bin)
            .arg(&path)
            .arg("--sentinel")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("spawning redis-server --sentinel"))?;
        self.child = Some(child);
        let port = self.port;
        wait_until(&format!("Sentinel on port {port} to answer PING"), || {
            command(port, "PING").is_ok_and(|reply| reply.starts_with("PONG"))
        })
        .inspect_err(|_| self.kill())
    }
}
