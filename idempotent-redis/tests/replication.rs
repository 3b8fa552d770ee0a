//! A primary that dies before its replica got a claim, with and without
//! `RedisBackend::with_replica_acks`, on private replica sets and on a
//! cluster with a replica per master.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, BackendErrorKind, Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::{RedisReplicaSet, RedisServer};

const LEASE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(3600);
/// Generous: a loaded machine must not fail the acks that the tests expect.
const ACK_TIMEOUT: Duration = Duration::from_secs(1);

fn fingerprint() -> Fingerprint {
    Fingerprint::from_bytes([7; 32])
}

/// The record at `record_key` on `server`, if any.
fn record(server: &RedisServer, record_key: &str) -> Option<Vec<u8>> {
    server.query(redis::cmd("GET").arg(record_key))
}

/// A failover to the replica that missed the last writes: the replica is
/// cut off, `write` runs on the primary, the primary dies and the replica is
/// promoted.
async fn fail_over_after<F, Fut>(set: &mut RedisReplicaSet, write: F) -> Fut::Output
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future,
{
    set.cut_off(1);
    let written = write().await;
    set.kill_primary();
    set.nodes()[1].resume();
    set.promote(1);
    written
}

/// What the crate docs say of a replicated Redis without replica acks: a
/// claim that the primary acknowledged and the replica never got is gone
/// after a failover, and a second caller acquires the key while the first
/// still holds it (two bodies run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_acks_a_failover_forgets_an_acknowledged_claim() {
    let mut set = RedisReplicaSet::start(1);
    let store = RedisBackend::connect(&set.primary().url()).await.unwrap();
    let first = FencingToken::generate();
    let planted = fingerprint();
    let claimed = fail_over_after(&mut set, || store.claim("window", &planted, first, LEASE)).await;
    assert_eq!(
        claimed.unwrap(),
        ClaimOutcome::Acquired {
            token: first,
            took_over: false
        },
        "the primary acknowledged the claim"
    );

    let promoted = RedisBackend::connect(&set.primary().url()).await.unwrap();
    assert_eq!(record(set.primary(), &promoted.record_key("window")), None);
    let second = FencingToken::generate();
    assert_eq!(
        promoted
            .claim("window", &fingerprint(), second, LEASE)
            .await
            .unwrap(),
        ClaimOutcome::Acquired {
            token: second,
            took_over: false
        },
        "the claim is lost: a second holder runs the body while the first still runs it"
    );
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

