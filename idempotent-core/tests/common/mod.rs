//! A store for tests of the engine: it behaves as a network store does, and
//! fails on request.

#![allow(dead_code)] // each test binary uses its own subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, BackendError, BackendErrorKind, MemoryBackend};
use tokio::sync::oneshot;

/// A store as a network store behaves: each operation is sent to a server
/// that applies operations in the order they were sent, after a delay, and
/// whether or not the caller still waits for the answer. Operations can be
/// told to fail before they reach the server.
#[derive(Clone)]
pub struct NetworkStore {
    pub inner: Arc<MemoryBackend>,
    delay: Duration,
    /// Operations to fail (as an unreachable store) before one goes through.
    pub failing_claims: Arc<AtomicUsize>,
    pub failing_completes: Arc<AtomicUsize>,
    pub failing_renews: Arc<AtomicUsize>,
}

impl NetworkStore {
    pub fn new(delay: Duration) -> Self {
        Self {
            inner: Arc::new(MemoryBackend::new()),
            delay,
            failing_claims: Arc::default(),
            failing_completes: Arc::default(),
            failing_renews: Arc::default(),
        }
    }

    /// Sends `operation` to the "server": it is applied after the delay, in
    /// order, even if the returned future is dropped.
    fn send<T: Send + 'static>(
        &self,
        operation: impl FnOnce(Arc<MemoryBackend>) -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (answer, reply) = oneshot::channel();
        let (inner, delay) = (Arc::clone(&self.inner), self.delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = answer.send(operation(inner));
        });
        reply
    }
}

impl NetworkStore {
    /// Fails after the store's delay if `failing` still counts failures.
    async fn fail_if(&self, failing: &AtomicUsize) -> Result<(), BackendError> {
        let fail = failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            tokio::time::sleep(self.delay).await;
            return Err(gone());
        }
        Ok(())
    }
}

fn now<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
    {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => unreachable!("the memory store answers at once"),
    }
}

fn gone() -> BackendError {
    BackendError::new(
        BackendErrorKind::Unavailable,
        "the test store is unreachable",
    )
}

#[async_trait]
impl Backend for NetworkStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError> {
        self.fail_if(&self.failing_claims).await?;
        let (key, fingerprint) = (key.to_owned(), *fingerprint);
        self.send(move |inner| now(inner.claim(&key, &fingerprint, token, lease)))
            .await
            .map_err(|_| gone())?
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError> {
        self.fail_if(&self.failing_completes).await?;
        let (key, output) = (key.to_owned(), output.to_vec());
        self.send(move |inner| now(inner.complete(&key, token, &output, ttl)))
            .await
            .map_err(|_| gone())?
    }

    async fn release(&self, key: &str, token: FencingToken) -> Result<CasOutcome, BackendError> {
        let key = key.to_owned();
        self.send(move |inner| now(inner.release(&key, token)))
            .await
            .map_err(|_| gone())?
    }

    async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> Result<CasOutcome, BackendError> {
        self.fail_if(&self.failing_renews).await?;
        let key = key.to_owned();
        self.send(move |inner| now(inner.renew(&key, token, lease)))
            .await
            .map_err(|_| gone())?
    }

    fn detached(&self) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(self.clone()))
    }
}
