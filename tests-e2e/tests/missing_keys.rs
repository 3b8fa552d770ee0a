//! A key whose value is `None` is no key: the call runs without a record,
//! as an HTTP request without an `Idempotency-Key` does, unless the function
//! says `require_key`. Before, every keyless call shared the key `None`: a
//! second client's new request got `PayloadMismatch`, and two keyless
//! requests with the same arguments were deduplicated.

mod support;

use idempotent_core::{idempotent, stats, Backend, Error, MemoryBackend};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;
use serde::Serialize;
use support::{AppError, Runs};

#[derive(Clone, Serialize)]
struct Transfer {
    key: Option<String>,
    amount: u64,
}

fn transfer(key: Option<&str>, amount: u64) -> Transfer {
    Transfer {
        key: key.map(str::to_owned),
        amount,
    }
}

#[idempotent(key = req.key, skip(store, runs), backend = store)]
async fn send(store: &dyn Backend, runs: &Runs, req: Transfer) -> Result<usize, AppError> {
    let _ = req.amount;
    Ok(runs.record())
}

#[idempotent(key = req.key, skip(store, runs), backend = store, require_key)]
async fn send_strict(store: &dyn Backend, runs: &Runs, req: Transfer) -> Result<usize, AppError> {
    let _ = req.amount;
    Ok(runs.record())
}

async fn a_none_key_runs_every_time_without_a_record(store: &dyn Backend) {
    let runs = Runs::default();
    let before = stats();
    // Two keyless requests with the same amount are two requests.
    assert_eq!(send(store, &runs, transfer(None, 5)).await, Ok(1));
    assert_eq!(send(store, &runs, transfer(None, 5)).await, Ok(2));
    // Another client's keyless request for another amount is no mismatch.
    assert_eq!(send(store, &runs, transfer(None, 9)).await, Ok(3));
    assert!(stats().keyless - before.keyless >= 3);
    // A present key still deduplicates.
    assert_eq!(send(store, &runs, transfer(Some("t-1"), 5)).await, Ok(4));
    assert_eq!(send(store, &runs, transfer(Some("t-1"), 5)).await, Ok(4));
    assert_eq!(runs.count(), 4);
}

async fn require_key_refuses_a_none_key(store: &dyn Backend) {
    let runs = Runs::default();
    let refused = send_strict(store, &runs, transfer(None, 5)).await;
    assert_eq!(
        refused,
        Err(AppError::Idempotency(format!("{:?}", Error::MissingKey)))
    );
    assert_eq!(runs.count(), 0, "the body did not run");
    assert_eq!(
        send_strict(store, &runs, transfer(Some("t-2"), 5)).await,
        Ok(1)
    );
    assert_eq!(
        send_strict(store, &runs, transfer(Some("t-2"), 5)).await,
        Ok(1)
    );
}

#[tokio::test]
async fn on_memory_a_none_key_runs_every_time_without_a_record() {
    let store = MemoryBackend::new();
    a_none_key_runs_every_time_without_a_record(&store).await;
    assert_eq!(store.len(), 1, "only the keyed call left a record");
}

#[tokio::test]
async fn on_memory_require_key_refuses_a_none_key() {
    require_key_refuses_a_none_key(&MemoryBackend::new()).await;
}

#[tokio::test]
async fn on_redis_none_keys_run_without_a_record_and_require_key_refuses_them() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    a_none_key_runs_every_time_without_a_record(&store).await;
    require_key_refuses_a_none_key(&store).await;
}