async fn charge(store: &RedisBackend, key: &str) -> Result<usize, Error> {
    Idempotency::new(store)
        .scope("tests::replication")
        .run(key, &1, || async {
            Ok(RUNS.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .await
}

fn record_key_of(store: &RedisBackend, key: &str) -> String {
    let call = Idempotency::new(store.clone())
        .scope("tests::replication")
        .prepare(&key, &1);
    store.record_key(call.stored_key().unwrap())
}

/// The same schedule with acks: the claim that the replica did not
/// acknowledge fails the call closed, its body does not run, and the claim
/// is released; after the failover the key is free and runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_acks_the_same_schedule_fails_closed_and_releases_the_claim() {
    let mut set = RedisReplicaSet::start(1);
    let store = RedisBackend::connect(&set.primary().url())
        .await
        .unwrap()
        .with_replica_acks(1, ACK_TIMEOUT)
        .unwrap();
    let record_key = record_key_of(&store, "closed");
    let runs = RUNS.load(Ordering::SeqCst);
    set.cut_off(1);
    match charge(&store, "closed").await {
        Err(Error::Backend(error)) => {
            assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
            assert!(
                error
                    .to_string()
                    .contains("acknowledged by 0 of 1 replicas"),
                "{error}"
            );
        }
        other => panic!("expected Error::Backend, got {other:?}"),
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), runs, "the body did not run");
    // The engine releases the claim by its token.
    let mut released = false;
    for _ in 0..100 {
        if record(set.primary(), &record_key).is_none() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(released, "the claim was not released on the primary");

    set.kill_primary();
    set.nodes()[1].resume();
    set.promote(1);
    let promoted = RedisBackend::connect(&set.primary().url())
        .await
        .unwrap()
        .with_replica_acks(1, ACK_TIMEOUT);
    // The promoted primary has no replica left: acks fail closed too.
    assert!(matches!(
        charge(&promoted.unwrap(), "closed").await,
        Err(Error::Backend(_))
    ));
    // Without acks the key is free, and its body runs once.
    let plain = RedisBackend::connect(&set.primary().url()).await.unwrap();
    assert_eq!(charge(&plain, "closed").await.unwrap(), runs + 1);
    assert_eq!(charge(&plain, "closed").await.unwrap(), runs + 1);
}

/// A claim that the replica acknowledged survives the failover: the retry on
/// the promoted replica finds it in progress and does not run the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_acks_an_acknowledged_claim_survives_the_failover() {
    let mut set = RedisReplicaSet::start(1);
    let store = RedisBackend::connect(&set.primary().url())
        .await
        .unwrap()
        .with_replica_acks(1, ACK_TIMEOUT)
        .unwrap();
    let first = FencingToken::generate();
    let claimed = store
        .claim("kept", &fingerprint(), first, LEASE)
        .await
        .unwrap();
    assert!(matches!(claimed, ClaimOutcome::Acquired { .. }));
    set.kill_primary();
    set.promote(1);
    let promoted = RedisBackend::connect(&set.primary().url()).await.unwrap();
    let retry = promoted
        .claim("kept", &fingerprint(), FencingToken::generate(), LEASE)
        .await
        .unwrap();
    assert!(
        matches!(retry, ClaimOutcome::InProgress { .. }),
        "{retry:?}"
    );
    // The first holder's completion lands on the promoted primary.
    assert_eq!(
        promoted
            .complete("kept", first, b"done", TTL)
            .await
            .unwrap(),
        CasOutcome::Applied
    );
}

/// A completion the replica does not acknowledge is reported unavailable,
/// so the engine retries it; the retry, once the replica is back, is
/// acknowledged and the replica has the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_acks_a_completion_without_acks_is_unavailable_and_its_retry_lands() {
    let set = RedisReplicaSet::start(1);
    let store = RedisBackend::connect(&set.primary().url())
        .await
        .unwrap()
        .with_replica_acks(1, ACK_TIMEOUT)
        .unwrap();
    let token = FencingToken::generate();
    store
        .claim("late-ack", &fingerprint(), token, LEASE)
        .await
        .unwrap();
    set.replicas()[0].pause();
    let error = store
        .complete("late-ack", token, b"result", TTL)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
    set.replicas()[0].resume();
    assert_eq!(
        store
            .complete("late-ack", token, b"result", TTL)
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    let on_replica = record(set.replicas()[0], &store.record_key("late-ack")).unwrap();
    assert!(on_replica.starts_with(b"idem1C"), "{on_replica:?}");
    assert!(on_replica.ends_with(b"result"));
}

/// Through the engine: the replica is paused while the body runs and back
/// two ack timeouts later; the completion is retried until acknowledged, the
/// call answers its result, and the body ran once.
#[test]
fn the_engine_retries_an_unacknowledged_completion_until_the_replica_is_back() {
    let set = RedisReplicaSet::start(1);
    let replica = set.replicas()[0];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(async {
        RedisBackend::connect(&set.primary().url())
            .await
            .unwrap()
            .with_replica_acks(1, ACK_TIMEOUT)
            .unwrap()
    });
    let runs = AtomicUsize::new(0);
    let answer: Result<u32, Error> = std::thread::scope(|scope| {
        let resumer = scope.spawn(|| {
            while runs.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Longer than the ack timeout: the first completion is not acknowledged.
            std::thread::sleep(ACK_TIMEOUT * 2);
            replica.resume();
        });
        let answer = runtime.block_on(Idempotency::new(&store).scope("tests::replication").run(
            &"engine-retry",
            &1,
            || async {
                replica.pause();
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(42)
            },
        ));
        resumer.join().unwrap();
        answer
    });
    assert_eq!(answer.unwrap(), 42);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let on_replica = record(replica, &record_key_of(&store, "engine-retry")).unwrap();
    assert!(on_replica.starts_with(b"idem1C"), "{on_replica:?}");
}

/// A `WAIT` counts the writes of its own connection only. A completion
/// retried on a fresh connection (after a reconnection) finds its record
/// already completed; it writes it again, so its `WAIT` waits for the
/// record's replication instead of counting a lagging replica at once.
/// The same holds for a claim sent again. (Redis 7.0's `WAIT` also counts
/// writes of other connections made before it, so there this holds without
/// the rewrite too; the rewrite keeps it where `WAIT` counts only the
/// connection's own writes, as its documentation says.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_a_fresh_connection_is_acknowledged_only_once_replicated() {
    let set = RedisReplicaSet::start(1);
    let plain = RedisBackend::connect(&set.primary().url()).await.unwrap();
    let token = FencingToken::generate();
    set.replicas()[0].pause();
    plain
        .claim("fresh", &fingerprint(), token, LEASE)
        .await
        .unwrap();
    let fresh = || async {
        RedisBackend::connect(&set.primary().url())
            .await
            .unwrap()
            .with_replica_acks(1, ACK_TIMEOUT)
            .unwrap()
    };
    let claim_again = fresh()
        .await
        .claim("fresh", &fingerprint(), token, LEASE)
        .await;
    assert!(
        matches!(&claim_again, Err(error) if error.kind() == BackendErrorKind::Unavailable),
        "{claim_again:?}"
    );
    plain.complete("fresh", token, b"done", TTL).await.unwrap();
    let complete_again = fresh().await.complete("fresh", token, b"done", TTL).await;
    assert!(
        matches!(&complete_again, Err(error) if error.kind() == BackendErrorKind::Unavailable),
        "{complete_again:?}"
    );
    set.replicas()[0].resume();
    assert_eq!(
        fresh()
            .await
            .complete("fresh", token, b"done", TTL)
            .await
            .unwrap(),
        CasOutcome::Applied
    );
}

