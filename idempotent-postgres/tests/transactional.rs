//! The transactional mode in one process: the body's writes and the record
//! commit together or not at all, whatever ends the call (an `Err`, a
//! panic, cancellation, a lost lease, a result too large, a connection
//! aborted in the body, in the completion or in the commit).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::{BackendErrorKind, Error, Idempotency};
use idempotent_postgres::tokio_postgres::Client;
use support::gate::{self, Gate, Point};
use support::TestDb;
use tokio::sync::{mpsc, Notify};

for_each_driver! {
#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error(transparent)]
    Idempotency(#[from] Error),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("declined")]
    Declined,
}

/// A test schema with the records table and an `effects` table, the body's
/// side effect.
struct Fixture {
    db: TestDb,
    store: Store,
    client: Client,
    /// `"schema".effects`: pooled connections do not use the test schema.
    effects: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let db = TestDb::new();
        let store = store(&db).await;
        let client = db.client().await;
        client
            .batch_execute("CREATE TABLE effects (key text NOT NULL, note text NOT NULL)")
            .await
            .unwrap();
        let effects = format!("\"{}\".effects", db.schema());
        Fixture {
            db,
            store,
            client,
            effects,
        }
    }

    fn insert(&self, note: &str) -> String {
        format!("INSERT INTO {} VALUES ('k', '{note}')", self.effects)
    }

    async fn effects(&self) -> Vec<String> {
        self.client
            .query("SELECT note FROM effects ORDER BY note", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// The state of the scope's only record, if any.
    async fn record(&self, scope: &str) -> Option<String> {
        self.client
            .query_opt(
                "SELECT state FROM idempotent_records WHERE key LIKE $1",
                &[&format!("{scope}:%")],
            )
            .await
            .unwrap()
            .map(|row| row.get(0))
    }

    /// Waits until the scope's record is gone (a background release).
    async fn until_released(&self, scope: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.record(scope).await.is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the claim was not released"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A call that writes `note` and returns it: the retry after a failure.
    async fn place(
        &self,
        store: &Store,
        scope: &'static str,
        note: &str,
    ) -> Result<String, OrderError> {
        let insert = self.insert(note);
        store
            .transactional()
            .scope(scope)
            .run("k", "order", async |tx| {
                tx.execute(insert.as_str(), &[]).await?;
                Ok(note.to_owned())
            })
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ok_commits_the_writes_with_the_record_and_retries_replay() {
    let f = Fixture::new().await;
    let runs = AtomicUsize::new(0);
    for _ in 0..3 {
        let insert = f.insert("placed");
        let count = format!("SELECT count(*) FROM {}", f.effects);
        let result: Result<String, OrderError> = f
            .store
            .transactional()
            .scope("orders")
            .run("k", &("sku-1", 2), async |tx| {
                runs.fetch_add(1, Ordering::SeqCst);
                tx.execute(insert.as_str(), &[]).await?;
                // The body sees its own writes, uncommitted yet.
                let written: i64 = tx.query_one(count.as_str(), &[]).await?.get(0);
                Ok(format!("order placed ({written} written)"))
            })
            .await;
        assert_eq!(result.unwrap(), "order placed (1 written)");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(f.effects().await, ["placed"]);
    assert_eq!(f.record("orders").await.as_deref(), Some("completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_err_rolls_the_writes_back_and_releases_the_key() {
    let f = Fixture::new().await;
    let insert = f.insert("declined");
    let result: Result<String, OrderError> = f
        .store
        .transactional()
        .scope("orders")
        .run("k", "order", async |tx| {
            tx.execute(insert.as_str(), &[]).await?;
            Err(OrderError::Declined)
        })
        .await;
    assert!(matches!(result, Err(OrderError::Declined)), "{result:?}");
    assert_eq!(f.effects().await, Vec::<String>::new());
    assert_eq!(
        f.record("orders").await,
        None,
        "released: a retry runs again"
    );
    assert_eq!(
        f.place(&f.store, "orders", "retried").await.unwrap(),
        "retried"
    );
    assert_eq!(f.effects().await, ["retried"]);
}

/// A body that ignores a failed statement and returns `Ok` cannot commit:
/// the failure aborted its transaction. The call says so, and nothing stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ok_after_an_ignored_statement_error_commits_nothing() {
    let f = Fixture::new().await;
    let insert = f.insert("written");
    let result: Result<String, OrderError> = f
        .store
        .transactional()
        .scope("orders")
        .run("k", "order", async |tx| {
            tx.execute(insert.as_str(), &[]).await?;
            let _ignored = tx.execute("SELECT * FROM no_such_table", &[]).await;
            Ok("looks fine".to_owned())
        })
        .await;
    match result {
        Err(OrderError::Idempotency(Error::Backend(error))) => {
            assert!(
                error
                    .to_string()
                    .contains("one of its statements had failed"),
                "{error}"
            );
        }
        other => panic!("expected a store error, got {other:?}"),
    }
    assert_eq!(f.effects().await, Vec::<String>::new());
    assert_eq!(f.record("orders").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_rolls_the_writes_back_and_releases_the_key() {
    let f = Arc::new(Fixture::new().await);
    let call = {
        let f = Arc::clone(&f);
        tokio::spawn(async move {
            let insert = f.insert("panicked");
            f.store
                .transactional()
                .scope("orders")
                .run("k", "order", async |tx| -> Result<String, OrderError> {
                    tx.execute(insert.as_str(), &[]).await?;
                    panic!("the body panics after its write");
                })
                .await
        })
    };
    assert!(call.await.unwrap_err().is_panic());
    f.until_released("orders").await;
    assert_eq!(f.effects().await, Vec::<String>::new());
    assert_eq!(
        f.place(&f.store, "orders", "retried").await.unwrap(),
        "retried"
    );
    assert_eq!(f.effects().await, ["retried"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_call_rolls_the_writes_back_and_releases_the_key() {
    let f = Arc::new(Fixture::new().await);
    let wrote = Arc::new(Notify::new());
    let call = {
        let (f, wrote) = (Arc::clone(&f), Arc::clone(&wrote));
        tokio::spawn(async move {
            let insert = f.insert("cancelled");
            f.store
                .transactional()
                .scope("orders")
                .run("k", "order", async |tx| -> Result<String, OrderError> {
                    tx.execute(insert.as_str(), &[]).await?;
                    wrote.notify_one();
                    std::future::pending().await
                })
                .await
        })
    };
    wrote.notified().await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    f.until_released("orders").await;
    assert_eq!(f.effects().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_are_refused_or_wait_for_the_result() {
    let f = Arc::new(Fixture::new().await);
    let (started, finish) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let holder = {
        let (f, started, finish) = (Arc::clone(&f), Arc::clone(&started), Arc::clone(&finish));
        tokio::spawn(async move {
            let insert = f.insert("holder");
            f.store
                .transactional()
                .scope("orders")
                .run("k", "order", async |tx| -> Result<String, OrderError> {
                    tx.execute(insert.as_str(), &[]).await?;
                    started.notify_one();
                    finish.notified().await;
                    Ok("holder's result".to_owned())
                })
                .await
        })
    };
    started.notified().await;
    let never = async |_: Tx<'_, '_>| -> Result<String, OrderError> {
        unreachable!("a duplicate never runs the body")
    };
    let duplicate = f
        .store
        .transactional()
        .scope("orders")
        .run("k", "order", never)
        .await;
    assert!(
        matches!(duplicate, Err(OrderError::Idempotency(Error::InProgress))),
        "{duplicate:?}"
    );
    let other_input = f
        .store
        .transactional()
        .scope("orders")
        .run("k", "other", never)
        .await;
    assert!(
        matches!(
            other_input,
            Err(OrderError::Idempotency(Error::PayloadMismatch))
        ),
        "{other_input:?}"
    );
    let waiter = {
        let f = Arc::clone(&f);
        tokio::spawn(async move {
            f.store
                .transactional()
                .scope("orders")
                .wait(Duration::from_secs(30))
                .run("k", "order", never)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    finish.notify_one();
    assert_eq!(holder.await.unwrap().unwrap(), "holder's result");
    assert_eq!(waiter.await.unwrap().unwrap(), "holder's result");
    assert_eq!(f.effects().await, ["holder"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_write_once() {
    let f = Arc::new(Fixture::new().await);
    let calls: Vec<_> = (0..50)
        .map(|call| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                let insert = f.insert(&format!("call {call}"));
                f.store
                    .transactional()
                    .scope("orders")
                    .wait(Duration::from_secs(30))
                    .run("k", "order", async |tx| -> Result<String, OrderError> {
                        tx.execute(insert.as_str(), &[]).await?;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(format!("written by call {call}"))
                    })
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap().unwrap());
    }
    let effects = f.effects().await;
    assert_eq!(effects.len(), 1, "{effects:?}");
    let writer = effects[0].trim_start_matches("call ");
    assert!(results
        .iter()
        .all(|result| *result == format!("written by call {writer}")));
}

/// A holder that stalls past its lease (its thread blocked, so it cannot
/// renew) is taken over; the new holder commits; when the stalled one wakes,
/// its next renewal finds the claim lost, its body is stopped and its writes
/// are rolled back. The table holds the new holder's write only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_holder_loses_its_writes_to_the_one_that_took_over() {
    let f = Arc::new(Fixture::new().await);
    let lease = Duration::from_millis(300);
    let finished = Arc::new(AtomicBool::new(false));
    let stalled = {
        let (f, finished) = (Arc::clone(&f), Arc::clone(&finished));
        tokio::spawn(async move {
            let insert = f.insert("stalled");
            f.store
                .transactional()
                .scope("orders")
                .lease(lease)
                .run("k", "order", async |tx| -> Result<String, OrderError> {
                    tx.execute(insert.as_str(), &[]).await?;
                    // Blocks the thread: no renewal runs meanwhile.
                    std::thread::sleep(Duration::from_millis(1200));
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    finished.store(true, Ordering::SeqCst);
                    Ok("stalled".to_owned())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let insert = f.insert("took over");
    // Waits, should the stalled holder's lease not have lapsed yet.
    let taker: Result<String, OrderError> = f
        .store
        .transactional()
        .scope("orders")
        .lease(lease)
        .wait(Duration::from_secs(10))
        .run("k", "order", async |tx| {
            tx.execute(insert.as_str(), &[]).await?;
            Ok("took over".to_owned())
        })
        .await;
    assert_eq!(taker.unwrap(), "took over");
    let stalled = stalled.await.unwrap();
    assert!(
        matches!(stalled, Err(OrderError::Idempotency(Error::InProgress))),
        "{stalled:?}"
    );
    assert!(
        !finished.load(Ordering::SeqCst),
        "the body was stopped at the lost renewal"
    );
    assert_eq!(f.effects().await, ["took over"]);
    assert_eq!(f.record("orders").await.as_deref(), Some("completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_are_shared_with_the_runtime() {
    let f = Fixture::new().await;
    let from_runtime = Idempotency::new(&f.store)
        .scope("shared-1")
        .run("k", &("sku", 1), || async {
            Ok::<_, Error>("from the runtime".to_owned())
        })
        .await
        .unwrap();
    let replayed: Result<String, OrderError> = f
        .store
        .transactional()
        .scope("shared-1")
        .run("k", &("sku", 1), async |_| {
            unreachable!("replayed, not run")
        })
        .await;
    assert_eq!(replayed.unwrap(), from_runtime);

    let insert = f.insert("transactional");
    let transactional: Result<u32, OrderError> = f
        .store
        .transactional()
        .scope("shared-2")
        .run("k", &("sku", 1), async |tx| {
            tx.execute(insert.as_str(), &[]).await?;
            Ok(42)
        })
        .await;
    let replayed = Idempotency::new(&f.store)
        .scope("shared-2")
        .run("k", &("sku", 1), || async {
            unreachable!("replayed, not run");
            #[allow(unreachable_code)]
            Ok::<u32, Error>(0)
        })
        .await
        .unwrap();
    assert_eq!(replayed, transactional.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_too_large_to_store_rolls_the_writes_back() {
    let f = Fixture::new().await;
    let store = f.store.clone().with_max_output_bytes(64);
    let insert = f.insert("too large");
    let result: Result<String, OrderError> = store
        .transactional()
        .scope("orders")
        .run("k", "order", async |tx| {
            tx.execute(insert.as_str(), &[]).await?;
            Ok("x".repeat(1000))
        })
        .await;
    match result {
        Err(OrderError::Idempotency(Error::Backend(error))) => {
            assert_eq!(error.kind(), BackendErrorKind::TooLarge, "{error}");
        }
        other => panic!("expected a TooLarge store error, got {other:?}"),
    }
    assert_eq!(f.effects().await, Vec::<String>::new());
    assert_eq!(f.record("orders").await, None);
}

/// The body's connection is aborted (the server ends its process) after the
/// body wrote: the body's next statement fails, nothing is committed, the
/// key is released, and a retry writes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_aborted_in_the_body_commits_nothing() {
    let f = Arc::new(Fixture::new().await);
    let (pid_tx, mut pid_rx) = mpsc::channel(1);
    let aborted = Arc::new(Notify::new());
    let call = {
        let (f, aborted) = (Arc::clone(&f), Arc::clone(&aborted));
        tokio::spawn(async move {
            let insert = f.insert("aborted");
            f.store
                .transactional()
                .scope("orders")
                .run("k", "order", async |tx| -> Result<String, OrderError> {
                    tx.execute(insert.as_str(), &[]).await?;
                    let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
                    pid_tx.send(pid).await.unwrap();
                    aborted.notified().await;
                    tx.execute("SELECT 1", &[]).await?;
                    Ok("unreachable".to_owned())
                })
                .await
        })
    };
    let pid = pid_rx.recv().await.unwrap();
    gate::terminate(&f.client, pid).await;
    aborted.notify_one();
    let result = call.await.unwrap();
    assert!(matches!(result, Err(OrderError::Database(_))), "{result:?}");
    assert_eq!(f.effects().await, Vec::<String>::new());
    assert_eq!(f.record("orders").await, None, "released");
    assert_eq!(
        f.place(&f.store, "orders", "retried").await.unwrap(),
        "retried"
    );
    assert_eq!(f.effects().await, ["retried"]);
}

/// The connection is aborted at a gate after the body: in the completion
/// statement (after the record's row was updated) or in `COMMIT`. Either way
/// the effect and the record are both absent or both present (here: absent,
/// the transaction never committed), the call fails with a store error (in
/// `COMMIT`: `CommitUnknown`, the body having run), and a retry writes
/// exactly once.
async fn abort_at(point: Point) {
    let f = Fixture::new().await;
    let name = format!("{}-{point:?}", f.db.schema());
    let store = store_named(&f.db, &name, 3);
    let gate = Gate::install(f.db.client().await, point, &f.db.records(), &f.effects).await;
    let call = {
        let (store, insert) = (store.clone(), f.insert("gated"));
        tokio::spawn(async move {
            store
                .transactional()
                .scope("orders")
                .run("k", "order", async |tx| -> Result<String, OrderError> {
                    tx.execute(insert.as_str(), &[]).await?;
                    Ok("gated".to_owned())
                })
                .await
        })
    };
    let pid = gate.wait_for_arrival(&name).await;
    gate::terminate(gate.client(), pid).await;
    gate.open().await;
    let result = call.await.unwrap();
    // Before the commit was sent nothing can have committed: a store error.
    // In the commit, whether it committed is unknown to the caller (the
    // database rolled it back here): `CommitUnknown`, whose retry is safe.
    match (point, &result) {
        (Point::Completion, Err(OrderError::Idempotency(Error::Backend(error))))
        | (Point::Commit, Err(OrderError::Idempotency(Error::CommitUnknown(error)))) => {
            assert_eq!(
                error.kind(),
                BackendErrorKind::Unavailable,
                "{point:?}: {error}"
            );
        }
        (_, other) => panic!("{point:?}: expected a store error, got {other:?}"),
    }
    let (effects, record) = (f.effects().await, f.record("orders").await);
    assert_eq!(effects, Vec::<String>::new(), "{point:?}");
    assert_eq!(
        record, None,
        "{point:?}: nothing committed, the claim released"
    );
    assert_eq!(
        f.place(&store, "orders", "retried").await.unwrap(),
        "retried"
    );
    assert_eq!(f.effects().await, ["retried"]);
    assert_eq!(f.record("orders").await.as_deref(), Some("completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_aborted_in_the_completion_commits_nothing() {
    abort_at(Point::Completion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_aborted_in_the_commit_commits_nothing() {
    abort_at(Point::Commit).await;
}

/// Bug 3 of issue 11, in the transactional builder: a zero lease or a ttl
/// no store can keep is refused before anything is claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_durations_are_refused_before_the_body_runs() {
    let f = Fixture::new().await;
    let ran = AtomicUsize::new(0);
    let calls: [fn(
        idempotent_postgres::Transactional<'_, Store>,
    ) -> idempotent_postgres::Transactional<'_, Store>; 3] = [
        |call| call.lease(Duration::ZERO),
        |call| call.ttl(Duration::MAX),
        |call| call.wait(Duration::ZERO),
    ];
    for setting in calls {
        let result: Result<String, OrderError> = setting(f.store.transactional().scope("orders"))
            .run("k", "order", async |_tx| {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok("placed".to_owned())
            })
            .await;
        assert!(
            matches!(
                result,
                Err(OrderError::Idempotency(Error::InvalidConfig { .. }))
            ),
            "{result:?}"
        );
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(f.record("orders").await, None, "nothing was claimed");
}

/// A key whose value is `None` is no key, as an HTTP request without an
/// `Idempotency-Key`: the body runs and its writes commit, without a record,
/// each time; the engine counts it in `stats()` like any call (the
/// transactional mode used to update no counter at all). With
/// `require_key` it is refused and the body does not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_none_key_runs_without_a_record_or_is_refused() {
    let f = Fixture::new().await;
    let before = idempotent_core::stats();
    for note in ["first", "second"] {
        let insert = f.insert(note);
        let placed: Result<String, OrderError> = f
            .store
            .transactional()
            .scope("orders")
            .run(&None::<String>, "order", async |tx| {
                tx.execute(insert.as_str(), &[]).await?;
                Ok(note.to_owned())
            })
            .await;
        assert_eq!(placed.unwrap(), note);
    }
    assert_eq!(f.effects().await, ["first", "second"], "each ran");
    assert_eq!(f.record("orders").await, None, "no record");
    // Only this test makes keyless calls in this binary.
    assert_eq!(idempotent_core::stats().keyless - before.keyless, 2);

    let refused: Result<String, OrderError> = f
        .store
        .transactional()
        .scope("orders")
        .require_key()
        .run(&None::<String>, "order", async |_tx| Ok("ran".to_owned()))
        .await;
    assert!(
        matches!(refused, Err(OrderError::Idempotency(Error::MissingKey))),
        "{refused:?}"
    );
    assert_eq!(f.effects().await, ["first", "second"]);
}
}
