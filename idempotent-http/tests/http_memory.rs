//! The HTTP layer over real HTTP on the in-process `MemoryBackend`.

mod suite;

use std::sync::Arc;
use std::time::Duration;

use idempotent_core::MemoryBackend;
use suite::app::TestServer;
use suite::client::{post, Client};
use suite::Store;

suite::http_suite!(|| async { Store::new(MemoryBackend::new(), ()) });

/// A store full of running claims cannot take another: fail closed with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_claim_is_503_and_the_handler_does_not_run() {
    let store = Arc::new(MemoryBackend::with_max_entries(1));
    let server = TestServer::start(store, |layer| layer.retry_after(Duration::from_secs(3))).await;
    let client = Client::new(&server.base);
    let holder = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .send(&post("/held", "{}").key("holds-the-only-slot"))
                .await
        }
    });
    server.gate().entered().await;

    let reply = client.send(&post("/payments", "{}").key("no-room")).await;
    reply.problem(503, "store-unavailable");
    assert_eq!(reply.header("retry-after"), Some("3"));
    assert_eq!(server.runs("payments"), 0);

    server.gate().release();
    assert_eq!(holder.await.unwrap().status, 201);
}

/// A response the store refuses to keep reaches its caller; a retry is told
/// so (500) and the handler does not run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_too_large_to_store_is_not_run_again() {
    // Room for the small record saying the handler ran, not for the response.
    let store = Arc::new(MemoryBackend::new().max_output_bytes(512));
    let server = TestServer::start(store, |layer| layer).await;
    let client = Client::new(&server.base);
    let request = post("/payments", &"x".repeat(600)).key("too-large");

    let first = client.send(&request).await;
    assert_eq!(first.status, 201);
    let retry = client.send(&request).await;
    retry.problem(500, "response-not-stored");
    assert_eq!(server.runs("payments"), 1);
}
