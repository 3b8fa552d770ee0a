//! Shared by the tests that read what the store logs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One logged event: its level, message and fields (as `Debug` text, strings
/// without quotes).
#[derive(Debug, Clone)]
pub struct Logged {
    pub level: Level,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

/// Collects every event of the `idempotent_redis` crate, at any level.
#[derive(Clone, Default)]
pub struct Collector {
    events: Arc<Mutex<Vec<Logged>>>,
    next_span: Arc<AtomicU64>,
}

impl Collector {
    /// The events logged so far at `level`.
    pub fn at(&self, level: Level) -> Vec<Logged> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|event| event.level == level)
            .cloned()
            .collect()
    }
}

struct Fields<'a>(&'a mut Logged);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields<'_> {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.0.message = value;
        } else {
            self.0.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Subscriber for Collector {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("idempotent_redis")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut logged = Logged {
            level: *event.metadata().level(),
            message: String::new(),
            fields: BTreeMap::new(),
        };
        event.record(&mut Fields(&mut logged));
        self.events.lock().unwrap().push(logged);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `future` to completion on a current-thread runtime, with `collector`
/// receiving what it logs.
pub fn logged<F: std::future::Future>(collector: &Collector, future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(collector.clone(), || runtime.block_on(future))
}
