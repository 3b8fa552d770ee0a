//! The transaction of a claimed call: the body, then the completion and the
//! commit, and how each way it can end settles the call.

use futures_util::TryStreamExt;
use idempotent_core::backend::{stored_result, CasOutcome, Commit, Settled};
use idempotent_core::{BackendError, BackendErrorKind, CodecError, Error};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Transaction};

use super::CONTEXT;
use crate::error;
use crate::operations::{cas_outcome, token_param};
use crate::sql::millis;
use crate::PostgresBackend;

/// Gets a connection and runs [`in_transaction`] on it. A connection that
/// failed is closed rather than pooled, so the release that follows gets a
/// working one.
pub(super) async fn transact<T, E, F>(
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
        Err(_) => return failed(error::timeout(CONTEXT, limit)),
    };
    let (settled, healthy) = in_transaction(backend, &mut client, record, body).await;
    if !healthy {
        drop(deadpool_postgres::Object::take(client));
    }
    settled
}

/// Runs the body in a transaction on `client` and commits its writes with
/// the record (none for a call without a key); the flag says whether the
/// connection still works.
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
    let limit = backend.operation_timeout();
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
    let value = match body(&transaction).await {
        Ok(value) => value,
        Err(error) => {
            let healthy = rollback(transaction).await;
            return (Settled::BodyFailed(error), healthy);
        }
    };
    if let Some(record) = record {
        let output = match stored_result::encode_ok(&value) {
            Ok(output) => output,
            Err(error) => {
                let healthy = rollback(transaction).await;
                let error = CodecError::new(
                    "the result failed to serialize; its transaction was rolled back",
                )
                .with_source(error);
                return (Settled::NotCommitted(Error::Codec(error)), healthy);
            }
        };
        if let Err(error) = backend.check_output_size(&output) {
            let healthy = rollback(transaction).await;
            return (failed(error), healthy);
        }

        // The completion, fenced on the token, inside the body's transaction:
        // from here the row is locked, so nobody can take the claim over
        // before the commit (a claim waits for the lock, then sees the
        // completed record or, after a rollback, the claim).
        let complete = async {
            let sql = &backend.statements.complete;
            let (key, token, ttl) = (
                record.key(),
                token_param(record.token()),
                millis(record.ttl()),
            );
            let params: [&(dyn ToSql + Sync); 4] = [&key, &token, &output, &ttl];
            if backend.prepared_statements {
                let statement = transaction.prepare_cached(&sql.text).await?;
                transaction.execute(&statement, &params).await
            } else {
                // Unnamed, for a pooler in transaction mode; a completed
                // record is one row, so the rows returned say the count.
                let typed = params.into_iter().zip(sql.types.iter().cloned());
                let rows = transaction.query_typed_raw(&sql.text, typed).await?;
                let mut rows = std::pin::pin!(rows);
                while rows.try_next().await?.is_some() {}
                Ok(rows.rows_affected().unwrap_or(0))
            }
        };
        let completed = match tokio::time::timeout(limit, complete).await {
            Ok(Ok(changed)) => cas_outcome(changed),
            Ok(Err(error)) => {
                let healthy = rollback(transaction).await;
                return (failed(completion_failed(error)), healthy);
            }
            Err(_) => {
                rollback(transaction).await;
                return (failed(error::timeout(CONTEXT, limit)), false);
            }
        };
        if completed == CasOutcome::Fenced {
            let healthy = rollback(transaction).await;
            return (Settled::Fenced, healthy);
        }
    }
    match tokio::time::timeout(limit, transaction.commit()).await {
        Ok(Ok(())) => (Settled::Committed(value), true),
        Ok(Err(error)) => (Settled::Unknown(error::database(error, CONTEXT)), false),
        Err(_) => (Settled::Unknown(error::timeout(CONTEXT, limit)), false),
    }
}

/// Rolls back, best effort, and says whether the connection still works:
/// if it is gone, the server has rolled the transaction back already.
async fn rollback(transaction: deadpool_postgres::Transaction<'_>) -> bool {
    match transaction.rollback().await {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(error = %idempotent_core::backend::ErrorChain(&error), "rollback failed; the transaction ends with its connection");
            false
        }
    }
}

fn failed<T, E>(error: BackendError) -> Settled<T, E> {
    Settled::NotCommitted(Error::Backend(error))
}

/// The completion statement failed. When the transaction was already
/// aborted, a statement of the body failed and the body still returned `Ok`
/// (it ignored the error): say so, it is the body's bug, not the store's.
fn completion_failed(error: tokio_postgres::Error) -> BackendError {
    let aborted = error
        .code()
        .is_some_and(|code| *code == SqlState::IN_FAILED_SQL_TRANSACTION);
    if aborted {
        return BackendError::new(
            BackendErrorKind::Other,
            "the body returned Ok, but one of its statements had failed, which aborted its \
             transaction: nothing was committed and the key was released (return the \
             statement's error from the body instead of ignoring it)",
        )
        .with_source(error);
    }
    error::database(error, CONTEXT)
}
