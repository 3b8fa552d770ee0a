//! The plain completion, release and renewal (`SET .. IFEQ`, `DELIFEQ`) on a
//! private Valkey 9, and the scripts on Redis 7.0, which lacks them: which
//! path ran (the servers' `INFO commandstats`), and that the plain commands
//! fence as the scripts do.

use std::thread;
use std::time::{Duration, Instant};

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, BackendErrorKind};
use idempotent_redis::RedisBackend;
use idempotent_test_support::{RedisOptions, RedisServer};

const LEASE: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(600);

fn fingerprint() -> Fingerprint {
    Fingerprint::from_bytes([7; 32])
}

/// Scripts the server ran, by hash or by source.
fn scripts_run(server: &RedisServer) -> u64 {
    server.command_count("evalsha") + server.command_count("eval")
}

fn record(server: &RedisServer, record_key: &str) -> Option<Vec<u8>> {
    server.query(redis::cmd("GET").arg(record_key))
}

async fn claim(store: &RedisBackend, key: &str, token: FencingToken) -> ClaimOutcome {
    store
        .claim(key, &fingerprint(), token, LEASE)
        .await
        .unwrap()
}

/// A claim, its completion and the replay; a second claim renewed and
/// released.
async fn first_runs_and_replays(store: &RedisBackend) {
    let token = FencingToken::generate();
    assert!(matches!(
        claim(store, "paid", token).await,
        ClaimOutcome::Acquired { .. }
    ));
    assert_eq!(
        store
            .complete("paid", token, b"receipt", TTL)
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        claim(store, "paid", FencingToken::generate()).await,
        ClaimOutcome::Completed {
            output: b"receipt".to_vec()
        }
    );
    let token = FencingToken::generate();
    assert!(matches!(
        claim(store, "refunded", token).await,
        ClaimOutcome::Acquired { .. }
    ));
    assert_eq!(
        store.renew("refunded", token, LEASE).await.unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        store.release("refunded", token).await.unwrap(),
        CasOutcome::Applied
    );
    assert!(matches!(
        claim(store, "refunded", FencingToken::generate()).await,
        ClaimOutcome::Acquired { .. }
    ));
}

#[tokio::test]
async fn on_valkey_a_first_run_its_replay_a_renewal_and_a_release_run_no_script() {
    let server = RedisServer::start_valkey();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    server.reset_stats();
    first_runs_and_replays(&store).await;
    assert_eq!(scripts_run(&server), 0, "{:?}", server.command_counts());
    // Four claims, a completion, a renewal.
    assert_eq!(server.command_count("set"), 6);
    assert_eq!(server.command_count("delifeq"), 1);
}

#[tokio::test]
async fn on_redis_7_the_same_calls_run_the_scripts_and_no_plain_command() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    server.reset_stats();
    first_runs_and_replays(&store).await;
    // The completion, the renewal and the release.
    assert_eq!(
        server.command_count("evalsha"),
        3,
        "{:?}",
        server.command_counts()
    );
    // The four claims, and the scripts' own: a `SET .. IFEQ` or a
    // `DELIFEQ` would have been refused (`ERR`).
    assert_eq!(server.command_count("set"), 6);
    assert_eq!(server.command_count("delifeq"), 0);
    let errors: String = server.query(redis::cmd("INFO").arg("errorstats"));
    assert!(!errors.contains("errorstat_ERR"), "{errors}");
}

/// Claims `key` for a first caller, then makes its lease run out (the key
/// lives on for 30 s of a 60 s lease) and takes it over for a second.
async fn taken_over(
    server: &RedisServer,
    store: &RedisBackend,
    key: &str,
) -> (FencingToken, FencingToken) {
    let stale = FencingToken::generate();
    assert!(matches!(
        claim(store, key, stale).await,
        ClaimOutcome::Acquired { .. }
    ));
    let _: i64 = server.query(redis::cmd("PEXPIRE").arg(store.record_key(key)).arg(30_000));
    let fresh = FencingToken::generate();
    assert_eq!(
        claim(store, key, fresh).await,
        ClaimOutcome::Acquired {
            token: fresh,
            took_over: true
        }
    );
    (stale, fresh)
}

