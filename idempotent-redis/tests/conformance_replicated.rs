//! The backend conformance suite on a private primary with one replica, with
//! `with_replica_acks` on: every rule holds when each claim, completion and
//! renewal waits for the replica.

use std::time::Duration;

use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisReplicaSet;

idempotent_conformance::conformance_tests!(|| async {
    let set = RedisReplicaSet::start(1);
    let backend = RedisBackend::connect(&set.primary().url())
        .await
        .expect("connect to the private primary")
        .with_replica_acks(1, Duration::from_secs(1))
        .expect("valid replica acks");
    (backend, set)
});
