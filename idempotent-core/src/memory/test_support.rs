//! Helpers of the memory store's unit tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::MemoryBackend;
pub(super) use crate::FencingToken;
use crate::{Backend, CasOutcome, ClaimOutcome, Fingerprint};

pub(super) const LEASE: Duration = Duration::from_secs(30);
pub(super) const TTL: Duration = Duration::from_secs(3600);

pub(super) fn fp(byte: u8) -> Fingerprint {
    Fingerprint::from_bytes([byte; 32])
}

pub(super) async fn acquire(backend: &MemoryBackend, key: &str, lease: Duration) -> FencingToken {
    match backend
        .claim(key, &fp(1), FencingToken::generate(), lease)
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired {
            token,
            took_over: false,
        } => token,
        other => panic!("expected a fresh claim of {key}, got {other:?}"),
    }
}

/// Claims `key` and completes it with `output`, kept for `ttl`.
pub(super) async fn store(backend: &MemoryBackend, key: &str, output: &[u8], ttl: Duration) {
    let token = acquire(backend, key, LEASE).await;
    assert_eq!(
        backend.complete(key, token, output, ttl).await.unwrap(),
        CasOutcome::Applied
    );
}

/// Whether `key` replays `output`.
pub(super) async fn replays(backend: &MemoryBackend, key: &str, output: &[u8]) -> bool {
    backend
        .claim(key, &fp(1), FencingToken::generate(), LEASE)
        .await
        .unwrap()
        == ClaimOutcome::Completed {
            output: output.to_vec(),
        }
}

pub(super) fn holds(backend: &MemoryBackend, key: &str) -> bool {
    backend.lock().records.contains_key(key)
}

/// Records and index agree, and the bounds hold: every record is indexed
/// exactly once, charged as it is, and the sums stay within the bounds.
pub(super) fn assert_bounded(backend: &MemoryBackend) {
    let bounds = backend.shared.limits.get();
    let store = backend.lock();
    let total = store.tallies().total();
    let records = store.records.len();
    let charged: usize = store.records.values().map(|record| record.charge()).sum();
    assert_eq!(
        records, total.entries,
        "every record is indexed exactly once"
    );
    assert_eq!(charged, total.bytes, "every record is charged as it is");
    assert!(
        records <= bounds.max_entries,
        "{records} > {}",
        bounds.max_entries
    );
    assert!(
        total.bytes <= bounds.max_bytes,
        "{} > {}",
        total.bytes,
        bounds.max_bytes
    );
}

/// The events logged while it is the thread's default subscriber, each as
/// its level and its fields rendered `name=value`.
#[derive(Clone, Default)]
pub(super) struct Captured(Arc<Mutex<Vec<Event>>>);

/// A captured event: its level and its fields, rendered `name=value`.
pub(super) type Event = (tracing::Level, Vec<String>);

impl Captured {
    pub(super) fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Makes it this thread's subscriber until the guard drops.
    ///
    /// `tracing` caches each callsite's interest for the whole process, and
    /// a callsite first reached on a thread without a subscriber (another
    /// test) is cached as never wanted, which `set_default` does not undo.
    /// A global subscriber that wants everything makes every callsite
    /// wanted, whichever thread reaches it first (what it keeps, a few
    /// events of other tests, is never read).
    pub(super) fn set_default(&self) -> tracing::subscriber::DefaultGuard {
        static ANCHOR: std::sync::Once = std::sync::Once::new();
        ANCHOR.call_once(|| {
            // Fails only if a global subscriber exists, which serves as well.
            let _ = tracing::subscriber::set_global_default(Captured::default());
        });
        tracing::subscriber::set_default(self.clone())
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(Vec<String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push(format!("{}={value:?}", field.name()));
            }

            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push(format!("{}={value}", field.name()));
            }
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
