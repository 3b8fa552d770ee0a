//! `backend = &self.store` on methods that take `&mut self` or `self`: the
//! store is detached from `self` before the body runs, the body runs once
//! per key and every retry replays it.

mod support;

use std::sync::Arc;

use idempotent_core::{idempotent, Error, MemoryBackend};
use support::Runs;

/// The store is an `Arc`: a method that mutates or consumes `self` runs on a
/// clone of it, as it would on a network store's cheap handle.
struct Ledger {
    store: Arc<MemoryBackend>,
    balance: u64,
    runs: Runs,
}

impl Ledger {
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

fn ledger(store: &Arc<MemoryBackend>, runs: &Runs, balance: u64) -> Ledger {
    Ledger {
        store: Arc::clone(store),
        balance,
        runs: runs.clone(),
    }
}

#[tokio::test]
async fn a_mut_self_method_runs_once_and_replays() {
    let (store, runs) = (Arc::new(MemoryBackend::new()), Runs::default());
    let mut account = ledger(&store, &runs, 0);
    assert_eq!(account.credit("c-1", 10).await.unwrap(), 10);
    assert_eq!(account.credit("c-1", 10).await.unwrap(), 10, "replayed");
    assert_eq!(account.balance, 10, "the replay did not credit again");
    assert_eq!(runs.count(), 1);
    assert_eq!(account.credit("c-2", 5).await.unwrap(), 15);
    assert_eq!(runs.count(), 2);
}

#[tokio::test]
async fn a_self_method_runs_once_and_replays() {
    let (store, runs) = (Arc::new(MemoryBackend::new()), Runs::default());
    assert_eq!(ledger(&store, &runs, 7).close(1).await.unwrap(), 7);
    // Another value of `self` on the same store: `self` is never hashed, so
    // this is a retry of the same call and replays its result.
    assert_eq!(ledger(&store, &runs, 99).close(1).await.unwrap(), 7);
    assert_eq!(runs.count(), 1);
}
