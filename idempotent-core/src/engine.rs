//! One idempotent call from claim to answer: the decision table's outcomes,
//! the body under a renewed claim, the stored result, and what happens when
//! the store fails. Every way of calling (the attribute, the runtime API, the
//! HTTP layer) runs through here.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::bounds::{FromIdempotencyError, IdempotentResult, StorableError, StorableOutput};
use crate::commit::{Commit, Settled};
use crate::default_scope::ScopeConflict;
use crate::envelope::{self, Decoded};
use crate::error::ErrorChain;
use crate::lease::{run_renewing, run_renewing_or_stop, Holder};
use crate::limits;
use crate::phase::{CallGuard, Phase};
use crate::stats;
use crate::stored_key::Target;
use crate::{
    Backend, BackendError, BackendErrorKind, CasOutcome, ClaimOutcome, CodecError, Error,
    FencingToken, Fingerprint,
};

/// First and largest pause between two looks at a key held by another call.
const FIRST_WAIT_STEP: Duration = Duration::from_millis(2);
const MAX_WAIT_STEP: Duration = Duration::from_millis(100);
/// Attempts to release a claim while the store is unreachable, and the first
/// pause between them.
const RELEASE_ATTEMPTS: u32 = 4;
const FIRST_RELEASE_RETRY: Duration = Duration::from_millis(25);

/// The options of a call, as the builders set them; checked when it runs.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) scope: Cow<'static, str>,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) wait: Option<Duration>,
    pub(crate) require_key: bool,
    /// The default scope another function owns: every call is refused.
    pub(crate) scope_conflict: Option<ScopeConflict>,
}

impl Options {
    fn check(&self) -> Result<(), Error> {
        if let Some(conflict) = self.scope_conflict {
            return Err(conflict.to_error());
        }
        limits::check_ttl(self.ttl)?;
        limits::check_lease(self.lease)?;
        if let Some(wait) = self.wait {
            limits::check_wait(wait)?;
        }
        Ok(())
    }
}

/// Runs `body` at most once for `target`, as the decision table says.
pub(crate) async fn execute<B, F, Fut, R, P>(
    backend: B,
    options: Options,
    target: Result<Target, CodecError>,
    body: F,
) -> R
where
    B: Backend,
    F: FnOnce() -> Fut,
    Fut: Future<Output = R>,
    R: IdempotentResult,
    P: ErrorPolicy<R::Err>,
{
    let (key, fingerprint) = match start(&options, target) {
        Start::Keyed(key, fingerprint) => (key, fingerprint),
        Start::Keyless => return body().await,
        Start::Refused(error) => return fail(error),
    };
    let span = tracing::debug_span!("idempotent", scope = %options.scope, key = %key);
    // Pinned in place: awaited directly or through the span's wrapper, the
    // call's future is never moved or held twice.
    let call = std::pin::pin!(async {
        let call = Claimed {
            backend: &backend,
            options: &options,
            key: &key,
        };
        let mut guard = call.guard();
        let claimed_at = match call.acquire::<R, P>(&fingerprint, &mut guard).await {
            Ok(claimed_at) => claimed_at,
            Err(answer) => return answer,
        };
        // Boxed: only a call that runs the body pays for the body's and the
        // renewal's state, so a replay's future stays small.
        Box::pin(call.run::<F, Fut, R, P>(&mut guard, claimed_at, body)).await
    });
    // Without a subscriber for the span, skip the wrapper: a replay is short
    // enough that its poll and the extra move show.
    if span.is_disabled() {
        call.await
    } else {
        call.instrument(span).await
    }
}

/// How a call starts: with a record, without one, or refused.
enum Start {
    Keyed(String, Fingerprint),
    Keyless,
    Refused(Error),
}

fn start(options: &Options, target: Result<Target, CodecError>) -> Start {
    stats::CALLS.increment();
    let (key, fingerprint) = match target {
        Ok(Target::Keyed {
            key, fingerprint, ..
        }) => (key, fingerprint),
        Ok(Target::Keyless) => {
            if let Err(error) = options.check() {
                return Start::Refused(invalid(options, "", error));
            }
            if options.require_key {
                stats::MISSING_KEYS.increment();
                tracing::debug!(scope = %options.scope, "no key, and one is required");
                return Start::Refused(Error::MissingKey);
            }
            stats::KEYLESS.increment();
            tracing::debug!(scope = %options.scope, "no key; running without a record");
            return Start::Keyless;
        }
        Err(error) => {
            stats::CODEC_ERRORS.increment();
            tracing::error!(scope = %options.scope, error = %ErrorChain(&error), "key or arguments cannot be serialized");
            return Start::Refused(Error::Codec(error));
        }
    };
    if let Err(error) = options.check() {
        return Start::Refused(invalid(options, &key, error));
    }
    Start::Keyed(key, fingerprint)
}

