//! Storing the result of a body that ran: retried while a retry can still
//! land, and replaced by a small "not stored" marker when the store refuses
//! the result itself. The same steps run in place and, for a dropped call,
//! in the background.

use std::time::Duration;

use tokio::time::Instant;

use crate::envelope::{self, NotStored};
use crate::error::ErrorChain;
use crate::stats;
use crate::{Backend, BackendError, BackendErrorKind, CasOutcome, FencingToken};

/// First and largest pause between two attempts to store a result.
const FIRST_RETRY: Duration = Duration::from_millis(25);
const MAX_RETRY: Duration = Duration::from_secs(1);

/// The claim a result is stored under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Claim<'a> {
    pub(crate) scope: &'a str,
    pub(crate) key: &'a str,
    pub(crate) token: FencingToken,
    pub(crate) ttl: Duration,
    /// The last moment a completion can still land: the claim's lease end
    /// plus the one lease for which a store keeps a lapsed claim. A retry
    /// after another caller took the key over is fenced, so retrying until
    /// then never overwrites anyone.
    pub(crate) retry_until: Instant,
}

/// How storing a result ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// The result, or the not-stored marker, is the key's record.
    Kept,
    /// The claim was no longer this call's.
    Fenced,
    /// The store stayed unreachable (or failed otherwise) while the claim
    /// could still be completed.
    Abandoned,
}

/// Stores `output` (an encoded result, or a marker) under `claim`.
pub(crate) async fn store<B: Backend + ?Sized>(
    backend: &B,
    claim: Claim<'_>,
    output: &[u8],
) -> Stored {
    match complete_with_retries(backend, claim, output).await {
        Ok(Stored::Abandoned) => {
            stats::RESULTS_NOT_STORED.increment();
            Stored::Abandoned
        }
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::error!(
                scope = claim.scope,
                key = claim.key,
                error = %ErrorChain(&error),
                "result too large for the store; storing a not-stored marker"
            );
            store_marker(backend, claim, NotStored::TooLarge).await
        }
    }
}

/// Stores the marker of a body that ran without a storable result, so
/// retries get `ResultNotStored` instead of running it again.
pub(crate) async fn store_marker<B: Backend + ?Sized>(
    backend: &B,
    claim: Claim<'_>,
    reason: NotStored,
) -> Stored {
    stats::RESULTS_NOT_STORED.increment();
    let marker = envelope::encode_not_stored(reason);
    match complete_with_retries(backend, claim, &marker).await {
        Ok(outcome) => outcome,
        Err(error) => {
            // A conforming store accepts every marker (`limits::MIN_OUTPUT_LIMIT`).
            tracing::error!(
                scope = claim.scope,
                key = claim.key,
                error = %ErrorChain(&error),
                "the store refused the not-stored marker"
            );
            Stored::Abandoned
        }
    }
}

/// `Err` only when the store refuses `output` as too large.
async fn complete_with_retries<B: Backend + ?Sized>(
    backend: &B,
    claim: Claim<'_>,
    output: &[u8],
) -> Result<Stored, BackendError> {
    let Claim {
        scope,
        key,
        token,
        ttl,
        retry_until,
    } = claim;
    let mut delay = FIRST_RETRY;
    let mut attempt = 1;
    loop {
        match backend.complete(key, token, output, ttl).await {
            Ok(CasOutcome::Applied) => {
                tracing::debug!(attempt, "stored the result");
                return Ok(Stored::Kept);
            }
            Ok(CasOutcome::Fenced) => {
                stats::FENCED.increment();
                tracing::warn!(
                    scope,
                    key,
                    "claim lost before the result was stored; the result goes to this caller only"
                );
                return Ok(Stored::Fenced);
            }
            Err(error) if error.kind() == BackendErrorKind::TooLarge => return Err(error),
            // A full store may free memory (records expire, an operator
            // acts) within the claim's time, as a down one may come back.
            Err(error)
                if matches!(
                    error.kind(),
                    BackendErrorKind::Unavailable | BackendErrorKind::Capacity
                ) && Instant::now() + delay < retry_until =>
            {
                stats::COMPLETE_RETRIES.increment();
                tracing::warn!(scope, key, error = %ErrorChain(&error), attempt, ?delay, "could not store the result; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
                attempt += 1;
            }
            Err(error) => {
                tracing::error!(
                    scope,
                    key,
                    error = %ErrorChain(&error),
                    attempt,
                    "result not stored; retries run the body again once the claim lapses"
                );
                return Ok(Stored::Abandoned);
            }
        }
    }
}
