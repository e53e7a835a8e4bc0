//! Concurrent creates of one id: exactly one wins, every time (a non-atomic insert-if-absent
//! let two win now and then, under load).

use std::sync::Arc;

use tether_memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_id_have_one_winner_every_time() {
    for _ in 0..500 {
        let store = Arc::new(MemoryStore::new());
        tether_testkit::conformance::concurrent_create_has_one_winner(store).await;
    }
}
