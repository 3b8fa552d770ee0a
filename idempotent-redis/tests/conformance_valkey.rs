//! The backend conformance suite on a private Valkey 9 per test, where the
//! completion, the release and the renewal are plain commands (`SET ..
//! IFEQ`, `DELIFEQ`) whenever they can decide, and the scripts otherwise.
//! `plain_commands.rs` checks that the plain commands did run.

use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

idempotent_conformance::conformance_tests!(|| async {
    let server = RedisServer::start_valkey();
    let backend = RedisBackend::connect(&server.url())
        .await
        .expect("connect to the private valkey-server");
    (backend, server)
});
