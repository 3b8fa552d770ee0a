//! The phases of one idempotent call, and what a call dropped in each one
//! (cancelled by its caller, or unwound by a panicking body) leaves behind.
//!
//! | phase | the key | dropped here |
//! | --- | --- | --- |
//! | `Claiming` | maybe claimed: the claim may still be on its way | released by its token, also if the claim lands later |
//! | `Running` | this call's; the body runs | released: a retry runs the body |
//! | `Storing` | this call's; the body returned | the result is stored by a background task, never released |
//! | `Releasing` | this call's; the body returned `Err` | released |
//! | `Settled` | not this call's any more (or never was) | nothing |
//!
//! A body that returned is never released: a retry must not run it again.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::completion::{self, Claim};
use crate::envelope::NotStored;
use crate::error::ErrorChain;
use crate::stats;
use crate::{Backend, CasOutcome, FencingToken};

/// Where a call is; see the module's table.
#[derive(Debug)]
pub(crate) enum Phase {
    Claiming {
        /// Until when a claim sent now may still land (its send plus two
        /// leases): a release that finds nothing is tried again until then.
        /// A claim later than that lapses with its lease.
        lands_until: Instant,
    },
    Running,
    Storing {
        /// The encoded result, or `None` when it could not be encoded (the
        /// not-stored marker is stored instead).
        output: Option<Vec<u8>>,
        retry_until: Instant,
    },
    Releasing,
    Settled,
}

/// A call's claim and its phase; dropping it does what the phase requires.
pub(crate) struct CallGuard<'a, B: Backend + ?Sized> {
    backend: &'a B,
    scope: &'a str,
    key: &'a str,
    token: FencingToken,
    ttl: Duration,
    phase: Phase,
}

impl<'a, B: Backend + ?Sized> CallGuard<'a, B> {
    /// A call that will claim with `token`; it enters `Claiming` as it sends.
    pub(crate) fn new(
        backend: &'a B,
        scope: &'a str,
        key: &'a str,
        token: FencingToken,
        ttl: Duration,
    ) -> Self {
        Self {
            backend,
            scope,
            key,
            token,
            ttl,
            phase: Phase::Settled,
        }
    }

    pub(crate) fn token(&self) -> FencingToken {
        self.token
    }

    pub(crate) fn enter(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Stores the body's result (`None`: it could not be encoded). From here
    /// on the call is never released, also when dropped.
    pub(crate) async fn store(&mut self, output: Option<Vec<u8>>, retry_until: Instant) {
        self.phase = Phase::Storing {
            output,
            retry_until,
        };
        if let Phase::Storing {
            output,
            retry_until,
        } = &self.phase
        {
            let claim = self.claim(*retry_until);
            match output {
                Some(output) => completion::store(self.backend, claim, output).await,
                None => {
                    completion::store_marker(self.backend, claim, NotStored::Unserializable).await
                }
            };
        }
        self.phase = Phase::Settled;
    }

    fn claim(&self, retry_until: Instant) -> Claim<'_> {
        Claim {
            scope: self.scope,
            key: self.key,
            token: self.token,
            ttl: self.ttl,
            retry_until,
        }
    }
}

impl<B: Backend + ?Sized> Drop for CallGuard<'_, B> {
    fn drop(&mut self) {
        let job = match std::mem::replace(&mut self.phase, Phase::Settled) {
            Phase::Settled => return,
            // The claim may be applied after this call stopped waiting for
            // it, even after a release sent now (a store with several
            // connections need not keep their order).
            Phase::Claiming { lands_until } => Job::Release {
                until: Some(lands_until),
            },
            Phase::Releasing => Job::Release { until: None },
            Phase::Running => {
                stats::ABANDONED.increment();
                tracing::debug!(
                    scope = self.scope,
                    key = self.key,
                    panicking = std::thread::panicking(),
                    "call dropped or body panicked; releasing the claim"
                );
                Job::Release { until: None }
            }
            Phase::Storing {
                output,
                retry_until,
            } => {
                tracing::debug!(
                    scope = self.scope,
                    key = self.key,
                    "call dropped after its body returned; storing the result in the background"
                );
                Job::Store {
                    output,
                    retry_until,
                }
            }
        };
        let work = Work {
            scope: self.scope.to_owned(),
            key: self.key.to_owned(),
            token: self.token,
            ttl: self.ttl,
            job,
        };
        work.start(self.backend);
    }
}

