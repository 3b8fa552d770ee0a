//! The transactional mode: the body's writes and the record's completion
//! commit in one transaction.

use std::borrow::Cow;
use std::time::Duration;

use idempotent_core::{
    stored_result, Backend, BackendErrorKind, ClaimOutcome, CodecError, Error, FencingToken,
    Fingerprint, Idempotency, DEFAULT_LEASE, DEFAULT_SCOPE, DEFAULT_TTL,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tokio_postgres::Transaction;
use tracing::Instrument;

use self::commit::Ended;
use self::renewal::ClaimGuard;
use crate::PostgresBackend;

mod commit;
mod renewal;

/// First and largest pause between two looks at a key another call holds.
const FIRST_WAIT_STEP: Duration = Duration::from_millis(2);
const MAX_WAIT_STEP: Duration = Duration::from_millis(100);
/// Attempts to release a claim after a failure, the first pause between them.
const RELEASE_ATTEMPTS: u32 = 4;
const FIRST_RELEASE_RETRY: Duration = Duration::from_millis(25);
/// What the store's errors in a transactional call say.
pub(crate) const CONTEXT: &str = "Postgres transactional call failed";

impl PostgresBackend {
    /// Idempotent calls whose body writes to this database: the body gets a
    /// transaction, and its writes commit together with the stored result,
    /// or not at all.
    ///
    /// ```no_run
    /// use idempotent_postgres::{tokio_postgres, PostgresBackend};
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// enum OrderError {
    ///     #[error(transparent)]
    ///     Idempotency(#[from] idempotent_core::Error),
    ///     #[error(transparent)]
    ///     Database(#[from] tokio_postgres::Error),
    /// }
    ///
    /// async fn place(store: &PostgresBackend, key: &str, sku: &str) -> Result<i64, OrderError> {
    ///     store
    ///         .transactional()
    ///         .scope("orders::place")
    ///         .run(key, sku, async |tx| {
    ///             let row = tx
    ///                 .query_one("INSERT INTO orders (sku) VALUES ($1) RETURNING id", &[&sku])
    ///                 .await?;
    ///             Ok(row.get::<_, i64>(0))
    ///         })
    ///         .await
    /// }
    /// ```
    ///
    /// See [`Transactional::run`] for what happens at each step.
    pub fn transactional(&self) -> Transactional<'_> {
        Transactional {
            backend: self,
            scope: Cow::Borrowed(DEFAULT_SCOPE),
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            wait: None,
        }
    }
}

/// The configuration of transactional calls on one [`PostgresBackend`],
/// from [`PostgresBackend::transactional`]. The options mean what they mean
/// for [`Idempotency`]; records are shared with it (same scope, key and
/// arguments: same record).
#[derive(Clone, Debug)]
#[must_use = "a transactional call does nothing until `run` is awaited"]
pub struct Transactional<'a> {
    backend: &'a PostgresBackend,
    scope: Cow<'static, str>,
    ttl: Duration,
    lease: Duration,
    wait: Option<Duration>,
}

