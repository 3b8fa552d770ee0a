//! The transactional mode on sqlx: the body gets the transaction's
//! `&mut sqlx::PgConnection`, to run its own queries on.

use async_trait::async_trait;
use idempotent_core::backend::{Commit, Settled};
use idempotent_core::{BackendError, Error};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, Transaction};

use super::commit::{self, failed, BodyTransaction};
use super::{Transactional, CONTEXT};
use crate::driver::{Param, Settings};
use crate::error;
use crate::SqlxBackend;

impl SqlxBackend {
    /// Idempotent calls whose body writes to this database: the body gets
    /// the connection of a transaction, and its writes commit together with
    /// the stored result, or not at all.
    ///
    /// ```no_run
    /// use idempotent_postgres::SqlxBackend;
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// enum OrderError {
    ///     #[error(transparent)]
    ///     Idempotency(#[from] idempotent_core::Error),
    ///     #[error(transparent)]
    ///     Database(#[from] sqlx::Error),
    /// }
    ///
    /// async fn place(store: &SqlxBackend, key: &str, sku: &str) -> Result<i64, OrderError> {
    ///     store
    ///         .transactional()
    ///         .scope("orders::place")
    ///         .run(key, sku, async |tx| {
    ///             let id: i64 = sqlx::query_scalar("INSERT INTO orders (sku) VALUES ($1) RETURNING id")
    ///                 .bind(sku)
    ///                 .fetch_one(&mut *tx)
    ///                 .await?;
    ///             Ok(id)
    ///         })
    ///         .await
    /// }
    /// ```
    ///
    /// The steps and failures are those of the
    /// [`PostgresBackend`'s transactional mode](crate::PostgresBackend::transactional),
    /// on the same engine.
    pub fn transactional(&self) -> Transactional<'_, SqlxBackend> {
        Transactional::new(self)
    }
}

impl Transactional<'_, SqlxBackend> {
    /// Runs `body` at most once for `key` (with arguments `input`), in a
    /// `READ COMMITTED` transaction that also stores its result: the body
    /// runs its queries on the `&mut PgConnection` it is given (`&mut *tx`
    /// as the executor), and they commit with the record or not at all.
    ///
    /// Claiming, waiting, replaying, renewal and every way a call can fail
    /// are as for the tokio-postgres store's `run`: the same engine. A
    /// commit whose outcome is unknown is [`Error::CommitUnknown`].
    pub async fn run<K, I, T, E, F>(self, key: &K, input: &I, body: F) -> Result<T, E>
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
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
    backend: &SqlxBackend,
    record: Option<Commit<'_>>,
    body: F,
) -> Settled<T, E>
where
    T: Serialize,
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
{
    let limit = backend.operation_timeout();
    let mut connection = match tokio::time::timeout(limit, backend.pool.acquire()).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return failed(error::sqlx(error, CONTEXT)),
        Err(_) => return failed(commit::timeout(limit)),
    };
    let (settled, healthy) = in_transaction(backend, &mut connection, record, body).await;
    if !healthy {
        connection.close_on_drop();
    }
    settled
}

async fn in_transaction<T, E, F>(
    backend: &SqlxBackend,
    connection: &mut PoolConnection<Postgres>,
    record: Option<Commit<'_>>,
    body: F,
) -> (Settled<T, E>, bool)
where
    T: Serialize,
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
{
    let begin = (**connection).begin_with("BEGIN ISOLATION LEVEL READ COMMITTED");
    let mut transaction = match begin.await {
        Ok(transaction) => transaction,
        Err(error) => return (failed(error::sqlx(error, CONTEXT)), false),
    };
    // Renewal is the engine's: if it finds the claim lost, it drops this
    // future, and the dropped transaction rolls back.
    let outcome = body(&mut transaction).await;
    commit::finish(
        &backend.settings,
        "SqlxBackend::with_max_output_bytes",
        Body(transaction),
        outcome,
        record,
    )
    .await
}

struct Body<'a>(Transaction<'a, Postgres>);

#[async_trait]
impl BodyTransaction for Body<'_> {
    async fn complete(
        &mut self,
        settings: &Settings,
        params: &[Param<'_>],
    ) -> Result<u64, BackendError> {
        let sql = &settings.statements.complete;
        let mut query =
            sqlx::query(AssertSqlSafe(sql.text.clone())).persistent(settings.prepared_statements);
        for param in params {
            query = match *param {
                Param::Text(text) => query.bind(text),
                Param::Bytes(bytes) => query.bind(bytes),
                Param::BigInt(int) => query.bind(int),
            };
        }
        match query.execute(&mut *self.0).await {
            Ok(done) => Ok(done.rows_affected()),
            Err(error) => {
                let aborted = error
                    .as_database_error()
                    .and_then(|db| db.code())
                    .is_some_and(|code| code == commit::ABORTED);
                Err(if aborted {
                    commit::body_ignored_an_error(error)
                } else {
                    error::sqlx(error, CONTEXT)
                })
            }
        }
    }

    async fn commit(self) -> Result<(), BackendError> {
        self.0
            .commit()
            .await
            .map_err(|error| error::sqlx(error, CONTEXT))
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
