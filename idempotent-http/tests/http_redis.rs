//! The HTTP layer over real HTTP on `RedisBackend`, each test on its own
//! private `redis-server`.

mod suite;

use std::sync::Arc;

use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;
use suite::app::TestServer;
use suite::client::{post, Client};
use suite::Store;

suite::http_suite!(|| async {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(&server.url())
        .await
        .expect("connect to the private redis-server");
    Store::new(backend, server)
});

/// Redis down: the layer fails closed with 503 and the handler does not run;
/// once Redis is back, the same key works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_503_and_the_handler_does_not_run() {
    let mut redis = RedisServer::start();
    let backend = RedisBackend::connect(&redis.url()).await.unwrap();
    let server = TestServer::start(Arc::new(backend), |layer| layer).await;
    let client = Client::new(&server.base);
    let request = post("/payments", "{}").key("redis-down");

    redis.kill();
    let reply = client.send(&request).await;
    reply.problem(503, "store-unavailable");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(server.runs("payments"), 0);

    redis.restart();
    let mut reply = client.send(&request).await;
    // The connection comes back by itself, possibly after one more failure.
    for _ in 0..20 {
        if reply.status != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        reply = client.send(&request).await;
    }
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(server.runs("payments"), 1);
    assert!(client.send(&request).await.replayed());
}
