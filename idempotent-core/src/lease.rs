//! Holding a claim while the body runs: renewal every `lease / 3`.

use std::future::Future;
use std::pin::{pin, Pin};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ErrorChain;
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

/// Polls `body` to completion, renewing the claim every `lease / 3`
/// meanwhile. A body whose claim is lost is let finish: stopping it halfway
/// through a side effect would be worse. Its result is then fenced off.
pub(crate) async fn run_renewing<B, Fut>(
    backend: &B,
    holder: Holder<'_>,
    body: Fut,
) -> (Fut::Output, Held)
where
    B: Backend + ?Sized,
    Fut: Future,
{
    let mut body = pin!(body);
    match renew_until_done_or_lost(backend, holder, body.as_mut()).await {
        Ok(done) => done,
        Err(held) => (body.await, held),
    }
}

/// Like [`run_renewing`], but a body whose claim is lost is stopped (its
/// future dropped), for bodies whose effects are uncommitted writes of a
/// transaction, which dropping rolls back. `None`: it was stopped.
pub(crate) async fn run_renewing_or_stop<B, Fut>(
    backend: &B,
    holder: Holder<'_>,
    body: Fut,
) -> Option<Fut::Output>
where
    B: Backend + ?Sized,
    Fut: Future,
{
    let mut body = pin!(body);
    renew_until_done_or_lost(backend, holder, body.as_mut())
        .await
        .ok()
        .map(|(output, _)| output)
}

/// Who holds a claim, and since when.
#[derive(Clone, Copy)]
pub(crate) struct Holder<'a> {
    pub(crate) scope: &'a str,
    pub(crate) key: &'a str,
    pub(crate) token: FencingToken,
    pub(crate) lease: Duration,
    pub(crate) claimed_at: Instant,
}

/// Polls `body` and renews every `lease / 3` until the body finishes
/// (`Ok`), or a renewal finds the claim lost (`Err`, the body unfinished).
///
/// A failed renewal is logged and counted, and tried again one period later;
/// the body keeps running. Once the lease has lapsed without renewal another
/// caller may take the key over, and the next renewal says so.
///
/// Renewal runs on the body's own task, interleaved with it: a body that
/// blocks its thread (instead of awaiting) also blocks renewal, and may lose
/// its lease. Blocking work belongs in `tokio::task::spawn_blocking`.
async fn renew_until_done_or_lost<B, Fut>(
    backend: &B,
    holder: Holder<'_>,
    mut body: Pin<&mut Fut>,
) -> Result<(Fut::Output, Held), Held>
where
    B: Backend + ?Sized,
    Fut: Future,
{
    let Holder {
        scope,
        key,
        token,
        lease,
        claimed_at,
    } = holder;
    let period = (lease / 3).max(MIN_RENEW_PERIOD);
    let mut held = Held {
        until: claimed_at + lease,
    };
    loop {
        tokio::select! {
            biased;
            output = &mut body => return Ok((output, held)),
            () = tokio::time::sleep(period) => {}
        }
        let asked_at = Instant::now();
        // The body keeps running while the renewal is in flight.
        let renewal = backend.renew(key, token, lease);
        tokio::select! {
            biased;
            output = &mut body => return Ok((output, held)),
            renewed = renewal => match renewed {
                Ok(CasOutcome::Applied) => {
                    held.until = asked_at + lease;
                    tracing::trace!("renewed the lease");
                }
                Ok(CasOutcome::Fenced) => {
                    stats::LEASES_LOST.increment();
                    tracing::warn!(
                        scope,
                        key,
                        "lost the claim (it lapsed and was taken over or forgotten); its \
                         result will not be stored"
                    );
                    return Err(held);
                }
                Err(error) => {
                    stats::RENEW_FAILURES.increment();
                    let lapsed = Instant::now() >= held.until;
                    tracing::warn!(
                        scope,
                        key,
                        error = %ErrorChain(&error),
                        lapsed,
                        ?period,
                        "could not renew the lease; retrying"
                    );
                }
            },
        }
    }
}