#[tokio::test]
async fn a_stale_holders_completion_after_a_takeover_is_fenced() {
    let server = RedisServer::start_valkey();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let (stale, fresh) = taken_over(&server, &store, "order").await;
    server.reset_stats();
    assert_eq!(
        store.complete("order", stale, b"stale", TTL).await.unwrap(),
        CasOutcome::Fenced
    );
    // The stale holder's `SET .. IFEQ` answered nil, and its script decided.
    assert_eq!(server.command_count("evalsha"), 1);
    let scripts = scripts_run(&server);
    assert_eq!(
        store.complete("order", fresh, b"fresh", TTL).await.unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(scripts_run(&server), scripts, "the fresh holder's is plain");
    assert_eq!(
        claim(&store, "order", FencingToken::generate()).await,
        ClaimOutcome::Completed {
            output: b"fresh".to_vec()
        }
    );
}

#[tokio::test]
async fn a_stale_holders_release_and_renewal_are_fenced_and_leave_the_claim() {
    let server = RedisServer::start_valkey();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let (stale, fresh) = taken_over(&server, &store, "order").await;
    let held = record(&server, &store.record_key("order"));
    assert_eq!(
        store.release("order", stale).await.unwrap(),
        CasOutcome::Fenced
    );
    assert_eq!(
        store.renew("order", stale, LEASE).await.unwrap(),
        CasOutcome::Fenced
    );
    assert_eq!(record(&server, &store.record_key("order")), held);
    assert!(matches!(
        claim(&store, "order", FencingToken::generate()).await,
        ClaimOutcome::InProgress { .. }
    ));
    assert_eq!(
        store.complete("order", fresh, b"fresh", TTL).await.unwrap(),
        CasOutcome::Applied
    );
}

#[tokio::test]
async fn a_completion_sent_again_after_its_reply_was_lost_is_applied_not_fenced() {
    let server = RedisServer::start_valkey();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let token = FencingToken::generate();
    claim(&store, "sent-twice", token).await;
    for _ in 0..2 {
        assert_eq!(
            store
                .complete("sent-twice", token, b"once", TTL)
                .await
                .unwrap(),
            CasOutcome::Applied
        );
    }
    // Sent again by a clone (another handle on the same store), too.
    assert_eq!(
        store
            .clone()
            .complete("sent-twice", token, b"once", TTL)
            .await
            .unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        claim(&store, "sent-twice", FencingToken::generate()).await,
        ClaimOutcome::Completed {
            output: b"once".to_vec()
        }
    );
    // A release after the completion is fenced: the result stays.
    assert_eq!(
        store.release("sent-twice", token).await.unwrap(),
        CasOutcome::Fenced
    );
}

#[tokio::test]
async fn a_renewed_claim_still_completes_without_a_script() {
    let server = RedisServer::start_valkey();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let token = FencingToken::generate();
    claim(&store, "long", token).await;
    let record_key = store.record_key("long");
    for lease_ms in [30_000, 45_000] {
        assert_eq!(
            store
                .renew("long", token, Duration::from_millis(lease_ms))
                .await
                .unwrap(),
            CasOutcome::Applied
        );
        let renewed = record(&server, &record_key).unwrap();
        assert!(renewed.ends_with(lease_ms.to_string().as_bytes()));
        let expires_in: i64 = server.query(redis::cmd("PTTL").arg(&record_key));
        assert!(expires_in > 0 && expires_in <= 2 * lease_ms as i64);
    }
    assert_eq!(
        store.complete("long", token, b"done", TTL).await.unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(scripts_run(&server), 0, "{:?}", server.command_counts());
}

/// Waits until `replica` has synced with its primary.
fn wait_for_sync(replica: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = replica.query(redis::cmd("INFO").arg("replication"));
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not sync: {info}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn valkey_replica_of(primary: &RedisServer) -> RedisServer {
    let replica = RedisServer::start_valkey_with(RedisOptions {
        extra_args: vec![
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.port().to_string(),
        ],
        ..RedisOptions::default()
    });
    wait_for_sync(&replica);
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acks_a_plain_completion_waits_for_the_replica() {
    let primary = RedisServer::start_valkey();
    let mut replica = valkey_replica_of(&primary);
    let store = RedisBackend::connect(&primary.url())
        .await
        .unwrap()
        .with_replica_acks(1, Duration::from_millis(200))
        .unwrap();
    let token = FencingToken::generate();
    claim(&store, "acked", token).await;
    assert_eq!(
        store.complete("acked", token, b"done", TTL).await.unwrap(),
        CasOutcome::Applied
    );
    // WAIT returned once the replica had it.
    let on_replica = record(&replica, &store.record_key("acked")).unwrap();
    assert!(on_replica.ends_with(b"done"));
    assert_eq!(primary.command_count("wait"), 2);

    let token = FencingToken::generate();
    claim(&store, "unacked", token).await;
    replica.kill();
    let completed = store.complete("unacked", token, b"done", TTL).await;
    assert!(
        matches!(&completed, Err(error) if error.kind() == BackendErrorKind::Unavailable),
        "{completed:?}"
    );
    assert_eq!(scripts_run(&primary), 0, "{:?}", primary.command_counts());
}

/// A store whose connection ends up on a replica (its primary was demoted)
/// must be refused, not told "fenced" by a copy that lacks the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_refuses_the_plain_commands() {
    let demoted = RedisServer::start_valkey();
    let promoted = RedisServer::start_valkey();
    let store = RedisBackend::connect(&demoted.url()).await.unwrap();
    let (completing, releasing) = (FencingToken::generate(), FencingToken::generate());
    claim(&store, "completing", completing).await;
    claim(&store, "releasing", releasing).await;
    let () = demoted.query(
        redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(promoted.port()),
    );
    demoted.reset_stats();
    for outcome in [
        store.renew("completing", completing, LEASE).await,
        store.complete("completing", completing, b"done", TTL).await,
        store.release("releasing", releasing).await,
    ] {
        assert!(
            matches!(&outcome, Err(error) if error.kind() == BackendErrorKind::Unavailable),
            "{outcome:?}"
        );
    }
    assert_eq!(scripts_run(&demoted), 0, "{:?}", demoted.command_counts());
}

/// Through the engine: a body longer than its lease is renewed (every
/// `lease / 3`) and completed with plain commands only, and concurrent
/// duplicates get its one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_engine_a_long_body_is_renewed_and_completed_without_a_script() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use idempotent_core::{Error, Idempotency};

    let server = RedisServer::start_valkey();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    server.reset_stats();
    let runs = Arc::new(AtomicU32::new(0));
    let call = |store: RedisBackend, runs: Arc<AtomicU32>| async move {
        Idempotency::new(store)
            .scope("tests::plain_commands")
            .lease(Duration::from_millis(300))
            .wait(Duration::from_secs(30))
            .run("long-body", &1, || async move {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                // Three leases: renewed several times on the way.
                tokio::time::sleep(Duration::from_millis(900)).await;
                Ok::<_, Error>(run)
            })
            .await
    };
    assert_eq!(call(store.clone(), Arc::clone(&runs)).await.unwrap(), 1);
    // The claim and the completion, and whatever renewals the schedule gave.
    assert!(
        server.command_count("set") >= 2,
        "{:?}",
        server.command_counts()
    );
    assert_eq!(scripts_run(&server), 0, "{:?}", server.command_counts());

    let duplicates: Vec<_> = (0..8)
        .map(|_| {
            let (store, runs) = (store.clone(), Arc::clone(&runs));
            tokio::spawn(async move {
                Idempotency::new(store)
                    .scope("tests::plain_commands")
                    .lease(Duration::from_millis(300))
                    .wait(Duration::from_secs(30))
                    .run("concurrent", &1, || async move {
                        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(900)).await;
                        Ok::<_, Error>(run)
                    })
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for duplicate in duplicates {
        results.push(duplicate.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one body per key");
    assert!(results.iter().all(|result| *result == 2), "{results:?}");
}
