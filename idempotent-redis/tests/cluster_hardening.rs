//! The store-hardening rules on a private Redis Cluster: the local cache
//! keyed by the whole Redis key and filled in one transaction, a claim sent
//! twice finding itself, and the eviction policy read from every master.

#![cfg(feature = "cluster")]

mod common;

use std::time::Duration;

use common::{logged, Collector};
use idempotent_core::backend::{ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisCluster;
use tracing::Level;

const LEASE: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);

async fn connect(cluster: &RedisCluster) -> RedisBackend {
    RedisBackend::connect_cluster(&cluster.urls())
        .await
        .expect("connect to the private Redis Cluster")
}

async fn call(store: &RedisBackend, key: &str, run: &'static str) -> Result<String, Error> {
    Idempotency::new(store)
        .scope("tests::cluster::hardening")
        .ttl(HOUR)
        .run(key, &1, || async { Ok(run.to_owned()) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_replays_on_a_cluster_and_never_across_key_prefixes() {
    let cluster = RedisCluster::start();
    let tenant_a = connect(&cluster)
        .await
        .with_local_cache(100, Duration::from_secs(60));
    let tenant_b = tenant_a.clone().with_key_prefix("tenant-b:");
    for key in ["order-1", "order-2", "order-3"] {
        assert_eq!(call(&tenant_a, key, "a").await.unwrap(), "a");
        // Filled by this replay (the transaction reached the key's master),
        // served by the next without a round trip.
        assert_eq!(call(&tenant_a, key, "not run").await.unwrap(), "a");
        assert_eq!(call(&tenant_a, key, "not run").await.unwrap(), "a");
        assert_eq!(call(&tenant_b, key, "b").await.unwrap(), "b", "{key}");
        assert_eq!(call(&tenant_b, key, "not run").await.unwrap(), "b");
    }
    let counts = cluster.node_key_counts();
    assert_eq!(
        counts.iter().sum::<u64>(),
        6,
        "both tenants' records: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_sent_twice_acquires_both_times_on_a_cluster() {
    let cluster = RedisCluster::start();
    let plain = connect(&cluster).await;
    let cached = plain
        .clone()
        .with_key_prefix("cached:")
        .with_local_cache(100, Duration::from_secs(60));
    let fingerprint = Fingerprint::from_bytes([3; 32]);
    for (name, store) in [("plain", plain), ("cached", cached)] {
        for i in 0..10 {
            let key = format!("own:{i}");
            let token = FencingToken::generate();
            for attempt in ["first", "again"] {
                let outcome = store.claim(&key, &fingerprint, token, LEASE).await.unwrap();
                assert_eq!(
                    outcome,
                    ClaimOutcome::Acquired {
                        token,
                        took_over: false
                    },
                    "{name}, {key}, {attempt}"
                );
            }
        }
    }
}

#[test]
fn every_master_with_an_evicting_policy_is_warned_about() {
    let cluster = RedisCluster::start();
    let evicting = &cluster.nodes()[1];
    let () = evicting.query(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("volatile-lru"),
    );
    let collector = Collector::default();
    let urls = cluster.urls();
    logged(&collector, RedisBackend::connect_cluster(&urls)).unwrap();
    let warnings: Vec<_> = collector
        .at(Level::WARN)
        .into_iter()
        .filter(|event| event.fields.contains_key("policy"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].fields["policy"], "volatile-lru");
    let node = &warnings[0].fields["node"];
    assert!(
        node.ends_with(&format!(":{}", evicting.port())),
        "the warning names the node: {node}"
    );
}
