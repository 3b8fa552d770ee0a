//! The `Backend` operations on Postgres: claim, complete, release, renew,
//! each one statement from `sql.rs`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, BackendError, BackendErrorKind};
use tokio_postgres::types::ToSql;

use crate::claim::{Answer, Returned};
use crate::error;
use crate::sql::{millis, Sql};
use crate::PostgresBackend;

/// How often a claim statement is run again when its snapshot turned out to
/// be older than a concurrent claim (see `sql.rs`); once is nearly always
/// enough, as the next statement's snapshot includes that claim.
const STALE_RETRIES: usize = 10;

/// A conditional statement's row count as a compare-and-set outcome: the
/// key is the primary key, so at most one row matches.
pub(crate) fn cas_outcome(changed: u64) -> CasOutcome {
    if changed == 1 {
        CasOutcome::Applied
    } else {
        CasOutcome::Fenced
    }
}

/// Tokens are stored as `bigint`; the bits are kept, so any `u64` a caller
/// passes (even one never issued) compares correctly.
pub(crate) fn token_param(token: FencingToken) -> i64 {
    i64::from_ne_bytes(token.get().to_ne_bytes())
}

impl PostgresBackend {
    async fn compare_and_set(
        &self,
        operation: &str,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<CasOutcome, BackendError> {
        Ok(cas_outcome(self.execute(operation, sql, params).await?))
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError> {
        let fingerprint: &[u8] = fingerprint.as_bytes();
        let lease = millis(lease);
        let token_arg = token_param(token);
        for _ in 0..STALE_RETRIES {
            let rows = self
                .query(
                    "claim",
                    &self.statements.claim,
                    &[&key, &fingerprint, &lease, &token_arg],
                )
                .await?;
            let returned = Returned::from_rows(&rows).map_err(|error| {
                error::database(error, "Postgres claim returned an unexpected row")
            })?;
            match returned.decide(key)? {
                Answer::Outcome(outcome) => return Ok(outcome),
                Answer::Stale => {
                    tracing::trace!(
                        key,
                        "the claim's snapshot predates a concurrent claim; again"
                    );
                }
            }
        }
        Err(BackendError::new(
            BackendErrorKind::Unavailable,
            format!("the claim of {key:?} did not settle in {STALE_RETRIES} statements"),
        ))
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError> {
        self.check_output_size(output)?;
        self.compare_and_set(
            "complete",
            &self.statements.complete,
            &[&key, &token_param(token), &output, &millis(ttl)],
        )
        .await
    }

    async fn release(&self, key: &str, token: FencingToken) -> Result<CasOutcome, BackendError> {
        self.compare_and_set(
            "release",
            &self.statements.release,
            &[&key, &token_param(token)],
        )
        .await
    }

    async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> Result<CasOutcome, BackendError> {
        self.compare_and_set(
            "renew",
            &self.statements.renew,
            &[&key, &token_param(token), &millis(lease)],
        )
        .await
    }

    /// A clone: a shared handle on the same pool.
    fn detached(&self) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(self.clone()))
    }
}
