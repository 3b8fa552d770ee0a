//! The replicated setups: a replica set promoted by hand, sentinels that fail it over, and a
//! cluster with a replica per master.

use idempotent_test_support::{RedisCluster, RedisOptions, RedisReplicaSet, RedisSentinel};

fn get(server: &idempotent_test_support::RedisServer, key: &str) -> Option<String> {
    server.query(redis::cmd("GET").arg(key))
}

#[test]
fn a_replica_set_replicates_and_a_cut_off_replica_misses_what_a_killed_primary_had() {
    let mut set = RedisReplicaSet::start(1);
    let _: () = set
        .primary()
        .query(redis::cmd("SET").arg("before").arg("1"));
    set.wait_for_replicas();
    assert_eq!(get(set.replicas()[0], "before").as_deref(), Some("1"));

    set.cut_off(1);
    let _: () = set
        .primary()
        .query(redis::cmd("SET").arg("during").arg("2"));
    set.kill_primary();
    set.nodes()[1].resume();
    set.promote(1);
    assert_eq!(set.primary_index(), 1);
    assert_eq!(get(set.primary(), "before").as_deref(), Some("1"));
    assert_eq!(
        get(set.primary(), "during"),
        None,
        "the write the replica never got"
    );
    let _: () = set.primary().query(redis::cmd("SET").arg("after").arg("3"));
}

#[test]
fn a_sentinel_fails_over_a_killed_primary_and_a_restarted_one_rejoins_as_replica() {
    let mut set = RedisReplicaSet::start(1);
    let sentinel = RedisSentinel::start(&set, 1);
    assert_eq!(sentinel.primary_port(), Some(set.primary().port()));
    let old = set.primary_index();
    set.kill_primary();
    let promoted = sentinel.wait_for_failover(&mut set);
    assert_ne!(promoted, old);
    assert_eq!(sentinel.primary_port(), Some(set.primary().port()));

    let port = set.primary().port();
    set.nodes_mut()[old].restart_as_replica_of(port);
    set.wait_for_replicas();
    sentinel.wait_for_replicas(1);
    // And back, on request.
    sentinel.failover();
    assert_eq!(sentinel.wait_for_failover(&mut set), old);
}

/// Kills in a row, each with the old primary restarted as a replica as soon as the sentinels
/// name the new one: about one kill in six (down-after 1 s) was followed by a second failover
/// nobody asked for, to the restarted node before it had synced.
const KILLS: u64 = 12;

#[test]
fn each_kill_of_the_primary_is_one_failover_and_the_restarted_node_rejoins() {
    // A full sync at once instead of after Redis's 5 s wait for more replicas, so that a
    // dozen kills take seconds each.
    let mut set = RedisReplicaSet::start_with(
        1,
        RedisOptions {
            extra_args: vec!["--repl-diskless-sync-delay".to_owned(), "0".to_owned()],
            ..RedisOptions::default()
        },
    );
    let sentinel = RedisSentinel::start(&set, 1);
    for kill in 1..=KILLS {
        let old = set.primary_index();
        set.kill_primary();
        sentinel.wait_for_failover(&mut set);
        let port = set.primary().port();
        set.nodes_mut()[old].restart_as_replica_of(port);
        sentinel.wait_for_replicas(1);
        assert_eq!(
            (sentinel.failovers(), sentinel.primary_port()),
            (kill, Some(port)),
            "kill {kill}: a failover nobody asked for\n{}",
            sentinel.logs()
        );
        set.wait_for_replicas();
        // Kills at varied points of the sentinel's once-a-second reconnect and ping cycle,
        // as load does in the soak: back-to-back kills fall at much the same point each time.
        std::thread::sleep(std::time::Duration::from_millis(kill * 379 % 1_000));
    }
}

#[test]
fn a_cluster_with_replicas_has_three_masters_and_three_synced_replicas() {
    let cluster = RedisCluster::start_with_replicas();
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
}