/// What a dropped call leaves to do.
enum Job {
    /// Release the claim; `until`: a claim that may still land, so a release
    /// that finds nothing is tried again until then.
    Release { until: Option<Instant> },
    Store {
        output: Option<Vec<u8>>,
        retry_until: Instant,
    },
}

struct Work {
    scope: String,
    key: String,
    token: FencingToken,
    ttl: Duration,
    job: Job,
}

impl Work {
    /// Runs on a detached handle of the store in a task of its own, or, for
    /// a store whose operations finish when first polled, right here.
    fn start<B: Backend + ?Sized>(mut self, backend: &B) {
        let Some(handle) = backend.detached() else {
            // A store without a detached handle finishes every operation
            // when first polled: no claim of it is ever in flight.
            if let Job::Release { until } = &mut self.job {
                *until = None;
            }
            let mut work = pin!(self.run(backend));
            if work.as_mut().poll(&mut Context::from_waker(Waker::noop())) == Poll::Pending {
                tracing::warn!(
                    scope = self.scope,
                    key = self.key,
                    "store did not finish a dropped call's work at once; its claim lapses"
                );
            }
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { self.run(&*handle).await });
            }
            Err(_) => tracing::warn!(
                scope = self.scope,
                key = self.key,
                "no tokio runtime to finish a dropped call on; its claim lapses with its lease"
            ),
        }
    }

    async fn run<B: Backend + ?Sized>(&self, backend: &B) {
        let Self {
            scope,
            key,
            token,
            ttl,
            job,
        } = self;
        let (token, ttl) = (*token, *ttl);
        match job {
            Job::Release { until } => release(backend, scope, key, token, *until).await,
            Job::Store {
                output,
                retry_until,
            } => {
                let claim = Claim {
                    scope,
                    key,
                    token,
                    ttl,
                    retry_until: *retry_until,
                };
                match output {
                    Some(output) => completion::store(backend, claim, output).await,
                    None => {
                        completion::store_marker(backend, claim, NotStored::Unserializable).await
                    }
                };
            }
        }
    }
}

/// Releases a dropped call's claim. With `until`, a release that finds
/// nothing (the claim has not landed yet) or fails is tried again, with
/// backoff, until then.
async fn release<B: Backend + ?Sized>(
    backend: &B,
    scope: &str,
    key: &str,
    token: FencingToken,
    until: Option<Instant>,
) {
    let mut delay = FIRST_LATE_RELEASE;
    loop {
        let released = backend.release(key, token).await;
        // One more look while the claim may still land, the last one at
        // `until` itself.
        let pause = until
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
            .map(|left| left.min(delay));
        match (released, pause) {
            (Ok(CasOutcome::Applied), _) => {
                tracing::trace!("released");
                return;
            }
            (Ok(CasOutcome::Fenced), None) => return,
            (Err(error), None) => {
                tracing::warn!(scope, key, error = %ErrorChain(&error), "could not release the claim; it lapses with its lease");
                return;
            }
            (_, Some(pause)) => {
                tokio::time::sleep(pause).await;
                delay = (delay * 2).min(MAX_LATE_RELEASE);
            }
        }
    }
}

/// First and largest pause between two releases of a claim that may land late.
const FIRST_LATE_RELEASE: Duration = Duration::from_millis(10);
const MAX_LATE_RELEASE: Duration = Duration::from_secs(1);

/// Releases `key`'s claim holding `token` from a place that cannot await, as
/// a dropped call does: on a detached handle of the store, or in place.
pub fn release_in_background<B: Backend + ?Sized>(
    backend: &B,
    scope: &str,
    key: &str,
    token: FencingToken,
) {
    Work {
        scope: scope.to_owned(),
        key: key.to_owned(),
        token,
        ttl: Duration::ZERO,
        job: Job::Release { until: None },
    }
    .start(backend);
}
