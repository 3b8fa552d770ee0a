//! What a call costs on the server, read from `INFO commandstats` deltas of a
//! private redis-server: a replay is one plain command, a first run two.

use idempotent_core::{Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

/// Calls per command name, sorted by name.
type Counts = Vec<(String, u64)>;

/// What the server ran since the last reset. `INFO commandstats` counts the
/// commands a script runs too, so the expected figures below name them.
fn commands_since_reset(server: &RedisServer) -> Counts {
    let mut counts: Counts = server
        .command_counts()
        .into_iter()
        .filter(|(name, _)| name != "config|resetstat" && name != "info")
        .collect();
    counts.sort();
    counts
}

fn counts(expected: &[(&str, u64)]) -> Counts {
    expected
        .iter()
        .map(|(name, calls)| ((*name).to_owned(), *calls))
        .collect()
}

#[tokio::test]
async fn a_first_run_costs_two_commands_and_a_replay_one() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let call = |key: &'static str| {
        let store = &store;
        async move {
            Idempotency::new(store)
                .scope("tests::round_trips")
                .run(key, &1, || async { Ok::<_, Error>(42u32) })
                .await
        }
    };
    // Warm up: the first use of each script loads it into the server cache.
    call("warm-up").await.unwrap();
    call("warm-up").await.unwrap();

    server.reset_stats();
    assert_eq!(call("order-1").await.unwrap(), 42);
    assert_eq!(
        commands_since_reset(&server),
        counts(&[("evalsha", 1), ("getrange", 1), ("set", 2)]),
        "a first run: the claim (SET NX GET), then the completion (EVALSHA, which runs GETRANGE and SET)"
    );

    server.reset_stats();
    assert_eq!(call("order-1").await.unwrap(), 42);
    assert_eq!(
        commands_since_reset(&server),
        counts(&[("set", 1)]),
        "a replay: one SET NX GET that finds the completed record and writes nothing"
    );
}

#[tokio::test]
async fn a_replay_leaves_the_record_as_it_was() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let call = || {
        Idempotency::new(&store)
            .scope("tests::round_trips")
            .ttl(std::time::Duration::from_secs(600))
            .run("order-2", &1, || async { Ok::<_, Error>(42u32) })
    };
    call().await.unwrap();
    let key = format!(
        "idempotent:{}",
        Idempotency::new(&store)
            .scope("tests::round_trips")
            .prepare("order-2", &1)
            .stored_key()
            .unwrap()
    );
    let record = |server: &RedisServer| -> Vec<u8> { server.query(redis::cmd("GET").arg(&key)) };
    let before = record(&server);
    assert!(before.starts_with(b"idem1C"), "a completed record");
    std::thread::sleep(std::time::Duration::from_millis(50));
    call().await.unwrap();
    assert_eq!(record(&server), before, "the record is unchanged");
    let ttl_ms: i64 = server.query(redis::cmd("PTTL").arg(&key));
    assert!(
        ttl_ms > 0 && ttl_ms <= 600_000 - 50,
        "the replay did not touch the expiry: PTTL {ttl_ms}"
    );
}
