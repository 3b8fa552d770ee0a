//! Holding a claim while the body runs: renewal every `lease / 3`, and release
//! when the call is dropped or the body panics.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::stats;
use crate::{Backend, CasOutcome, FencingToken};

/// Shortest renewal period, so a tiny lease cannot turn renewal into a spin.
const MIN_RENEW_PERIOD: Duration = Duration::from_millis(1);

/// How long the claim is known to hold after the body finished.
pub(crate) struct Held {
    /// The claim's lease ends at the latest here (the last successful claim
    /// or renewal plus the lease); until then nobody else can take it over.
    pub(crate) until: Instant,
}

/// Polls `body` to completion, renewing the claim every `lease / 3` meanwhile.
///
/// A failed renewal is logged and counted, and tried again one period later;
/// the body keeps running (stopping it halfway through a side effect would be
/// worse). Once the lease has lapsed without renewal another caller may take
/// the key over; this call then finishes, and its result is fenced off.
///
/// Renewal runs on the body's own task, interleaved with it: a body that
/// blocks its thread (instead of awaiting) also blocks renewal, and may lose
/// its lease. Blocking work belongs in `tokio::task::spawn_blocking`.
pub(crate) async fn run_renewing<B, Fut>(
    backend: &B,
    key: &str,
    token: FencingToken,
    lease: Duration,
    claimed_at: Instant,
    body: Fut,
) -> (Fut::Output, Held)
where
    B: Backend + ?Sized,
    Fut: Future,
{
    let mut body = pin!(body);
    let period = (lease / 3).max(MIN_RENEW_PERIOD);
    let mut held = Held {
        until: claimed_at + lease,
    };
    loop {
        tokio::select! {
            biased;
            output = &mut body => return (output, held),
            () = tokio::time::sleep(period) => {}
        }
        let asked_at = Instant::now();
        // The body keeps running while the renewal is in flight.
        let renewal = backend.renew(key, token, lease);
        tokio::select! {
            biased;
            output = &mut body => return (output, held),
            renewed = renewal => match renewed {
                Ok(CasOutcome::Applied) => {
                    held.until = asked_at + lease;
                    tracing::trace!("renewed the lease");
                }
                Ok(CasOutcome::Fenced) => {
                    stats::LEASES_LOST.increment();
                    tracing::warn!(
                        "lost the claim: it expired while this holder could not renew it, and \
                         another call took it over or the store forgot it; this call finishes, \
                         but its result will not be stored"
                    );
                    return (body.await, held);
                }
                Err(error) => {
                    stats::RENEW_FAILURES.increment();
                    let lapsed = Instant::now() >= held.until;
                    tracing::warn!(
                        %error,
                        lapsed,
                        "could not renew the lease; retrying in {period:?} (once the lease has \
                         lapsed, another call may take the key over and this result is fenced off)"
                    );
                }
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
            stats::ABANDONED.increment();
            tracing::debug!(
                key = self.key,
                panicking = std::thread::panicking(),
                "the call was dropped or its body panicked; releasing the claim"
            );
            self.backend.release_in_background(self.key, self.token);
        }
    }
}
