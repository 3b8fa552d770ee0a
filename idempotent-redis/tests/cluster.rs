//! The Redis store on a private three-master Redis Cluster: records spread
//! over the masters, hash tags, a dead master, a slot migrated mid-run.
//!
//! Every test starts its own cluster (about two seconds): most of them kill a
//! node or move slots, and a cluster is killed with its `RedisCluster` at the
//! end of the test.

#![cfg(feature = "cluster")]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use idempotent_core::{BackendErrorKind, Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::{RedisCluster, RedisServer};

/// Bodies run, across the tests of this binary (the tests compare deltas of
/// their own keys, so only their own bodies matter).
struct Runs(AtomicUsize);

impl Runs {
    const fn new() -> Self {
        Runs(AtomicUsize::new(0))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One idempotent call of `key` under `scope`: the body counts its run in
/// `runs` and returns `key` with the run number, so a replay is told apart
/// from a second run.
async fn call(
    store: &RedisBackend,
    scope: &'static str,
    key: &str,
    runs: &Runs,
) -> Result<String, Error> {
    Idempotency::new(store)
        .scope(scope)
        .run(key, &1, || async {
            let run = runs.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(format!("{key}#{run}"))
        })
        .await
}

/// The Redis key of the record of `key` under `scope`.
fn record_key(store: &RedisBackend, scope: &'static str, key: &str) -> String {
    let call = Idempotency::new(store).scope(scope).prepare(key, &1);
    store.record_key(call.stored_key().expect("a keyed call has a stored key"))
}

/// The index of the node that owns `record_key`'s slot: the others answer a
/// plain `EXISTS` with `MOVED`.
fn owner(cluster: &RedisCluster, record_key: &str) -> usize {
    let owners: Vec<usize> = cluster
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, node)| {
            node.try_query::<i64>(redis::cmd("EXISTS").arg(record_key))
                .is_ok()
        })
        .map(|(index, _)| index)
        .collect();
    assert_eq!(owners.len(), 1, "owners of {record_key}: {owners:?}");
    owners[0]
}

fn node_id(node: &RedisServer) -> String {
    node.query(redis::cmd("CLUSTER").arg("MYID"))
}

/// Keeps the cluster serving the slots of its live masters while one is down
/// (the default, `yes`, stops the whole cluster once a master fails). Not
/// persisted: set it again on a restarted node.
fn serve_partial_coverage(node: &RedisServer) {
    let () = node.query(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("cluster-require-full-coverage")
            .arg("no"),
    );
}

