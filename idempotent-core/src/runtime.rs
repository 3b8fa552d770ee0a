//! The runtime API: configure an idempotent call, then run a body through it.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::fingerprint::new_hasher;
use tokio::time::Instant;

use crate::bounds::{IdempotentResult, StorableError};
use crate::envelope::{self, Stored};
use crate::lease::{run_renewing, ClaimGuard};
use crate::private::HashInto;
use crate::{
    default_backend, Backend, BackendErrorKind, CasOutcome, ClaimOutcome, CodecError, Error,
    FencingToken, Fingerprint,
};

/// How long a completed result is kept when no `ttl` is given: 24 hours.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a claim lives without renewal when no `lease` is given: 30 seconds.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The scope of calls that set none.
pub const DEFAULT_SCOPE: &str = "idempotent";

/// First and largest pause between two looks at a key held by another call.
const FIRST_WAIT_STEP: Duration = Duration::from_millis(2);
const MAX_WAIT_STEP: Duration = Duration::from_millis(100);

/// The configuration of idempotent calls on one store: what `#[idempotent]`
/// expands into, and what code without the macro calls directly.
///
/// ```
/// use idempotent_core::{Error, Idempotency, MemoryBackend};
/// use std::time::Duration;
///
/// async fn charge(store: &MemoryBackend, order: &str, amount: u64) -> Result<String, Error> {
///     Idempotency::new(store)
///         .scope("payments::charge")
///         .ttl(Duration::from_secs(24 * 60 * 60))
///         .run(order, &amount, || async {
///             // The side effect: runs once per key.
///             Ok(format!("charged {amount} cents"))
///         })
///         .await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryBackend::new();
/// assert_eq!(charge(&store, "order-42", 1999).await.unwrap(), "charged 1999 cents");
/// // A retry replays the stored result instead of charging again.
/// assert_eq!(charge(&store, "order-42", 1999).await.unwrap(), "charged 1999 cents");
/// // The same key with another amount is refused.
/// assert!(matches!(charge(&store, "order-42", 5).await, Err(Error::PayloadMismatch)));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Idempotency<B> {
    backend: B,
    scope: Cow<'static, str>,
    ttl: Duration,
    lease: Duration,
    wait: Option<Duration>,
}

impl Idempotency<&'static dyn Backend> {
    /// Calls on the process default store (see
    /// [`set_default_backend`](crate::set_default_backend)).
    pub fn with_default_backend() -> Self {
        Self::new(default_backend())
    }
}

impl<B: Backend> Idempotency<B> {
    /// Calls on `backend`, with the default scope, ttl and lease, and no wait.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            scope: Cow::Borrowed(DEFAULT_SCOPE),
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            wait: None,
        }
    }

    /// The namespace of the stored keys. Keep it stable across deploys:
    /// records are found by scope and key.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<Cow<'static, str>>) -> Self {
        self.scope = scope.into();
        self
    }

    /// How long a completed result is kept and replayed.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a claim lives without renewal. The claim is renewed every
    /// `lease / 3` while the body runs, so the lease bounds how long a crashed
    /// holder blocks its key, not how long a body may take.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a duplicate waits for a running call's result before
    /// [`Error::InProgress`]. Without it, a duplicate fails at once.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait).filter(|wait| !wait.is_zero());
        self
    }

    /// Hashes `key` into the stored key and `input` into the fingerprint.
    ///
    /// Borrows of `key` and `input` end here, so the body may take them over.
    pub fn prepare<K, I>(self, key: &K, input: &I) -> Call<B>
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
    {
        let target = digest(|hasher| key.hash_into(hasher)).and_then(|key_digest| {
            Ok(Target {
                key: record_key(&self.scope, &key_digest),
                fingerprint: Fingerprint::of(input)?,
            })
        });
        Call {
            config: self,
            target,
        }
    }

    /// Like [`prepare`](Self::prepare), with the fingerprint of `input` as
    /// the key: the same arguments are the same call.
    pub fn prepare_unkeyed<I: Serialize + ?Sized>(self, input: &I) -> Call<B> {
        let target = Fingerprint::of(input).map(|fingerprint| Target {
            key: record_key(&self.scope, &fingerprint),
            fingerprint,
        });
        Call {
            config: self,
            target,
        }
    }

    /// Runs `body` once for `key`: see [`Call::run`].
    pub async fn run<K, I, F, Fut, R>(self, key: &K, input: &I, body: F) -> R
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
    {
        self.prepare(key, input).run(body).await
    }

    /// What `#[idempotent]` expands into: arguments arrive type-checked and
    /// erased, the key is optional.
    #[doc(hidden)]
    pub fn __prepare_args(self, key: Option<&dyn HashInto>, args: &[&dyn HashInto]) -> Call<B> {
        let fingerprint = digest(|hasher| {
            hasher.update((args.len() as u64).to_le_bytes());
            args.iter().try_for_each(|arg| arg.hash_into(hasher))
        });
        let target = fingerprint.and_then(|fingerprint| {
            let key_digest = match key {
                Some(key) => digest(|hasher| key.hash_into(hasher))?,
                None => fingerprint,
            };
            Ok(Target {
                key: record_key(&self.scope, &key_digest),
                fingerprint,
            })
        });
        Call {
            config: self,
            target,
        }
    }
}

