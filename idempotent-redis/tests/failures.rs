//! The Redis store when things go wrong: unreachable, restarted, corrupt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use idempotent_core::backend::{ErrorChain, FencingToken};
use idempotent_core::{Backend, BackendErrorKind, Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

static RUNS: AtomicUsize = AtomicUsize::new(0);

async fn charge(store: &RedisBackend, key: &str) -> Result<usize, Error> {
    Idempotency::new(store)
        .scope("tests::failures")
        .run(key, &1, || async {
            Ok(RUNS.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .await
}

#[tokio::test]
async fn an_unreachable_store_fails_closed_quickly_and_the_body_does_not_run() {
    let mut server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    server.kill();
    let runs = RUNS.load(Ordering::SeqCst);
    let started = Instant::now();
    let outcome = charge(&store, "unreachable").await;
    let took = started.elapsed();
    match outcome {
        Err(Error::Backend(error)) => {
            assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
        }
        other => panic!("expected Error::Backend, got {other:?}"),
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), runs, "the body did not run");
    // Bounded by the connection and response timeouts, not by a hang.
    assert!(
        took < Duration::from_secs(30),
        "failing closed took {took:?}"
    );
}

#[tokio::test]
async fn connecting_to_a_dead_server_fails_at_start_up() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let error = RedisBackend::connect(&url).await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
    let invalid = RedisBackend::connect("not a url").await.unwrap_err();
    assert!(
        invalid.to_string().contains("invalid Redis URL"),
        "{invalid}"
    );
}

#[tokio::test]
async fn the_same_backend_works_again_after_a_server_restart() {
    let mut server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    charge(&store, "before-restart").await.unwrap();
    server.kill();
    assert!(matches!(
        charge(&store, "while-down").await,
        Err(Error::Backend(_))
    ));
    server.restart();
    // The manager reconnects in the background; the first call after the
    // restart may still see the old, dead connection.
    let mut outcome = charge(&store, "after-restart").await;
    for _ in 0..50 {
        if outcome.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = charge(&store, "after-restart").await;
    }
    assert!(outcome.is_ok(), "not back after the restart: {outcome:?}");
    assert_eq!(
        charge(&store, "after-restart").await.unwrap(),
        outcome.unwrap(),
        "replayed"
    );
}

#[tokio::test]
async fn a_corrupt_value_at_a_record_key_is_an_error_and_the_body_does_not_run() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let record_key = |key: &str| {
        let call = Idempotency::new(&store)
            .scope("tests::failures")
            .prepare(key, &1);
        store.record_key(call.stored_key().unwrap())
    };
    // A header as this crate writes it (`idem1`, state, fingerprint, token),
    // with `charge`'s own fingerprint, so that a planted record gets past the
    // fingerprint check and is read for its state, lease or output.
    let header = |state: &str| {
        let call = Idempotency::new(&store)
            .scope("tests::failures")
            .prepare("any", &1);
        let fingerprint = *call.fingerprint().unwrap();
        [
            b"idem1".as_slice(),
            state.as_bytes(),
            fingerprint.as_bytes(),
            b"00000000000000ff",
        ]
        .concat()
    };
    let plant: Vec<(&str, &str, redis::Cmd)> = vec![
        (
            "a foreign string",
            "string",
            redis::cmd("SET")
                .arg(record_key("string"))
                .arg("garbage")
                .clone(),
        ),
        (
            "a hash",
            "hash",
            redis::cmd("HSET")
                .arg(record_key("hash"))
                .arg("x")
                .arg("1")
                .clone(),
        ),
        (
            "a future version",
            "version",
            redis::cmd("SET")
                .arg(record_key("version"))
                .arg([b"idem9".as_slice(), &header("C")[5..], b"output"].concat())
                .clone(),
        ),
        (
            "an unknown state",
            "state",
            redis::cmd("SET")
                .arg(record_key("state"))
                .arg(header("X"))
                .clone(),
        ),
        (
            "a cut record",
            "cut",
            redis::cmd("SET")
                .arg(record_key("cut"))
                .arg(&header("C")[..40])
                .clone(),
        ),
        (
            // Read by the claim script, not by the plain claim.
            "a claim with a garbage lease",
            "lease",
            redis::cmd("SET")
                .arg(record_key("lease"))
                .arg([header("P").as_slice(), b"soon"].concat())
                .arg("PX")
                .arg(60_000)
                .clone(),
        ),
        (
            "a claim without an expiry",
            "persistent",
            redis::cmd("SET")
                .arg(record_key("persistent"))
                .arg([header("P").as_slice(), b"1000"].concat())
                .clone(),
        ),
    ];
    let runs = RUNS.load(Ordering::SeqCst);
    for (what, key, command) in &plant {
        let _: redis::Value = server.query(command);
        let outcome = charge(&store, key).await;
        assert!(
            matches!(&outcome, Err(Error::Codec(error)) if ErrorChain(error).to_string().contains("did not write")),
            "{what}: {outcome:?}"
        );
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), runs, "no body ran");
}

