//! Holding a transactional call's claim while its body runs: renewal every
//! `lease / 3`, and release when the call is dropped or the body panics.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use idempotent_core::{Backend, CasOutcome, FencingToken};

use crate::PostgresBackend;

/// Shortest renewal period, so a tiny lease cannot turn renewal into a spin.
const MIN_RENEW_PERIOD: Duration = Duration::from_millis(1);

/// How the body's run ended.
pub(crate) enum Renewed<T> {
    /// The body finished.
    Finished(T),
    /// The claim was taken over (or forgotten) while the body ran, so its
    /// writes must not commit; the body was stopped.
    LeaseLost,
}

/// Polls `body` to completion, renewing the claim every `lease / 3` on the
/// pool (in their own statements, outside the body's transaction, so the
/// renewals are visible to other callers at once).
///
/// Unlike the runtime's renewal, a lost lease stops the body at once: its
/// writes are uncommitted, so stopping it halfway loses nothing, and the
/// caller rolls them back. A failed renewal is logged and tried again.
pub(crate) async fn run_renewing<Fut: Future>(
    backend: &PostgresBackend,
    key: &str,
    token: FencingToken,
    lease: Duration,
    body: Fut,
) -> Renewed<Fut::Output> {
    let mut body = pin!(body);
    let period = (lease / 3).max(MIN_RENEW_PERIOD);
    loop {
        tokio::select! {
            biased;
            output = &mut body => return Renewed::Finished(output),
            () = tokio::time::sleep(period) => {}
        }
        // The body keeps running while the renewal is in flight.
        tokio::select! {
            biased;
            output = &mut body => return Renewed::Finished(output),
            renewed = backend.renew(key, token, lease) => match renewed {
                Ok(CasOutcome::Applied) => tracing::trace!("renewed the lease"),
                Ok(CasOutcome::Fenced) => {
                    tracing::warn!(
                        "lost the lease: the claim expired and another call took it over; \
                         stopping the body and rolling its transaction back"
                    );
                    return Renewed::LeaseLost;
                }
                Err(error) => tracing::warn!(
                    %error,
                    "could not renew the lease; retrying in {period:?} (once it has lapsed, \
                     another call may take the key over and this call's transaction is rolled back)"
                ),
            },
        }
    }
}

/// Releases the claim if dropped while armed: the call was cancelled, or the
/// body panicked. Its transaction, dropped too, rolls back.
pub(crate) struct ClaimGuard<'a> {
    backend: &'a PostgresBackend,
    key: &'a str,
    token: FencingToken,
    armed: bool,
}

impl<'a> ClaimGuard<'a> {
    pub(crate) fn new(backend: &'a PostgresBackend, key: &'a str, token: FencingToken) -> Self {
        Self {
            backend,
            key,
            token,
            armed: true,
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(
                key = self.key,
                panicking = std::thread::panicking(),
                "the transactional call was dropped or its body panicked; releasing the claim"
            );
            self.backend.release_in_background(self.key, self.token);
        }
    }
}
