//! The end of a claimed call's transaction, on either driver: the body's
//! answer, then the completion and the commit, and how each way it can end
//! settles the call.

use async_trait::async_trait;
use idempotent_core::backend::{stored_result, CasOutcome, Commit, Settled};
use idempotent_core::{BackendError, BackendErrorKind, CodecError, Error};
use serde::Serialize;

use super::CONTEXT;
use crate::driver::{Param, Settings};
use crate::operations::{cas_outcome, token_param};
use crate::sql::millis;

/// The body's open transaction, on one driver.
#[async_trait]
pub(crate) trait BodyTransaction: Send + Sized {
    /// Runs the completion statement in the transaction and returns how many
    /// rows it changed. An error saying the transaction was aborted already
    /// is [`body_ignored_an_error`].
    async fn complete(
        &mut self,
        settings: &Settings,
        params: &[Param<'_>],
    ) -> Result<u64, BackendError>;

    async fn commit(self) -> Result<(), BackendError>;

    /// Rolls back, best effort, and says whether the connection still
    /// works: if it is gone, the server has rolled the transaction back
    /// already.
    async fn rollback(self) -> bool;
}

/// Settles a call whose body returned `outcome` in `transaction`: rolls
/// back on `Err`, else completes the record (none for a call without a key)
/// and commits. The flag says whether the connection still works.
/// `output_setting` names the builder method of the output limit.
pub(crate) async fn finish<Tx, T, E>(
    settings: &Settings,
    output_setting: &'static str,
    transaction: Tx,
    outcome: Result<T, E>,
    record: Option<Commit<'_>>,
) -> (Settled<T, E>, bool)
where
    Tx: BodyTransaction,
    T: Serialize,
{
    let mut transaction = transaction;
    let limit = settings.operation_timeout;
    let value = match outcome {
        Ok(value) => value,
        Err(error) => {
            let healthy = transaction.rollback().await;
            return (Settled::BodyFailed(error), healthy);
        }
    };
    if let Some(record) = record {
        let output = match stored_result::encode_ok(&value) {
            Ok(output) => output,
            Err(error) => {
                let healthy = transaction.rollback().await;
                let error = CodecError::new(
                    "the result failed to serialize; its transaction was rolled back",
                )
                .with_source(error);
                return (Settled::NotCommitted(Error::Codec(error)), healthy);
            }
        };
        if let Err(error) = settings.check_output_size(&output, output_setting) {
            let healthy = transaction.rollback().await;
            return (failed(error), healthy);
        }

        // The completion, fenced on the token, inside the body's transaction:
        // from here the row is locked, so nobody can take the claim over
        // before the commit (a claim waits for the lock, then sees the
        // completed record or, after a rollback, the claim).
        let params = [
            Param::Text(record.key()),
            Param::BigInt(token_param(record.token())),
            Param::Bytes(&output),
            Param::BigInt(millis(record.ttl())),
        ];
        let completing = tokio::time::timeout(limit, transaction.complete(settings, &params)).await;
        let completed = match completing {
            Ok(Ok(changed)) => cas_outcome(changed),
            Ok(Err(error)) => {
                let healthy = transaction.rollback().await;
                return (failed(error), healthy);
            }
            Err(_) => {
                transaction.rollback().await;
                return (failed(timeout(limit)), false);
            }
        };
        if completed == CasOutcome::Fenced {
            let healthy = transaction.rollback().await;
            return (Settled::Fenced, healthy);
        }
    }
    match tokio::time::timeout(limit, transaction.commit()).await {
        Ok(Ok(())) => (Settled::Committed(value), true),
        Ok(Err(error)) => (Settled::Unknown(error), false),
        Err(_) => (Settled::Unknown(timeout(limit)), false),
    }
}

pub(crate) fn failed<T, E>(error: BackendError) -> Settled<T, E> {
    Settled::NotCommitted(Error::Backend(error))
}

pub(crate) fn timeout(limit: std::time::Duration) -> BackendError {
    crate::error::timeout(CONTEXT, limit)
}

/// The SQLSTATE of a statement sent in a transaction an earlier statement
/// aborted (`in_failed_sql_transaction`).
pub(crate) const ABORTED: &str = "25P02";

/// The completion statement failed because the transaction was already
/// aborted: a statement of the body failed and the body still returned `Ok`
/// (it ignored the error). Said so: it is the body's bug, not the store's.
pub(crate) fn body_ignored_an_error(
    source: impl std::error::Error + Send + Sync + 'static,
) -> BackendError {
    BackendError::new(
        BackendErrorKind::Other,
        "the body returned Ok, but one of its statements had failed, which aborted its \
         transaction: nothing was committed and the key was released (return the \
         statement's error from the body instead of ignoring it)",
    )
    .with_source(source)
}
