//! Issue 13, "Stores hardened": an operation that timed out holds nothing,
//! long names are refused or fit, errors say the server's reason once, and
//! a replay writes nothing.

mod support;

use std::time::{Duration, Instant};

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, BackendErrorKind};
use idempotent_test_support::postgres::PostgresServer;
use support::TestDb;

const LONG: Duration = Duration::from_secs(60);

fn fp(value: &str) -> Fingerprint {
    Fingerprint::of(value).unwrap()
}

/// Waits until no connection named `application_name` runs a statement.
async fn wait_until_idle(client: &idempotent_postgres::tokio_postgres::Client, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let busy: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE application_name = $1 AND state <> 'idle'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if busy == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections of {name} still busy after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every message of `error`'s chain, outermost first.
fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut messages = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    messages
}

/// No message of the chain repeats the one below it, so printing the chain
/// (`{:#}` in anyhow, or a loop over `source()`) says everything once.
fn assert_said_once(error: &(dyn std::error::Error + 'static)) {
    let messages = chain(error);
    for pair in messages.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} prints its source {:?} too; chain: {messages:#?}",
            pair[0],
            pair[1]
        );
    }
}

for_each_driver! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_timed_out_on_a_locked_table_holds_nothing() {
    let db = TestDb::new();
    store(&db).await; // migrated
    let name = format!("{}-timeout", db.schema());
    let backend = store_named(&db, &name, 1).with_operation_timeout(Duration::from_secs(1));
    // The statement is prepared on the connection already, as it is on a
    // busy pool: only its execution waits for the lock.
    backend
        .claim("warm-up", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap();
    let locker = db.client().await;
    let observer = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE idempotent_records IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let error = backend
        .claim("k", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
    // Told "failed, nothing ran": the server must not run the claim later.
    // Wait past the operation timeout, so a server-side bound has fired.
    tokio::time::sleep(Duration::from_millis(500)).await;
    locker.batch_execute("COMMIT").await.unwrap();
    wait_until_idle(&observer, &name).await;
    let rows: i64 = observer
        .query_one(
            "SELECT count(*) FROM idempotent_records WHERE key = 'k'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the abandoned claim was applied after all");
    match backend
        .claim("k", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired {
            took_over: false, ..
        } => {}
        other => panic!("the retry must run, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_that_timed_out_left_nothing_running_on_the_server() {
    let db = TestDb::new();
    let setup = store(&db).await;
    let token = FencingToken::generate();
    setup.claim("k", &fp("a"), token, LONG).await.unwrap();
    let name = format!("{}-timeouts", db.schema());
    let backend = store_named(&db, &name, 1).with_operation_timeout(Duration::from_millis(300));
    // Prepared before the lock, as on a busy pool.
    let warm = FencingToken::generate();
    backend
        .claim("warm-up", &fp("a"), warm, LONG)
        .await
        .unwrap();
    backend.renew("warm-up", warm, LONG).await.unwrap();
    backend.release("warm-up", warm).await.unwrap();
    backend.purge_expired(10).await.unwrap();
    let locker = db.client().await;
    let observer = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE idempotent_records IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let renew = backend.renew("k", token, LONG).await.unwrap_err();
    let release = backend.release("k", token).await.unwrap_err();
    let purge = backend.purge_expired(10).await.unwrap_err();
    for error in [renew, release, purge] {
        assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
    }
    // Well past the bound, nothing of the store's waits on the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = $1 AND state <> 'idle'",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    locker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(waiting, 0, "statements still waiting on the server");
    // The release did not apply later either: the claim is still there.
    assert_eq!(
        setup.renew("k", token, LONG).await.unwrap(),
        CasOutcome::Applied
    );
}

/// 63 bytes: the longest identifier PostgreSQL keeps whole.
fn name_of(len: usize) -> String {
    "t".repeat(len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_name_of_63_bytes_gets_its_expiry_index() {
    let db = TestDb::new();
    // Multi-byte characters: the limit is in bytes, and a derived name must
    // not cut one in half.
    for table in [name_of(63), format!("{}é", name_of(61)), name_of(53)] {
        let backend = store_at(db.url()).await
            .with_schema(db.schema())
            .with_table(&table);
        backend.migrate().await.unwrap();
        let client = db.client().await;
        let indexes: Vec<String> = client
            .query(
                "SELECT indexname FROM pg_indexes
                  WHERE schemaname = $1 AND tablename = $2 AND indexdef LIKE '%(expires_at)'",
                &[&db.schema(), &table],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(indexes.len(), 1, "{table}: no expiry index: {indexes:?}");
        assert!(indexes[0].len() <= 63, "{indexes:?}");
        assert!(
            backend.migration_sql().contains(&indexes[0]),
            "the DDL names the index that exists"
        );
        let token = FencingToken::generate();
        backend.claim("k", &fp("a"), token, LONG).await.unwrap();
        assert_eq!(
            backend.purge_expired(10).await.unwrap(),
            0,
            "the table works"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_over_63_bytes_are_refused_with_a_clear_error() {
    let db = TestDb::new();
    let long_table = store_at(db.url()).await
        .with_schema(db.schema())
        .with_table(name_of(64));
    let long_schema = store_at(db.url()).await
        .with_schema(format!("{}{}", db.schema(), name_of(40)));
    for (backend, what) in [(long_table, "table"), (long_schema, "schema")] {
        let error = backend.migrate().await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("{what} name")) && message.contains("63 bytes"),
            "{message}"
        );
        let error = backend
            .claim("k", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("63 bytes"), "{error}");
    }
    let client = db.client().await;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname LIKE $1",
            &[&format!("{}%", db.schema())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "nothing was created under a truncated name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_says_the_servers_reason_once() {
    let db = TestDb::new();
    let role = format!("{}_nobody", db.schema());
    let client = db.client().await;
    client
        .batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN"))
        .await
        .unwrap();
    // A schema of its own that does not exist: creating it needs the
    // CREATE privilege on the database, which the role lacks.
    let backend = store_as(&db, &role, &format!("{}_new", db.schema()));
    let error = backend.migrate().await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("permission denied") && message.contains("42501"),
        "the server's reason and code are in the message: {message}"
    );
    assert_said_once(&error);
    let wrapped = idempotent_core::Error::from(error);
    assert_said_once(&wrapped);
    drop(backend);
    client
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_statement_says_the_servers_reason() {
    let db = TestDb::new();
    let backend = store(&db).await;
    let client = db.client().await;
    // A constraint the server enforces: the store's statement fails on it.
    client
        .batch_execute(
            "ALTER TABLE idempotent_records ADD CONSTRAINT short_keys CHECK (length(key) < 5)",
        )
        .await
        .unwrap();
    let error = backend
        .claim("too long", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("short_keys") && message.contains("23514"),
        "{message}"
    );
    assert_said_once(&error);
}

/// Where the server inserts its next WAL record, in bytes. The insert
/// position, not `pg_current_wal_lsn()` (the write position): with
/// `synchronous_commit = off`, as on the test servers, the write position
/// trails, and would count WAL written before the measurement began.
async fn wal_position(client: &idempotent_postgres::tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// On a server of its own, so no other test writes WAL meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_completed_record_writes_no_wal() {
    const REPLAYS: usize = 1000;
    let server = PostgresServer::start();
    let backend = store_at(&server.url()).await;
    backend.migrate().await.unwrap();
    let token = FencingToken::generate();
    backend.claim("k", &fp("a"), token, LONG).await.unwrap();
    backend.complete("k", token, b"out", LONG).await.unwrap();
    let client = support::connect(&server.url()).await;
    // Settle what the first reads of the new row write (hint bits need no
    // WAL here, but a first access may prune), then measure.
    for _ in 0..10 {
        backend
            .claim("k", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap();
    }
    let before = wal_position(&client).await;
    for _ in 0..REPLAYS {
        let outcome = backend
            .claim("k", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
    }
    let written = wal_position(&client).await - before;
    eprintln!("WAL written by {REPLAYS} replays: {written} bytes");
    // Not zero: the server logs a little on its own (a running-transactions
    // record every 15 s while there is activity, a checkpoint's records), a
    // few hundred bytes at most, against about 100 bytes per replay that
    // locks the row.
    assert!(
        written < 1024,
        "{REPLAYS} replays wrote {written} bytes of WAL ({} per replay)",
        written / REPLAYS as i64
    );
}
}

/// The sqlx store prepares its statements with SQL `PREPARE` once per
/// connection, prepares them again on a connection whose session was reset
/// (`DEALLOCATE ALL`, as a pooler's reset query does), and leaves none when
/// told not to prepare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlx_store_prepares_once_per_connection_or_not_at_all() {
    use idempotent_postgres::sqlx;
    let db = TestDb::new();
    support::drivers::on_sqlx::store(&db).await; // migrated
    let name = format!("{}-prepared", db.schema());
    let store = support::drivers::on_sqlx::store_named(&db, &name, 1);
    let prepared = async |store: &idempotent_postgres::SqlxBackend| -> Vec<String> {
        let mut connection = store.pool().acquire().await.unwrap();
        sqlx::query_scalar(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'idempotent_%' ORDER BY 1",
        )
        .persistent(false)
        .fetch_all(&mut *connection)
        .await
        .unwrap()
    };
    let token = FencingToken::generate();
    store.claim("k", &fp("a"), token, LONG).await.unwrap();
    store.renew("k", token, LONG).await.unwrap();
    let names = prepared(&store).await;
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .any(|name| name.starts_with("idempotent_claim_")),
        "{names:?}"
    );

    {
        let mut connection = store.pool().acquire().await.unwrap();
        sqlx::raw_sql("DEALLOCATE ALL")
            .execute(&mut *connection)
            .await
            .unwrap();
    }
    assert_eq!(
        store.complete("k", token, b"out", LONG).await.unwrap(),
        CasOutcome::Applied
    );
    assert_eq!(
        store
            .claim("k", &fp("a"), FencingToken::generate(), LONG)
            .await
            .unwrap(),
        ClaimOutcome::Completed {
            output: b"out".to_vec()
        }
    );
    assert_eq!(
        prepared(&store).await.len(),
        2,
        "prepared again after the reset"
    );

    let unprepared = support::drivers::on_sqlx::store_named(&db, &format!("{name}-not"), 1)
        .with_prepared_statements(false);
    let token = FencingToken::generate();
    unprepared.claim("j", &fp("a"), token, LONG).await.unwrap();
    unprepared.complete("j", token, b"out", LONG).await.unwrap();
    assert_eq!(prepared(&unprepared).await, Vec::<String>::new());
}

/// Claims, completes and replays keys with quotes and backslashes (each
/// prefixed by `prefix`) and an output of every byte, which must come back
/// as it was; a key with a NUL is refused with a clear error.
async fn round_trip_awkward_values(store: &impl Backend, prefix: &str) {
    let output: Vec<u8> = (0..=255).chain(*b"\\\\x00'").collect();
    for key in [
        r"a'b",
        r"back\slash\",
        r"\x41",
        "quote'' \' end\\",
        "é\u{1F600}",
    ] {
        let key = format!("{prefix}:{key}");
        let token = FencingToken::generate();
        match store.claim(&key, &fp("a"), token, LONG).await.unwrap() {
            ClaimOutcome::Acquired { .. } => {}
            other => panic!("{key}: {other:?}"),
        }
        assert_eq!(
            store.complete(&key, token, &output, LONG).await.unwrap(),
            CasOutcome::Applied
        );
        assert_eq!(
            store
                .claim(&key, &fp("a"), FencingToken::generate(), LONG)
                .await
                .unwrap(),
            ClaimOutcome::Completed {
                output: output.clone()
            },
            "{key}"
        );
    }
    let nul = store
        .claim("nul\0key", &fp("a"), FencingToken::generate(), LONG)
        .await
        .unwrap_err();
    assert!(nul.to_string().contains("NUL"), "{nul}");
}

/// The sqlx store writes parameters into its queries' text: keys and
/// outputs with quotes, backslashes and every byte come back as they were,
/// also on a session with `standard_conforming_strings = off` (where a
/// backslash in a plain string literal is an escape) and `bytea_output =
/// escape` (which sqlx's own text decoding of `bytea` refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlx_store_s_literals_survive_any_string_setting() {
    use idempotent_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let db = TestDb::new();
    support::drivers::on_sqlx::store(&db).await; // migrated
    for (setting, bytea) in [("on", "hex"), ("off", "escape")] {
        let options: PgConnectOptions = db.url().parse().unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.options([
                ("standard_conforming_strings", setting),
                ("bytea_output", bytea),
            ]))
            .await
            .unwrap();
        let store = idempotent_postgres::SqlxBackend::new(pool).with_schema(db.schema());
        round_trip_awkward_values(&store, setting).await;
    }
    // The keys are stored as sent, read back by another driver.
    let client = db.client().await;
    let stored: Vec<String> = client
        .query(
            "SELECT key FROM idempotent_records WHERE key LIKE 'o%' ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(stored.contains(&r"off:a'b".to_owned()), "{stored:?}");
    assert!(stored.contains(&r"on:back\slash\".to_owned()), "{stored:?}");
}

/// The tokio-postgres store writes its parameters into the query as
/// literals and reads its rows as text: keys with quotes and backslashes and
/// outputs of every byte come back as they were, whatever the session's
/// `standard_conforming_strings` (a backslash in a plain string literal is
/// an escape when it is off) and `bytea_output` (`escape` writes bytes as
/// octal and printable ASCII instead of hex).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokio_postgres_store_s_literals_and_text_rows_survive_any_setting() {
    use idempotent_postgres::deadpool_postgres::{Manager, Pool};
    use idempotent_postgres::tokio_postgres::{Config, NoTls};
    let db = TestDb::new();
    db.backend().await; // migrated
    for (strings, bytea) in [("on", "hex"), ("off", "escape"), ("on", "escape")] {
        let mut config: Config = db.url().parse().unwrap();
        config.options(format!(
            "-c standard_conforming_strings={strings} -c bytea_output={bytea}"
        ));
        let pool = Pool::builder(Manager::new(config, NoTls))
            .max_size(1)
            .build()
            .unwrap();
        let store = idempotent_postgres::PostgresBackend::from_pool(pool).with_schema(db.schema());
        round_trip_awkward_values(&store, &format!("{strings}-{bytea}")).await;
    }
    // The keys are stored as sent.
    let client = db.client().await;
    let stored: Vec<String> = client
        .query("SELECT key FROM idempotent_records", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(stored.contains(&r"off-escape:a'b".to_owned()), "{stored:?}");
    assert!(
        stored.contains(&r"on-hex:back\slash\".to_owned()),
        "{stored:?}"
    );
}
