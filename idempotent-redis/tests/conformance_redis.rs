//! The backend conformance suite on a private redis-server per test.

use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

idempotent_conformance::conformance_tests!(|| async {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(&server.url())
        .await
        .expect("connect to the private redis-server");
    (backend, server)
});

#[test]
fn an_output_over_the_configured_limit_is_too_large() {
    idempotent_conformance::run("output_over_the_limit_is_too_large", async {
        let server = RedisServer::start();
        let backend = RedisBackend::connect(&server.url())
            .await
            .expect("connect")
            .with_max_output_bytes(1024);
        idempotent_conformance::outputs::output_over_the_limit_is_too_large(&backend, 1024).await;
    });
}
