//! Every warning and error an idempotent call logs names its scope and its
//! stored key, so an operator at INFO can tell which record it is about.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::NetworkStore;
use idempotent_core::backend::FencingToken;
use idempotent_core::{Backend, Error, Idempotency, MemoryBackend};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One logged event: its level, message and field names.
#[derive(Debug, Clone)]
struct Logged {
    level: Level,
    message: String,
    fields: BTreeSet<String>,
}

/// Collects every event at WARN or above, with no span context: what an
/// operator sees on the event itself.
#[derive(Clone, Default)]
struct Collector {
    events: Arc<Mutex<Vec<Logged>>>,
    next_span: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut Logged);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.message = format!("{value:?}");
        } else {
            self.0.fields.insert(field.name().to_owned());
        }
    }
}

impl Subscriber for Collector {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut logged = Logged {
            level,
            message: String::new(),
            fields: BTreeSet::new(),
        };
        event.record(&mut Fields(&mut logged));
        self.events.lock().unwrap().push(logged);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

const LEASE: Duration = Duration::from_secs(3);

fn call(store: &NetworkStore) -> Idempotency<&NetworkStore> {
    Idempotency::new(store).scope("observed").lease(LEASE)
}

/// Drives every path that warns or fails: a store down at the claim, a
/// completion retried, a renewal failing, a lease lost and taken over, a
/// stale holder fenced, a result too large, a corrupt record, bad options.
async fn every_trouble() {
    let store = NetworkStore::new(Duration::from_millis(1));

    store.failing_claims.store(1, Ordering::SeqCst);
    let down = call(&store)
        .run("down", &1, || async { Ok::<_, Error>(1) })
        .await;
    assert!(matches!(down, Err(Error::Backend(_))), "{down:?}");

    store.failing_completes.store(1, Ordering::SeqCst);
    let retried = call(&store)
        .run("retried", &1, || async { Ok::<_, Error>(1) })
        .await;
    assert_eq!(retried.unwrap(), 1);

    // A holder that cannot renew (every second, at lease / 3) for five
    // seconds: its lease lapses at 3 s, another call takes it over at 4.5 s,
    // and its renewal at 6 s finds the claim lost.
    store.failing_renews.store(5, Ordering::SeqCst);
    let slow = call(&store).run("stalled", &1, || async {
        tokio::time::sleep(LEASE * 3).await;
        Ok::<_, Error>("slow".to_owned())
    });
    let takeover = async {
        tokio::time::sleep(LEASE + LEASE / 2).await;
        call(&store)
            .run("stalled", &1, || async {
                Ok::<_, Error>("fast".to_owned())
            })
            .await
    };
    let (slow, fast) = tokio::join!(slow, takeover);
    assert_eq!(
        (slow.unwrap(), fast.unwrap()),
        ("slow".into(), "fast".into())
    );
    store.failing_renews.store(0, Ordering::SeqCst);

    let small = MemoryBackend::new().max_output_bytes(16);
    let large = Idempotency::new(&small)
        .scope("observed")
        .run("large", &1, || async { Ok::<_, Error>("x".repeat(100)) })
        .await;
    assert_eq!(large.unwrap().len(), 100);

    // A record this library did not write.
    let corrupt = MemoryBackend::new();
    let planted = Idempotency::new(&corrupt)
        .scope("observed")
        .prepare("corrupt", &1);
    let (key, fingerprint) = (
        planted.record_key().unwrap().to_owned(),
        *planted.fingerprint().unwrap(),
    );
    let token = FencingToken::generate();
    corrupt
        .claim(&key, &fingerprint, token, LEASE)
        .await
        .unwrap();
    corrupt
        .complete(&key, token, b"garbage", LEASE)
        .await
        .unwrap();
    let replay = planted.run(|| async { Ok::<_, Error>(1) }).await;
    assert!(matches!(replay, Err(Error::Codec(_))), "{replay:?}");

    let invalid = call(&store)
        .ttl(Duration::ZERO)
        .run("invalid", &1, || async { Ok::<_, Error>(1) })
        .await;
    assert!(
        matches!(invalid, Err(Error::InvalidConfig { .. })),
        "{invalid:?}"
    );
}

#[test]
fn every_warning_and_error_names_the_scope_and_the_key() {
    let collector = Collector::default();
    let events = Arc::clone(&collector.events);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(collector, || runtime.block_on(every_trouble()));

    let events = events.lock().unwrap().clone();
    let messages: Vec<&str> = events.iter().map(|event| event.message.as_str()).collect();
    // The scenarios above must have reached each of these paths.
    for expected in [
        "store failed",
        "retrying",
        "could not renew",
        "lost the claim",
        "took over",
        "claim lost before the result was stored",
        "too large",
        "cannot be decoded",
        "invalid options",
    ] {
        assert!(
            messages.iter().any(|message| message.contains(expected)),
            "no event says {expected:?}: {messages:#?}"
        );
    }
    for event in &events {
        for field in ["scope", "key"] {
            assert!(
                event.fields.contains(field),
                "a {} event lacks `{field}`: {event:?}",
                event.level
            );
        }
    }
}