/// Runs the committing mode's `work` at most once for `target`: claimed,
/// waited for and replayed as [`execute`] does, renewed while it runs and
/// stopped if the claim is lost, released whenever nothing was committed.
pub(crate) async fn execute_committing<B, W, T, E>(
    backend: B,
    options: Options,
    target: Result<Target, CodecError>,
    work: W,
) -> Result<T, E>
where
    B: Backend,
    W: AsyncFnOnce(Option<Commit<'_>>) -> Settled<T, E>,
    T: StorableOutput,
    E: FromIdempotencyError,
{
    let (key, fingerprint) = match start(&options, target) {
        Start::Keyed(key, fingerprint) => (key, fingerprint),
        Start::Keyless => return settle_keyless(&options, work(None).await),
        Start::Refused(error) => return Err(error.into()),
    };
    let span =
        tracing::debug_span!("idempotent", scope = %options.scope, key = %key, committing = true);
    async {
        let call = Claimed {
            backend: &backend,
            options: &options,
            key: &key,
        };
        let mut guard = call.guard();
        let claimed_at = match call
            .acquire::<Result<T, E>, ReleaseErrors>(&fingerprint, &mut guard)
            .await
        {
            Ok(claimed_at) => claimed_at,
            Err(answer) => return answer,
        };
        call.commit(&mut guard, claimed_at, work).await
    }
    .instrument(span)
    .await
}

/// A keyless committing call: its work ran without a record.
fn settle_keyless<T, E: From<Error>>(options: &Options, settled: Settled<T, E>) -> Result<T, E> {
    match settled {
        Settled::Committed(value) => Ok(value),
        Settled::BodyFailed(error) => Err(error),
        Settled::NotCommitted(error) => Err(error.into()),
        // Without a record there is no claim to lose.
        Settled::Fenced => Err(Error::InProgress.into()),
        Settled::Unknown(error) => {
            stats::COMMITS_UNKNOWN.increment();
            tracing::error!(scope = %options.scope, key = "", error = %ErrorChain(&error), "commit outcome unknown");
            Err(Error::CommitUnknown(error).into())
        }
    }
}

/// A call with a stored key, on its store.
struct Claimed<'a, B: ?Sized> {
    backend: &'a B,
    options: &'a Options,
    key: &'a str,
}

impl<'a, B: Backend + ?Sized> Claimed<'a, B> {
    fn scope(&self) -> &str {
        &self.options.scope
    }

