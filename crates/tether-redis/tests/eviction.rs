//! The eviction check at connect: one warning when Redis's `maxmemory-policy` can evict
//! sessions, nothing but a debug message when Redis does not say, never a failed connect.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tether_redis::RedisStore;
use tether_testkit::RedisServer;

/// The start of the warning's message.
const WARNING: &str = "Redis may evict sessions";

/// What the store logged, as the text a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(WARNING))
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `connect` (on this thread: the tests use the current-thread runtime) with a subscriber
/// that records every event down to debug.
async fn logged<T>(connect: impl Future<Output = T>) -> (T, Log) {
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let value = connect.await;
    drop(guard);
    (value, log)
}

#[tokio::test]
async fn an_evicting_policy_is_warned_about_once() {
    let server =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
            .unwrap();
    let (store, log) = logged(RedisStore::connect(server.url())).await;
    let store = store.expect("the warning does not fail the connect");
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{}", log.text());
    assert!(warnings[0].contains("WARN"), "{warnings:?}");
    assert!(warnings[0].contains("allkeys-lru"), "{warnings:?}");
    assert!(warnings[0].contains("maxmemory 67108864"), "{warnings:?}");
    tether_testkit::conformance::contract(&store).await;

    // Sessions have a TTL, so the volatile policies pick them too.
    for policy in [
        "volatile-lru",
        "volatile-ttl",
        "allkeys-random",
        "volatile-lfu",
    ] {
        let reply = server
            .command(&format!("CONFIG SET maxmemory-policy {policy}"))
            .unwrap();
        assert!(reply.starts_with("OK"), "{reply}");
        let (store, log) = logged(RedisStore::connect(server.url())).await;
        store.unwrap();
        let warnings = log.warnings();
        assert_eq!(warnings.len(), 1, "{policy}: {}", log.text());
        assert!(warnings[0].contains(policy), "{warnings:?}");
    }

    let reply = server
        .command("CONFIG SET maxmemory-policy noeviction")
        .unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    let (store, log) = logged(RedisStore::connect(server.url())).await;
    store.unwrap();
    assert!(log.warnings().is_empty(), "{}", log.text());
    assert!(
        log.text().contains("policy=noeviction"),
        "the check ran and found noeviction: {}",
        log.text()
    );
}

#[tokio::test]
async fn a_refused_config_get_skips_the_check() {
    // CONFIG renamed away, as some hosted and hardened setups do.
    let server = RedisServer::start_with(&[
        "--maxmemory-policy",
        "allkeys-lru",
        "--rename-command",
        "CONFIG",
        "",
    ])
    .unwrap();
    let (store, log) = logged(RedisStore::connect(server.url())).await;
    let store = store.expect("a refused CONFIG GET does not fail the connect");
    assert!(log.warnings().is_empty(), "{}", log.text());
    assert!(
        log.text().contains("eviction check skipped"),
        "{}",
        log.text()
    );
    tether_testkit::conformance::contract(&store).await;

    // An ACL user with exactly the store's commands, which exclude CONFIG.
    let server = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]).unwrap();
    let reply = server
        .command("ACL SETUSER app on >s3cret ~tether:* +hgetall +del +evalsha +eval +script|load +exists +hget +hset +hdel +hkeys +hmget +hlen +pexpireat +pexpiretime")
        .unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    let url = format!("redis://app:s3cret@127.0.0.1:{}", server.port());
    let (store, log) = logged(RedisStore::connect(url)).await;
    let store = store.expect("connect as the ACL user");
    assert!(log.warnings().is_empty(), "{}", log.text());
    assert!(log.text().contains("no permissions"), "{}", log.text());
    tether_testkit::conformance::contract(&store).await;
}

/// Every master of a Cluster is asked; the warning names the one that evicts.
#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_cluster_master_that_evicts_is_named() {
    let cluster = tokio::task::spawn_blocking(|| tether_testkit::RedisCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let evicting = &cluster.nodes()[1];
    let reply = evicting
        .command("CONFIG SET maxmemory-policy allkeys-lfu")
        .unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    let (store, log) = logged(RedisStore::cluster_builder(cluster.urls()).connect()).await;
    let store = store.expect("connect to the cluster");
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{}", log.text());
    let named = format!(":{} allkeys-lfu", evicting.port());
    assert!(warnings[0].contains(&named), "{warnings:?}");
    for other in [&cluster.nodes()[0], &cluster.nodes()[2]] {
        assert!(
            !warnings[0].contains(&format!(":{} ", other.port())),
            "{warnings:?}"
        );
    }
    tether_testkit::conformance::contract(&store).await;
}

/// Through Sentinel, the master it names is asked.
#[cfg(feature = "sentinel")]
#[tokio::test]
async fn a_sentinel_master_that_evicts_is_warned_about() {
    use tether_testkit::SentinelSetup;
    use tether_testkit::redis::SENTINEL_MASTER;

    let mut setup = tokio::task::spawn_blocking(SentinelSetup::start)
        .await
        .unwrap()
        .unwrap();
    let reply = setup
        .master()
        .command("CONFIG SET maxmemory-policy volatile-ttl")
        .unwrap();
    assert!(reply.starts_with("OK"), "{reply}");
    let (store, log) =
        logged(RedisStore::sentinel_builder([setup.sentinel_url()], SENTINEL_MASTER).connect())
            .await;
    let store = store.expect("connect through Sentinel");
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{}", log.text());
    assert!(warnings[0].contains("volatile-ttl"), "{warnings:?}");
    tether_testkit::conformance::contract(&store).await;
}
