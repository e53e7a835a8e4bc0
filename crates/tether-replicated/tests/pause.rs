//! Nodes as processes of their own, under users over real HTTP: one paused for real with
//! SIGSTOP and resumed with SIGCONT, and three started at the same moment with load at once.
//! Across both, no counter may go backwards and no user may get a new session.
//!
//! The nodes are this test binary started again as children (it has `harness = false`, so
//! `main` decides which it is): each binds its two ports on 127.0.0.1:0, prints them, reads its
//! peers on stdin, starts a `Node`, serves the counter app, prints every view it publishes, and
//! exits when its stdin closes.

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    if let Ok(name) = std::env::var(unix::CHILD) {
        return unix::child(&name);
    }
    unix::run_tests()
}

#[cfg(not(unix))]
fn main() {
    println!("the pause tests need unix signals; skipped");
}

#[cfg(unix)]
mod common;

#[cfg(unix)]
mod unix {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, mpsc};
    use std::time::{Duration, Instant};

    use tether_replicated::{Ack, Membership as _, Mode, Node, NodeConfig, PeerKey};

    use super::common::app;

    /// The environment variable that makes this binary a node: its value is the node's name.
    pub(super) const CHILD: &str = "TETHER_REPLICATED_TEST_NODE";
    const KEY: &[u8; 32] = b"pause tests: a key of 32 bytes!!";
    const HEARTBEAT: Duration = Duration::from_millis(100);
    const FAILURE_TIMEOUT: Duration = Duration::from_millis(600);
    const NODES: usize = 3;
    const USERS: usize = 20;
    /// A request to a paused node waits for it: longer than any pause here.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    type Test = fn();
    const TESTS: &[(&str, Test)] = &[
        (
            "a_paused_node_rejoins_before_it_serves",
            a_paused_node_rejoins_before_it_serves,
        ),
        (
            "nodes_started_together_agree_before_they_serve",
            nodes_started_together_agree_before_they_serve,
        ),
    ];

    /// A small stand-in for the test harness: `--list`, name filters, `--exact`, `--skip`,
    /// `--ignored` (none is); other flags are accepted and ignored. The tests load both cores,
    /// so they run one after the other.
    pub(super) fn run_tests() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let (mut filters, mut skips) = (Vec::new(), Vec::new());
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                "--skip" => skips.extend(rest.next()),
                "--test-threads" | "--format" | "--color" | "--logfile" | "--shuffle-seed"
                | "-Z" => {
                    rest.next();
                }
                flag if flag.starts_with('-') => {}
                filter => filters.push(filter),
            }
        }
        let exact = args.iter().any(|a| a == "--exact");
        let only_ignored = args.iter().any(|a| a == "--ignored");
        let matches = |name: &str, pattern: &str| {
            if exact {
                name == pattern
            } else {
                name.contains(pattern)
            }
        };
        let selected: Vec<&(&str, Test)> = TESTS
            .iter()
            .filter(|(name, _)| {
                !only_ignored
                    && (filters.is_empty() || filters.iter().any(|f| matches(name, f)))
                    && !skips.iter().any(|s| matches(name, s))
            })
            .collect();
        if args.iter().any(|a| a == "--list") {
            for (name, _) in selected {
                println!("{name}: test");
            }
            return ExitCode::SUCCESS;
        }
        println!("\nrunning {} tests", selected.len());
        let mut failed = Vec::new();
        for (name, test) in &selected {
            let outcome = std::panic::catch_unwind(test);
            println!(
                "test {name} ... {}",
                if outcome.is_ok() { "ok" } else { "FAILED" }
            );
            if outcome.is_err() {
                failed.push(*name);
            }
        }
        println!(
            "\ntest result: {}. {} passed; {} failed\n",
            if failed.is_empty() { "ok" } else { "FAILED" },
            selected.len() - failed.len(),
            failed.len()
        );
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    // ---- the node process ----

    pub(super) fn child(name: &str) -> ExitCode {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        match runtime.block_on(serve(name)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("node {name}: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn serve(name: &str) -> Result<(), Box<dyn std::error::Error>> {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let replication = tokio::net::TcpListener::bind(loopback).await?;
        // Bound before the node starts, as an application would: requests wait in the backlog.
        let http = tokio::net::TcpListener::bind(loopback).await?;
        println!("addrs {} {}", replication.local_addr()?, http.local_addr()?);
        let peers = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await??;
        // After the peers, the end of stdin means the test is over (or gone).
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        let mut config = NodeConfig::new(name, replication.local_addr()?, PeerKey::new(*KEY)?)
            .with_mode(Mode::Backup { copies: 1 })
            .with_ack(Ack::Sync)
            .with_failure_detection(HEARTBEAT, FAILURE_TIMEOUT);
        for peer in peers.split_whitespace() {
            let (peer, addr) = peer.split_once('=').ok_or("peer without an address")?;
            config = config.with_peer(peer, addr.parse()?);
        }
        let node = Node::start_with_listener(config, replication).await?;
        println!("serving");
        let mut views = node.watch();
        tokio::spawn(async move {
            loop {
                let members = views.borrow_and_update().members().join(",");
                println!("view {members}");
                if views.changed().await.is_err() {
                    return;
                }
            }
        });
        axum::serve(http, app(node.store())).await?;
        Ok(())
    }

    // ---- the test side ----

    /// A node process; killed (and reaped) on drop, paused or not.
    struct Proc {
        name: String,
        child: Child,
        stdin: Option<ChildStdin>,
        replication: SocketAddr,
        http: SocketAddr,
        lines: mpsc::Receiver<String>,
        /// The views it published, with when they arrived.
        views: Vec<(Instant, String)>,
    }

    impl Proc {
        fn spawn(name: &str) -> Self {
            let mut child = Command::new(std::env::current_exe().expect("test binary"))
                .env(CHILD, name)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a node");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            let stdin = child.stdin.take();
            let mut proc = Self {
                name: name.to_owned(),
                child,
                stdin,
                replication: ([127, 0, 0, 1], 0).into(),
                http: ([127, 0, 0, 1], 0).into(),
                lines,
                views: Vec::new(),
            };
            let addrs = proc.wait_line(|l| l.starts_with("addrs "), Duration::from_secs(10));
            let mut parts = addrs.split_whitespace().skip(1);
            proc.replication = parts.next().and_then(|a| a.parse().ok()).expect("address");
            proc.http = parts.next().and_then(|a| a.parse().ok()).expect("address");
            proc
        }

        fn pid(&self) -> String {
            self.child.id().to_string()
        }

        /// Reads lines until one passes `wanted`, recording views on the way.
        fn wait_line(&mut self, wanted: impl Fn(&str) -> bool, within: Duration) -> String {
            let deadline = Instant::now() + within;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = self
                    .lines
                    .recv_timeout(left)
                    .unwrap_or_else(|e| panic!("{}: no expected line ({e})", self.name));
                if let Some(view) = line.strip_prefix("view ") {
                    self.views.push((Instant::now(), view.to_owned()));
                }
                if wanted(&line) {
                    return line;
                }
            }
        }

        /// Takes in the lines printed so far.
        fn drain(&mut self) {
            while let Ok(line) = self.lines.try_recv() {
                if let Some(view) = line.strip_prefix("view ") {
                    self.views.push((Instant::now(), view.to_owned()));
                }
            }
        }

        fn signal(&self, signal: &str) {
            let status = Command::new("kill")
                .args([signal, &self.pid()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {signal} {}", self.pid());
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            drop(self.stdin.take());
            // SIGKILL ends a stopped process too.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts `NODES` node processes and hands each its peers at the same moment.
    fn launch() -> Vec<Proc> {
        let mut procs: Vec<Proc> = (0..NODES).map(|i| Proc::spawn(&format!("n{i}"))).collect();
        let lines: Vec<String> = procs
            .iter()
            .map(|me| {
                let peers: Vec<String> = procs
                    .iter()
                    .filter(|p| p.name != me.name)
                    .map(|p| format!("{}={}", p.name, p.replication))
                    .collect();
                format!("{}\n", peers.join(" "))
            })
            .collect();
        for (proc, line) in procs.iter_mut().zip(lines) {
            let stdin = proc.stdin.as_mut().expect("stdin");
            stdin.write_all(line.as_bytes()).expect("peers");
            stdin.flush().expect("peers");
        }
        procs
    }

    fn wait_full_views(procs: &mut [Proc]) {
        let full = (0..NODES)
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(",");
        for proc in procs.iter_mut() {
            let already = proc.views.last().is_some_and(|(_, v)| *v == full);
            if !already {
                proc.wait_line(|l| l == format!("view {full}"), Duration::from_secs(10));
            }
        }
    }

    /// One answer to `GET /incr`.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        count: Option<u64>,
        set_cookie: Option<String>,
    }

    /// One keep-alive HTTP/1.1 connection per user and node.
    fn incr(
        conn: &mut Option<BufReader<TcpStream>>,
        addr: SocketAddr,
        cookie: Option<&str>,
    ) -> Result<Answer, String> {
        let result = (|| {
            if conn.is_none() {
                let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .map_err(|e| format!("connect: {e}"))?;
                stream
                    .set_read_timeout(Some(REQUEST_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                let _ = stream.set_nodelay(true);
                *conn = Some(BufReader::new(stream));
            }
            let reader = conn.as_mut().ok_or("no connection")?;
            let cookie = cookie.map_or(String::new(), |c| format!("cookie: {c}\r\n"));
            let request = format!("GET /incr HTTP/1.1\r\nhost: {addr}\r\n{cookie}\r\n");
            reader
                .get_mut()
                .write_all(request.as_bytes())
                .map_err(|e| format!("send: {e}"))?;
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("status: {e}"))?;
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("status line {line:?}"))?;
            let (mut length, mut set_cookie) = (0usize, None);
            loop {
                line.clear();
                reader
                    .read_line(&mut line)
                    .map_err(|e| format!("header: {e}"))?;
                let header = line.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').ok_or("bad header")?;
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().map_err(|_| "length")?,
                    "set-cookie" => {
                        set_cookie = value.trim().split(';').next().map(str::to_owned);
                    }
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            reader
                .read_exact(&mut body)
                .map_err(|e| format!("body: {e}"))?;
            let count = String::from_utf8_lossy(&body).parse().ok();
            Ok(Answer {
                status,
                count,
                set_cookie,
            })
        })();
        if result.is_err() {
            *conn = None;
        }
        result
    }

    /// What one user saw.
    #[derive(Debug, Default)]
    struct Seen {
        ok: u32,
        unavailable: u32,
        /// A count not above the last acknowledged one: a lost update, or a reset.
        backwards: Vec<(u64, u64)>,
        /// A new session id after the user had one.
        new_session: u32,
        /// More above the last acknowledged count than failed requests since can explain.
        unexplained: Vec<(u64, u64)>,
        /// Answers other than 200 and 503, and broken connections.
        other: Vec<String>,
        last: u64,
        failures: u64,
        cookie: Option<String>,
    }

    impl Seen {
        fn observe(&mut self, answer: Result<Answer, String>) {
            match answer {
                Ok(Answer {
                    status: 200,
                    count: Some(count),
                    set_cookie,
                }) => {
                    self.ok += 1;
                    if let Some(set) = set_cookie {
                        if self.cookie.as_ref().is_some_and(|c| *c != set) {
                            self.new_session += 1;
                        }
                        self.cookie = Some(set);
                    }
                    if count <= self.last {
                        self.backwards.push((self.last, count));
                    } else if count - self.last - 1 > self.failures {
                        self.unexplained.push((self.last, count));
                    }
                    self.last = count;
                    self.failures = 0;
                }
                Ok(Answer { status: 503, .. }) => {
                    self.unavailable += 1;
                    self.failures += 1;
                }
                Ok(other) => {
                    self.other.push(format!("{other:?}"));
                    self.failures += 1;
                }
                Err(e) => {
                    self.other.push(e);
                    self.failures += 1;
                }
            }
        }
    }

    /// Sums and checks what the users saw; panics with the figures on a violation.
    fn check(what: &str, seen: &[Seen], procs: &mut [Proc]) {
        let ok: u32 = seen.iter().map(|s| s.ok).sum();
        let unavailable: u32 = seen.iter().map(|s| s.unavailable).sum();
        let backwards: usize = seen.iter().map(|s| s.backwards.len()).sum();
        let new_sessions: u32 = seen.iter().map(|s| s.new_session).sum();
        let unexplained: usize = seen.iter().map(|s| s.unexplained.len()).sum();
        let other: usize = seen.iter().map(|s| s.other.len()).sum();
        let lost: u64 = seen
            .iter()
            .flat_map(|s| &s.backwards)
            .map(|(last, now)| last + 1 - now)
            .sum();
        println!(
            "{what}: {ok} ok, {unavailable} unavailable, {backwards} backwards \
             ({lost} increments lost), {new_sessions} new sessions, {unexplained} unexplained, \
             {other} other"
        );
        let mut problems = Vec::new();
        for (user, s) in seen.iter().enumerate() {
            if !s.backwards.is_empty() || s.new_session > 0 || !s.unexplained.is_empty() {
                problems.push(format!(
                    "user {user}: backwards {:?}, new sessions {}, unexplained {:?}",
                    s.backwards, s.new_session, s.unexplained
                ));
            }
            if !s.other.is_empty() {
                problems.push(format!("user {user}: {:?}", s.other));
            }
            if s.last == 0 {
                problems.push(format!("user {user} never got a session"));
            }
        }
        if !problems.is_empty() {
            for proc in procs.iter_mut() {
                proc.drain();
                println!("views of {}: {:?}", proc.name, proc.views);
            }
            panic!("{what}:\n{}", problems.join("\n"));
        }
    }

    /// Users of `/incr`, each with its own session, round robin over the nodes that are not
    /// marked paused, until `stop`.
    fn users(
        http: Vec<SocketAddr>,
        paused: &Arc<AtomicUsize>,
        stop: &Arc<AtomicBool>,
        start: &Arc<Barrier>,
        rounds: usize,
        think: Duration,
    ) -> Vec<std::thread::JoinHandle<Seen>> {
        (0..USERS)
            .map(|user| {
                let (http, paused, stop, start) = (
                    http.clone(),
                    Arc::clone(paused),
                    Arc::clone(stop),
                    Arc::clone(start),
                );
                std::thread::spawn(move || {
                    let mut conns: Vec<Option<BufReader<TcpStream>>> =
                        (0..http.len()).map(|_| None).collect();
                    let mut seen = Seen::default();
                    start.wait();
                    let mut next = user;
                    for _ in 0..rounds {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut node = next % http.len();
                        if node == paused.load(Ordering::SeqCst) {
                            next += 1;
                            node = next % http.len();
                        }
                        next += 1;
                        let cookie = seen.cookie.clone();
                        let answer = incr(&mut conns[node], http[node], cookie.as_deref());
                        seen.observe(answer);
                        std::thread::sleep(think);
                    }
                    seen
                })
            })
            .collect()
    }

    const NOT_PAUSED: usize = usize::MAX;

    /// A node stopped for longer than the failure timeout (its peers declare it dead and go on
    /// without it), then continued while users write through every node again at once. Before
    /// the fix the resumed node served its stale copies, alone in a view of its own: counters
    /// went backwards and sessions it did not hold were new.
    fn a_paused_node_rejoins_before_it_serves() {
        let mut procs = launch();
        for proc in &mut procs {
            proc.wait_line(|l| l == "serving", Duration::from_secs(10));
        }
        wait_full_views(&mut procs);
        let http: Vec<SocketAddr> = procs.iter().map(|p| p.http).collect();
        let paused = Arc::new(AtomicUsize::new(NOT_PAUSED));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(USERS + 1));
        let users = users(
            http,
            &paused,
            &stop,
            &start,
            100_000,
            Duration::from_millis(5),
        );
        start.wait();
        std::thread::sleep(Duration::from_millis(600));
        // The balancer stops sending to it; requests already there wait for it.
        paused.store(0, Ordering::SeqCst);
        procs[0].signal("-STOP");
        std::thread::sleep(FAILURE_TIMEOUT * 2 + Duration::from_millis(300));
        procs[0].signal("-CONT");
        // ... and sends to it again as soon as it runs.
        paused.store(NOT_PAUSED, Ordering::SeqCst);
        let resumed = Instant::now();
        std::thread::sleep(Duration::from_millis(1_500));
        stop.store(true, Ordering::Relaxed);
        let seen: Vec<Seen> = users.into_iter().map(|u| u.join().expect("user")).collect();
        check("pause", &seen, &mut procs);
        // The paused node is a member again, serving.
        wait_full_views(&mut procs);
        procs[0].drain();
        let after: Vec<&String> = procs[0]
            .views
            .iter()
            .filter(|(at, _)| *at >= resumed)
            .map(|(_, v)| v)
            .collect();
        assert!(
            !after.iter().any(|v| v.as_str() == "n0"),
            "the resumed node made a view of itself alone: {after:?}"
        );
    }

    /// Three nodes started at the same moment, users on every node at once: a session created
    /// through one node is found through the others. Before the fix each node served alone
    /// for a few heartbeats, and users got new sessions as they moved between nodes.
    fn nodes_started_together_agree_before_they_serve() {
        let mut procs = launch();
        let http: Vec<SocketAddr> = procs.iter().map(|p| p.http).collect();
        let paused = Arc::new(AtomicUsize::new(NOT_PAUSED));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(USERS + 1));
        let users = users(http, &paused, &stop, &start, 100, Duration::from_millis(10));
        let launched = Instant::now();
        start.wait();
        println!("load started {:?} after launch", launched.elapsed());
        let seen: Vec<Seen> = users.into_iter().map(|u| u.join().expect("user")).collect();
        check("cold start", &seen, &mut procs);
        let first_views: Vec<String> = procs
            .iter_mut()
            .filter_map(|proc| {
                proc.drain();
                proc.views.first().map(|(_, view)| view.clone())
            })
            .collect();
        println!("first published views: {first_views:?}");
    }
}
