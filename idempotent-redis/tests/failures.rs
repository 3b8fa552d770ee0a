//! The Redis store when things go wrong: unreachable, restarted, corrupt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    let plant: [(&str, redis::Cmd); 4] = [
        (
            "a string",
            redis::cmd("SET")
                .arg(record_key("string"))
                .arg("garbage")
                .clone(),
        ),
        (
            "a foreign hash",
            redis::cmd("HSET")
                .arg(record_key("foreign"))
                .arg("x")
                .arg("1")
                .clone(),
        ),
        (
            "a future version",
            redis::cmd("HSET")
                .arg(record_key("version"))
                .arg("v")
                .arg("9")
                .clone(),
        ),
        (
            "a cut record",
            redis::cmd("HSET")
                .arg(record_key("cut"))
                .arg("v")
                .arg("1")
                .arg("s")
                .arg("C")
                .arg("f")
                .arg("short")
                .clone(),
        ),
    ];
    let runs = RUNS.load(Ordering::SeqCst);
    for ((what, command), key) in plant.iter().zip(["string", "foreign", "version", "cut"]) {
        let _: redis::Value = server.query(command);
        let outcome = charge(&store, key).await;
        assert!(
            matches!(outcome, Err(Error::Codec(_))),
            "{what}: {outcome:?}"
        );
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), runs, "no body ran");
}

#[tokio::test]
async fn every_key_written_expires_and_records_live_under_the_prefix() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url())
        .await
        .unwrap()
        .with_key_prefix("shop:idem:");
    let fingerprint = idempotent_core::Fingerprint::of(&1).unwrap();
    let lease = Duration::from_secs(30);
    let claimed = store
        .claim("in-progress", &fingerprint, lease)
        .await
        .unwrap();
    assert!(matches!(
        claimed,
        idempotent_core::ClaimOutcome::Acquired { .. }
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
