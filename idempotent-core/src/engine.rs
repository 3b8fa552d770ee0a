//! One idempotent call from claim to answer: the decision table's outcomes,
//! the stored result, and what happens when the store fails.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::bounds::{IdempotentResult, StorableError};
use crate::envelope::{self, Stored};
use crate::lease::{run_renewing, ClaimGuard, Held};
use crate::runtime::{Call, Target};
use crate::stats;
use crate::{
    Backend, BackendErrorKind, CasOutcome, ClaimOutcome, CodecError, Error, FencingToken,
    Fingerprint, Idempotency,
};

/// First and largest pause between two looks at a key held by another call.
const FIRST_WAIT_STEP: Duration = Duration::from_millis(2);
const MAX_WAIT_STEP: Duration = Duration::from_millis(100);
/// First and largest pause between two attempts to store a result.
const FIRST_COMPLETE_RETRY: Duration = Duration::from_millis(25);
const MAX_COMPLETE_RETRY: Duration = Duration::from_secs(1);

impl<B: Backend> Call<B> {
    pub(crate) async fn execute<F, Fut, R, P>(self, body: F) -> R
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
        P: ErrorPolicy<R::Err>,
    {
        stats::CALLS.increment();
        let Call { config, target } = self;
        let Target { key, fingerprint } = match target {
            Ok(target) => target,
            Err(error) => {
                stats::CODEC_ERRORS.increment();
                return fail(Error::Codec(error));
            }
        };
        let span = tracing::debug_span!("idempotent", scope = %config.scope, key = %key);
        // Pinned in place: awaited directly or through the span's wrapper,
        // the call's future is never moved or held twice.
        let call = std::pin::pin!(async {
            let (token, claimed_at) = match config.acquire::<R, P>(&key, &fingerprint).await {
                Ok(claim) => claim,
                Err(answer) => return answer,
            };
            // Boxed: only a call that runs the body pays for the body's and
            // the renewal's state, so a replay's future stays small and cheap
            // to move.
            Box::pin(config.run_claimed::<F, Fut, R, P>(&key, token, claimed_at, body)).await
        });
        // Without a subscriber for the span, skip the wrapper: a replay is
        // short enough that its poll and the extra move show.
        if span.is_disabled() {
            call.await
        } else {
            call.instrument(span).await
        }
    }
}

impl<B: Backend> Idempotency<B> {
    /// Claims the key, replaying or waiting as the decision table says.
    /// `Ok((token, claimed_at))`: this call holds the key and runs the body.
    /// `Err(answer)`: the call's answer, without running the body.
    async fn acquire<R, P>(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
    ) -> Result<(FencingToken, Instant), R>
    where
        R: IdempotentResult,
        P: ErrorPolicy<R::Err>,
    {
        let deadline = self.wait.map(|wait| Instant::now() + wait);
        let mut step = FIRST_WAIT_STEP;
        let mut waited = false;
        loop {
            let asked_at = Instant::now();
            let outcome = match self.backend.claim(key, fingerprint, self.lease).await {
                Ok(outcome) => outcome,
                Err(error) => return Err(store_failed(error)),
            };
            match outcome {
                ClaimOutcome::Acquired { token, took_over } => {
                    stats::EXECUTIONS.increment();
                    if took_over {
                        stats::TAKEOVERS.increment();
                        tracing::warn!(
                            "took over a claim whose lease expired (its holder crashed or \
                             stalled); running the body"
                        );
                    } else {
                        tracing::debug!("claimed; running the body");
                    }
                    return Ok((token, asked_at));
                }
                ClaimOutcome::Completed { output } => {
                    stats::REPLAYS.increment();
                    tracing::debug!("replaying the stored result");
                    return Err(replay::<R, P>(&output));
                }
                ClaimOutcome::Mismatch => {
                    stats::MISMATCHES.increment();
                    tracing::debug!("the key was used with other arguments");
                    return Err(fail(Error::PayloadMismatch));
                }
                ClaimOutcome::InProgress { lease_remaining } => {
                    let now = Instant::now();
                    let Some(left) = deadline.filter(|&end| end > now).map(|end| end - now) else {
                        stats::IN_PROGRESS.increment();
                        tracing::debug!("another call with this key is running");
                        return Err(fail(Error::InProgress));
                    };
                    if !waited {
                        waited = true;
                        stats::WAITS.increment();
                        tracing::debug!("waiting for the running call's result");
                    }
                    // Look again no later than the holder's lease end, so a
                    // crashed holder is taken over without waiting longer.
                    let at_most = left.min(step).min(lease_remaining.max(FIRST_WAIT_STEP));
                    if let Err(error) = self.backend.wait_for_change(key, at_most).await {
                        return Err(store_failed(error));
                    }
                    step = (step * 2).min(MAX_WAIT_STEP);
                }
            }
        }
    }

