//! `RedisBackend::connect_sentinel` on private sentinels watching a private
//! replica set: the store follows the primary they promote.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use idempotent_core::{Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::{RedisReplicaSet, RedisSentinel, MASTER_NAME};

static RUNS: AtomicUsize = AtomicUsize::new(0);

async fn charge(store: &RedisBackend, key: &str) -> Result<usize, Error> {
    Idempotency::new(store)
        .scope("tests::sentinel")
        .run(key, &1, || async {
            Ok(RUNS.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .await
}

/// Calls `key` until it answers, for at most 30 s: calls fail closed while
/// the sentinels fail over and the store finds the new primary.
async fn charge_until_answered(store: &RedisBackend, key: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match charge(store, key).await {
            Ok(run) => return run,
            Err(Error::Backend(error)) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("{key} did not answer after the failover: {other:?}"),
        }
    }
}

fn key_count(server: &idempotent_test_support::RedisServer) -> usize {
    server.query(&redis::cmd("DBSIZE"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_primary_the_sentinels_promote() {
    let mut set = RedisReplicaSet::start(1);
    let sentinel = RedisSentinel::start(&set, 1);
    let store = RedisBackend::connect_sentinel(&sentinel.urls(), MASTER_NAME)
        .await
        .unwrap();
    let first = charge(&store, "before").await.unwrap();
    set.wait_for_replicas();

    // A killed primary: the sentinel promotes the replica, and the store
    // finds it.
    let old = set.primary_index();
    set.kill_primary();
    let promoted = sentinel.wait_for_failover(&mut set);
    let second = charge_until_answered(&store, "after-kill").await;
    assert_eq!(second, first + 1);
    assert_eq!(charge(&store, "before").await.unwrap(), first, "replayed");
    assert!(key_count(&set.nodes()[promoted]) >= 2);

    // The old primary back as a replica, and a failover back to it: the
    // node the store talks to is demoted (READONLY), and the store moves.
    let port = set.primary().port();
    set.nodes_mut()[old].restart_as_replica_of(port);
    set.wait_for_replicas();
    sentinel.wait_for_replicas(1);
    sentinel.failover();
    assert_eq!(sentinel.wait_for_failover(&mut set), old);
    let third = charge_until_answered(&store, "after-failover").await;
    assert_eq!(third, second + 1);
    assert_eq!(
        charge(&store, "after-kill").await.unwrap(),
        second,
        "replayed"
    );
}

#[tokio::test]
async fn an_unknown_master_name_or_a_bad_url_fails_at_start_up() {
    let set = RedisReplicaSet::start(0);
    let sentinel = RedisSentinel::start(&set, 1);
    let unknown = RedisBackend::connect_sentinel(&sentinel.urls(), "no-such-master")
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("Redis Sentinel"), "{unknown}");
    let invalid = RedisBackend::connect_sentinel(&["not a url"], MASTER_NAME)
        .await
        .unwrap_err();
    assert!(
        invalid.to_string().contains("invalid Redis Sentinel URLs"),
        "{invalid}"
    );
}
