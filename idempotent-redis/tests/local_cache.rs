//! `RedisBackend::with_local_cache` on a private server: what it saves
//! (round trips counted by `INFO commandstats`) and what it must never do
//! (serve an expired record, or a record of another scope or input).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idempotent_core::{Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

const HOUR: Duration = Duration::from_secs(3600);

/// Counts body runs per test (each test has its own counter).
struct Runs(AtomicUsize);

impl Runs {
    const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

async fn call(
    store: &RedisBackend,
    runs: &Runs,
    scope: &'static str,
    key: &str,
    amount: u32,
    ttl: Duration,
) -> Result<String, Error> {
    Idempotency::new(store)
        .scope(scope)
        .ttl(ttl)
        .run(key, &amount, || async {
            let run = runs.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(format!("{key}: {amount} cents, run {run}"))
        })
        .await
}

/// Commands the server ran since the last reset, by name.
fn commands(server: &RedisServer) -> Vec<(String, u64)> {
    server
        .command_counts()
        .into_iter()
        .filter(|(name, _)| name != "config|resetstat" && name != "info")
        .collect()
}

async fn cached_store(server: &RedisServer, max_age: Duration) -> RedisBackend {
    RedisBackend::connect(&server.url())
        .await
        .unwrap()
        .with_local_cache(100, max_age)
}

#[tokio::test]
async fn repeated_replays_cost_no_round_trip() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = cached_store(&server, HOUR).await;
    let first = call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();

    server.reset_stats();
    let replay = call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();
    assert_eq!(replay, first);
    assert_eq!(
        commands(&server),
        vec![("pttl".to_owned(), 1), ("set".to_owned(), 1)],
        "the first replay: SET NX GET and PTTL, pipelined"
    );

    server.reset_stats();
    for _ in 0..100 {
        let replay = call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
            .await
            .unwrap();
        assert_eq!(replay, first);
    }
    assert_eq!(commands(&server), vec![], "100 replays from the cache");
    assert_eq!(RUNS.count(), 1);

    // Clones share the cache.
    let clone = store.clone();
    server.reset_stats();
    call(&clone, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();
    assert_eq!(commands(&server), vec![]);
}

#[tokio::test]
async fn the_cache_is_off_by_default() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();
    server.reset_stats();
    for _ in 0..10 {
        call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
            .await
            .unwrap();
    }
    assert_eq!(commands(&server), vec![("set".to_owned(), 10)]);
}

#[tokio::test]
async fn an_expired_record_is_never_served() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = cached_store(&server, HOUR).await;
    let ttl = Duration::from_millis(400);
    let first = call(&store, &RUNS, "tests::cache", "short", 1, ttl)
        .await
        .unwrap();
    assert_eq!(
        call(&store, &RUNS, "tests::cache", "short", 1, ttl)
            .await
            .unwrap(),
        first
    );

    // Replay from the cache until the record expires on the server, and
    // check every answer against what the server holds at that moment.
    let record_key = store.record_key(
        Idempotency::new(&store)
            .scope("tests::cache")
            .prepare("short", &1)
            .stored_key()
            .unwrap(),
    );
    let rerun = loop {
        let existed: i64 = server.query(redis::cmd("EXISTS").arg(&record_key));
        let outcome = call(&store, &RUNS, "tests::cache", "short", 1, ttl)
            .await
            .unwrap();
        if outcome != first {
            break outcome;
        }
        assert_eq!(existed, 1, "served {outcome:?} after the record expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        rerun, "short: 1 cents, run 2",
        "the body ran again once expired"
    );
}

#[tokio::test]
async fn a_record_of_another_scope_is_not_served() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = cached_store(&server, HOUR).await;
    call(&store, &RUNS, "tests::cache::a", "shared-key", 7, HOUR)
        .await
        .unwrap();
    call(&store, &RUNS, "tests::cache::a", "shared-key", 7, HOUR)
        .await
        .unwrap();
    server.reset_stats();
    let other = call(&store, &RUNS, "tests::cache::b", "shared-key", 7, HOUR)
        .await
        .unwrap();
    assert_eq!(
        other, "shared-key: 7 cents, run 2",
        "scope b ran its own body"
    );
    assert!(!commands(&server).is_empty(), "scope b asked the server");
}

#[tokio::test]
async fn another_input_under_a_cached_key_is_a_mismatch() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = cached_store(&server, HOUR).await;
    call(&store, &RUNS, "tests::cache", "order-9", 100, HOUR)
        .await
        .unwrap();
    call(&store, &RUNS, "tests::cache", "order-9", 100, HOUR)
        .await
        .unwrap();
    server.reset_stats();
    let reused = call(&store, &RUNS, "tests::cache", "order-9", 999, HOUR).await;
    assert!(matches!(reused, Err(Error::PayloadMismatch)), "{reused:?}");
    assert_eq!(commands(&server), vec![], "decided from the cache");
    assert_eq!(RUNS.count(), 1);
}

#[tokio::test]
async fn a_record_deleted_on_the_server_replays_here_for_max_age_at_most() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let max_age = Duration::from_millis(300);
    let store = cached_store(&server, max_age).await;
    let first = call(&store, &RUNS, "tests::cache", "deleted", 1, HOUR)
        .await
        .unwrap();
    call(&store, &RUNS, "tests::cache", "deleted", 1, HOUR)
        .await
        .unwrap();
    let cached_at = std::time::Instant::now();
    let _: redis::Value = server.query(&redis::cmd("FLUSHALL"));

    let rerun = loop {
        let outcome = call(&store, &RUNS, "tests::cache", "deleted", 1, HOUR)
            .await
            .unwrap();
        if outcome != first {
            break outcome;
        }
        assert!(cached_at.elapsed() < max_age, "served past max_age");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(rerun, "deleted: 1 cents, run 2");
}