#[tokio::test]
async fn completing_releasing_or_renewing_over_a_foreign_value_is_an_error() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let fingerprint = idempotent_core::backend::Fingerprint::of(&1).unwrap();
    let lease = Duration::from_secs(30);
    for (what, value) in [
        (
            "a foreign string",
            redis::cmd("SET")
                .arg(store.record_key("k"))
                .arg("garbage")
                .clone(),
        ),
        (
            "a hash",
            redis::cmd("HSET")
                .arg(store.record_key("k"))
                .arg("x")
                .arg("1")
                .clone(),
        ),
    ] {
        let _: redis::Value = server.query(redis::cmd("DEL").arg(store.record_key("k")));
        let idempotent_core::backend::ClaimOutcome::Acquired { token, .. } = store
            .claim("k", &fingerprint, FencingToken::generate(), lease)
            .await
            .unwrap()
        else {
            panic!("the key is new");
        };
        // Someone else replaces the claim with data of their own.
        let _: redis::Value = server.query(redis::cmd("DEL").arg(store.record_key("k")));
        let _: redis::Value = server.query(&value);
        let complete = store.complete("k", token, b"out", lease).await;
        let renew = store.renew("k", token, lease).await;
        let release = store.release("k", token).await;
        for (operation, outcome) in [
            ("complete", complete),
            ("renew", renew),
            ("release", release),
        ] {
            let error = outcome.expect_err(what);
            assert_eq!(
                error.kind(),
                BackendErrorKind::Corrupt,
                "{what}, {operation}: {error}"
            );
        }
        let left: redis::Value = server.query(redis::cmd("EXISTS").arg(store.record_key("k")));
        assert_eq!(
            left,
            redis::Value::Int(1),
            "{what}: the foreign value is left alone"
        );
    }
}

#[tokio::test]
async fn every_key_written_expires_and_records_live_under_the_prefix() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url())
        .await
        .unwrap()
        .with_key_prefix("shop:idem:");
    let fingerprint = idempotent_core::backend::Fingerprint::of(&1).unwrap();
    let lease = Duration::from_secs(30);
    let claimed = store
        .claim("in-progress", &fingerprint, FencingToken::generate(), lease)
        .await
        .unwrap();
    assert!(matches!(
        claimed,
        idempotent_core::backend::ClaimOutcome::Acquired { .. }
    ));
    charge(&store, "completed").await.unwrap();

    let keys: Vec<String> = server.query(redis::cmd("KEYS").arg("*"));
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        assert!(key.starts_with("shop:idem:"), "{key}");
        let ttl_ms: i64 = server.query(redis::cmd("PTTL").arg(&key));
        assert!(ttl_ms > 0, "{key} has no expiry (PTTL {ttl_ms})");
    }
}

#[tokio::test]
async fn an_output_above_the_limit_is_refused_and_remembered_as_not_stored() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url())
        .await
        .unwrap()
        .with_max_output_bytes(1_000);
    let call = || Idempotency::new(&store).scope("tests::large");
    let runs = AtomicUsize::new(0);
    let first = call()
        .run("big", &1, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>("x".repeat(5_000))
        })
        .await;
    assert_eq!(first.unwrap().len(), 5_000);
    let retry = call()
        .run("big", &1, || async { Ok::<_, Error>(String::new()) })
        .await;
    assert!(
        matches!(retry, Err(Error::ResultNotStored { .. })),
        "{retry:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