/// On a cluster the `WAIT` goes to the master that owns the key and counts
/// that master's replicas: with one master's replica frozen, claims of keys
/// on that master fail closed, and claims on the other masters go on.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_acks_are_counted_per_shard() {
    use idempotent_test_support::RedisCluster;

    let cluster = RedisCluster::start_with_replicas();
    let store = RedisBackend::connect_cluster(&cluster.urls())
        .await
        .unwrap()
        .with_replica_acks(1, ACK_TIMEOUT)
        .unwrap();
    let replica = cluster.replicas()[0];
    let replication: String = replica.query(redis::cmd("INFO").arg("replication"));
    let master_port: u16 = replication
        .lines()
        .find_map(|line| line.trim_end().strip_prefix("master_port:"))
        .and_then(|port| port.parse().ok())
        .unwrap();
    // Read before the replica is frozen: it would not answer `ROLE`.
    let masters = cluster.masters();
    let owner_port = |record_key: &str| -> u16 {
        masters
            .iter()
            .find(|master| {
                master
                    .try_query::<i64>(redis::cmd("EXISTS").arg(record_key))
                    .is_ok()
            })
            .map(|master| master.port())
            .unwrap()
    };

    // All replicas up: every claim is acknowledged, on every shard.
    for index in 0..10 {
        let key = format!("shard-{index}");
        let claimed = store
            .claim(&key, &fingerprint(), FencingToken::generate(), LEASE)
            .await
            .unwrap();
        assert!(
            matches!(claimed, ClaimOutcome::Acquired { .. }),
            "{claimed:?}"
        );
    }

    replica.pause();
    let (mut refused, mut acknowledged) = (0, 0);
    for index in 0..30 {
        let key = format!("paused-{index}");
        let claimed = store
            .claim(&key, &fingerprint(), FencingToken::generate(), LEASE)
            .await;
        if owner_port(&store.record_key(&key)) == master_port {
            assert!(
                matches!(&claimed, Err(error) if error.kind() == BackendErrorKind::Unavailable),
                "{key} lives on the master whose replica is frozen: {claimed:?}"
            );
            refused += 1;
        } else {
            assert!(
                matches!(claimed, Ok(ClaimOutcome::Acquired { .. })),
                "{key} lives on another master: {claimed:?}"
            );
            acknowledged += 1;
        }
    }
    replica.resume();
    assert!(
        refused > 0 && acknowledged > 0,
        "{refused} refused, {acknowledged} acknowledged"
    );
}

/// A node demoted to a replica (a store whose connection came back to the
/// old primary's address) must refuse the compare-and-set scripts rather
/// than answer from its own copy: "fenced" from a replica that does not have
/// the claim would make the engine give up a completion the real primary
/// still waits for, and a retry would run the body again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refuses_the_scripts_instead_of_answering_fenced() {
    let set = RedisReplicaSet::start(1);
    let on_replica = RedisBackend::connect(&set.replicas()[0].url())
        .await
        .unwrap();
    let token = FencingToken::generate();
    for outcome in [
        on_replica.complete("demoted", token, b"done", TTL).await,
        on_replica.release("demoted", token).await,
        on_replica.renew("demoted", token, LEASE).await,
    ] {
        assert!(
            matches!(&outcome, Err(error) if error.kind() == BackendErrorKind::Unavailable),
            "{outcome:?}"
        );
    }
    let claimed = on_replica
        .claim("demoted", &fingerprint(), token, LEASE)
        .await;
    assert!(
        matches!(&claimed, Err(error) if error.kind() == BackendErrorKind::Unavailable),
        "{claimed:?}"
    );
}
