//! Many callers at once: one execution per key.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::{idempotent, Error, MemoryBackend};
use support::Runs;

#[idempotent(key = order, skip(store, runs), backend = &**store, scope = "tests::burst", wait = "30s")]
async fn waiting(store: &Arc<MemoryBackend>, runs: &Runs, order: u32) -> Result<String, Error> {
    let run = runs.record();
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(format!("order {order} run {run}"))
}

#[idempotent(key = order, skip(store, runs), backend = &**store, scope = "tests::burst_no_wait")]
async fn not_waiting(store: &Arc<MemoryBackend>, runs: &Runs, order: u32) -> Result<String, Error> {
    let run = runs.record();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(format!("order {order} run {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_waiting_callers_run_the_body_once_and_share_its_result() {
    let (store, runs) = (Arc::new(MemoryBackend::new()), Runs::default());
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let (store, runs) = (Arc::clone(&store), runs.clone());
            tokio::spawn(async move { waiting(&store, &runs, 1).await })
        })
        .collect();
    let mut results = HashSet::new();
    for caller in callers {
        results.insert(caller.await.unwrap().unwrap());
    }
    assert_eq!(runs.count(), 1);
    assert_eq!(results, HashSet::from(["order 1 run 1".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_callers_without_wait_run_the_body_once() {
    let (store, runs) = (Arc::new(MemoryBackend::new()), Runs::default());
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let (store, runs) = (Arc::clone(&store), runs.clone());
            tokio::spawn(async move { not_waiting(&store, &runs, 1).await })
        })
        .collect();
    let (mut ok, mut in_progress) = (0, 0);
    for caller in callers {
        match caller.await.unwrap() {
            Ok(result) => {
                assert_eq!(result, "order 1 run 1");
                ok += 1;
            }
            Err(Error::InProgress) => in_progress += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(runs.count(), 1);
    assert_eq!(ok + in_progress, 64);
    assert!(ok >= 1, "the caller that ran the body got its result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distinct_keys_run_independently() {
    let (store, runs) = (Arc::new(MemoryBackend::new()), Runs::default());
    let callers: Vec<_> = (0..200u32)
        .map(|index| {
            let (store, runs) = (Arc::clone(&store), runs.clone());
            tokio::spawn(async move { waiting(&store, &runs, index % 50).await })
        })
        .collect();
    let mut results = HashSet::new();
    for caller in callers {
        results.insert(caller.await.unwrap().unwrap());
    }
    assert_eq!(runs.count(), 50, "each of the 50 keys ran once");
    assert_eq!(results.len(), 50, "every key's callers share one result");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_duplicate_gives_up_with_in_progress_after_wait() {
    #[idempotent(key = order, skip(runs), scope = "tests::wait_bound", wait = "2s")]
    async fn slow(runs: &Runs, order: u32) -> Result<u32, Error> {
        runs.record();
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(order)
    }
    let runs = Runs::default();
    let started = tokio::time::Instant::now();
    let duplicate = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let outcome = slow(&runs, 1).await;
        (outcome, started.elapsed())
    };
    let (held, (duplicate, waited)) = tokio::join!(slow(&runs, 1), duplicate);
    assert_eq!(held.unwrap(), 1);
    assert!(matches!(duplicate, Err(Error::InProgress)), "{duplicate:?}");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "waited {waited:?}: the bound, not the holder's whole run"
    );
    assert_eq!(runs.count(), 1);
}
