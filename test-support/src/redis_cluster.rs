//! Three private `redis-server`s joined into a Redis Cluster.

use std::fs::File;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{binaries, process, RedisOptions, RedisServer};

/// How long `redis-cli --cluster create` and the cluster's convergence may take; they usually
/// take one to two seconds.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between polls of `redis-cli` and of `CLUSTER INFO`.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Where the output of `redis-cli --cluster create` goes, in the first node's directory.
const CREATE_LOG: &str = "cluster-create.log";

/// A Redis Cluster of three masters (without replicas, or with one each) on free loopback ports, each a private
/// [`RedisServer`] with its own directory. Dropping it kills every node.
///
/// Each node runs with `--cluster-enabled yes --cluster-config-file nodes.conf
/// --cluster-node-timeout 2000` and a cluster bus on a port of its own, so a node can be killed
/// and restarted like any [`RedisServer`].
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    replicas_per_master: usize,
}

impl RedisCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create` (the slots split evenly
    /// between them) and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// When `redis-server` or `redis-cli` is not on `PATH` (the message says how to install it),
    /// or when the cluster does not form within 30 s (the message holds the nodes' logs).
    pub fn start() -> RedisCluster {
        RedisCluster::start_nodes(0, binaries::redis_server)
    }

    /// As [`RedisCluster::start`], with `valkey-server` nodes (found as
    /// [`valkey_server`](crate::valkey_server) finds it); `redis-cli` still joins them.
    ///
    /// # Panics
    ///
    /// As [`RedisCluster::start`], and when no `valkey-server` is found.
    pub fn start_valkey() -> RedisCluster {
        RedisCluster::start_nodes(0, crate::valkey_server)
    }

    /// Starts six nodes joined as three masters with one replica each (`--cluster-replicas
    /// 1`), and waits until every node reports `cluster_state:ok` and every replica has synced
    /// with its master. A killed master is replaced by its replica after the node timeout
    /// (2 s).
    ///
    /// # Panics
    ///
    /// As [`RedisCluster::start`].
    pub fn start_with_replicas() -> RedisCluster {
        RedisCluster::start_nodes(1, binaries::redis_server)
    }

    fn start_nodes(replicas_per_master: usize, binary: fn() -> std::path::PathBuf) -> RedisCluster {
        let cli = binaries::redis_cli();
        let options = RedisOptions {
            appendonly_always: false,
            extra_args: [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]
            .map(String::from)
            .to_vec(),
        };
        // The bus port defaults to the client port + 10000, which may be taken or beyond 65535.
        let nodes = (0..3 * (1 + replicas_per_master))
            .map(|_| RedisServer::launch_binary(binary(), &options, &["--cluster-port"]))
            .collect();
        let cluster = RedisCluster {
            nodes,
            replicas_per_master,
        };
        cluster.create(&cli);
        cluster.wait_until_ok();
        if replicas_per_master > 0 {
            cluster.wait_for_replicas();
        }
        cluster
    }

    /// The nodes that are masters now (`ROLE`), in the order of [`RedisCluster::nodes`].
    pub fn masters(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|node| role(node) == Some("master".to_owned()))
            .collect()
    }

    /// The nodes that are replicas now (`ROLE`), in the order of [`RedisCluster::nodes`].
    pub fn replicas(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|node| role(node) == Some("slave".to_owned()))
            .collect()
    }

    /// Waits until every live replica's link to its master is up and it has caught up
    /// (`master_link_status:up`, then `WAIT` on each master).
    ///
    /// # Panics
    ///
    /// When that takes more than 30 s.
    pub fn wait_for_replicas(&self) {
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let linked = self.replicas().iter().all(|replica| {
                replica
                    .try_query::<String>(redis::cmd("INFO").arg("replication"))
                    .is_ok_and(|info| crate::info::field(&info, "master_link_status") == Some("up"))
            });
            let synced = linked
                && self.masters().iter().all(|master| {
                    master
                        .try_query::<usize>(
                            redis::cmd("WAIT").arg(self.replicas_per_master).arg(1000),
                        )
                        .is_ok_and(|acked| acked >= self.replicas_per_master)
                });
            if synced {
                return;
            }
            if Instant::now() >= deadline {
                panic!("{}", self.report("replicas did not sync within 30 s"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The nodes' URLs, `redis://127.0.0.1:PORT`, e.g. to seed a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, to query one directly or read its log.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to kill, pause or restart one.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The number of keys on each node (`DBSIZE`), in the order of [`RedisCluster::nodes`].
    pub fn node_key_counts(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|node| node.query(&redis::cmd("DBSIZE")))
            .collect()
    }

    /// Waits until every node reports `cluster_state:ok`, e.g. after restarting a node.
    ///
    /// # Panics
    ///
    /// When that takes more than 30 s (the message holds the nodes' logs).
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + FORM_TIMEOUT;
        while !self.nodes.iter().all(is_ok) {
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.report(&format!(
                        "did not reach cluster_state:ok within {} s",
                        FORM_TIMEOUT.as_secs()
                    ))
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Runs `redis-cli --cluster create`, bounded by [`FORM_TIMEOUT`] because it would wait
    /// forever for nodes that cannot reach each other.
    fn create(&self, cli: &std::path::Path) {
        let log_path = self.nodes[0].dir().join(CREATE_LOG);
        let log = File::create(&log_path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", log_path.display()));
        let stderr = log
            .try_clone()
            .unwrap_or_else(|error| panic!("cannot duplicate a file handle: {error}"));
        let mut child = Command::new(cli)
            .args(["--cluster", "create"])
            .args(
                self.nodes
                    .iter()
                    .map(|node| format!("127.0.0.1:{}", node.port())),
            )
            .args(["--cluster-replicas"])
            .arg(self.replicas_per_master.to_string())
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", cli.display()));
        let deadline = Instant::now() + FORM_TIMEOUT;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                process::kill_and_wait(&mut child);
                panic!(
                    "{}",
                    self.report("`redis-cli --cluster create` did not finish in time")
                );
            }
            thread::sleep(POLL_INTERVAL);
        };
        if !status.success() {
            panic!(
                "{}",
                self.report(&format!("`redis-cli --cluster create` failed ({status})"))
            );
        }
    }

    /// A panic message with the output of `redis-cli` and every node's log.
    fn report(&self, what: &str) -> String {
        let mut report = format!(
            "Redis Cluster on ports {:?} {what}\n--- {CREATE_LOG} ---\n{}",
            self.nodes.iter().map(RedisServer::port).collect::<Vec<_>>(),
            process::read_lossy(&self.nodes[0].dir().join(CREATE_LOG)),
        );
        for node in &self.nodes {
            report.push_str(&format!(
                "\n--- log of the node on port {} ---\n{}",
                node.port(),
                node.log()
            ));
        }
        report
    }
}

fn is_ok(node: &RedisServer) -> bool {
    node.try_query::<String>(redis::cmd("CLUSTER").arg("INFO"))
        .is_ok_and(|info| crate::info::field(&info, "cluster_state") == Some("ok"))
}

/// `master` or `slave` from the node's `ROLE`, or `None` when it does not answer.
fn role(node: &RedisServer) -> Option<String> {
    let reply: Vec<redis::Value> = node.try_query(&redis::cmd("ROLE")).ok()?;
    match reply.first()? {
        redis::Value::BulkString(role) => Some(String::from_utf8_lossy(role).into_owned()),
        redis::Value::SimpleString(role) => Some(role.clone()),
        _ => None,
    }
}
