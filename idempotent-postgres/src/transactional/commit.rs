//! The transaction of a claimed call: the body, then the completion and the
//! commit, and how each way it can end is reported.

use idempotent_core::{
    BackendError, BackendErrorKind, CasOutcome, CodecError, Error, FencingToken,
};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, Transaction};

use super::renewal::{run_renewing, Renewed};
use super::{Transactional, CONTEXT};
use crate::error;
use crate::operations::{cas_outcome, token_param};
use crate::sql::millis;
use idempotent_core::stored_result;

impl Transactional<'_> {
    /// Gets a connection and runs [`in_transaction`](Self::in_transaction)
    /// on it. A connection that failed is closed rather than pooled, so the
    /// release that follows gets a working one.
    pub(super) async fn transact<T, E, F>(
        &self,
        key: &str,
        token: FencingToken,
        body: F,
    ) -> Ended<T, E>
    where
        T: Serialize,
        F: AsyncFnOnce(&Transaction<'_>) -> Result<T, E>,
    {
        let limit = self.backend.operation_timeout();
        let mut client = match tokio::time::timeout(limit, self.backend.pool.get()).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Ended::Failed(Error::Backend(error::pool(error, CONTEXT))),
            Err(_) => return Ended::Failed(Error::Backend(error::timeout(CONTEXT, limit))),
        };
        let (ended, healthy) = self.in_transaction(&mut client, key, token, body).await;
        if !healthy {
            drop(deadpool_postgres::Object::take(client));
        }
        ended
    }

    /// Runs the body in a transaction on `client` and commits its writes
    /// with the record; the flag says whether the connection still works.
    async fn in_transaction<T, E, F>(
        &self,
        client: &mut deadpool_postgres::Object,
        key: &str,
        token: FencingToken,
        body: F,
    ) -> (Ended<T, E>, bool)
    where
        T: Serialize,
        F: AsyncFnOnce(&Transaction<'_>) -> Result<T, E>,
    {
        let limit = self.backend.operation_timeout();
        let transaction = match client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
        {
            Ok(transaction) => transaction,
            Err(error) => return (failed(error::database(error, CONTEXT)), false),
        };

        let value =
            match run_renewing(self.backend, key, token, self.lease, body(&transaction)).await {
                Renewed::Finished(Ok(value)) => value,
                Renewed::Finished(Err(error)) => {
                    let healthy = rollback(transaction).await;
                    return (Ended::BodyFailed(error), healthy);
                }
                Renewed::LeaseLost => {
                    let healthy = rollback(transaction).await;
                    return (Ended::Fenced, healthy);
                }
            };
        let output = match stored_result::encode_ok(&value) {
            Ok(output) => output,
            Err(error) => {
                let healthy = rollback(transaction).await;
                let error = CodecError::new(
                    "the result failed to serialize; its transaction was rolled back",
                )
                .with_source(error);
                return (Ended::Failed(Error::Codec(error)), healthy);
            }
        };
        if let Err(error) = self.backend.check_output_size(&output) {
            let healthy = rollback(transaction).await;
            return (failed(error), healthy);
        }

        // The completion, fenced on the token, inside the body's transaction:
        // from here the row is locked, so nobody can take the claim over
        // before the commit (a claim waits for the lock, then sees the
        // completed record or, after a rollback, the claim).
        let complete = async {
            let statement = transaction
                .prepare_cached(&self.backend.statements.complete)
                .await?;
            transaction
                .execute(
                    &statement,
                    &[&key, &token_param(token), &output, &millis(self.ttl)],
                )
                .await
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
            return (Ended::Fenced, healthy);
        }
        match tokio::time::timeout(limit, transaction.commit()).await {
            Ok(Ok(())) => (Ended::Committed(value), true),
            Ok(Err(error)) => (
                failed(commit_unknown(error::database(error, CONTEXT))),
                false,
            ),
            Err(_) => (
                failed(commit_unknown(error::timeout(CONTEXT, limit))),
                false,
            ),
        }
    }
}

/// How a claimed call's transaction ended.
pub(super) enum Ended<T, E> {
    Committed(T),
    /// The claim was taken over: rolled back, nothing to release.
    Fenced,
    /// The body returned `Err`: rolled back.
    BodyFailed(E),
    /// The store failed, or the result could not be stored: rolled back, or
    /// a commit whose outcome is unknown.
    Failed(Error),
}

/// Rolls back, best effort, and says whether the connection still works:
/// if it is gone, the server has rolled the transaction back already.
async fn rollback(transaction: deadpool_postgres::Transaction<'_>) -> bool {
    match transaction.rollback().await {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(%error, "rollback failed; the transaction ends with its connection");
            false
        }
    }
}

fn failed<T, E>(error: BackendError) -> Ended<T, E> {
    Ended::Failed(Error::Backend(error))
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
            "the body returned Ok, but one of its statements had failed, which aborted its              transaction: nothing was committed and the key was released (return the              statement's error from the body instead of ignoring it)",
        )
        .with_source(error);
    }
    error::database(error, CONTEXT)
}

fn commit_unknown(error: BackendError) -> BackendError {
    BackendError::new(
        BackendErrorKind::Unavailable,
        "the commit failed or did not answer: it may or may not have happened, but the body's \
         writes and the record commit together, so a retry either replays or runs the body again",
    )
    .with_source(error)
}