    /// Runs the body under the claim `token`, then stores or releases.
    async fn run_claimed<F, Fut, R, P>(
        &self,
        key: &str,
        token: FencingToken,
        claimed_at: Instant,
        body: F,
    ) -> R
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
        P: ErrorPolicy<R::Err>,
    {
        let guard = ClaimGuard::new(&self.backend, key, token);
        let (output, held) =
            run_renewing(&self.backend, key, token, self.lease, claimed_at, body()).await;
        let result = output.into_result();
        match &result {
            Ok(value) => {
                self.store(key, token, &held, envelope::encode_ok(value))
                    .await
            }
            Err(error) => match P::encode(error) {
                Some(Ok(encoded)) => self.store(key, token, &held, Ok(encoded)).await,
                Some(Err(encode_error)) => {
                    tracing::warn!(
                        error = %encode_error,
                        "the error cannot be serialized for `cache_err`; releasing the key instead"
                    );
                    self.release(key, token).await;
                }
                None => self.release(key, token).await,
            },
        }
        guard.disarm();
        R::from_result(result)
    }

    /// Completes the claim with the encoded result. The body already ran:
    /// whatever happens here, the caller gets its own result.
    async fn store(
        &self,
        key: &str,
        token: FencingToken,
        held: &Held,
        encoded: Result<Vec<u8>, serde_json::Error>,
    ) {
        let output = match encoded {
            Ok(output) => output,
            Err(error) => {
                let reason = format!("the result failed to serialize: {error}");
                return self
                    .store_not_stored_marker(key, token, held, &reason)
                    .await;
            }
        };
        match self.complete_with_retries(key, token, held, &output).await {
            Completion::Stored | Completion::Fenced => {}
            Completion::Abandoned => stats::RESULTS_NOT_STORED.increment(),
            Completion::TooLarge(error) => {
                let reason = format!("the result was too large for the store: {error}");
                self.store_not_stored_marker(key, token, held, &reason)
                    .await;
            }
        }
    }

    /// Stores a record saying the body ran but its result could not be kept,
    /// so retries get [`Error::ResultNotStored`] instead of running it again.
    async fn store_not_stored_marker(
        &self,
        key: &str,
        token: FencingToken,
        held: &Held,
        reason: &str,
    ) {
        stats::RESULTS_NOT_STORED.increment();
        tracing::error!(
            reason,
            "the body ran but its result cannot be stored; retries will get ResultNotStored"
        );
        let marker = envelope::encode_not_stored(shortened(reason));
        if let Completion::TooLarge(error) =
            self.complete_with_retries(key, token, held, &marker).await
        {
            tracing::error!(%error, "the store refused even the small not-stored marker");
        }
    }

