//! The `Backend` operations on Postgres: claim, complete, release, renew,
//! each one statement from `sql.rs`, written once for every driver.

use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{BackendError, BackendErrorKind};

use crate::claim::Answer;
use crate::driver::{Driver, Param};
use crate::sql::millis;

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

pub(crate) async fn claim(
    driver: &impl Driver,
    key: &str,
    fingerprint: &Fingerprint,
    token: FencingToken,
    lease: Duration,
) -> Result<ClaimOutcome, BackendError> {
    let params = [
        Param::Text(key),
        Param::Bytes(fingerprint.as_bytes()),
        Param::BigInt(millis(lease)),
        Param::BigInt(token_param(token)),
    ];
    for _ in 0..STALE_RETRIES {
        let returned = driver.claim(&params).await?;
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

pub(crate) async fn complete(
    driver: &impl Driver,
    key: &str,
    token: FencingToken,
    output: &[u8],
    ttl: Duration,
) -> Result<CasOutcome, BackendError> {
    let settings = driver.settings();
    settings.check_output_size(output, driver.output_limit_setting())?;
    let params = [
        Param::Text(key),
        Param::BigInt(token_param(token)),
        Param::Bytes(output),
        Param::BigInt(millis(ttl)),
    ];
    let changed = driver
        .execute("complete", &settings.statements.complete, &params)
        .await?;
    Ok(cas_outcome(changed))
}

pub(crate) async fn release(
    driver: &impl Driver,
    key: &str,
    token: FencingToken,
) -> Result<CasOutcome, BackendError> {
    let params = [Param::Text(key), Param::BigInt(token_param(token))];
    let sql = &driver.settings().statements.release;
    Ok(cas_outcome(driver.execute("release", sql, &params).await?))
}

pub(crate) async fn renew(
    driver: &impl Driver,
    key: &str,
    token: FencingToken,
    lease: Duration,
) -> Result<CasOutcome, BackendError> {
    let params = [
        Param::Text(key),
        Param::BigInt(token_param(token)),
        Param::BigInt(millis(lease)),
    ];
    let sql = &driver.settings().statements.renew;
    Ok(cas_outcome(driver.execute("renew", sql, &params).await?))
}

/// Implements `Backend` for a [`Driver`] by the operations above (a blanket
/// implementation over `Driver` is not allowed: `Backend` is the core's).
macro_rules! backend_on_driver {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl idempotent_core::Backend for $store {
            async fn claim(
                &self,
                key: &str,
                fingerprint: &idempotent_core::backend::Fingerprint,
                token: idempotent_core::backend::FencingToken,
                lease: std::time::Duration,
            ) -> Result<idempotent_core::backend::ClaimOutcome, idempotent_core::BackendError> {
                $crate::operations::claim(self, key, fingerprint, token, lease).await
            }

            async fn complete(
                &self,
                key: &str,
                token: idempotent_core::backend::FencingToken,
                output: &[u8],
                ttl: std::time::Duration,
            ) -> Result<idempotent_core::backend::CasOutcome, idempotent_core::BackendError> {
                $crate::operations::complete(self, key, token, output, ttl).await
            }

            async fn release(
                &self,
                key: &str,
                token: idempotent_core::backend::FencingToken,
            ) -> Result<idempotent_core::backend::CasOutcome, idempotent_core::BackendError> {
                $crate::operations::release(self, key, token).await
            }

            async fn renew(
                &self,
                key: &str,
                token: idempotent_core::backend::FencingToken,
                lease: std::time::Duration,
            ) -> Result<idempotent_core::backend::CasOutcome, idempotent_core::BackendError> {
                $crate::operations::renew(self, key, token, lease).await
            }

            /// A clone: a shared handle on the same pool.
            fn detached(&self) -> Option<std::sync::Arc<dyn idempotent_core::Backend>> {
                Some(std::sync::Arc::new(self.clone()))
            }
        }
    };
}
pub(crate) use backend_on_driver;
