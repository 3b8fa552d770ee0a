//! The process default store: one line at start-up swaps it.

use std::sync::Arc;

use idempotent_core::{idempotent, set_default_backend, Error, MemoryBackend};

#[idempotent(scope = "tests::default")]
async fn double(value: u32) -> Result<u32, Error> {
    Ok(value * 2)
}

// One test: the default is process-wide, and this binary is its own process.
#[tokio::test]
async fn set_default_backend_swaps_the_store_once() {
    let store = Arc::new(MemoryBackend::new());
    set_default_backend(Arc::clone(&store)).unwrap();
    assert_eq!(double(21).await.unwrap(), 42);
    assert_eq!(store.len(), 1, "the record went to the installed store");
    let again = set_default_backend(MemoryBackend::new());
    assert!(again.is_err(), "the default never changes once chosen");
    assert!(again.unwrap_err().to_string().contains("start-up"));
}
