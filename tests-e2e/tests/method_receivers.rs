//! `backend = &self.store` on methods that take `&mut self` or `self`: the
//! store is detached from `self` before the body runs, the body runs once
//! per key and every retry replays it.

mod support;

use idempotent_core::{idempotent, Backend, Error, MemoryBackend};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;
use support::Runs;

/// Generic over the store: a `MemoryBackend` or a `RedisBackend`, both
/// cheap handles that a method mutating or consuming `self` runs on a clone of.
struct Ledger<S> {
    store: S,
    balance: u64,
    runs: Runs,
}

impl<S: Backend + Clone> Ledger<S> {
    #[idempotent(key = id, backend = &self.store)]
    async fn credit(&mut self, id: &str, amount: u64) -> Result<u64, Error> {
        self.runs.record();
        self.balance += amount;
        Ok(self.balance)
    }

    #[idempotent(key = id, backend = &self.store)]
    async fn close(self, id: u64) -> Result<u64, Error> {
        self.runs.record();
        Ok(self.balance)
    }
}

fn ledger<S: Clone>(store: &S, runs: &Runs, balance: u64) -> Ledger<S> {
    Ledger {
        store: store.clone(),
        balance,
        runs: runs.clone(),
    }
}

async fn a_mut_self_method_runs_once_and_replays<S: Backend + Clone>(store: S) {
    let runs = Runs::default();
    let mut account = ledger(&store, &runs, 0);
    assert_eq!(account.credit("c-1", 10).await.unwrap(), 10);
    assert_eq!(account.credit("c-1", 10).await.unwrap(), 10, "replayed");
    assert_eq!(account.balance, 10, "the replay did not credit again");
    assert_eq!(runs.count(), 1);
    assert_eq!(account.credit("c-2", 5).await.unwrap(), 15);
    assert_eq!(runs.count(), 2);
}

async fn a_self_method_runs_once_and_replays<S: Backend + Clone>(store: S) {
    let runs = Runs::default();
    assert_eq!(ledger(&store, &runs, 7).close(1).await.unwrap(), 7);
    // Another value of `self` on the same store: `self` is never hashed, so
    // this is a retry of the same call and replays its result.
    assert_eq!(ledger(&store, &runs, 99).close(1).await.unwrap(), 7);
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn on_memory_a_mut_self_method_runs_once_and_replays() {
    a_mut_self_method_runs_once_and_replays(MemoryBackend::new()).await;
}

#[tokio::test]
async fn on_memory_a_self_method_runs_once_and_replays() {
    a_self_method_runs_once_and_replays(MemoryBackend::new()).await;
}

#[tokio::test]
async fn on_redis_mut_self_and_self_methods_run_once_and_replay() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    a_mut_self_method_runs_once_and_replays(store.clone()).await;
    a_self_method_runs_once_and_replays(store).await;
}
