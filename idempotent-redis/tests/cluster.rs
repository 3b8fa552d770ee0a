//! `RedisBackend` on a private three-master Redis Cluster.

use idempotent_core::{Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisCluster;

/// The full conformance suite, on a fresh cluster per test (a cluster is a
/// few processes; each test's cluster is killed when the test ends, so no
/// server outlives the test binary).
mod conformance {
    use super::*;

    idempotent_core::conformance_tests!(|| async {
        let cluster = RedisCluster::start();
        let backend = RedisBackend::connect_cluster(&cluster.urls())
            .await
            .expect("connect to the private cluster");
        (backend, cluster)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spread_over_the_masters_and_replay_from_each() {
    let cluster = RedisCluster::start();
    let store = RedisBackend::connect_cluster(&cluster.urls())
        .await
        .unwrap();
    assert!(format!("{store:?}").contains("cluster"), "{store:?}");
    let call = |order: u32| {
        let store = &store;
        async move {
            Idempotency::new(store)
                .scope("tests::cluster")
                .run(&order, &order, || async move { Ok::<_, Error>(order * 10) })
                .await
        }
    };
    for order in 0..200 {
        assert_eq!(call(order).await.unwrap(), order * 10);
    }
    let counts = cluster.node_key_counts();
    assert_eq!(
        counts.iter().sum::<u64>(),
        200,
        "one key per record: {counts:?}"
    );
    let nodes_with_records = counts.iter().filter(|&&count| count > 0).count();
    assert!(
        nodes_with_records >= 2,
        "records on {nodes_with_records} node(s): {counts:?}"
    );
    for order in 0..200 {
        let replay = Idempotency::new(&store)
            .scope("tests::cluster")
            .run(&order, &order, || async { Ok::<_, Error>(u32::MAX) })
            .await;
        assert_eq!(replay.unwrap(), order * 10, "replayed, not run again");
    }
    eprintln!("cluster: 200 records per node {counts:?}, all replayed");
}

#[tokio::test]
async fn an_unreachable_cluster_fails_at_start_up() {
    let error = RedisBackend::connect_cluster(&["redis://127.0.0.1:1"])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Redis Cluster"), "{error}");
}

/// A master dies: calls whose key it owned fail closed (`Error::Backend`,
/// the body does not run) while calls on the other masters keep working;
/// once it is back (without persistence, so empty) the same backend serves
/// its keys again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_fails_its_keys_closed_and_the_others_keep_working() {
    use std::time::{Duration, Instant};

    let mut cluster = RedisCluster::start();
    let store = RedisBackend::connect_cluster(&cluster.urls())
        .await
        .unwrap();
    let runs = std::sync::atomic::AtomicU32::new(0);
    let call = |order: u32| {
        let (store, runs) = (&store, &runs);
        async move {
            Idempotency::new(store)
                .scope("tests::failover")
                .run(&order, &order, || async move {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, Error>(order)
                })
                .await
        }
    };
    for order in 0..60 {
        call(order).await.unwrap();
    }
    let record_key = |order: u32| {
        let prepared = Idempotency::new(&store)
            .scope("tests::failover")
            .prepare(&order, &order);
        store.record_key(prepared.stored_key().unwrap())
    };
    let on_first: Vec<String> = cluster.nodes()[0].query(redis::cmd("KEYS").arg("*"));
    let (dead, alive): (Vec<u32>, Vec<u32>) =
        (0..60).partition(|&order| on_first.contains(&record_key(order)));
    assert!(
        !dead.is_empty() && !alive.is_empty(),
        "{} on node 0",
        dead.len()
    );

    cluster.nodes_mut()[0].kill();
    let runs_before = runs.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let failed = call(dead[0]).await;
    assert!(matches!(failed, Err(Error::Backend(_))), "{failed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    for &order in alive.iter().take(5) {
        assert_eq!(
            call(order).await.unwrap(),
            order,
            "order {order} on a live master"
        );
    }
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        runs_before,
        "nothing ran"
    );

    cluster.nodes_mut()[0].restart();
    cluster.wait_until_ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    let back = loop {
        match call(dead[0]).await {
            Err(Error::Backend(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => break outcome,
        }
    };
    assert_eq!(back.unwrap(), dead[0], "the same backend works again");
    eprintln!(
        "cluster failover: {} of 60 records on the killed master; its call failed closed in {:?}",
        dead.len(),
        started.elapsed()
    );
}
