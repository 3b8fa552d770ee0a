//! The transactional mode on tokio-postgres: the body gets the
//! `tokio_postgres::Transaction`.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use idempotent_core::backend::{Commit, Settled};
use idempotent_core::{BackendError, Error};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::{IsolationLevel, Transaction};

use super::commit::{self, failed, BodyTransaction};
use super::{Transactional, CONTEXT};
use crate::backend::{sql_type, to_sql};
use crate::driver::{Param, Settings};
use crate::error;
use crate::PostgresBackend;

impl PostgresBackend {
    /// Idempotent calls whose body writes to this database: the body gets a
    /// transaction, and its writes commit together with the stored result,
    /// or not at all.
    ///
    /// ```no_run
    /// use idempotent_postgres::{tokio_postgres, PostgresBackend};
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// enum OrderError {
    ///     #[error(transparent)]
    ///     Idempotency(#[from] idempotent_core::Error),
    ///     #[error(transparent)]
    ///     Database(#[from] tokio_postgres::Error),
    /// }
    ///
    /// async fn place(store: &PostgresBackend, key: &str, sku: &str) -> Result<i64, OrderError> {
    ///     store
    ///         .transactional()
    ///         .scope("orders::place")
    ///         .run(key, sku, async |tx| {
    ///             let row = tx
    ///                 .query_one("INSERT INTO orders (sku) VALUES ($1) RETURNING id", &[&sku])
    ///                 .await?;
    ///             Ok(row.get::<_, i64>(0))
    ///         })
    ///         .await
    /// }
    /// ```
    ///
    /// See [`Transactional::run`] for what happens at each step.
    pub fn transactional(&self) -> Transactional<'_, PostgresBackend> {
        Transactional::new(self)
    }
}

impl Transactional<'_, PostgresBackend> {
    /// Runs `body` at most once for `key` (with arguments `input`), in a
    /// transaction that also stores its result.
    ///
    /// 1. The key is claimed in its own statement, committed at once, so
    ///    concurrent duplicates see it: they get [`Error::InProgress`] (or
    ///    wait, with [`wait`](Self::wait)), a replay, or
    ///    [`Error::PayloadMismatch`], as in [`Idempotency::run`](idempotent_core::Idempotency::run) — it is the
    ///    same engine, with the same stats and tracing.
    /// 2. The body runs in a new `READ COMMITTED` transaction on a pooled
    ///    connection, while the claim is renewed on another.
    /// 3. On `Ok`, the same transaction turns the claim into the completed
    ///    record (fenced on the claim's token) and commits: the body's
    ///    writes and the record are stored together or not at all.
    ///
    /// So a crash (of this process, its connection, or the database) at any
    /// point before the commit leaves neither: the claim lapses after its
    /// lease and a retry runs the body again, its earlier writes never
    /// having happened. After the commit both are there and retries replay.
    ///
    /// Failures, and what they leave behind:
    ///
    /// - the body returns `Err`: the transaction rolls back, the claim is
    ///   released (a retry runs again), the `Err` is returned;
    /// - the body panics or the call is dropped: the same, in the background;
    /// - the claim was taken over (this call stalled past its lease): the
    ///   transaction rolls back as soon as a renewal or the completion finds
    ///   out, and the call gets [`Error::InProgress`]: the record will be the
    ///   other call's, and this call's writes never happened;
    /// - the result cannot be serialized, or exceeds the store's limit:
    ///   rolled back and released, [`Error::Codec`] or [`Error::Backend`];
    /// - the commit fails or does not answer: [`Error::CommitUnknown`];
    ///   whether it committed is unknown, but effect and record are one: a
    ///   retry either replays or runs the body again, never half of it.
    ///
    /// A key whose value is `None` runs the body in a transaction of its own
    /// without a record (or fails with [`Error::MissingKey`], see
    /// [`require_key`](Self::require_key)).
    ///
    /// The transaction's isolation is `READ COMMITTED`: the record's row is
    /// renewed concurrently, outside it, which a `REPEATABLE READ` or
    /// `SERIALIZABLE` transaction would refuse to update afterwards.
    pub async fn run<K, I, T, E, F>(self, key: &K, input: &I, body: F) -> Result<T, E>
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<T, E>,
    {
        let backend = self.backend;
        self.runtime()
            .prepare(key, input)
            .run_committing(async |record| transact(backend, record, body).await)
            .await
    }
}

/// Gets a connection and runs the body in a transaction on it. A
/// connection that failed is closed rather than pooled, so the release that
/// follows gets a working one.
async fn transact<T, E, F>(
    backend: &PostgresBackend,
    record: Option<Commit<'_>>,
    body: F,
) -> Settled<T, E>
where
    T: Serialize,
    F: AsyncFnOnce(&Transaction<'_>) -> Result<T, E>,
{
    let limit = backend.operation_timeout();
    let mut client = match tokio::time::timeout(limit, backend.pool.get()).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => return failed(error::pool(error, CONTEXT)),
        Err(_) => return failed(commit::timeout(limit)),
    };
    let (settled, healthy) = in_transaction(backend, &mut client, record, body).await;
    if !healthy {
        drop(deadpool_postgres::Object::take(client));
    }
    settled
}

async fn in_transaction<T, E, F>(
    backend: &PostgresBackend,
    client: &mut deadpool_postgres::Object,
    record: Option<Commit<'_>>,
    body: F,
) -> (Settled<T, E>, bool)
where
    T: Serialize,
    F: AsyncFnOnce(&Transaction<'_>) -> Result<T, E>,
{
    let transaction = match client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
    {
        Ok(transaction) => transaction,
        Err(error) => return (failed(error::database(error, CONTEXT)), false),
    };
    // Renewal is the engine's: if it finds the claim lost, it drops this
    // future, and the dropped transaction rolls back.
    let outcome = body(&transaction).await;
    commit::finish(
        &backend.settings,
        "PostgresBackend::with_max_output_bytes",
        Body(transaction),
        outcome,
        record,
    )
    .await
}

struct Body<'a>(deadpool_postgres::Transaction<'a>);

#[async_trait]
impl BodyTransaction for Body<'_> {
    async fn complete(
        &mut self,
        settings: &Settings,
        params: &[Param<'_>],
    ) -> Result<u64, BackendError> {
        let sql = &settings.statements.complete;
        let transaction = &self.0;
        let changed = async {
            if settings.prepared_statements {
                let statement = transaction.prepare_cached(&sql.text).await?;
                transaction
                    .execute_raw(&statement, params.iter().map(to_sql))
                    .await
            } else {
                // Unnamed, for a pooler in transaction mode; a completed
                // record is one row, so the rows returned say the count.
                let typed = params.iter().map(|param| (to_sql(param), sql_type(param)));
                let rows = transaction.query_typed_raw(&sql.text, typed).await?;
                let mut rows = std::pin::pin!(rows);
                while rows.try_next().await?.is_some() {}
                Ok(rows.rows_affected().unwrap_or(0))
            }
        };
        changed.await.map_err(|error| {
            if error.code().map(|code| code.code()) == Some(commit::ABORTED) {
                commit::body_ignored_an_error(error)
            } else {
                error::database(error, CONTEXT)
            }
        })
    }

    async fn commit(self) -> Result<(), BackendError> {
        self.0
            .commit()
            .await
            .map_err(|error| error::database(error, CONTEXT))
    }

    async fn rollback(self) -> bool {
        match self.0.rollback().await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(error = %idempotent_core::backend::ErrorChain(&error), "rollback failed; the transaction ends with its connection");
                false
            }
        }
    }
}
