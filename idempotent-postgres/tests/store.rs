//! The Postgres store's own promises beyond the conformance suite: its
//! table and migration, the database's clock, expired rows, failing closed,
//! and the runtime and the attribute running on it.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{idempotent, Backend, BackendErrorKind, Error};
use idempotent_test_support::postgres::PostgresServer;
use support::TestDb;

const LONG: Duration = Duration::from_secs(60);

fn fp(value: &str) -> Fingerprint {
    Fingerprint::of(value).unwrap()
}

for_each_driver! {

async fn acquire(backend: &Store, key: &str) -> idempotent_core::backend::FencingToken {
    match backend
        .claim(key, &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired { token, .. } => token,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_is_idempotent_and_safe_to_race() {
    let db = TestDb::new();
    let backends: Vec<Store> = {
        let mut backends = Vec::new();
        for _ in 0..4 {
            backends.push(
                store_at(db.url()).await
                    .with_schema(db.schema()),
            );
        }
        backends
    };
    // Four processes starting at once, each migrating: all succeed.
    let racing: Vec<_> = backends
        .iter()
        .cloned()
        .map(|backend| tokio::spawn(async move { backend.migrate().await }))
        .collect();
    for migration in racing {
        migration
            .await
            .unwrap()
            .expect("a concurrent migrate succeeds");
    }
    backends[0]
        .migrate()
        .await
        .expect("migrating again is a no-op");
    // The DDL for migration tools applies on top, too.
    let client = db.client().await;
    client
        .batch_execute(&backends[0].migration_sql())
        .await
        .expect("the migration SQL is idempotent");
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&db.schema()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1);
    acquire(&backends[3], "after-migrate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_schema_and_table_name_works() {
    let db = TestDb::new();
    let schema = format!("{} Odd \"Schema\"", db.schema());
    let backend = store_at(db.url()).await
        .with_schema(&schema)
        .with_table("Records; DROP TABLE x; --");
    assert_eq!(
        backend.table_name(),
        format!(
            "\"{} Odd \"\"Schema\"\"\".\"Records; DROP TABLE x; --\"",
            db.schema()
        )
    );
    backend.migrate().await.unwrap();
    let token = acquire(&backend, "k").await;
    assert_eq!(
        backend.complete("k", token, b"out", LONG).await.unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        backend
            .claim("k", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap(),
        ClaimOutcome::Completed {
            output: b"out".to_vec()
        }
    );
    let client = db.client().await;
    let stored: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {}", backend.table_name()),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    client
        .batch_execute(&format!(
            "DROP SCHEMA \"{}\" CASCADE",
            schema.replace('"', "\"\"")
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_table_it_did_not_create() {
    let db = TestDb::new();
    let client = db.client().await;
    // The hand-written pattern's table, under the name the store would use.
    client
        .batch_execute(
            "CREATE TABLE idempotent_records (
                 key text PRIMARY KEY, status text NOT NULL, response jsonb,
                 created_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    let backend = store_at(db.url()).await
        .with_schema(db.schema());
    let error = backend.migrate().await.unwrap_err();
    assert!(
        error.to_string().contains("is not a records table"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_only_use_the_table_can_migrate_and_work() {
    let db = TestDb::new();
    store(&db).await; // a DBA created the table
    let role = format!("{}_app", db.schema());
    let client = db.client().await;
    let records = db.records();
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN;
             GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON {records} TO \"{role}\";",
            schema = db.schema()
        ))
        .await
        .unwrap();
    let backend = store_as(&db, &role, db.schema());
    backend
        .migrate()
        .await
        .expect("nothing to create, nothing needing the CREATE privilege");
    let token = acquire(&backend, "k").await;
    assert_eq!(
        backend.complete("k", token, b"out", LONG).await.unwrap(),
        CasOutcome::Applied
    );
    drop(backend);
    client
        .batch_execute(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_expiry_follow_the_database_clock() {
    let db = TestDb::new();
    let backend = store(&db).await;
    let client = db.client().await;
    let lease = Duration::from_secs(10);
    backend
        .claim("k", &fp("a"), FencingToken::generate(), lease)
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT extract(epoch FROM lease_until - now())::float8,
                    extract(epoch FROM expires_at - lease_until)::float8
               FROM idempotent_records",
            &[],
        )
        .await
        .unwrap();
    let (lease_left, kept_after_lease): (f64, f64) = (row.get(0), row.get(1));
    assert!(lease_left > 9.0 && lease_left <= 10.0, "{lease_left}");
    assert_eq!(kept_after_lease, 10.0, "a claim is kept one more lease");

    // Time passes on the database's clock only (the test moves the lease
    // end back): the next claim takes over at once, though this client saw
    // no time pass.
    client
        .execute(
            "UPDATE idempotent_records SET lease_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    match backend
        .claim("k", &fp("a"), FencingToken::generate(), lease)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired {
            took_over: true, ..
        } => {}
        other => panic!("expected a takeover, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_row_counts_as_absent_and_is_overwritten_in_place() {
    let db = TestDb::new();
    let backend = store(&db).await;
    let client = db.client().await;
    for (key, output) in [("completed", Some(b"old".as_slice())), ("claimed", None)] {
        let token = acquire(&backend, key).await;
        if let Some(output) = output {
            backend.complete(key, token, output, LONG).await.unwrap();
        }
    }
    client
        .execute(
            "UPDATE idempotent_records SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    for key in ["completed", "claimed"] {
        // Another fingerprint: an expired record is no mismatch.
        match backend
            .claim(key, &fp("b"), FencingToken::generate(), LONG)
            .await
            .unwrap()
        {
            ClaimOutcome::Acquired {
                took_over: false, ..
            } => {}
            other => panic!("{key}: expected a fresh claim, got {other:?}"),
        }
    }
    let rows: i64 = client
        .query_one("SELECT count(*) FROM idempotent_records", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2, "the expired rows were reused, not duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_claim_stores_its_callers_token() {
    let db = TestDb::new();
    let backend = store(&db).await;
    let client = db.client().await;
    for value in [1, u64::MAX, 0x8000_0000_0000_0000, 42, 7] {
        let token = FencingToken::new(value);
        match backend.claim("k", &fp("a"), token, LONG).await.unwrap() {
            ClaimOutcome::Acquired { token: echoed, .. } => assert_eq!(echoed, token),
            other => panic!("expected Acquired, got {other:?}"),
        };
        let stored: i64 = client
            .query_one("SELECT token FROM idempotent_records WHERE key = 'k'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored.to_ne_bytes(), value.to_ne_bytes());
        client
            .execute(
                "UPDATE idempotent_records SET lease_until = now() - interval '1 ms'",
                &[],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_closed_when_the_database_is_down() {
    let server = PostgresServer::start();
    let backend = store_at(&server.url()).await
        .with_operation_timeout(Duration::from_secs(2));
    backend.migrate().await.unwrap();
    acquire(&backend, "before").await;
    let url = server.url();
    drop(server);
    let error = backend
        .claim("after", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
    // Connecting is the tokio-postgres store's own (sqlx users bring a pool).
    let error = idempotent_postgres::PostgresBackend::connect(&url)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
    assert!(
        !error.to_string().contains("postgres@"),
        "no URL in errors: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_says_to_migrate() {
    let db = TestDb::new();
    let backend = store_at(db.url()).await
        .with_schema(db.schema());
    let error = backend
        .claim("k", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains(&format!("run {STORE}::migrate")),
        "{error}"
    );
}

#[idempotent(key = order, skip(store, runs), backend = store, scope = "tests::pg", wait = "30s")]
async fn ship(store: &Store, runs: &AtomicUsize, order: u32) -> Result<String, Error> {
    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(format!("order {order} shipped by run {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_attribute_runs_on_postgres_once_per_key() {
    let db = TestDb::new();
    let store = Arc::new(store(&db).await);
    let runs = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (store, runs) = (Arc::clone(&store), Arc::clone(&runs));
            tokio::spawn(async move { ship(&store, &runs, 7).await })
        })
        .collect();
    let mut results = HashSet::new();
    for caller in callers {
        results.insert(caller.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        results,
        HashSet::from(["order 7 shipped by run 1".to_owned()])
    );
}
}
