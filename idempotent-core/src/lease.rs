//! Holding a claim while the body runs: renewal every `lease / 3`, and release
//! when the call is dropped or the body panics.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use crate::{Backend, CasOutcome, FencingToken};

/// Shortest renewal period, so a tiny lease cannot turn renewal into a spin.
const MIN_RENEW_PERIOD: Duration = Duration::from_millis(1);

/// Polls `body` to completion, renewing the claim every `lease / 3` meanwhile.
///
/// Renewal runs on the body's own task, interleaved with it: a body that
/// blocks its thread (instead of awaiting) also blocks renewal, and may lose
/// its lease. Blocking work belongs in `tokio::task::spawn_blocking`.
pub(crate) async fn run_renewing<B, Fut>(
    backend: &B,
    key: &str,
    token: FencingToken,
    lease: Duration,
    body: Fut,
) -> Fut::Output
where
    B: Backend + ?Sized,
    Fut: Future,
{
    let mut body = pin!(body);
    let period = (lease / 3).max(MIN_RENEW_PERIOD);
    loop {
        tokio::select! {
            biased;
            output = &mut body => return output,
            () = tokio::time::sleep(period) => {}
        }
        // The body keeps running while the renewal is in flight.
        let renewal = backend.renew(key, token, lease);
        tokio::select! {
            biased;
            output = &mut body => return output,
            renewed = renewal => match renewed {
                Ok(CasOutcome::Applied) => tracing::trace!(key, "renewed the lease"),
                Ok(CasOutcome::Fenced) => {
                    tracing::warn!(
                        key,
                        "lost the lease: the claim expired and another call took it over; \
                         this call finishes, but its result will not be stored"
                    );
                    return body.await;
                }
                Err(error) => tracing::warn!(
                    key,
                    %error,
                    "could not renew the lease; retrying in {period:?} (the claim expires if \
                     the store stays unreachable for the whole lease)"
                ),
            },
        }
    }
}

/// Releases the claim if dropped while armed: the call was cancelled, or the
/// body panicked. Disarmed once the claim was completed or released normally.
pub(crate) struct ClaimGuard<'a, B: Backend + ?Sized> {
    backend: &'a B,
    key: &'a str,
    token: FencingToken,
    armed: bool,
}

impl<'a, B: Backend + ?Sized> ClaimGuard<'a, B> {
    pub(crate) fn new(backend: &'a B, key: &'a str, token: FencingToken) -> Self {
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

impl<B: Backend + ?Sized> Drop for ClaimGuard<'_, B> {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(
                key = self.key,
                panicking = std::thread::panicking(),
                "the call was dropped or its body panicked; releasing the claim"
            );
            self.backend.release_in_background(self.key, self.token);
        }
    }
}
