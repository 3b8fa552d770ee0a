//! The backend conformance suite on a `RedisBackend` with a local cache of
//! completed records: the cache must not change any rule's outcome.

use std::time::Duration;

use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

idempotent_conformance::conformance_tests!(|| async {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(&server.url())
        .await
        .expect("connect to the private redis-server")
        .with_local_cache(1_000, Duration::from_secs(60));
    (backend, server)
});