    /// Tries to complete while the claim is known to hold: a store that is
    /// briefly unreachable right after the body ran does not make a retry run
    /// the body again. Past the lease, another call may own the key, so the
    /// attempts stop there.
    async fn complete_with_retries(
        &self,
        key: &str,
        token: FencingToken,
        held: &Held,
        output: &[u8],
    ) -> Completion {
        let mut delay = FIRST_COMPLETE_RETRY;
        let mut attempt = 1;
        loop {
            match self.backend.complete(key, token, output, self.ttl).await {
                Ok(CasOutcome::Applied) => {
                    tracing::debug!(attempt, "stored the result");
                    return Completion::Stored;
                }
                Ok(CasOutcome::Fenced) => {
                    stats::FENCED.increment();
                    tracing::warn!(
                        "this call's claim expired before its result could be stored (another \
                         call took the key over, or the store forgot the claim): the result goes \
                         to this caller only, and a retry either replays the other call's result \
                         or runs the body again"
                    );
                    return Completion::Fenced;
                }
                Err(error) if error.kind() == BackendErrorKind::TooLarge => {
                    return Completion::TooLarge(error);
                }
                Err(error)
                    if error.kind() == BackendErrorKind::Unavailable
                        && Instant::now() + delay < held.until =>
                {
                    stats::COMPLETE_RETRIES.increment();
                    tracing::warn!(%error, attempt, "could not store the result; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_COMPLETE_RETRY);
                    attempt += 1;
                }
                Err(error) => {
                    tracing::error!(
                        %error,
                        attempt,
                        "the body ran but its result could not be stored; the caller gets it, \
                         and retries see the key in progress until the lease ends, then run the \
                         body again"
                    );
                    return Completion::Abandoned;
                }
            }
        }
    }

    async fn release(&self, key: &str, token: FencingToken) {
        match self.backend.release(key, token).await {
            Ok(CasOutcome::Applied) => {
                stats::RELEASES.increment();
                tracing::debug!("the body returned Err; released the key");
            }
            Ok(CasOutcome::Fenced) => {
                stats::FENCED.increment();
                tracing::warn!(
                    "the body returned Err after its lease was taken over; nothing to release"
                );
            }
            Err(error) => tracing::warn!(
                %error,
                "the body returned Err and the claim could not be released; it expires with its lease"
            ),
        }
    }
}

/// The reason kept in a not-stored marker: short, so the marker fits a store
/// whose output limit refused the result itself.
fn shortened(reason: &str) -> &str {
    const MAX_REASON_BYTES: usize = 200;
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// How storing a result ended.
enum Completion {
    Stored,
    Fenced,
    TooLarge(crate::BackendError),
    /// The store stayed unreachable (or failed otherwise) while the claim held.
    Abandoned,
}

fn store_failed<R: IdempotentResult>(error: crate::BackendError) -> R {
    let error = Error::from(error);
    if matches!(error, Error::Codec(_)) {
        stats::CODEC_ERRORS.increment();
    } else {
        stats::STORE_ERRORS.increment();
    }
    tracing::error!(%error, "the store failed before the body ran; failing closed");
    fail(error)
}

pub(crate) fn fail<R: IdempotentResult>(error: Error) -> R {
    R::from_result(Err(error.into()))
}

fn replay<R, P>(output: &[u8]) -> R
where
    R: IdempotentResult,
    P: ErrorPolicy<R::Err>,
{
    let decoded = envelope::decode(output).and_then(|stored| match stored {
        Stored::Ok(payload) => envelope::decode_payload(payload).map(Ok),
        Stored::Err(payload) => P::decode(payload).map(Err),
        Stored::Lost(reason) => Ok(Err(Error::ResultNotStored {
            reason: reason.to_owned(),
        }
        .into())),
    });
    match decoded {
        Ok(result) => R::from_result(result),
        Err(error) => {
            stats::CODEC_ERRORS.increment();
            tracing::error!(%error, "the stored result cannot be decoded; the body does not run");
            fail(Error::Codec(error))
        }
    }
}

/// What happens to an `Err` returned by the body.
pub(crate) trait ErrorPolicy<E> {
    /// `Some(encoded)` to store the error, `None` to release the claim.
    fn encode(error: &E) -> Option<Result<Vec<u8>, serde_json::Error>>;
    fn decode(payload: &[u8]) -> Result<E, CodecError>;
}

/// The default: errors release the claim, so a retry runs again.
pub(crate) struct ReleaseErrors;

impl<E> ErrorPolicy<E> for ReleaseErrors {
    fn encode(_: &E) -> Option<Result<Vec<u8>, serde_json::Error>> {
        None
    }

    fn decode(_: &[u8]) -> Result<E, CodecError> {
        Err(CodecError::new(
            "the stored record holds a cached error, but this call does not cache errors \
             (was `cache_err` removed while records were live?)",
        ))
    }
}

/// `cache_err`: errors are stored and replayed like results.
pub(crate) struct CacheErrors;

impl<E: StorableError> ErrorPolicy<E> for CacheErrors {
    fn encode(error: &E) -> Option<Result<Vec<u8>, serde_json::Error>> {
        Some(envelope::encode_err(error))
    }

    fn decode(payload: &[u8]) -> Result<E, CodecError> {
        envelope::decode_payload(payload)
    }
}
