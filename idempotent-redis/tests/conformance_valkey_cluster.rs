//! The backend conformance suite on a private three-master Valkey 9 cluster,
//! where every node has `SET .. IFEQ` and `DELIFEQ`, so the completions,
//! releases and renewals that the plain commands can decide run without a
//! script; and a check that they did.
//!
//! The tests of this binary share one cluster while any of them runs, as
//! `conformance_cluster.rs` explains.

#![cfg(feature = "cluster")]

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::Backend;
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisCluster;

static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());

fn shared_cluster() -> Arc<RedisCluster> {
    idempotent_test_support::shared(&SHARED, RedisCluster::start_valkey)
}

async fn cluster_backend() -> (RedisBackend, Arc<RedisCluster>) {
    let cluster = shared_cluster();
    let backend = RedisBackend::connect_cluster(&cluster.urls())
        .await
        .expect("connect to the private Valkey cluster");
    (backend, cluster)
}

idempotent_conformance::conformance_tests!(cluster_backend);

/// Its own cluster: the command counts must be this test's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_valkey_cluster_completions_and_releases_run_no_script_on_any_master() {
    let cluster = RedisCluster::start_valkey();
    let store = RedisBackend::connect_cluster(&cluster.urls())
        .await
        .unwrap();
    for node in cluster.nodes() {
        node.reset_stats();
    }
    let fingerprint = Fingerprint::from_bytes([9; 32]);
    let lease = Duration::from_secs(60);
    // Enough keys that every master owns some.
    for n in 0..32 {
        let (completed, released) = (FencingToken::generate(), FencingToken::generate());
        let (done, dropped) = (format!("done:{n}"), format!("dropped:{n}"));
        let claimed = store.claim(&done, &fingerprint, completed, lease).await;
        assert!(matches!(claimed, Ok(ClaimOutcome::Acquired { .. })));
        assert_eq!(
            store
                .complete(&done, completed, b"out", Duration::from_secs(600))
                .await
                .unwrap(),
            CasOutcome::Applied
        );
        store
            .claim(&dropped, &fingerprint, released, lease)
            .await
            .unwrap();
        assert_eq!(
            store.release(&dropped, released).await.unwrap(),
            CasOutcome::Applied
        );
    }
    let count = |command: &str| -> Vec<u64> {
        cluster
            .nodes()
            .iter()
            .map(|node| node.command_count(command))
            .collect()
    };
    let (evalsha, eval) = (count("evalsha"), count("eval"));
    assert!(
        evalsha.iter().chain(&eval).all(|n| *n == 0),
        "{evalsha:?} {eval:?}"
    );
    let delifeq = count("delifeq");
    assert_eq!(delifeq.iter().sum::<u64>(), 32);
    assert!(
        delifeq.iter().all(|n| *n > 0),
        "every master owns some keys: {delifeq:?}"
    );
}
