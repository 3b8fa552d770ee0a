//! What a call leaves behind when it is dropped or fails in each phase:
//! before and during the claim, while the body runs, while its result is
//! stored. Each test tries to make a body run twice.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::NetworkStore;
use idempotent_core::{Error, Idempotency, MemoryBackend};

const LEASE: Duration = Duration::from_secs(30);

async fn charge(store: &NetworkStore, runs: &AtomicUsize, key: &str) -> Result<usize, Error> {
    Idempotency::new(store)
        .scope("phases::charge")
        .lease(LEASE)
        .run(key, &1999, || async {
            Ok(runs.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .await
}

/// Bug 1 of issue 11: the body ran, storing its result failed once (a
/// blip), and the caller gave up while the completion was being retried.
/// The result must still be stored, and the retry must replay it.
#[tokio::test(start_paused = true)]
async fn dropped_while_its_result_is_stored_the_result_is_kept() {
    let store = NetworkStore::new(Duration::from_millis(5));
    store.failing_completes.store(1, Ordering::SeqCst);
    let runs = AtomicUsize::new(0);
    // The body returns at once; the first completion fails after 5 ms, the
    // retry waits 25 ms: the caller hangs up in between.
    let hung_up =
        tokio::time::timeout(Duration::from_millis(15), charge(&store, &runs, "order-1")).await;
    assert!(hung_up.is_err(), "the call was still storing its result");
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        charge(&store, &runs, "order-1").await.unwrap(),
        1,
        "replayed"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}

/// Bug 2 of issue 11: the call was dropped while its claim was on the way;
/// the store applied it anyway. It must be released, not left to block the
/// key for a lease.
#[tokio::test(start_paused = true)]
async fn dropped_while_claiming_leaves_no_claim_behind() {
    let store = NetworkStore::new(Duration::from_millis(10));
    let runs = AtomicUsize::new(0);
    let dropped =
        tokio::time::timeout(Duration::from_millis(5), charge(&store, &runs, "order-2")).await;
    assert!(dropped.is_err(), "dropped before the claim answered");
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // Well within the lease: the key must be free again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(charge(&store, &runs, "order-2").await.unwrap(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Bug 3 of issue 11: a zero lease let concurrent duplicates both run.
#[tokio::test]
async fn a_zero_lease_is_refused_before_anything_is_claimed() {
    let store = MemoryBackend::new();
    let runs = AtomicUsize::new(0);
    let call = Idempotency::new(&store)
        .lease(Duration::ZERO)
        .run("k", &1, || async {
            Ok::<_, Error>(runs.fetch_add(1, Ordering::SeqCst))
        });
    let error = call.await.unwrap_err();
    assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");
    assert!(error.to_string().contains("lease"), "{error}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(store.is_empty(), "nothing was claimed");
}

/// Bug 3 of issue 11: a ttl no store can keep failed at the completion,
/// after the body ran, and the body ran again one lease later.
#[tokio::test]
async fn durations_beyond_the_maximum_are_refused_before_the_body_runs() {
    let store = MemoryBackend::new();
    let runs = AtomicUsize::new(0);
    for (option, setup) in [
        (
            "ttl",
            Idempotency::new(&store).ttl(Duration::MAX) as Idempotency<&MemoryBackend>,
        ),
        ("lease", Idempotency::new(&store).lease(Duration::MAX)),
        ("wait", Idempotency::new(&store).wait(Duration::MAX)),
        ("ttl", Idempotency::new(&store).ttl(Duration::from_nanos(1))),
    ] {
        let error = setup
            .run("k", &1, || async {
                Ok::<_, Error>(runs.fetch_add(1, Ordering::SeqCst))
            })
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");
        assert!(error.to_string().contains(option), "{option}: {error}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(store.is_empty());
}

/// Bug 5 of issue 11: a store whose output limit refused the result also
/// refused the "not stored" marker, which then named its reason in full;
/// the claim was left to lapse and the body ran again.
#[tokio::test]
async fn the_not_stored_marker_fits_a_tiny_output_limit() {
    let store = MemoryBackend::new().max_output_bytes(16);
    let runs = AtomicUsize::new(0);
    let big = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Error>("x".repeat(1000))
    };
    let first = Idempotency::new(&store).run("k", &1, big).await;
    assert_eq!(first.unwrap().len(), 1000, "the caller gets its own result");
    let retry = Idempotency::new(&store).run("k", &1, big).await;
    assert!(
        matches!(retry, Err(Error::ResultNotStored { .. })),
        "{retry:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}

/// Found by a user's trial: `lease = "2ms"` was accepted, and a body that
/// awaited for 300 ms lost its claim to duplicates while it still ran (the
/// renewal every `lease / 3` cannot land in time at timer granularity). A
/// lease is refused below the point where renewal keeps a live call's claim,
/// and at that point a slow live call runs once, in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_too_short_to_renew_is_refused_and_the_shortest_keeps_a_slow_call() {
    for lease_ms in [1, 2, 5, 10, 20, 50, 100, 249, 250] {
        let store = MemoryBackend::new();
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..40u64)
            .map(|i| {
                let (store, runs) = (store.clone(), runs.clone());
                tokio::spawn(async move {
                    // Duplicates arrive 20 ms apart while the first runs.
                    tokio::time::sleep(Duration::from_millis(20 * i)).await;
                    Idempotency::new(&store)
                        .scope("phases::slow")
                        .lease(Duration::from_millis(lease_ms))
                        .run("order-slow", &1999, || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(900)).await;
                            Ok(1)
                        })
                        .await
                })
            })
            .collect();
        let mut first = None;
        for call in calls {
            let result = call.await.expect("no call panics");
            first.get_or_insert(result);
        }
        let first = first.expect("40 calls");
        if lease_ms < 250 {
            assert!(
                matches!(&first, Err(Error::InvalidConfig { .. })),
                "a {lease_ms} ms lease cannot be renewed in time and must be refused: {first:?}"
            );
            assert_eq!(runs.load(Ordering::SeqCst), 0);
        } else {
            assert_eq!(
                runs.load(Ordering::SeqCst),
                1,
                "a {lease_ms} ms lease let a live call's duplicates run"
            );
        }
    }
}