fn digest(
    feed: impl FnOnce(&mut Sha256) -> Result<(), CodecError>,
) -> Result<Fingerprint, CodecError> {
    let mut hasher = new_hasher();
    feed(&mut hasher)?;
    Ok(Fingerprint::from_bytes(hasher.finalize().into()))
}

/// `{scope}:{hex digest}`: bounded by the scope, whatever the key's size.
fn record_key(scope: &str, digest: &Fingerprint) -> String {
    let mut key = String::with_capacity(scope.len() + 65);
    key.push_str(scope);
    key.push(':');
    digest.write_hex(&mut key);
    key
}

#[derive(Debug)]
struct Target {
    key: String,
    fingerprint: Fingerprint,
}

/// One prepared idempotent call: its stored key and fingerprint are computed.
#[derive(Debug)]
#[must_use = "a prepared call does nothing until `run` is awaited"]
pub struct Call<B> {
    config: Idempotency<B>,
    target: Result<Target, CodecError>,
}

impl<B: Backend> Call<B> {
    /// The key under which the record is stored (`{scope}:{hex digest}`), or
    /// `None` when the key or arguments could not be serialized.
    ///
    /// It is stable across processes and retries, so it also serves as the
    /// idempotency key to pass on to a downstream provider.
    pub fn stored_key(&self) -> Option<&str> {
        self.target.as_ref().ok().map(|target| target.key.as_str())
    }

    /// Runs `body` at most once for this key, following the decision table:
    ///
    /// - key new (or expired): claim it, run the body; `Ok` is stored for
    ///   `ttl` and returned; `Err` releases the claim (a retry runs again);
    /// - key completed with the same arguments: the stored `Ok` is decoded and
    ///   returned, the body does not run;
    /// - key running with the same arguments: wait for its result (up to
    ///   `wait`), else [`Error::InProgress`];
    /// - key used with other arguments: [`Error::PayloadMismatch`].
    ///
    /// A panicking body or a dropped call releases the claim. Store failures
    /// before the body runs fail closed with [`Error::Backend`].
    pub async fn run<F, Fut, R>(self, body: F) -> R
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
    {
        self.execute::<_, _, _, ReleaseErrors>(body).await
    }

    /// Like [`run`](Self::run), but an `Err` is stored and replayed too.
    pub async fn run_cache_err<F, Fut, R>(self, body: F) -> R
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
        R::Err: StorableError,
    {
        self.execute::<_, _, _, CacheErrors>(body).await
    }

    async fn execute<F, Fut, R, P>(self, body: F) -> R
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
        P: ErrorPolicy<R::Err>,
    {
        let Call { config, target } = self;
        let Target { key, fingerprint } = match target {
            Ok(target) => target,
            Err(error) => return fail(Error::Codec(error)),
        };
        let token = match config.acquire::<R, P>(&key, &fingerprint).await {
            Ok(token) => token,
            Err(answer) => return answer,
        };
        let guard = ClaimGuard::new(&config.backend, &key, token);
        let output = run_renewing(&config.backend, &key, token, config.lease, body()).await;
        let result = output.into_result();
        match &result {
            Ok(value) => config.store(&key, token, envelope::encode_ok(value)).await,
            Err(error) => match P::encode(error) {
                Some(Ok(encoded)) => config.store(&key, token, Ok(encoded)).await,
                Some(Err(encode_error)) => {
                    tracing::warn!(
                        scope = %config.scope,
                        key,
                        error = %encode_error,
                        "the error cannot be serialized for `cache_err`; releasing the key instead"
                    );
                    config.release(&key, token).await;
                }
                None => config.release(&key, token).await,
            },
        }
        guard.disarm();
        R::from_result(result)
    }
}

