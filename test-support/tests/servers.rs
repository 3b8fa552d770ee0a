//! The private servers start, answer, fail and recover as the store's tests expect.

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use idempotent_test_support::{RedisCluster, RedisOptions, RedisServer};

fn ping(server: &RedisServer) -> String {
    server.query(&redis::cmd("PING"))
}

/// Whether a fresh connection to `port` succeeds; a short timeout, as a refused connection on
/// loopback fails at once.
fn accepts_connections(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(1))
        .is_ok()
}

#[test]
fn servers_started_concurrently_get_their_own_ports_and_answer() {
    let servers: Vec<RedisServer> = thread::scope(|scope| {
        let starts: Vec<_> = (0..4).map(|_| scope.spawn(RedisServer::start)).collect();
        starts
            .into_iter()
            .map(|start| start.join().unwrap())
            .collect()
    });
    let ports: BTreeSet<u16> = servers.iter().map(RedisServer::port).collect();
    assert_eq!(ports.len(), servers.len());
    assert!(!ports.contains(&6379));
    for server in &servers {
        assert_eq!(ping(server), "PONG");
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    }
    // Each server is its own: a key written to one is absent from the others.
    let _: () = servers[0].query(redis::cmd("SET").arg("only-here").arg(1));
    let on_second: Option<String> = servers[1].query(redis::cmd("GET").arg("only-here"));
    assert_eq!(on_second, None);
}

#[test]
fn runs_without_persistence_by_default_in_its_own_dir() {
    let server = RedisServer::start();
    let config: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("appendonly"));
    assert_eq!(config, ["appendonly", "no"]);
    let config: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("save"));
    assert_eq!(config, ["save", ""]);
    let config: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("dir"));
    assert_eq!(
        std::fs::canonicalize(&config[1]).unwrap(),
        std::fs::canonicalize(server.dir()).unwrap()
    );
    assert!(server.log().contains("Ready to accept connections"));
}

#[test]
fn extra_args_override_the_defaults() {
    let server = RedisServer::start_with(RedisOptions {
        extra_args: vec!["--maxmemory".into(), "1mb".into()],
        ..RedisOptions::default()
    });
    let config: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("maxmemory"));
    assert_eq!(config, ["maxmemory", "1048576"]);
}

#[test]
fn kill_takes_the_server_down() {
    let mut server = RedisServer::start();
    assert!(accepts_connections(server.port()));
    server.kill();
    assert!(!accepts_connections(server.port()));
    assert!(server.try_query::<String>(&redis::cmd("PING")).is_err());
    server.kill(); // a second kill is harmless
}

#[test]
fn restart_with_appendonly_always_keeps_what_was_written_before_the_kill() {
    let mut server = RedisServer::start_with(RedisOptions {
        appendonly_always: true,
        ..RedisOptions::default()
    });
    let port = server.port();
    let _: () = server.query(redis::cmd("SET").arg("survivor").arg("still here"));
    server.kill();
    server.restart();
    assert_eq!(server.port(), port);
    let value: Option<String> = server.query(redis::cmd("GET").arg("survivor"));
    assert_eq!(value.as_deref(), Some("still here"));
}

#[test]
fn restart_without_persistence_comes_back_empty_on_the_same_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    let _: () = server.query(redis::cmd("SET").arg("lost").arg(1));
    server.kill();
    server.restart();
    assert_eq!(server.port(), port);
    let value: Option<String> = server.query(redis::cmd("GET").arg("lost"));
    assert_eq!(value, None);
    // Restarting a running server crashes it first.
    let _: () = server.query(redis::cmd("SET").arg("lost-again").arg(1));
    server.restart();
    let keys: u64 = server.query(&redis::cmd("DBSIZE"));
    assert_eq!(keys, 0);
}

#[test]
fn pause_makes_ping_time_out_and_resume_restores_it() {
    let server = RedisServer::start();
    let mut con = server.connection();
    con.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    server.pause();
    let error = redis::cmd("PING").query::<String>(&mut con).unwrap_err();
    assert!(error.is_timeout(), "expected a timeout, got {error}");
    server.resume();
    assert_eq!(ping(&server), "PONG");
}

#[test]
fn command_count_counts_calls_per_command() {
    let server = RedisServer::start();
    assert_eq!(server.command_count("set"), 0);
    for i in 0..3 {
        let _: () = server.query(redis::cmd("SET").arg(format!("k{i}")).arg(i));
    }
    let _: Option<String> = server.query(redis::cmd("GET").arg("k0"));
    assert_eq!(server.command_count("set"), 3);
    assert_eq!(server.command_count("SET"), 3);
    assert_eq!(server.command_count("get"), 1);
    assert_eq!(server.command_count("evalsha"), 0);
    assert_eq!(server.command_counts().get("set"), Some(&3));

    server.reset_stats();
    assert_eq!(server.command_count("set"), 0);
    let _: () = server.query(redis::cmd("SET").arg("k").arg("v"));
    assert_eq!(server.command_count("set"), 1);
}

#[test]
fn drop_kills_the_server_and_removes_its_dir() {
    let server = RedisServer::start();
    let (port, dir) = (server.port(), server.dir().to_owned());
    server.pause(); // even a paused server dies
    drop(server);
    assert!(!accepts_connections(port));
    assert!(!dir.exists());
}

#[test]
fn cluster_forms_and_spreads_keys_over_its_nodes() {
    let cluster = RedisCluster::start();
    assert_eq!(cluster.nodes().len(), 3);
    assert_eq!(cluster.urls().len(), 3);
    for node in cluster.nodes() {
        let info: String = node.query(redis::cmd("CLUSTER").arg("INFO"));
        assert!(info.contains("cluster_state:ok"), "{info}");
    }

    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..30 {
        redis::cmd("SET")
            .arg(format!("key-{i}"))
            .arg(i)
            .query::<()>(&mut con)
            .unwrap();
    }
    let counts = cluster.node_key_counts();
    assert_eq!(counts.iter().sum::<u64>(), 30);
    assert!(
        counts.iter().filter(|&&count| count > 0).count() >= 2,
        "keys landed on one node only: {counts:?}"
    );
}

#[test]
fn a_killed_cluster_node_rejoins_after_restart() {
    let mut cluster = RedisCluster::start();
    cluster.nodes_mut()[1].kill();
    cluster.nodes_mut()[1].restart();
    cluster.wait_until_ok();
    let keys: u64 = cluster.nodes()[1].query(&redis::cmd("DBSIZE"));
    assert_eq!(keys, 0);
}

#[test]
#[should_panic(expected = "another process took its port while it was down")]
fn restart_panics_when_the_port_was_taken_meanwhile() {
    let mut server = RedisServer::start();
    server.kill();
    let _thief = std::net::TcpListener::bind(("127.0.0.1", server.port())).unwrap();
    server.restart();
}
