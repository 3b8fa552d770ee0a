//! Leases and fencing tokens: a slow live holder keeps its key, a stale one
//! can never overwrite the new holder's record.

mod support;

use std::sync::Arc;
use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{idempotent, Backend, Error, Idempotency, MemoryBackend};
use support::Runs;

#[idempotent(key = order, skip(runs), scope = "tests::long_body", lease = "1s")]
async fn long_body(runs: &Runs, order: u32) -> Result<usize, Error> {
    let _ = order;
    let run = runs.record();
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(run)
}

/// Lease 1 s, body 5 s: renewal every 333 ms keeps the claim, so a duplicate
/// arriving after the lease would have expired still sees it in progress.
#[tokio::test(start_paused = true)]
async fn renewal_keeps_a_body_longer_than_its_lease_from_running_twice() {
    let runs = Runs::default();
    let duplicates = async {
        let mut seen = Vec::new();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            seen.push(long_body(&runs, 1).await);
        }
        seen
    };
    let (held, seen) = tokio::join!(long_body(&runs, 1), duplicates);
    assert_eq!(held.unwrap(), 1);
    for duplicate in seen {
        assert!(matches!(duplicate, Err(Error::InProgress)), "{duplicate:?}");
    }
    assert_eq!(runs.count(), 1);
    assert_eq!(long_body(&runs, 1).await.unwrap(), 1, "then replayed");
}

/// A holder that stops renewing (its thread is blocked, so its renewal timer
/// cannot fire) loses its key to a second caller after one lease. When it
/// finally finishes, its complete is fenced: the record keeps the second
/// caller's result, and the stale holder still gets its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_cannot_overwrite_the_new_holders_result() {
    let store = Arc::new(MemoryBackend::new());
    let idempotency = {
        let store = Arc::clone(&store);
        move || {
            Idempotency::new(Arc::clone(&store))
                .scope("tests::stale")
                .lease(Duration::from_millis(300))
        }
    };
    let stale = {
        let idempotency = idempotency.clone();
        tokio::spawn(async move {
            idempotency()
                .run("order-1", &1, || async {
                    // Blocks the thread: no renewal can run meanwhile.
                    std::thread::sleep(Duration::from_millis(1_500));
                    Ok::<_, Error>("stale holder's result".to_owned())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(900)).await;
    let newer = idempotency()
        .run("order-1", &1, || async {
            Ok::<_, Error>("new holder's result".to_owned())
        })
        .await;
    assert_eq!(newer.unwrap(), "new holder's result");

    let stale = stale.await.unwrap();
    assert_eq!(
        stale.unwrap(),
        "stale holder's result",
        "it gets its own result"
    );
    let replay = idempotency()
        .run("order-1", &1, || async {
            Ok::<_, Error>("must not run".to_owned())
        })
        .await;
    assert_eq!(
        replay.unwrap(),
        "new holder's result",
        "the record was not overwritten"
    );
}

/// The same at the `Backend` level: every write with a stale token is refused
/// and changes nothing.
#[tokio::test(start_paused = true)]
async fn stale_tokens_are_fenced_for_complete_release_and_renew() {
    let store = MemoryBackend::new();
    let fingerprint = Fingerprint::of("input").unwrap();
    let lease = Duration::from_secs(1);
    let Ok(ClaimOutcome::Acquired { token: stale, .. }) = store
        .claim("k", &fingerprint, FencingToken::generate(), lease)
        .await
    else {
        panic!("first claim must be acquired");
    };
    tokio::time::advance(Duration::from_millis(1_500)).await;
    let Ok(ClaimOutcome::Acquired {
        token: fresh,
        took_over,
    }) = store
        .claim("k", &fingerprint, FencingToken::generate(), lease)
        .await
    else {
        panic!("expired claim must be taken over");
    };
    assert!(took_over);
    assert_ne!(stale, fresh);

    assert_eq!(
        store.renew("k", stale, lease).await.unwrap(),
        CasOutcome::Fenced
    );
    assert_eq!(store.release("k", stale).await.unwrap(), CasOutcome::Fenced);
    let late = store
        .complete("k", stale, b"stale", Duration::from_secs(60))
        .await;
    assert_eq!(late.unwrap(), CasOutcome::Fenced);
    assert!(
        matches!(
            store
                .claim("k", &fingerprint, FencingToken::generate(), lease)
                .await,
            Ok(ClaimOutcome::InProgress { .. })
        ),
        "the fresh claim is untouched"
    );

    let done = store
        .complete("k", fresh, b"fresh", Duration::from_secs(60))
        .await;
    assert_eq!(done.unwrap(), CasOutcome::Applied);
    let late = store
        .complete("k", stale, b"stale", Duration::from_secs(60))
        .await;
    assert_eq!(late.unwrap(), CasOutcome::Fenced);
    assert_eq!(
        store
            .claim("k", &fingerprint, FencingToken::generate(), lease)
            .await
            .unwrap(),
        ClaimOutcome::Completed {
            output: b"fresh".to_vec()
        }
    );
}
