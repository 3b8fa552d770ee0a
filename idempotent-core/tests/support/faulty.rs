//! A `Backend` wrapper that makes chosen operations fail or arrive late, as a
//! store across a network does, and reports what the inner store really did.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, BackendError, BackendErrorKind, MemoryBackend};

use super::schedule::{Effect, Op};

tokio::task_local! {
    /// Which call of the schedule a task runs. A real store cannot know its
    /// caller; the model needs it to tie a claim to the body that follows.
    pub static CALLER: usize;
}

/// What the inner store did with one operation, reported as it happens.
pub enum Applied<'a> {
    Claim {
        caller: Option<usize>,
        fingerprint: &'a Fingerprint,
        /// The token of an `Acquired` claim.
        token: Option<FencingToken>,
        outcome: &'a Result<ClaimOutcome, BackendError>,
    },
    Complete {
        token: FencingToken,
        output: &'a [u8],
        outcome: &'a Result<CasOutcome, BackendError>,
    },
    Release {
        token: FencingToken,
        outcome: &'a Result<CasOutcome, BackendError>,
    },
    Renew {
        token: FencingToken,
        outcome: &'a Result<CasOutcome, BackendError>,
    },
}

/// Sees every operation twice: when it is asked (with the fault it gets, if
/// any) and when the inner store applies it (never, for a refused one).
pub trait Observer: Send + Sync + 'static {
    fn asked(
        &self,
        op: Op,
        key: &str,
        token: Option<FencingToken>,
        caller: Option<usize>,
        fault: Option<Effect>,
    );
    fn applied(&self, key: &str, applied: Applied<'_>);
}

#[derive(Clone)]
pub struct FaultyBackend {
    inner: Arc<MemoryBackend>,
    faults: Arc<Mutex<Vec<Armed>>>,
    observer: Arc<dyn Observer>,
}

struct Armed {
    key: String,
    op: Op,
    effect: Effect,
    left: u8,
}

impl FaultyBackend {
    pub fn new(inner: MemoryBackend, observer: Arc<dyn Observer>) -> Self {
        Self {
            inner: Arc::new(inner),
            faults: Arc::default(),
            observer,
        }
    }

    /// The next `times` operations `op` on `key` get `effect`. Faults armed
    /// earlier fire first.
    pub fn arm(&self, key: &str, op: Op, effect: Effect, times: u8) {
        self.lock().push(Armed {
            key: key.to_owned(),
            op,
            effect,
            left: times,
        });
    }

    pub fn disarm_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Armed>> {
        // A body's panic never happens under this lock; poisoning carries
        // nothing to fear.
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_fault(&self, key: &str, op: Op) -> Option<Effect> {
        let mut faults = self.lock();
        let armed = faults
            .iter_mut()
            .find(|armed| armed.op == op && armed.key == key && armed.left > 0)?;
        armed.left -= 1;
        Some(armed.effect)
    }

    /// Runs one operation, `apply` being the inner store's, through whatever
    /// fault is armed for it. `apply` is `'static` so that a late request
    /// still lands after its caller gave up, as it would on a network.
    async fn faulty<T, F>(
        &self,
        op: Op,
        key: &str,
        token: Option<FencingToken>,
        caller: Option<usize>,
        apply: F,
    ) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let fault = self.take_fault(key, op);
        self.observer.asked(op, key, token, caller, fault);
        match fault {
            None => apply.await,
            Some(Effect::Fail) => Err(injected(BackendErrorKind::Unavailable)),
            Some(Effect::TooLarge) => Err(injected(BackendErrorKind::TooLarge)),
            Some(Effect::LoseReply) => {
                let _lost = apply.await;
                Err(injected(BackendErrorKind::Unavailable))
            }
            Some(Effect::SlowReply(ms)) => {
                let answer = apply.await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                answer
            }
            Some(Effect::Delay(ms)) => {
                let (send, answer) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _caller_gone = send.send(apply.await);
                });
                answer
                    .await
                    .unwrap_or_else(|_| Err(injected(BackendErrorKind::Unavailable)))
            }
        }
    }
}

fn injected(kind: BackendErrorKind) -> BackendError {
    BackendError::new(kind, "injected by the model checker's FaultyBackend")
}

fn caller() -> Option<usize> {
    CALLER.try_with(|caller| *caller).ok()
}

// Each method only forwards to the inner store inside `faulty` and reports
// what it did: a change of the trait is a change here, nowhere else.
#[async_trait]
impl Backend for FaultyBackend {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError> {
        let (inner, observer, owned_key, fingerprint) = (
            Arc::clone(&self.inner),
            Arc::clone(&self.observer),
            key.to_owned(),
            *fingerprint,
        );
        let caller = caller();
        let apply = async move {
            let outcome = inner.claim(&owned_key, &fingerprint, token, lease).await;
            let token = match &outcome {
                Ok(ClaimOutcome::Acquired { token, .. }) => Some(*token),
                _ => None,
            };
            observer.applied(
                &owned_key,
                Applied::Claim {
                    caller,
                    fingerprint: &fingerprint,
                    token,
                    outcome: &outcome,
                },
            );
            outcome
        };
        self.faulty(Op::Claim, key, Some(token), caller, apply)
            .await
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError> {
        let (inner, observer, owned_key, output) = (
            Arc::clone(&self.inner),
            Arc::clone(&self.observer),
            key.to_owned(),
            output.to_vec(),
        );
        let apply = async move {
            let outcome = inner.complete(&owned_key, token, &output, ttl).await;
            let applied = Applied::Complete {
                token,
                output: &output,
                outcome: &outcome,
            };
            observer.applied(&owned_key, applied);
            outcome
        };
        self.faulty(Op::Complete, key, Some(token), caller(), apply)
            .await
    }

    async fn release(&self, key: &str, token: FencingToken) -> Result<CasOutcome, BackendError> {
        let (inner, observer, owned_key) = (
            Arc::clone(&self.inner),
            Arc::clone(&self.observer),
            key.to_owned(),
        );
        let apply = async move {
            let outcome = inner.release(&owned_key, token).await;
            let applied = Applied::Release {
                token,
                outcome: &outcome,
            };
            observer.applied(&owned_key, applied);
            outcome
        };
        self.faulty(Op::Release, key, Some(token), caller(), apply)
            .await
    }

    async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> Result<CasOutcome, BackendError> {
        let (inner, observer, owned_key) = (
            Arc::clone(&self.inner),
            Arc::clone(&self.observer),
            key.to_owned(),
        );
        let apply = async move {
            let outcome = inner.renew(&owned_key, token, lease).await;
            let applied = Applied::Renew {
                token,
                outcome: &outcome,
            };
            observer.applied(&owned_key, applied);
            outcome
        };
        self.faulty(Op::Renew, key, Some(token), caller(), apply)
            .await
    }

    async fn wait_for_change(&self, key: &str, at_most: Duration) -> Result<(), BackendError> {
        self.inner.wait_for_change(key, at_most).await
    }

    /// As a network store does: a dropped call's work becomes a task of its
    /// own on a clone, so it lands a little later and meets the same faults.
    fn detached(&self) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(self.clone()))
    }

    // The inner memory store's form, so the schedules run on the keys a
    // memory store is handed in production.
    fn key_form(&self) -> idempotent_core::backend::KeyForm {
        self.inner.key_form()
    }
}
