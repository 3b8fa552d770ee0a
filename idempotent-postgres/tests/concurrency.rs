//! Many connections at once: 100 concurrent claims from separate pools (as
//! from separate processes) have exactly one winner, fencing holds across
//! connections, and the runtime runs each body once across backends.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, Error, Idempotency};
use support::TestDb;
use tokio::sync::Barrier;

const RACERS: usize = 100;
const POOLS: usize = 10;
const LONG: Duration = Duration::from_secs(60);

fn fp(value: &str) -> Fingerprint {
    Fingerprint::of(value).unwrap()
}

for_each_driver! {

/// `POOLS` backends on pools of their own, as in as many processes.
async fn pools(db: &TestDb) -> Vec<Store> {
    store(db).await; // migrated
    (0..POOLS)
        .map(|pool| store_named(db, &format!("{}-{pool}", db.schema()), 3))
        .collect()
}

/// `RACERS` claims of `key`, spread over the pools, released together.
async fn race(backends: &[Store], key: &str) -> Vec<ClaimOutcome> {
    let start = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|racer| {
            let backend = backends[racer % backends.len()].clone();
            let (start, key) = (Arc::clone(&start), key.to_owned());
            tokio::spawn(async move {
                start.wait().await;
                backend
                    .claim(&key, &fp("a"), FencingToken::generate(), LONG)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    outcomes
}

/// Checks one `Acquired { took_over }` and `RACERS - 1` `InProgress`.
fn one_winner(
    outcomes: &[ClaimOutcome],
    took_over: bool,
) -> idempotent_core::backend::FencingToken {
    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            ClaimOutcome::Acquired {
                token,
                took_over: taken,
            } if *taken == took_over => Some(*token),
            _ => None,
        })
        .collect();
    let in_progress = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, ClaimOutcome::InProgress { .. }))
        .count();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert_eq!(in_progress, RACERS - 1, "{outcomes:?}");
    winners[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_claims_from_ten_pools_have_one_winner_every_round() {
    let db = TestDb::new();
    let backends = pools(&db).await;
    let client = db.client().await;
    for round in 0..10 {
        let key = format!("fresh-{round}");
        let token = one_winner(&race(&backends, &key).await, false);
        // The lease lapses (on the database's clock): exactly one takes over.
        client
            .execute(
                "UPDATE idempotent_records SET lease_until = now() - interval '1 ms' WHERE key = $1",
                &[&key],
            )
            .await
            .unwrap();
        let new = one_winner(&race(&backends, &key).await, true);
        assert_ne!(new, token, "the takeover has its own token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_holder_is_fenced_on_every_connection() {
    let db = TestDb::new();
    let backends = pools(&db).await;
    let (stale, new_holder) = (&backends[0], &backends[1]);
    let client = db.client().await;
    let old = match stale
        .claim("k", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired { token, .. } => token,
        other => panic!("{other:?}"),
    };
    client
        .execute(
            "UPDATE idempotent_records SET lease_until = now() - interval '1 ms'",
            &[],
        )
        .await
        .unwrap();
    let new = match new_holder
        .claim("k", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired {
            token,
            took_over: true,
        } => token,
        other => panic!("{other:?}"),
    };
    // The stale token is refused whichever connection carries it.
    for backend in &backends {
        assert_eq!(
            backend.renew("k", old, LONG).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(
            backend.complete("k", old, b"stale", LONG).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(backend.release("k", old).await.unwrap(), CasOutcome::Fenced);
    }
    assert_eq!(
        new_holder.complete("k", new, b"new", LONG).await.unwrap(),
        CasOutcome::Applied
    );
    for backend in &backends {
        assert_eq!(
            backend
                .claim("k", &fp("a"), FencingToken::generate(), LONG)
                .await
                .unwrap(),
            ClaimOutcome::Completed {
                output: b"new".to_vec()
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_runtime_runs_each_body_once_across_pools() {
    const CALLS: usize = 200;
    const KEYS: usize = 10;
    let db = TestDb::new();
    let backends = pools(&db).await;
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
    let calls: Vec<_> = (0..CALLS)
        .map(|call| {
            let backend = backends[call % POOLS].clone();
            let runs = Arc::clone(&runs);
            let key = call % KEYS;
            tokio::spawn(async move {
                Idempotency::new(&backend)
                    .scope("tests::concurrency")
                    .wait(Duration::from_secs(30))
                    .run(&key, &"input", || async {
                        let run = runs[key].fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, Error>(format!("key {key} run {run}"))
                    })
                    .await
                    .map(|result| (key, result))
            })
        })
        .collect();
    let mut results: HashMap<usize, String> = HashMap::new();
    for call in calls {
        let (key, result) = call.await.unwrap().unwrap();
        let first = results.entry(key).or_insert_with(|| result.clone());
        assert_eq!(
            *first, result,
            "every caller of key {key} gets the same result"
        );
    }
    for (key, runs) in runs.iter().enumerate() {
        assert_eq!(runs.load(Ordering::SeqCst), 1, "key {key}");
    }
}

/// The race the claim statement must survive, made deterministic: a claim
/// waits for another transaction's row (the conflict check waits, but the
/// claim's snapshot was taken before that row committed). Reading the row
/// from the snapshot alone would say "absent" (first case) or "lapsed"
/// (second case); the claim must answer with the committed row instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_that_waited_for_a_concurrent_claim_answers_with_it() {
    let db = TestDb::new();
    store(&db).await;
    let name = format!("{}-claimer", db.schema());
    let backend = store_named(&db, &name, 3);
    let mut other = db.client().await;
    let observer = db.client().await;
    let digest = fp("a");
    let fingerprint: &[u8] = digest.as_bytes();

    // 1. Another transaction inserts the claim and has not committed yet.
    // 2. The lease of an existing claim lapsed; another transaction takes it
    //    over and has not committed yet.
    let cases = [
        (
            "inserted",
            "INSERT INTO idempotent_records (key, fingerprint, state, token, lease_until, expires_at)
             VALUES ($1, $2, 'running', 1, now() + interval '1 minute', now() + interval '2 minutes')",
        ),
        (
            "taken-over",
            "UPDATE idempotent_records
                SET token = token + 1000, lease_until = now() + interval '1 minute'
              WHERE key = $1 AND fingerprint = $2",
        ),
    ];
    observer
        .execute(
            "INSERT INTO idempotent_records (key, fingerprint, state, token, lease_until, expires_at)
             VALUES ('taken-over', $1, 'running', 1, now() - interval '1 ms', now() + interval '1 minute')",
            &[&fingerprint],
        )
        .await
        .unwrap();
    for (key, sql) in cases {
        let transaction = other.transaction().await.unwrap();
        assert_eq!(
            transaction
                .execute(sql, &[&key, &fingerprint])
                .await
                .unwrap(),
            1
        );
        let claim = {
            let backend = backend.clone();
            tokio::spawn(async move {
                backend
                    .claim(key, &fp("a"), FencingToken::generate(), LONG)
                    .await
            })
        };
        // The claim is blocked on the uncommitted row.
        loop {
            let waiting = observer
                .query_opt(
                    "SELECT 1 FROM pg_stat_activity
                      WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    &[&name],
                )
                .await
                .unwrap();
            if waiting.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        transaction.commit().await.unwrap();
        match claim.await.unwrap().unwrap() {
            ClaimOutcome::InProgress { lease_remaining } => {
                assert!(
                    lease_remaining > Duration::from_secs(50),
                    "{key}: {lease_remaining:?}"
                );
            }
            other => panic!("{key}: expected InProgress (the other claim), got {other:?}"),
        }
    }
}
}
