//! The store behind PgBouncer in transaction pooling mode, where each
//! transaction may run on another server connection: a statement the store
//! prepared is missing on the next one (it prepares it there again),
//! unnamed ones always work.
//!
//! Needs the `pgbouncer` binary (`scripts/test` installs it). Without it
//! the tests say so loudly and pass, except under CI (`CI` set), where a
//! missing binary fails them.

mod support;

use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::Backend;
use idempotent_postgres::PostgresBackend;
use idempotent_test_support::postgres::{PgBouncer, PostgresServer};

const LONG: Duration = Duration::from_secs(60);

fn fp(value: &str) -> Fingerprint {
    Fingerprint::of(value).unwrap()
}

/// A private server behind a private PgBouncer with `pool_size` server
/// connections, or `None` (said loudly) when pgbouncer is not installed.
fn bouncer(pool_size: u32) -> Option<(PostgresServer, PgBouncer)> {
    if PgBouncer::binary().is_none() {
        let message = "pgbouncer is not installed (apt-get install -y pgbouncer; scripts/test \
                       installs it): the PgBouncer tests did NOT run";
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("\n!!!!! SKIPPED: {message} !!!!!\n");
        return None;
    }
    let server = PostgresServer::start();
    let bouncer = PgBouncer::start(&server, pool_size);
    Some((server, bouncer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_missing_on_pgbouncer_s_server_connection_is_prepared_there_again() {
    let Some((server, bouncer)) = bouncer(2) else {
        return;
    };
    PostgresBackend::connect(&server.url())
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let store = PostgresBackend::connect(&bouncer.url()).await.unwrap();
    // Prepared on the one server connection PgBouncer has opened so far.
    store
        .claim("a", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap();
    // Another client's transaction holds that server connection, so the
    // store's next statement runs on a new one, which never saw it: its
    // `EXECUTE` fails there, having run nothing, and the store prepares
    // the statement and runs it again.
    let other = support::connect(&bouncer.url()).await;
    other.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let claimed = store
        .claim("b", &fp("a"), FencingToken::generate(), LONG)
        .await;
    let on_the_new_connection: i64 = other
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    other.batch_execute("COMMIT").await.unwrap();
    assert!(
        on_the_new_connection >= 2,
        "PgBouncer opened a second server connection"
    );
    match claimed.unwrap() {
        ClaimOutcome::Acquired {
            took_over: false, ..
        } => {}
        other => panic!("expected a fresh claim, got {other:?}"),
    }
    // Once, not twice: the claim applied one row.
    let direct = support::connect(&server.url()).await;
    let rows: i64 = direct
        .query_one(
            "SELECT count(*) FROM idempotent_records WHERE key = 'b'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_work_behind_pgbouncer_in_transaction_mode() {
    let Some((_server, bouncer)) = bouncer(2) else {
        return;
    };
    let store = PostgresBackend::connect(&bouncer.url())
        .await
        .unwrap()
        .with_prepared_statements(false);
    // Through the pooler too: migrate runs in one transaction.
    store.migrate().await.unwrap();
    store
        .claim("a", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap();
    // The scenario that breaks named statements: the next statement runs
    // on a server connection that is new to it.
    let other = support::connect(&bouncer.url()).await;
    other.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let token = FencingToken::generate();
    assert!(matches!(
        store.claim("b", &fp("a"), token, LONG).await.unwrap(),
        ClaimOutcome::Acquired { .. }
    ));
    other.batch_execute("COMMIT").await.unwrap();

    // Two pools (two app processes) sharing two server connections, every
    // operation on whichever one is free.
    let stores = [
        store.clone(),
        PostgresBackend::connect(&bouncer.url())
            .await
            .unwrap()
            .with_prepared_statements(false),
    ];
    let calls: Vec<_> = (0..40)
        .map(|call| {
            let store = stores[call % 2].clone();
            tokio::spawn(async move {
                let key = format!("key-{}", call / 2);
                match store
                    .claim(&key, &fp("a"), FencingToken::generate(), LONG)
                    .await
                    .unwrap()
                {
                    ClaimOutcome::Acquired { token, .. } => {
                        store.renew(&key, token, LONG).await.unwrap();
                        store.complete(&key, token, b"out", LONG).await.unwrap();
                        1
                    }
                    ClaimOutcome::InProgress { .. } | ClaimOutcome::Completed { .. } => 0,
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut acquired = 0;
    for call in calls {
        acquired += call.await.unwrap();
    }
    assert_eq!(acquired, 20, "one winner per key");
    for key in 0..20 {
        assert_eq!(
            stores[key % 2]
                .claim(
                    &format!("key-{key}"),
                    &fp("a"),
                    FencingToken::generate(),
                    LONG
                )
                .await
                .unwrap(),
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
    }
    assert_eq!(
        store.release("b", token).await.unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(store.purge_expired(100).await.unwrap(), 0);

    // The transactional mode: its completion runs unnamed, in the body's
    // transaction.
    let committed: Result<i64, idempotent_core::Error> = store
        .transactional()
        .run("tx", &1, async |tx| {
            let row = tx
                .query_typed_one("SELECT 41::bigint + 1", &[])
                .await
                .unwrap();
            Ok(row.get(0))
        })
        .await;
    assert_eq!(committed.unwrap(), 42);
    let replayed: Result<i64, idempotent_core::Error> = store
        .transactional()
        .run("tx", &1, async |_tx| panic!("replayed, not run"))
        .await;
    assert_eq!(replayed.unwrap(), 42);
}

/// The sqlx store without prepared statements: every operation is one
/// simple query with its statement's text, and the transactional mode's
/// completion an unnamed statement, so any server connection will do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlx_store_unprepared_works_behind_pgbouncer_in_transaction_mode() {
    use idempotent_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use idempotent_postgres::SqlxBackend;
    let Some((_server, bouncer)) = bouncer(2) else {
        return;
    };
    let connect = || async {
        // PgBouncer refuses startup parameters it does not know, and sqlx
        // sends `extra_float_digits` unless told not to.
        let options: PgConnectOptions = bouncer.url().parse().unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.extra_float_digits(None))
            .await
            .unwrap();
        SqlxBackend::new(pool).with_prepared_statements(false)
    };
    let store = connect().await;
    store.migrate().await.unwrap();
    store
        .claim("a", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap();
    // The next statement runs on a server connection new to the store.
    let other = support::connect(&bouncer.url()).await;
    other.batch_execute("BEGIN; SELECT 1").await.unwrap();
    assert!(matches!(
        store
            .claim("b", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap(),
        ClaimOutcome::Acquired { .. }
    ));
    other.batch_execute("COMMIT").await.unwrap();

    let stores = [store.clone(), connect().await];
    let calls: Vec<_> = (0..40)
        .map(|call| {
            let store = stores[call % 2].clone();
            tokio::spawn(async move {
                let key = format!("key-{}", call / 2);
                match store
                    .claim(&key, &fp("a"), FencingToken::generate(), LONG)
                    .await
                    .unwrap()
                {
                    ClaimOutcome::Acquired { token, .. } => {
                        store.renew(&key, token, LONG).await.unwrap();
                        store.complete(&key, token, b"out", LONG).await.unwrap();
                        1
                    }
                    ClaimOutcome::InProgress { .. } | ClaimOutcome::Completed { .. } => 0,
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut acquired = 0;
    for call in calls {
        acquired += call.await.unwrap();
    }
    assert_eq!(acquired, 20, "one winner per key");

    let committed: Result<i64, idempotent_core::Error> = store
        .transactional()
        .run("tx", &1, async |tx| {
            let sum: i64 = idempotent_postgres::sqlx::query_scalar("SELECT 41::bigint + 1")
                .persistent(false)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            Ok(sum)
        })
        .await;
    assert_eq!(committed.unwrap(), 42);
    let replayed: Result<i64, idempotent_core::Error> = store
        .transactional()
        .run("tx", &1, async |_tx| panic!("replayed, not run"))
        .await;
    assert_eq!(replayed.unwrap(), 42);
}
