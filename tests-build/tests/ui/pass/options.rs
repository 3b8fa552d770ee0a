// Every option together: a key on a field, skip, scope, durations, cache_err,
// a backend expression and a re-exported runtime crate.
use idempotent_core::{idempotent, MemoryBackend};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

// A crate that re-exports the runtime, as an application framework would.
mod framework {
    pub use idempotent_core as idempotency;
}

#[derive(Serialize, Deserialize)]
struct Request {
    id: Option<String>,
    amount: u64,
}

struct Gateway;

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
enum ChargeError {
    #[error("idempotency: {0}")]
    Idempotency(String),
    #[error("declined")]
    Declined,
}

impl From<idempotent_core::Error> for ChargeError {
    fn from(error: idempotent_core::Error) -> Self {
        ChargeError::Idempotency(error.to_string())
    }
}

#[idempotent(
    key = req.id,
    skip(gateway, store),
    scope = "billing::charge",
    ttl = "24h",
    lease = "1m 30s",
    wait = "250ms",
    cache_err,
    require_key,
    backend = store.clone(),
    crate = "framework::idempotency",
)]
async fn charge(gateway: &Gateway, store: Arc<MemoryBackend>, req: Request) -> Result<u64, ChargeError> {
    let _ = gateway;
    if req.amount == 0 {
        return Err(ChargeError::Declined);
    }
    Ok(req.amount)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let store = Arc::new(MemoryBackend::new());
    let request = |amount| Request { id: Some("r-1".into()), amount };
    assert_eq!(charge(&Gateway, store.clone(), request(5)).await.unwrap(), 5);
    let declined = Request { id: Some("r-2".into()), amount: 0 };
    assert!(matches!(charge(&Gateway, store, declined).await, Err(ChargeError::Declined)));
}
