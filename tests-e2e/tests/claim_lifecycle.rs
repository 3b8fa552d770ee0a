//! What releases a claim, what keeps a result, and for how long.

mod support;

use std::time::Duration;

use idempotent_core::{idempotent, MemoryBackend};
use support::{AppError, Runs};

#[idempotent(skip(store, runs), backend = store, scope = "tests::flaky")]
async fn flaky(store: &MemoryBackend, runs: &Runs, order: u32) -> Result<usize, AppError> {
    let run = runs.record();
    if run == 1 {
        return Err(AppError::Declined(format!("order {order}, run {run}")));
    }
    Ok(run)
}

#[idempotent(skip(store, runs), backend = store, scope = "tests::cached", cache_err)]
async fn flaky_cached(store: &MemoryBackend, runs: &Runs, order: u32) -> Result<usize, AppError> {
    let run = runs.record();
    if run == 1 {
        return Err(AppError::Declined(format!("order {order}, run {run}")));
    }
    Ok(run)
}

#[tokio::test]
async fn err_releases_the_key_so_a_retry_runs_again() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    let first = flaky(&store, &runs, 7).await;
    assert_eq!(first, Err(AppError::Declined("order 7, run 1".into())));
    assert_eq!(flaky(&store, &runs, 7).await, Ok(2));
    assert_eq!(flaky(&store, &runs, 7).await, Ok(2), "the Ok is replayed");
    assert_eq!(runs.count(), 2);
}

#[tokio::test]
async fn cache_err_stores_and_replays_the_err() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    let declined = Err(AppError::Declined("order 7, run 1".into()));
    assert_eq!(flaky_cached(&store, &runs, 7).await, declined);
    assert_eq!(flaky_cached(&store, &runs, 7).await, declined);
    assert_eq!(runs.count(), 1);
}

/// The error shape users write for `cache_err`: `idempotent_core::Error` is
/// not serializable, so its variant is skipped.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
enum CachedError {
    #[error(transparent)]
    #[serde(skip)]
    Idempotency(#[from] idempotent_core::Error),
    #[error("declined")]
    Declined,
}

#[idempotent(skip(store, runs), backend = store, scope = "tests::unstorable", cache_err)]
async fn outage_then_declined(
    store: &MemoryBackend,
    runs: &Runs,
    order: u32,
) -> Result<u32, CachedError> {
    match runs.record() {
        // A nested call's error, passed on: it cannot be stored.
        1 => Err(idempotent_core::Error::InProgress.into()),
        _ => Err(CachedError::Declined),
    }
}

/// Found by a user's trial: an `Err` that `cache_err` cannot serialize was
/// stored as "not stored", so every retry got `ResultNotStored` for the
/// whole ttl although the error was a transient one. It releases the key, as
/// errors do without `cache_err`; a storable error is still cached.
#[tokio::test]
async fn cache_err_releases_the_key_for_an_error_it_cannot_store() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    let first = outage_then_declined(&store, &runs, 7).await;
    assert!(
        matches!(
            first,
            Err(CachedError::Idempotency(idempotent_core::Error::InProgress))
        ),
        "{first:?}"
    );
    let retry = outage_then_declined(&store, &runs, 7).await;
    assert!(
        matches!(retry, Err(CachedError::Declined)),
        "the retry ran: {retry:?}"
    );
    let replay = outage_then_declined(&store, &runs, 7).await;
    assert!(matches!(replay, Err(CachedError::Declined)), "{replay:?}");
    assert_eq!(runs.count(), 2, "the storable error is replayed");
}

#[idempotent(skip(store, runs), backend = store, scope = "tests::panicky")]
async fn panicky(store: &MemoryBackend, runs: &Runs, order: u32) -> Result<usize, AppError> {
    let run = runs.record();
    if run == 1 {
        panic!("the body panicked on order {order}");
    }
    Ok(run)
}

#[tokio::test]
async fn a_panicking_body_releases_the_key() {
    let store: &'static MemoryBackend = Box::leak(Box::default());
    let runs = Runs::default();
    let panicked = {
        let runs = runs.clone();
        tokio::spawn(async move { panicky(store, &runs, 1).await }).await
    };
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(store.len(), 0, "the claim was released while unwinding");
    assert_eq!(panicky(store, &runs, 1).await, Ok(2));
    assert_eq!(runs.count(), 2);
}

#[idempotent(skip(store, runs), backend = store, scope = "tests::slow")]
async fn slow(store: &MemoryBackend, runs: &Runs, order: u32) -> Result<u32, AppError> {
    runs.record();
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(order)
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_releases_the_key() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    let cancelled = tokio::time::timeout(Duration::from_secs(1), slow(&store, &runs, 3)).await;
    assert!(cancelled.is_err(), "the call timed out and was dropped");
    assert_eq!(store.len(), 0, "dropping the call released its claim");
    // Not `InProgress`: the key is free and the body runs again.
    assert_eq!(slow(&store, &runs, 3).await, Ok(3));
    assert_eq!(runs.count(), 2);
}

#[idempotent(skip(store, runs), backend = store, scope = "tests::short", ttl = "10m")]
async fn short_lived(store: &MemoryBackend, runs: &Runs, order: u32) -> Result<usize, AppError> {
    let _ = order;
    Ok(runs.record())
}

#[tokio::test(start_paused = true)]
async fn a_result_is_replayed_until_its_ttl_then_the_body_runs_again() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    assert_eq!(short_lived(&store, &runs, 1).await, Ok(1));
    tokio::time::advance(Duration::from_secs(9 * 60)).await;
    assert_eq!(
        short_lived(&store, &runs, 1).await,
        Ok(1),
        "replayed within ttl"
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        short_lived(&store, &runs, 1).await,
        Ok(2),
        "ran again after ttl"
    );
    assert_eq!(runs.count(), 2);
}
