//! The store conformance suite with the near cache on (RESP3, tracking, copies served): the
//! cache must change no answer.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tether_core::SessionStore;
use tether_redis::RedisStore;
use tether_testkit::{Fixture, RedisServer};

struct Near {
    store: RedisStore,
    _server: RedisServer,
}

impl Fixture for Near {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }
}

async fn near() -> Near {
    capped(None).await
}

async fn capped(max: Option<NonZeroUsize>) -> Near {
    let server = RedisServer::start().expect("redis-server");
    let heartbeat = Duration::from_millis(50);
    let store = RedisStore::builder(server.url())
        .with_near_cache(10_000)
        .with_near_cache_heartbeat(heartbeat)
        .connect()
        .await
        .expect("connect")
        .with_max_sessions_per_principal(max);
    assert!(store.near_cache_stats().is_some(), "the near cache is on");
    tokio::time::sleep(heartbeat * 2).await;
    Near {
        store,
        _server: server,
    }
}

tether_testkit::store_conformance!(near(), principal_index: |max| capped(Some(max)));
