//! Failures never run the body silently and never panic: a full store fails
//! closed, corrupt or foreign records are errors, unstorable results are
//! remembered as such.

mod support;

use std::time::Duration;

use idempotent_core::backend::{ClaimOutcome, FencingToken};
use idempotent_core::{idempotent, Backend, BackendErrorKind, Error, Idempotency, MemoryBackend};
use support::Runs;

#[tokio::test(start_paused = true)]
async fn a_store_full_of_live_claims_fails_closed_without_running_the_body() {
    let store = MemoryBackend::with_max_entries(1);
    let runs = Runs::default();
    let call = || Idempotency::new(&store).scope("tests::full");
    let holder = call().run("a", &1, || async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Error>(runs.record())
    });
    let refused = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        call()
            .run("b", &1, || async { Ok::<_, Error>(runs.record()) })
            .await
    };
    let (held, refused) = tokio::join!(holder, refused);
    assert_eq!(held.unwrap(), 1);
    match refused {
        Err(Error::Backend(error)) => {
            assert_eq!(error.kind(), BackendErrorKind::Capacity);
            let message = Error::Backend(error).to_string();
            assert!(message.contains("did not run"), "{message}");
        }
        other => panic!("expected a capacity error, got {other:?}"),
    }
    assert_eq!(runs.count(), 1);
}

/// Writes `output` as the completed record of `("key", input)` in `scope`.
async fn plant(
    store: &MemoryBackend,
    scope: &'static str,
    input: &impl serde::Serialize,
    output: &[u8],
) {
    let prepared = Idempotency::new(store).scope(scope).prepare("key", input);
    let key = prepared.record_key().unwrap().to_owned();
    let fingerprint = *prepared.fingerprint().unwrap();
    let Ok(ClaimOutcome::Acquired { token, .. }) = store
        .claim(
            &key,
            &fingerprint,
            FencingToken::generate(),
            Duration::from_secs(30),
        )
        .await
    else {
        panic!("fresh key");
    };
    store
        .complete(&key, token, output, Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_corrupt_record_is_a_codec_error_and_the_body_does_not_run() {
    let store = MemoryBackend::new();
    let runs = Runs::default();
    plant(&store, "tests::corrupt", &1, b"\x00garbage").await;
    let outcome = Idempotency::new(&store)
        .scope("tests::corrupt")
        .run("key", &1, || async { Ok::<_, Error>(runs.record()) })
        .await;
    assert!(matches!(outcome, Err(Error::Codec(_))), "{outcome:?}");
    assert_eq!(runs.count(), 0);
}

#[tokio::test]
async fn a_result_of_a_changed_type_is_a_codec_error_that_names_the_type() {
    let store = MemoryBackend::new();
    let call = || Idempotency::new(&store).scope("tests::retyped");
    let first = call()
        .run("key", &1, || async {
            Ok::<_, Error>("a string".to_owned())
        })
        .await;
    assert_eq!(first.unwrap(), "a string");
    let retyped = call()
        .run("key", &1, || async { Ok::<_, Error>(7u64) })
        .await;
    let Err(error) = retyped else {
        panic!("a stored string must not decode as u64");
    };
    let message = idempotent_core::backend::ErrorChain(&error).to_string();
    assert!(matches!(error, Error::Codec(_)));
    assert!(
        message.contains("u64") && message.contains("did not run"),
        "{message}"
    );
}

#[tokio::test]
async fn a_result_too_large_for_the_store_is_returned_once_and_never_rerun() {
    let store = MemoryBackend::new().max_output_bytes(1_024);
    let runs = Runs::default();
    let call = || Idempotency::new(&store).scope("tests::large");
    let body = || async {
        runs.record();
        Ok::<_, Error>("x".repeat(4_096))
    };
    let first = call().run("key", &1, body).await;
    assert_eq!(
        first.unwrap().len(),
        4_096,
        "the caller gets its own result"
    );
    let retry = call().run("key", &1, body).await;
    match retry {
        Err(Error::ResultNotStored { reason }) => assert!(reason.contains("too large"), "{reason}"),
        other => panic!("expected ResultNotStored, got {other:?}"),
    }
    assert_eq!(runs.count(), 1);
}

#[idempotent(scope = "tests::unserializable")]
async fn unserializable(order: u32) -> Result<std::collections::HashMap<(u32, u32), u32>, Error> {
    // JSON maps need string keys: this result cannot be stored.
    Ok([((order, 1), 2)].into_iter().collect())
}

#[tokio::test]
async fn a_result_that_fails_to_serialize_is_returned_once_and_never_rerun() {
    assert_eq!(unserializable(1).await.unwrap().len(), 1);
    let retry = unserializable(1).await;
    assert!(
        matches!(retry, Err(Error::ResultNotStored { .. })),
        "{retry:?}"
    );
}

#[tokio::test]
async fn every_error_message_says_whether_the_body_ran() {
    let messages = [
        Error::InProgress.to_string(),
        Error::PayloadMismatch.to_string(),
        Error::Backend(idempotent_core::BackendError::new(
            BackendErrorKind::Unavailable,
            "down",
        ))
        .to_string(),
        Error::Codec(idempotent_core::CodecError::new("bad record")).to_string(),
        Error::ResultNotStored {
            reason: "too large".into(),
        }
        .to_string(),
    ];
    for message in messages {
        assert!(message.contains("did not run"), "{message}");
    }
}