async fn connect(cluster: &RedisCluster) -> RedisBackend {
    RedisBackend::connect_cluster(&cluster.urls())
        .await
        .expect("connect to the private Redis Cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spread_over_every_master_and_replay() {
    static RUNS: Runs = Runs::new();
    const SCOPE: &str = "tests::cluster::spread";
    const CALLS: usize = 200;
    let cluster = RedisCluster::start();
    let store = connect(&cluster).await;
    let keys: Vec<String> = (0..CALLS).map(|i| format!("order-{i}")).collect();

    let mut first = Vec::with_capacity(CALLS);
    for key in &keys {
        first.push(call(&store, SCOPE, key, &RUNS).await.unwrap());
    }
    assert_eq!(RUNS.count(), CALLS, "every first call ran its body");

    let counts = cluster.node_key_counts();
    eprintln!("records per node after {CALLS} calls: {counts:?}");
    assert_eq!(counts.iter().sum::<u64>(), CALLS as u64, "{counts:?}");
    assert!(
        counts.iter().all(|&count| count > 0),
        "records on every master: {counts:?}"
    );

    for (key, first) in keys.iter().zip(&first) {
        assert_eq!(&call(&store, SCOPE, key, &RUNS).await.unwrap(), first);
    }
    assert_eq!(RUNS.count(), CALLS, "replays ran no body");
    assert_eq!(cluster.node_key_counts(), counts, "replays wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braces_in_a_scope_are_a_hash_tag_that_keeps_its_records_on_one_node() {
    static RUNS: Runs = Runs::new();
    const SCOPE: &str = "{tenant-7}";
    let cluster = RedisCluster::start();
    let store = connect(&cluster).await;
    for i in 0..50 {
        call(&store, SCOPE, &format!("order-{i}"), &RUNS)
            .await
            .unwrap();
    }
    let counts = cluster.node_key_counts();
    assert_eq!(
        counts.iter().filter(|&&count| count > 0).count(),
        1,
        "one node holds every record of the scope: {counts:?}"
    );
    assert_eq!(counts.iter().sum::<u64>(), 50, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_tells_a_cluster_store_from_a_single_server_one() {
    let cluster = RedisCluster::start();
    let clustered = format!("{:?}", connect(&cluster).await);
    assert!(clustered.contains("mode: Cluster"), "{clustered}");

    let server = RedisServer::start();
    let single = format!("{:?}", RedisBackend::connect(&server.url()).await.unwrap());
    assert!(single.contains("mode: Single"), "{single}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_dead_cluster_fails_at_start_up() {
    let mut cluster = RedisCluster::start();
    let urls = cluster.urls();
    for node in cluster.nodes_mut() {
        node.kill();
    }
    let started = Instant::now();
    let error = RedisBackend::connect_cluster(&urls).await.unwrap_err();
    eprintln!(
        "connecting to a dead cluster failed in {:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");

    let invalid = RedisBackend::connect_cluster(&["not a url"])
        .await
        .unwrap_err();
    assert!(
        invalid.to_string().contains("invalid Redis Cluster URLs"),
        "{invalid}"
    );

    // A server without cluster support is not a cluster.
    let server = RedisServer::start();
    let error = RedisBackend::connect_cluster(&[server.url()])
        .await
        .unwrap_err();
    eprintln!("connecting to a lone server as a cluster: {error}");
}

/// Calls on the keys of `cluster`, sorted by the master that owns their
/// records, after a first run of each.
struct Spread {
    keys: Vec<String>,
    first: Vec<String>,
    owners: Vec<usize>,
}

impl Spread {
    async fn new(
        cluster: &RedisCluster,
        store: &RedisBackend,
        scope: &'static str,
        runs: &Runs,
    ) -> Spread {
        let keys: Vec<String> = (0..30).map(|i| format!("order-{i}")).collect();
        let mut first = Vec::new();
        for key in &keys {
            first.push(call(store, scope, key, runs).await.unwrap());
        }
        let owners: Vec<usize> = keys
            .iter()
            .map(|key| owner(cluster, &record_key(store, scope, key)))
            .collect();
        assert_eq!(
            owners.iter().collect::<BTreeSet<_>>().len(),
            3,
            "records on every master: {owners:?}"
        );
        Spread {
            keys,
            first,
            owners,
        }
    }

    /// `(key, first output)` of the records on `node`, or on the others.
    fn on(&self, node: usize, on_it: bool) -> impl Iterator<Item = (&String, &String)> {
        self.keys
            .iter()
            .zip(&self.first)
            .zip(&self.owners)
            .filter(move |(_, owner)| (**owner == node) == on_it)
            .map(|(pair, _)| pair)
    }
}

/// Waits until the live masters of `cluster` mark `dead` failed.
async fn until_marked_failed(cluster: &RedisCluster, dead: usize) -> Duration {
    let started = Instant::now();
    while !cluster
        .nodes()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != dead)
        .all(|(_, node)| {
            let nodes: String = node.query(redis::cmd("CLUSTER").arg("NODES"));
            nodes.lines().any(|line| line.contains(" master,fail "))
        })
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the dead master was never marked failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Asserts that `outcome` is the fail-closed error of an unavailable store.
fn assert_unavailable<T: std::fmt::Debug>(outcome: Result<T, Error>, what: &str) {
    match outcome {
        Err(Error::Backend(error)) => {
            assert_eq!(
                error.kind(),
                BackendErrorKind::Unavailable,
                "{what}: {error}"
            );
        }
        other => panic!("{what}: expected Error::Backend, got {other:?}"),
    }
}

/// Calls `key` until it gives a result (asserted equal to `first`), and
/// returns how many times it failed closed first. A call on a live master
/// fails closed only when the `redis` crate's cluster connection wedged
/// (see `the_store_recovers_when_a_master_dies_under_concurrent_calls`),
/// until the store has replaced it.
async fn replayed_eventually(
    store: &RedisBackend,
    scope: &'static str,
    key: &str,
    first: &str,
    runs: &Runs,
) -> usize {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match call(store, scope, key, runs).await {
            Ok(output) => {
                assert_eq!(output, first, "{key} replayed");
                return failures;
            }
            Err(error) => {
                assert_unavailable::<()>(Err(error), key);
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{key} still fails after {:?}",
                    started.elapsed()
                );
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A master dies: calls whose records it owns fail closed, quickly, without
/// running their body; calls on the other masters keep working, even after
/// their script caches were flushed; and once it is restarted the same
/// backend uses it again. One call at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_fails_its_calls_closed_and_the_others_keep_working() {
    static RUNS: Runs = Runs::new();
    const SCOPE: &str = "tests::cluster::dead-master";
    const DEAD: usize = 2;
    let mut cluster = RedisCluster::start();
    cluster.nodes().iter().for_each(serve_partial_coverage);
    let store = connect(&cluster).await;
    let spread = Spread::new(&cluster, &store, SCOPE, &RUNS).await;
    // Keys never used, whose records go to a live master.
    let fresh: Vec<&str> = [
        "fresh-0", "fresh-1", "fresh-2", "fresh-3", "fresh-4", "fresh-5",
    ]
    .into_iter()
    .filter(|key| owner(&cluster, &record_key(&store, SCOPE, key)) != DEAD)
    .collect();

    cluster.nodes_mut()[DEAD].kill();
    // Scripts are cached per node: with the caches of the live masters
    // flushed, their next calls get NOSCRIPT and must load the script again
    // on their own node, without the dead one.
    for node in &cluster.nodes()[..DEAD] {
        let () = node.query(redis::cmd("SCRIPT").arg("FLUSH"));
    }

    let check_while_down = |when: &'static str, fresh: &'static str| {
        let (store, spread) = (&store, &spread);
        async move {
            let runs = RUNS.count();
            for (key, _) in spread.on(DEAD, true).take(3) {
                let started = Instant::now();
                let outcome = call(store, SCOPE, key, &RUNS).await;
                let took = started.elapsed();
                assert_unavailable(outcome, &format!("{when}: {key} on the dead master"));
                eprintln!("{when}: {key} on the dead master failed closed in {took:?}");
                // The cluster connection's bound is 5 s; checked generously.
                assert!(took < Duration::from_secs(30), "{when}: {took:?}");
            }
            let mut failures = 0;
            for (key, first) in spread.on(DEAD, false) {
                failures += replayed_eventually(store, SCOPE, key, first, &RUNS).await;
            }
            if failures > 0 {
                eprintln!("{when}: calls on live masters failed closed {failures} times first");
            }
            call(store, SCOPE, fresh, &RUNS).await.unwrap();
            assert_eq!(
                RUNS.count(),
                runs + 1,
                "{when}: only the new key ran its body"
            );
        }
    };
    check_while_down("right after the kill", fresh[0]).await;
    let took = until_marked_failed(&cluster, DEAD).await;
    eprintln!("marked failed {took:?} later");
    check_while_down("once marked failed", fresh[1]).await;

    // Restarted with the same port and cluster configuration, but no data:
    // the test nodes have no persistence, so its records are gone.
    cluster.nodes_mut()[DEAD].restart();
    serve_partial_coverage(&cluster.nodes()[DEAD]);
    cluster.wait_until_ok();
    let (back, _) = spread.on(DEAD, true).next().unwrap();
    let started = Instant::now();
    let mut outcome = call(&store, SCOPE, back, &RUNS).await;
    while outcome.is_err() && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = call(&store, SCOPE, back, &RUNS).await;
    }
    eprintln!("back {:?} after the restart", started.elapsed());
    let again = outcome.expect("the restarted master serves its keys again");
    assert_eq!(
        call(&store, SCOPE, back, &RUNS).await.unwrap(),
        again,
        "replayed"
    );
    assert_eq!(
        owner(&cluster, &record_key(&store, SCOPE, back)),
        DEAD,
        "the record is on the restarted master"
    );
    for (key, first) in spread.on(DEAD, false) {
        replayed_eventually(&store, SCOPE, key, first, &RUNS).await;
    }
}

/// A master dies, its script cache and those of the others are gone, and
/// waves of every call at once follow: each call gives the right result or
/// fails closed, none runs its body again, and the live masters answer again
/// within seconds. In about one run in ten to thirty, the first wave wedges
/// the `redis` crate's cluster connection (every command then times out,
/// for good); the store's replacement of its connection after a timed-out
/// command is what makes the later waves work then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_when_a_master_dies_under_concurrent_calls() {
    static RUNS: Runs = Runs::new();
    const SCOPE: &str = "tests::cluster::dies-under-load";
    const DEAD: usize = 2;
    let mut cluster = RedisCluster::start();
    cluster.nodes().iter().for_each(serve_partial_coverage);
    let store = connect(&cluster).await;
    let spread = Spread::new(&cluster, &store, SCOPE, &RUNS).await;
    let runs = RUNS.count();

    cluster.nodes_mut()[DEAD].kill();
    for (i, node) in cluster.nodes().iter().enumerate() {
        if i != DEAD {
            let () = node.query(redis::cmd("SCRIPT").arg("FLUSH"));
        }
    }
    for wave in 0..3 {
        let mut failed_on_live = 0;
        let calls: Vec<_> = spread
            .keys
            .iter()
            .map(|key| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move { call(&store, SCOPE, &key, &RUNS).await })
            })
            .collect();
        for ((handle, first), owner) in calls.into_iter().zip(&spread.first).zip(&spread.owners) {
            match handle.await.expect("the call does not panic") {
                Ok(output) => assert_eq!(&output, first, "wave {wave}"),
                Err(error) => {
                    assert_unavailable::<()>(Err(error), &format!("wave {wave}"));
                    if *owner != DEAD {
                        failed_on_live += 1;
                    }
                }
            }
        }
        eprintln!("wave {wave}: {failed_on_live} calls on live masters failed closed");
    }

    let started = Instant::now();
    for (key, first) in spread.on(DEAD, false) {
        replayed_eventually(&store, SCOPE, key, first, &RUNS).await;
    }
    eprintln!(
        "every live master answered again {:?} later",
        started.elapsed()
    );
    assert_eq!(RUNS.count(), runs, "no body ran again");
}

/// A master hangs (SIGSTOP): its calls fail closed once the cluster
/// connection's bound on a command (5 s) runs out, and work again once it
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_fails_its_calls_closed_within_the_command_bound() {
    static RUNS: Runs = Runs::new();
    const SCOPE: &str = "tests::cluster::hung-master";
    let cluster = RedisCluster::start();
    let store = connect(&cluster).await;
    let first = call(&store, SCOPE, "order-1", &RUNS).await.unwrap();
    let hung = owner(&cluster, &record_key(&store, SCOPE, "order-1"));

    cluster.nodes()[hung].pause();
    let started = Instant::now();
    let outcome = call(&store, SCOPE, "order-1", &RUNS).await;
    let took = started.elapsed();
    cluster.nodes()[hung].resume();
    match outcome {
        Err(Error::Backend(error)) => {
            assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
        }
        other => panic!("expected Error::Backend from a hung master, got {other:?}"),
    }
    eprintln!("a call on the hung master failed closed in {took:?}");
    assert!(
        took < Duration::from_secs(30),
        "failing closed took {took:?}"
    );

    let started = Instant::now();
    let mut outcome = call(&store, SCOPE, "order-1", &RUNS).await;
    while outcome.is_err() && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = call(&store, SCOPE, "order-1", &RUNS).await;
    }
    assert_eq!(outcome.unwrap(), first, "replayed once it answers again");
    assert_eq!(RUNS.count(), 1, "the body ran once");
}

/// A slot holding records moves to another master during a run: while it
/// migrates, records already moved are reached through `ASK`, records not yet
/// moved on the old master, and a new record is created on the new one; once
/// moved, `MOVED` leads every call there. No body runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_replayed_while_and_after_their_slot_moves() {
    static RUNS: Runs = Runs::new();
    // One hash tag: every record of the scope is in one slot.
    const SCOPE: &str = "{moving}";
    let cluster = RedisCluster::start();
    let store = connect(&cluster).await;

    let keys: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
    let mut first = Vec::new();
    for key in &keys {
        first.push(call(&store, SCOPE, key, &RUNS).await.unwrap());
    }
    let record_keys: Vec<String> = keys
        .iter()
        .map(|key| record_key(&store, SCOPE, key))
        .collect();
    let slot: i64 =
        cluster.nodes()[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(&record_keys[0]));
    let from = owner(&cluster, &record_keys[0]);
    let to = (from + 1) % 3;
    let (source, target) = (&cluster.nodes()[from], &cluster.nodes()[to]);
    let (source_id, target_id) = (node_id(source), node_id(target));

    // Start the migration and move half of the records.
    let () = target.query(
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&source_id),
    );
    let () = source.query(
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&target_id),
    );
    let migrate = |keys: &[String]| {
        let reply: String = source.query(
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target.port())
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(keys),
        );
        assert_eq!(reply, "OK");
    };
    migrate(&record_keys[..5]);

    let runs = RUNS.count();
    for (key, first) in keys.iter().zip(&first) {
        assert_eq!(
            &call(&store, SCOPE, key, &RUNS).await.unwrap(),
            first,
            "{key} replayed mid-migration"
        );
    }
    assert_eq!(RUNS.count(), runs, "no body ran again mid-migration");
    let fresh = call(&store, SCOPE, "order-new", &RUNS).await.unwrap();
    assert_eq!(RUNS.count(), runs + 1);

    // Finish: move the rest, then give the slot to the target everywhere.
    migrate(&record_keys[5..]);
    for node in [target, source].into_iter().chain(
        cluster
            .nodes()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != from && *i != to)
            .map(|(_, node)| node),
    ) {
        let () = node.query(
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&target_id),
        );
    }
    cluster.wait_until_ok();

    for (key, first) in keys.iter().zip(&first) {
        assert_eq!(
            &call(&store, SCOPE, key, &RUNS).await.unwrap(),
            first,
            "{key} replayed after the migration"
        );
    }
    assert_eq!(
        call(&store, SCOPE, "order-new", &RUNS).await.unwrap(),
        fresh
    );
    assert_eq!(
        RUNS.count(),
        runs + 1,
        "no body ran again after the migration"
    );
    for record in record_keys
        .iter()
        .chain([&record_key(&store, SCOPE, "order-new")])
    {
        assert_eq!(owner(&cluster, record), to, "{record} is on the new master");
    }
}