impl Transactional<'_> {
    /// The namespace of the stored keys (default `"idempotent"`); keep it
    /// stable across deploys.
    pub fn scope(mut self, scope: impl Into<Cow<'static, str>>) -> Self {
        self.scope = scope.into();
        self
    }

    /// How long the result is kept and replayed (default 24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long the claim lives without renewal (default 30 s); it is
    /// renewed every `lease / 3` while the body runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a duplicate waits for a running call's result before
    /// [`Error::InProgress`] (default: no wait).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait).filter(|wait| !wait.is_zero());
        self
    }

    /// Runs `body` at most once for `key` (with arguments `input`), in a
    /// transaction that also stores its result.
    ///
    /// 1. The key is claimed in its own statement, committed at once, so
    ///    concurrent duplicates see it: they get [`Error::InProgress`] (or
    ///    wait, with [`wait`](Self::wait)), a replay, or
    ///    [`Error::PayloadMismatch`], as in [`Idempotency::run`].
    /// 2. The body runs in a new `READ COMMITTED` transaction on a pooled
    ///    connection, while the claim is renewed on another.
    /// 3. On `Ok`, the same transaction turns the claim into the completed
    ///    record (fenced on the claim's token) and commits: the body's
    ///    writes and the record are stored together or not at all.
    ///
    /// So a crash (of this process, its connection, or the database) at any
    /// point before the commit leaves neither: the claim lapses after its
    /// lease and a retry runs the body again, its earlier writes never
    /// having happened. After the commit both are there and retries replay.
    ///
    /// Failures, and what they leave behind:
    ///
    /// - the body returns `Err`: the transaction rolls back, the claim is
    ///   released (a retry runs again), the `Err` is returned;
    /// - the body panics or the call is dropped: the same, in the background;
    /// - the claim was taken over (this call stalled past its lease): the
    ///   transaction rolls back as soon as a renewal or the completion finds
    ///   out, and the call gets [`Error::InProgress`]: the record will be the
    ///   other call's, and this call's writes never happened;
    /// - the result cannot be serialized, or exceeds the store's limit:
    ///   rolled back and released, [`Error::Codec`] or [`Error::Backend`];
    /// - the commit fails: [`Error::Backend`]; whether it committed is then
    ///   unknown, but effect and record are one: a retry either replays or
    ///   runs the body again, never half of it.
    ///
    /// The transaction's isolation is `READ COMMITTED`: the record's row is
    /// renewed concurrently, outside it, which a `REPEATABLE READ` or
    /// `SERIALIZABLE` transaction would refuse to update afterwards.
    pub async fn run<K, I, T, E, F>(self, key: &K, input: &I, body: F) -> Result<T, E>
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: AsyncFnOnce(&Transaction<'_>) -> Result<T, E>,
    {
        let (key, fingerprint) = self.target(key, input)?;
        let span = tracing::debug_span!(
            "idempotent",
            scope = %self.scope,
            key = %key,
            transactional = true
        );
        async {
            let token = match self.acquire::<T>(&key, &fingerprint).await {
                Ok(token) => token,
                Err(answer) => return answer.map_err(E::from),
            };
            self.run_claimed(&key, token, body).await
        }
        .instrument(span)
        .await
    }

    /// The stored key and the fingerprint, exactly as the runtime derives
    /// them, so both ways of calling share records.
    fn target<K, I>(&self, key: &K, input: &I) -> Result<(String, Fingerprint), Error>
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
    {
        let fingerprint = Fingerprint::of(input).map_err(Error::Codec)?;
        let call = Idempotency::new(self.backend)
            .scope(self.scope.clone())
            .prepare(key, input);
        match call.stored_key() {
            Some(stored) => Ok((stored.to_owned(), fingerprint)),
            None => Err(Error::Codec(Fingerprint::of(key).err().unwrap_or_else(
                || CodecError::new("the idempotency key cannot be serialized"),
            ))),
        }
    }

    /// Claims the key. `Ok(token)`: this call runs the body. `Err(answer)`:
    /// the call's answer without running it (a replay or an error).
    async fn acquire<T: DeserializeOwned>(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
    ) -> Result<FencingToken, Result<T, Error>> {
        let deadline = self.wait.map(|wait| Instant::now() + wait);
        let mut step = FIRST_WAIT_STEP;
        loop {
            let outcome = self
                .backend
                .claim(key, fingerprint, self.lease)
                .await
                .map_err(|error| Err(Error::from(error)))?;
            match outcome {
                ClaimOutcome::Acquired { token, took_over } => {
                    if took_over {
                        tracing::warn!(
                            "took over a claim whose lease expired (its holder crashed or \
                             stalled; its transaction never committed); running the body"
                        );
                    }
                    return Ok(token);
                }
                ClaimOutcome::Completed { output } => {
                    tracing::debug!("replaying the stored result");
                    return Err(stored_result::decode_ok(&output));
                }
                ClaimOutcome::Mismatch => return Err(Err(Error::PayloadMismatch)),
                ClaimOutcome::InProgress { lease_remaining } => {
                    let now = Instant::now();
                    let Some(left) = deadline.filter(|&end| end > now).map(|end| end - now) else {
                        return Err(Err(Error::InProgress));
                    };
                    // Look again no later than the holder's lease end, so a
                    // crashed holder is taken over without waiting longer.
                    let at_most = left.min(step).min(lease_remaining.max(FIRST_WAIT_STEP));
                    self.backend
                        .wait_for_change(key, at_most)
                        .await
                        .map_err(|error| Err(Error::from(error)))?;
                    step = (step * 2).min(MAX_WAIT_STEP);
                }
            }
        }
    }

    /// Runs the body in a transaction and commits it with the record; the
    /// claim is released whenever nothing was committed.
    async fn run_claimed<T, E, F>(&self, key: &str, token: FencingToken, body: F) -> Result<T, E>
    where
        T: Serialize,
        E: From<Error>,
        F: AsyncFnOnce(&Transaction<'_>) -> Result<T, E>,
    {
        let guard = ClaimGuard::new(self.backend, key, token);
        let ended = self.transact(key, token, body).await;
        let result = match ended {
            Ended::Committed(value) => Ok(value),
            Ended::Fenced => {
                tracing::warn!(
                    "this call's lease expired and another call took the key over: its \
                     transaction was rolled back, the other call's result will stand"
                );
                Err(Error::InProgress.into())
            }
            Ended::BodyFailed(error) => {
                self.release(key, token).await;
                Err(error)
            }
            Ended::Failed(error) => {
                // After a failed commit this is fenced if the commit did
                // happen (the record is completed), and frees the key if not.
                self.release(key, token).await;
                Err(error.into())
            }
        };
        guard.disarm();
        result
    }

    /// Releases the claim after nothing was committed (or a commit whose
    /// outcome is unknown: then it is fenced if the commit happened). Tried
    /// a few times while the database is unreachable, so a broken
    /// connection does not leave the key blocked for a whole lease.
    async fn release(&self, key: &str, token: FencingToken) {
        let mut delay = FIRST_RELEASE_RETRY;
        for attempt in 1..=RELEASE_ATTEMPTS {
            match self.backend.release(key, token).await {
                Ok(outcome) => {
                    tracing::debug!(?outcome, "released the claim");
                    return;
                }
                Err(error)
                    if error.kind() == BackendErrorKind::Unavailable
                        && attempt < RELEASE_ATTEMPTS =>
                {
                    tracing::debug!(%error, attempt, "could not release the claim; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "could not release the claim; it expires with its lease"
                    );
                    return;
                }
            }
        }
    }
}