    /// The guard of this call's claim, under a token of its own.
    fn guard(&self) -> CallGuard<'a, B> {
        CallGuard::new(
            self.backend,
            &self.options.scope,
            self.key,
            FencingToken::generate(),
            self.options.ttl,
        )
    }

    /// Claims the key, replaying or waiting as the decision table says.
    /// `Ok(claimed_at)`: this call holds the key and runs the body.
    /// `Err(answer)`: the call's answer, without running the body.
    async fn acquire<R, P>(
        &self,
        fingerprint: &Fingerprint,
        guard: &mut CallGuard<'_, B>,
    ) -> Result<Instant, R>
    where
        R: IdempotentResult,
        P: ErrorPolicy<R::Err>,
    {
        let (scope, key, lease) = (self.scope(), self.key, self.options.lease);
        let deadline = self.options.wait.map(|wait| Instant::now() + wait);
        let mut step = FIRST_WAIT_STEP;
        let mut waited = false;
        loop {
            let token = guard.token();
            // A store that claims in place needs no future, and its answer
            // says when the lease started: no clock read here.
            let claimed = match self.backend.claim_in_place(key, fingerprint, token, lease) {
                Some(claimed) => claimed,
                None => {
                    let asked_at = Instant::now();
                    guard.enter(Phase::Claiming {
                        lands_until: asked_at + 2 * lease,
                    });
                    let claimed = self.backend.claim(key, fingerprint, token, lease).await;
                    guard.enter(Phase::Settled);
                    // The lease counts from no later than the sending.
                    claimed.map(|outcome| (outcome, asked_at))
                }
            };
            let (outcome, asked_at) = match claimed {
                Ok(claimed) => claimed,
                Err(error) => {
                    // The claim may have been applied though its answer
                    // was lost: release it, also if it lands later.
                    guard.enter(Phase::Claiming {
                        lands_until: Instant::now() + 2 * lease,
                    });
                    return Err(self.store_failed(error));
                }
            };
            match outcome {
                ClaimOutcome::Acquired { took_over, .. } => {
                    guard.enter(Phase::Running);
                    stats::EXECUTIONS.increment();
                    if took_over {
                        stats::TAKEOVERS.increment();
                        tracing::warn!(scope, key, "took over a lapsed claim; running the body");
                    } else {
                        tracing::debug!("claimed; running the body");
                    }
                    return Ok(asked_at);
                }
                ClaimOutcome::Completed { output } => {
                    stats::REPLAYS.increment();
                    tracing::debug!("replaying the stored result");
                    return Err(self.replay::<R, P>(&output));
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
                        return Err(self.store_failed(error));
                    }
                    step = (step * 2).min(MAX_WAIT_STEP);
                }
            }
        }
    }

    /// Runs the body under the guard's claim, then stores or releases.
    async fn run<F, Fut, R, P>(
        self,
        guard: &mut CallGuard<'_, B>,
        claimed_at: Instant,
        body: F,
    ) -> R
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
        P: ErrorPolicy<R::Err>,
    {
        let lease = self.options.lease;
        let (output, held) =
            run_renewing(self.backend, self.holder(guard, claimed_at), body()).await;
        // Past the lease, another call may own the key; a completion that
        // late is fenced, so retrying it then is harmless but useless.
        let retry_until = held.until + lease;
        let result = output.into_result();
        match &result {
            Ok(value) => {
                let encoded = envelope::encode_ok(value);
                guard.store(self.encoded(encoded), retry_until).await;
            }
            Err(error) => match P::encode(error) {
                Some(Ok(encoded)) => guard.store(self.encoded(Ok(encoded)), retry_until).await,
                // An error `cache_err` cannot store (a variant marked
                // `#[serde(skip)]`, typically the wrapped `Error` of a nested
                // call that answered `InProgress` or an outage) is treated
                // as errors are without `cache_err`: the key is released, so
                // a retry runs, rather than pinned to "not stored" for the ttl.
                not_stored => {
                    if let Some(Err(unstorable)) = not_stored {
                        tracing::warn!(
                            scope = self.scope(),
                            key = self.key,
                            error = %unstorable,
                            "the body's error cannot be stored (cache_err); releasing the key"
                        );
                    }
                    guard.enter(Phase::Releasing);
                    self.release(guard.token()).await;
                    guard.enter(Phase::Settled);
                }
            },
        }
        R::from_result(result)
    }

    /// Runs the committing work under the guard's claim and answers as it
    /// settled. Dropped at any point, the guard releases: until the commit
    /// nothing is durable, and after it the record is completed, which a
    /// release leaves alone.
    async fn commit<W, T, E>(
        self,
        guard: &mut CallGuard<'_, B>,
        claimed_at: Instant,
        work: W,
    ) -> Result<T, E>
    where
        W: AsyncFnOnce(Option<Commit<'_>>) -> Settled<T, E>,
        E: From<Error>,
    {
        let (scope, key) = (self.scope(), self.key);
        let token = guard.token();
        let commit = Commit {
            key,
            token,
            ttl: self.options.ttl,
        };
        let holder = self.holder(guard, claimed_at);
        let settled = run_renewing_or_stop(self.backend, holder, work(Some(commit))).await;
        let answer = match settled {
            Some(Settled::Committed(value)) => {
                tracing::debug!("committed the body's writes with the record");
                guard.enter(Phase::Settled);
                return Ok(value);
            }
            // Stopped when a renewal found the claim lost: its transaction
            // was dropped, so rolled back.
            None => {
                guard.enter(Phase::Settled);
                return Err(Error::InProgress.into());
            }
            Some(Settled::Fenced) => {
                stats::FENCED.increment();
                tracing::warn!(scope, key, "claim lost before the commit; rolled back");
                guard.enter(Phase::Settled);
                return Err(Error::InProgress.into());
            }
            Some(Settled::BodyFailed(error)) => Err(error),
            Some(Settled::NotCommitted(error)) => {
                tracing::warn!(scope, key, error = %ErrorChain(&error), "nothing committed; releasing the key");
                Err(error.into())
            }
            Some(Settled::Unknown(error)) => {
                stats::COMMITS_UNKNOWN.increment();
                tracing::error!(scope, key, error = %ErrorChain(&error), "commit outcome unknown; releasing (a no-op if it committed)");
                Err(Error::CommitUnknown(error).into())
            }
        };
        guard.enter(Phase::Releasing);
        self.release(token).await;
        guard.enter(Phase::Settled);
        answer
    }

    fn holder(&self, guard: &CallGuard<'_, B>, claimed_at: Instant) -> Holder<'_> {
        Holder {
            scope: self.scope(),
            key: self.key,
            token: guard.token(),
            lease: self.options.lease,
            claimed_at,
        }
    }

    /// An encoded result, or `None` (logged) when it failed to serialize.
    fn encoded(&self, encoded: Result<Vec<u8>, serde_json::Error>) -> Option<Vec<u8>> {
        encoded
            .map_err(|error| {
                tracing::error!(
                    scope = self.scope(),
                    key = self.key,
                    error = %ErrorChain(&error),
                    "result failed to serialize; storing a not-stored marker"
                );
            })
            .ok()
    }

    /// Releases the claim after `Err` or after nothing was committed. Tried a
    /// few times while the store is unreachable, so a blip (a connection
    /// that broke with the body's transaction) does not block the key for a
    /// whole lease.
    async fn release(&self, token: FencingToken) {
        let (scope, key) = (self.scope(), self.key);
        let mut delay = FIRST_RELEASE_RETRY;
        for attempt in 1..=RELEASE_ATTEMPTS {
            match self.backend.release(key, token).await {
                Ok(CasOutcome::Applied) => {
                    stats::RELEASES.increment();
                    tracing::debug!("released the key");
                    return;
                }
                Ok(CasOutcome::Fenced) => {
                    stats::FENCED.increment();
                    tracing::warn!(
                        scope,
                        key,
                        "nothing to release: the claim was lost meanwhile"
                    );
                    return;
                }
                Err(error)
                    if error.kind() == BackendErrorKind::Unavailable
                        && attempt < RELEASE_ATTEMPTS =>
                {
                    tracing::debug!(error = %ErrorChain(&error), attempt, "could not release; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => {
                    tracing::warn!(scope, key, error = %ErrorChain(&error), "could not release; the claim lapses with its lease");
                    return;
                }
            }
        }
    }

    fn store_failed<R: IdempotentResult>(&self, error: BackendError) -> R {
        let error = Error::from(error);
        if matches!(error, Error::Codec(_)) {
            stats::CODEC_ERRORS.increment();
        } else {
            stats::STORE_ERRORS.increment();
        }
        tracing::error!(scope = self.scope(), key = self.key, error = %ErrorChain(&error), "store failed; failing closed");
        fail(error)
    }

    fn replay<R, P>(&self, output: &[u8]) -> R
    where
        R: IdempotentResult,
        P: ErrorPolicy<R::Err>,
    {
        let decoded = envelope::decode(output).and_then(|stored| match stored {
            Decoded::Ok(payload) => envelope::decode_payload(payload).map(Ok),
            Decoded::Err(payload) => P::decode(payload).map(Err),
            Decoded::NotStored(reason) => Ok(Err(Error::ResultNotStored {
                reason: reason.to_owned(),
            }
            .into())),
        });
        match decoded {
            Ok(result) => R::from_result(result),
            Err(error) => {
                stats::CODEC_ERRORS.increment();
                tracing::error!(
                    scope = self.scope(),
                    key = self.key,
                    error = %ErrorChain(&error),
                    "stored result cannot be decoded; the body does not run"
                );
                fail(Error::Codec(error))
            }
        }
    }
}

fn invalid(options: &Options, key: &str, error: Error) -> Error {
    stats::INVALID_CONFIGS.increment();
    tracing::error!(scope = %options.scope, key, error = %ErrorChain(&error), "invalid options; the body does not run");
    error
}

pub(crate) fn fail<R: IdempotentResult>(error: Error) -> R {
    R::from_result(Err(error.into()))
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
