//! One test per row of the decision table, through `#[idempotent]` on a
//! `MemoryBackend`.

mod support;

use std::time::Duration;

use idempotent_core::backend::FencingToken;
use idempotent_core::{idempotent, Error, Idempotency, MemoryBackend};
use serde::{Deserialize, Serialize};
use support::Runs;

#[derive(Clone, Serialize, Deserialize)]
struct Charge {
    key: String,
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    run: usize,
    amount: u64,
}

#[idempotent(key = req.key, skip(store, runs, hold), backend = store, scope = "tests::charge")]
async fn charge(
    store: &MemoryBackend,
    runs: &Runs,
    hold: Duration,
    req: Charge,
) -> Result<Receipt, Error> {
    let run = runs.record();
    tokio::time::sleep(hold).await;
    Ok(Receipt {
        run,
        amount: req.amount,
    })
}

fn request(key: &str, amount: u64) -> Charge {
    Charge {
        key: key.into(),
        amount,
    }
}

#[tokio::test]
async fn absent_key_runs_and_completed_key_replays() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    let first = charge(&store, &runs, Duration::ZERO, request("a", 5)).await;
    let retry = charge(&store, &runs, Duration::ZERO, request("a", 5)).await;
    assert_eq!(first.unwrap(), Receipt { run: 1, amount: 5 });
    assert_eq!(retry.unwrap(), Receipt { run: 1, amount: 5 });
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn completed_key_with_other_arguments_is_a_mismatch() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    charge(&store, &runs, Duration::ZERO, request("a", 5))
        .await
        .unwrap();
    let reused = charge(&store, &runs, Duration::ZERO, request("a", 6)).await;
    assert!(matches!(reused, Err(Error::PayloadMismatch)), "{reused:?}");
    assert_eq!(runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn live_claim_with_same_arguments_is_in_progress() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    let holder = charge(&store, &runs, Duration::from_secs(5), request("a", 5));
    let duplicate = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        charge(&store, &runs, Duration::ZERO, request("a", 5)).await
    };
    let (held, duplicate) = tokio::join!(holder, duplicate);
    assert!(matches!(duplicate, Err(Error::InProgress)), "{duplicate:?}");
    assert_eq!(held.unwrap().run, 1);
    assert_eq!(runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn live_claim_with_other_arguments_is_a_mismatch() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    let holder = charge(&store, &runs, Duration::from_secs(5), request("a", 5));
    let other = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        charge(&store, &runs, Duration::ZERO, request("a", 9)).await
    };
    let (held, other) = tokio::join!(holder, other);
    assert!(matches!(other, Err(Error::PayloadMismatch)), "{other:?}");
    assert!(held.is_ok());
    assert_eq!(runs.count(), 1);
}

/// A holder that claimed and then stopped renewing (it crashed): once its
/// lease ends, the next call takes the key over and runs the body.
#[tokio::test(start_paused = true)]
async fn expired_claim_with_same_arguments_is_taken_over() {
    let (store, runs) = (MemoryBackend::new(), Runs::default());
    let input = (request("a", 5),);
    let idempotency = || {
        Idempotency::new(&store)
            .scope("tests::takeover")
            .lease(Duration::from_secs(1))
    };
    let prepared = idempotency().prepare("a", &input);
    let key = prepared.record_key().unwrap().to_owned();
    let crashed = *prepared.fingerprint().unwrap();
    use idempotent_core::backend::ClaimOutcome;
    use idempotent_core::Backend;
    let claimed = store
        .claim(
            &key,
            &crashed,
            FencingToken::generate(),
            Duration::from_secs(1),
        )
        .await;
    assert!(matches!(claimed, Ok(ClaimOutcome::Acquired { .. })));

    let body = || async { Ok::<_, Error>(runs.record()) };
    let early = idempotency().run("a", &input, body).await;
    assert!(matches!(early, Err(Error::InProgress)), "{early:?}");

    tokio::time::advance(Duration::from_millis(1_001)).await;
    let late = idempotency().run("a", &input, body).await;
    assert_eq!(late.unwrap(), 1, "the body ran in the new holder");
    let replay = idempotency().run("a", &input, body).await;
    assert_eq!(replay.unwrap(), 1);
    assert_eq!(runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn expired_claim_with_other_arguments_is_still_a_mismatch() {
    let store = MemoryBackend::new();
    let runs = Runs::default();
    let idempotency = || {
        Idempotency::new(&store)
            .scope("tests::takeover")
            .lease(Duration::from_secs(1))
    };
    let prepared = idempotency().prepare("a", &1);
    let key = prepared.record_key().unwrap().to_owned();
    use idempotent_core::Backend;
    store
        .claim(
            &key,
            prepared.fingerprint().unwrap(),
            FencingToken::generate(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    // Past its lease, not yet forgotten (stores keep a stale claim for one
    // more lease so that a takeover can still tell it apart).
    tokio::time::advance(Duration::from_millis(1_500)).await;
    let other = idempotency()
        .run("a", &2, || async { Ok::<_, Error>(runs.record()) })
        .await;
    assert!(matches!(other, Err(Error::PayloadMismatch)), "{other:?}");
    assert_eq!(runs.count(), 0);
}
