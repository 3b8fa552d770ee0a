//! The backend conformance suite on a private three-master Redis Cluster.
//!
//! Starting a cluster takes about two seconds, so the tests of this binary
//! share one: each test holds an `Arc` of it as its fixture's guard, and a
//! static keeps only a `Weak`, so the cluster is killed (every node, by the
//! `RedisCluster`'s `Drop`) as soon as no running test holds it. The last test
//! to finish kills it before the binary exits: no node outlives the binary,
//! though statics are never dropped. When the tests run one at a time
//! (`--test-threads=1`) the cluster is not shared but started per test,
//! which is slower and just as correct. The conformance checks use keys
//! unique to each check and run, so sharing a cluster is safe.
//!
//! Each test connects its own backend: a cluster connection lives on the
//! Tokio runtime that made it, and every test has a runtime of its own.

#![cfg(feature = "cluster")]

use std::sync::{Arc, Mutex, Weak};

use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisCluster;

/// The cluster running tests share, while any of them runs.
static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());

/// The shared cluster, started if no running test holds one. Blocks for
/// the two seconds a start takes (while other tests wait for the lock and
/// then share it); the conformance factory runs on the test's own thread,
/// outside the runtime's workers, so that blocks no task.
fn shared_cluster() -> Arc<RedisCluster> {
    idempotent_test_support::shared(&SHARED, RedisCluster::start)
}

async fn cluster_backend() -> (RedisBackend, Arc<RedisCluster>) {
    let cluster = shared_cluster();
    let backend = RedisBackend::connect_cluster(&cluster.urls())
        .await
        .expect("connect to the private Redis Cluster");
    (backend, cluster)
}

idempotent_conformance::conformance_tests!(cluster_backend);

#[test]
fn an_output_over_the_configured_limit_is_too_large() {
    idempotent_conformance::run("output_over_the_limit_is_too_large", async {
        let (backend, _cluster) = cluster_backend().await;
        let backend = backend.with_max_output_bytes(1024);
        idempotent_conformance::outputs::output_over_the_limit_is_too_large(&backend, 1024).await;
    });
}
