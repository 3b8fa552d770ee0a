//! Clean-up: `purge_expired` deletes expired rows only, in bounded batches,
//! alongside other purges and live traffic; the reaper does it in the
//! background until stopped.

mod support;

use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::Backend;
use idempotent_postgres::tokio_postgres::Client;
use support::TestDb;

const LONG: Duration = Duration::from_secs(60);

fn fp(value: &str) -> Fingerprint {
    Fingerprint::of(value).unwrap()
}

for_each_driver! {

/// Adds `count` rows named `{prefix}-{n}` that expired a second ago, half
/// completed records, half lapsed claims.
async fn add_expired(client: &Client, prefix: &str, count: i32) {
    client
        .execute(
            "INSERT INTO idempotent_records (key, fingerprint, state, token, lease_until, output, expires_at)
             SELECT $1 || '-' || n, decode(repeat('ab', 32), 'hex'),
                    CASE WHEN n % 2 = 0 THEN 'completed' ELSE 'running' END, n,
                    CASE WHEN n % 2 = 0 THEN NULL ELSE now() - interval '2 seconds' END,
                    CASE WHEN n % 2 = 0 THEN '\\x01'::bytea END,
                    now() - interval '1 second'
               FROM generate_series(1, $2) AS n",
            &[&prefix, &count],
        )
        .await
        .unwrap();
}

async fn count(client: &Client, pattern: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM idempotent_records WHERE key LIKE $1",
            &[&pattern],
        )
        .await
        .unwrap()
        .get(0)
}

/// A live claim and a live completed record, which no purge may touch.
async fn add_live(backend: &Store) {
    match backend
        .claim("live-claim", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired { .. } => {}
        other => panic!("{other:?}"),
    }
    let token = match backend
        .claim("live-done", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired { token, .. } => token,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        backend
            .complete("live-done", token, b"kept", LONG)
            .await
            .unwrap(),
        CasOutcome::Applied
    );
}

async fn assert_live_untouched(backend: &Store) {
    assert!(matches!(
        backend
            .claim("live-claim", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap(),
        ClaimOutcome::InProgress { .. }
    ));
    assert_eq!(
        backend
            .claim("live-done", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap(),
        ClaimOutcome::Completed {
            output: b"kept".to_vec()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_only_expired_rows_in_bounded_batches() {
    let db = TestDb::new();
    let backend = store(&db).await;
    let client = db.client().await;
    add_expired(&client, "old", 25).await;
    add_live(&backend).await;
    let batches = [
        backend.purge_expired(10).await.unwrap(),
        backend.purge_expired(10).await.unwrap(),
        backend.purge_expired(10).await.unwrap(),
        backend.purge_expired(10).await.unwrap(),
    ];
    assert_eq!(batches, [10, 10, 5, 0]);
    assert_eq!(count(&client, "old-%").await, 0);
    assert_eq!(count(&client, "live-%").await, 2);
    assert_live_untouched(&backend).await;
    assert_eq!(backend.purge_expired(0).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_purges_split_the_work() {
    let db = TestDb::new();
    let first = store(&db).await;
    let client = db.client().await;
    add_expired(&client, "old", 400).await;
    add_live(&first).await;
    let mut purgers = Vec::new();
    for purger in 0..4 {
        let backend = store_named(&db, &format!("{}-{purger}", db.schema()), 3);
        purgers.push(tokio::spawn(async move {
            let mut deleted = 0;
            loop {
                let batch = backend.purge_expired(20).await.unwrap();
                deleted += batch;
                if batch == 0 {
                    return deleted;
                }
            }
        }));
    }
    let mut total = 0;
    for purger in purgers {
        total += purger.await.unwrap();
    }
    assert_eq!(total, 400, "each expired row deleted once, none missed");
    assert_eq!(count(&client, "old-%").await, 0);
    assert_live_untouched(&first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_skips_rows_others_hold_instead_of_waiting() {
    let db = TestDb::new();
    let backend = db
        .backend()
        .await
        .with_operation_timeout(Duration::from_secs(2));
    let mut holder = db.client().await;
    let client = db.client().await;
    add_expired(&client, "old", 3).await;
    let transaction = holder.transaction().await.unwrap();
    transaction
        .execute(
            "SELECT 1 FROM idempotent_records WHERE key = 'old-1' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        backend.purge_expired(10).await.unwrap(),
        2,
        "the held row is skipped"
    );
    transaction.rollback().await.unwrap();
    assert_eq!(
        backend.purge_expired(10).await.unwrap(),
        1,
        "and purged once free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revived_row_is_not_purged() {
    let db = TestDb::new();
    let backend = store(&db).await;
    let client = db.client().await;
    add_expired(&client, "old", 2).await;
    // A claim reuses an expired row before the purge runs.
    match backend
        .claim("old-1", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired {
            took_over: false, ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(backend.purge_expired(10).await.unwrap(), 1);
    assert!(matches!(
        backend
            .claim("old-1", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap(),
        ClaimOutcome::InProgress { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_purges_in_the_background_until_stopped() {
    let db = TestDb::new();
    let backend = store(&db).await;
    let client = db.client().await;
    add_expired(&client, "first", 35).await;
    add_live(&backend).await;
    let reaper = backend.spawn_reaper(Duration::from_millis(50), 10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(&client, "first-%").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reaper did not purge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reaper.purged(), 35);
    // Rows expiring later are purged by a later pass.
    add_expired(&client, "second", 5).await;
    while count(&client, "second-%").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reaper stopped early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reaper.purged(), 40);
    reaper.stop();
    add_expired(&client, "third", 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&client, "third-%").await,
        5,
        "a stopped reaper purges nothing"
    );
    assert_live_untouched(&backend).await;
}
}
