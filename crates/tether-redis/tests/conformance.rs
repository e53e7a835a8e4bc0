//! The store conformance suite against a real, standalone redis-server.

use std::num::NonZeroUsize;
use std::sync::Arc;

use tether_core::SessionStore;
use tether_redis::RedisStore;
use tether_testkit::{Fixture, RedisServer};

/// A store on its own redis-server, which stops when the fixture drops.
struct Standalone {
    store: RedisStore,
    _server: RedisServer,
}

impl Fixture for Standalone {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }
}

async fn standalone() -> Standalone {
    capped(None).await
}

async fn capped(max: Option<NonZeroUsize>) -> Standalone {
    let server = RedisServer::start().expect("redis-server");
    let store = RedisStore::connect(server.url())
        .await
        .expect("connect")
        .with_max_sessions_per_principal(max);
    Standalone {
        store,
        _server: server,
    }
}

tether_testkit::store_conformance!(standalone(), principal_index: |max| capped(Some(max)));