impl<B: Backend> Idempotency<B> {
    /// Claims the key, replaying or waiting as the decision table says.
    /// `Ok(token)`: this call holds the key and runs the body. `Err(answer)`:
    /// the call's answer without running the body.
    async fn acquire<R, P>(&self, key: &str, fingerprint: &Fingerprint) -> Result<FencingToken, R>
    where
        R: IdempotentResult,
        P: ErrorPolicy<R::Err>,
    {
        let deadline = self.wait.map(|wait| Instant::now() + wait);
        let mut step = FIRST_WAIT_STEP;
        loop {
            let outcome = match self.backend.claim(key, fingerprint, self.lease).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(scope = %self.scope, key, %error, "claim failed; failing closed");
                    return Err(fail(error.into()));
                }
            };
            match outcome {
                ClaimOutcome::Acquired { token, took_over } => {
                    if took_over {
                        tracing::warn!(
                            scope = %self.scope,
                            key,
                            "took over a claim whose lease expired (its holder crashed or stalled)"
                        );
                    } else {
                        tracing::debug!(scope = %self.scope, key, "claimed");
                    }
                    return Ok(token);
                }
                ClaimOutcome::Completed { output } => {
                    tracing::debug!(scope = %self.scope, key, "replaying the stored result");
                    return Err(replay::<R, P>(&output));
                }
                ClaimOutcome::Mismatch => {
                    tracing::debug!(scope = %self.scope, key, "key reused with other arguments");
                    return Err(fail(Error::PayloadMismatch));
                }
                ClaimOutcome::InProgress { lease_remaining } => {
                    let now = Instant::now();
                    let Some(left) = deadline.filter(|&end| end > now).map(|end| end - now) else {
                        tracing::debug!(scope = %self.scope, key, "in progress elsewhere");
                        return Err(fail(Error::InProgress));
                    };
                    // Look again no later than the holder's lease end, so a
                    // crashed holder is taken over without waiting longer.
                    let at_most = left.min(step).min(lease_remaining.max(FIRST_WAIT_STEP));
                    tracing::trace!(scope = %self.scope, key, ?at_most, "waiting for the running call");
                    if let Err(error) = self.backend.wait_for_change(key, at_most).await {
                        return Err(fail(error.into()));
                    }
                    step = (step * 2).min(MAX_WAIT_STEP);
                }
            }
        }
    }

    /// Completes the claim with `encoded`. The body already ran: whatever
    /// happens here, the caller gets its own result.
    async fn store(
        &self,
        key: &str,
        token: FencingToken,
        encoded: Result<Vec<u8>, serde_json::Error>,
    ) {
        let output = match encoded {
            Ok(output) => output,
            Err(error) => {
                let reason = format!("the result failed to serialize: {error}");
                return self.store_marker(key, token, reason).await;
            }
        };
        match self.backend.complete(key, token, &output, self.ttl).await {
            Ok(CasOutcome::Applied) => tracing::debug!(scope = %self.scope, key, "completed"),
            Ok(CasOutcome::Fenced) => tracing::warn!(
                scope = %self.scope,
                key,
                "this call's lease expired and another call took the key over; its result \
                 was not stored (the other call's result stands) and is returned to this caller only"
            ),
            Err(error) if error.kind() == BackendErrorKind::TooLarge => {
                let reason = format!("the result was too large for the store: {error}");
                self.store_marker(key, token, reason).await;
            }
            Err(error) => tracing::error!(
                scope = %self.scope,
                key,
                %error,
                "the body ran but its result could not be stored; the caller gets it, and \
                 retries see the key in progress until the lease ends, then run the body again"
            ),
        }
    }

    /// Stores a record saying the body ran but its result could not be kept,
    /// so retries get [`Error::ResultNotStored`] instead of running it again.
    async fn store_marker(&self, key: &str, token: FencingToken, reason: String) {
        tracing::error!(scope = %self.scope, key, %reason, "the body ran but its result cannot be stored");
        let marker = envelope::encode_not_stored(&reason);
        if let Err(error) = self.backend.complete(key, token, &marker, self.ttl).await {
            tracing::error!(scope = %self.scope, key, %error, "could not store the not-stored marker either");
        }
    }

    async fn release(&self, key: &str, token: FencingToken) {
        match self.backend.release(key, token).await {
            Ok(CasOutcome::Applied) => {
                tracing::debug!(scope = %self.scope, key, "body failed; released the claim");
            }
            Ok(CasOutcome::Fenced) => tracing::warn!(
                scope = %self.scope,
                key,
                "body failed after its lease was taken over; nothing to release"
            ),
            Err(error) => tracing::warn!(
                scope = %self.scope,
                key,
                %error,
                "body failed and the claim could not be released; it expires with its lease"
            ),
        }
    }
}

fn fail<R: IdempotentResult>(error: Error) -> R {
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
        Err(error) => fail(Error::Codec(error)),
    }
}

/// What happens to an `Err` returned by the body.
trait ErrorPolicy<E> {
    /// `Some(encoded)` to store the error, `None` to release the claim.
    fn encode(error: &E) -> Option<Result<Vec<u8>, serde_json::Error>>;
    fn decode(payload: &[u8]) -> Result<E, CodecError>;
}

/// The default: errors release the claim, so a retry runs again.
struct ReleaseErrors;

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
struct CacheErrors;

impl<E: StorableError> ErrorPolicy<E> for CacheErrors {
    fn encode(error: &E) -> Option<Result<Vec<u8>, serde_json::Error>> {
        Some(envelope::encode_err(error))
    }

    fn decode(payload: &[u8]) -> Result<E, CodecError> {
        envelope::decode_payload(payload)
    }
}
