//! A keyed request's runtime call, which outlives its request once the
//! handler has returned.
//!
//! The runtime releases a call dropped while its body runs, and for the
//! layer the body is the handler *and* the reading of its response to store
//! it. Once the handler has returned its head, its effect has happened: a
//! request dropped then (a client that gave up, a timeout layer) must not
//! free the key for a retry to run the handler again. So the call is moved
//! into a task of its own, which reads the rest of the body and stores it
//! as if the caller were still there: the claim renewed meanwhile, the
//! response stored, or the key marked when it cannot be. Before the head,
//! a dropped request drops the call, and the runtime releases the key at
//! once, as for any call cancelled while its body runs.
//!
//! The request's task is the only one polling the call, and it marks the
//! head within the poll that produced it, so a drop sees either a handler
//! that returned or one that never will: no interleaving of the two.
//! Nothing is spawned unless a request is dropped after its head.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// What the runtime body shares with the request that runs it: whether the
/// handler returned, and the response for this caller.
pub(crate) struct Handoff<T> {
    headed: AtomicBool,
    fresh: Mutex<Option<T>>,
}

impl<T> Handoff<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            headed: AtomicBool::new(false),
            fresh: Mutex::new(None),
        })
    }

    /// The handler returned: from now on the call finishes without its
    /// request.
    pub(crate) fn headed(&self) {
        self.headed.store(true, Ordering::Relaxed);
    }

    /// The response for the caller whose request ran the handler.
    pub(crate) fn give(&self, response: T) {
        *self.lock() = Some(response);
    }

    /// The response given, if the handler ran in this call.
    pub(crate) fn take(&self) -> Option<T> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<T>> {
        // Only a panic between two statements of `give` or `take` could
        // poison it; the value is whole either way.
        self.fresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Polls `call` in place; dropped before it finished, it drops `call` or,
/// once `handoff` says the handler returned, spawns it.
pub(crate) struct Detachable<F: Future + Send + 'static, T> {
    call: Option<Pin<Box<F>>>,
    handoff: Arc<Handoff<T>>,
    /// Set while `call` is polled: a drop that finds it set is unwinding
    /// from a panic inside the call, which must not be polled again.
    polling: bool,
    scope: Cow<'static, str>,
    key: Arc<str>,
}

impl<F, T> Detachable<F, T>
where
    F: Future + Send + 'static,
{
    /// `scope` and `key` name the call in the log when it is detached.
    pub(crate) fn new(
        call: F,
        handoff: Arc<Handoff<T>>,
        scope: Cow<'static, str>,
        key: Arc<str>,
    ) -> Self {
        Self {
            call: Some(Box::pin(call)),
            handoff,
            polling: false,
            scope,
            key,
        }
    }
}

impl<F: Future + Send + 'static, T> Future for Detachable<F, T> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let call = this
            .call
            .as_mut()
            .expect("a finished call is not polled again");
        this.polling = true;
        let polled = call.as_mut().poll(cx);
        this.polling = false;
        if polled.is_ready() {
            this.call = None;
        }
        polled
    }
}

impl<F: Future + Send + 'static, T> Drop for Detachable<F, T> {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        if self.polling || !self.handoff.headed.load(Ordering::Relaxed) {
            // The runtime's own drop: the handler did not return, release.
            return;
        }
        let (scope, key) = (&*self.scope, &*self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::debug!(
                    scope,
                    key,
                    "request dropped after its handler returned; storing its response without it"
                );
                // The response it makes has no caller left: dropped.
                runtime.spawn(async move {
                    call.await;
                });
            }
            // A tower stack off tokio: the runtime's drop is all there is.
            Err(_) => tracing::warn!(
                scope,
                key,
                "request dropped after its handler returned, and no tokio runtime to finish it \
                 on; the key is released"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;
    use std::time::Duration;

    /// A call whose handler returns (or not) on its first poll, then waits
    /// for `go`; `finished` counts how often it reached its end, `dropped`
    /// whether it was dropped.
    struct Probe {
        handoff: Arc<Handoff<()>>,
        head: bool,
        polls: Arc<AtomicUsize>,
        finished: Arc<AtomicUsize>,
        dropped: Arc<AtomicBool>,
        panic: bool,
    }

    impl Future for Probe {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            let polls = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.head {
                self.handoff.headed();
            }
            if self.panic {
                panic!("the response body panicked");
            }
            if polls == 1 {
                return Poll::Pending;
            }
            self.finished.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(())
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    struct Seen {
        polls: Arc<AtomicUsize>,
        finished: Arc<AtomicUsize>,
        dropped: Arc<AtomicBool>,
    }

    fn probe(head: bool, panic: bool) -> (Detachable<Probe, ()>, Seen) {
        let handoff = Handoff::new();
        let seen = Seen {
            polls: Arc::default(),
            finished: Arc::default(),
            dropped: Arc::default(),
        };
        let call = Probe {
            handoff: Arc::clone(&handoff),
            head,
            polls: Arc::clone(&seen.polls),
            finished: Arc::clone(&seen.finished),
            dropped: Arc::clone(&seen.dropped),
            panic,
        };
        let detachable = Detachable::new(call, handoff, "scope".into(), "key".into());
        (detachable, seen)
    }

    fn poll_once(call: &mut Detachable<Probe, ()>) -> Poll<()> {
        Pin::new(call).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn dropped_before_the_head_the_call_is_dropped_unfinished() {
        let (mut call, seen) = probe(false, false);
        assert!(poll_once(&mut call).is_pending());
        drop(call);
        assert!(seen.dropped.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(seen.finished.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn dropped_after_the_head_the_call_finishes_in_a_task() {
        let (mut call, seen) = probe(true, false);
        assert!(poll_once(&mut call).is_pending());
        drop(call);
        for _ in 0..100 {
            if seen.finished.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(seen.finished.load(Ordering::SeqCst), 1);
        assert!(seen.dropped.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn finished_in_place_nothing_is_spawned() {
        let (mut call, seen) = probe(true, false);
        assert!(poll_once(&mut call).is_pending());
        assert!(poll_once(&mut call).is_ready());
        drop(call);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(seen.polls.load(Ordering::SeqCst), 2);
        assert_eq!(seen.finished.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_call_that_panicked_after_the_head_is_not_polled_again() {
        let (mut call, seen) = probe(true, true);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = poll_once(&mut call);
        }));
        assert!(unwound.is_err());
        drop(call);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(seen.polls.load(Ordering::SeqCst), 1);
        assert!(seen.dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn without_a_runtime_a_call_after_the_head_is_dropped() {
        let (mut call, seen) = probe(true, false);
        assert!(poll_once(&mut call).is_pending());
        drop(call);
        assert!(seen.dropped.load(Ordering::SeqCst));
        assert_eq!(seen.finished.load(Ordering::SeqCst), 0);
    }
}
