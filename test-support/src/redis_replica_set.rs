//! A private primary with replicas: asynchronous replication, as production Redis runs.

use std::thread;
use std::time::{Duration, Instant};

use crate::{info, RedisOptions, RedisServer};

/// How long replicas may take to connect and sync, or a promoted replica to take writes.
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

/// Pause between polls of `INFO replication`.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A primary and its replicas, each a private [`RedisServer`] (no persistence unless the
/// options ask for it). Dropping it kills every node.
///
/// The nodes keep their places in [`RedisReplicaSet::nodes`] whatever their role;
/// [`RedisReplicaSet::primary`] follows [`RedisReplicaSet::promote`].
///
/// ```
/// use idempotent_test_support::RedisReplicaSet;
///
/// let set = RedisReplicaSet::start(1);
/// let _: () = set.primary().query(redis::cmd("SET").arg("k").arg("v"));
/// set.wait_for_replicas();
/// let copied: String = set.replicas()[0].query(redis::cmd("GET").arg("k"));
/// assert_eq!(copied, "v");
/// ```
#[derive(Debug)]
pub struct RedisReplicaSet {
    nodes: Vec<RedisServer>,
    primary: usize,
}

impl RedisReplicaSet {
    /// Starts a primary and `replicas` replicas of it, and waits until every replica is
    /// connected and synced.
    ///
    /// # Panics
    ///
    /// When a server does not start, or the replicas do not sync within 20 s.
    pub fn start(replicas: usize) -> RedisReplicaSet {
        RedisReplicaSet::start_with(replicas, RedisOptions::default())
    }

    /// As [`RedisReplicaSet::start`], every node with `options` (e.g. an append-only file).
    ///
    /// # Panics
    ///
    /// As [`RedisReplicaSet::start`].
    pub fn start_with(replicas: usize, options: RedisOptions) -> RedisReplicaSet {
        let primary = RedisServer::start_with(options.clone());
        let mut nodes = vec![primary];
        for _ in 0..replicas {
            let mut replica_options = options.clone();
            replica_options.extra_args.extend([
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                nodes[0].port().to_string(),
            ]);
            nodes.push(RedisServer::start_with(replica_options));
        }
        let set = RedisReplicaSet { nodes, primary: 0 };
        set.wait_for_replicas();
        set
    }

    /// The node that takes writes now.
    pub fn primary(&self) -> &RedisServer {
        &self.nodes[self.primary]
    }

    /// The primary's place in [`RedisReplicaSet::nodes`].
    pub fn primary_index(&self) -> usize {
        self.primary
    }

    /// The other nodes, in their order in [`RedisReplicaSet::nodes`].
    pub fn replicas(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != self.primary)
            .map(|(_, node)| node)
            .collect()
    }

    /// Every node, the first one the primary started with.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Every node, to kill, pause or restart one.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Waits until every live replica follows the primary, its link is up, and it has applied
    /// every write the primary had when this was called: its `slave_repl_offset` reached the
    /// primary's `master_repl_offset` then, in the primary's replication history.
    ///
    /// A `WAIT` would not do: it waits for the writes of the connection that sends it, and a
    /// fresh connection has none, so it answered as soon as a replica was online, before the
    /// replica had the writes the caller made on other connections.
    ///
    /// # Panics
    ///
    /// When that takes more than 20 s.
    pub fn wait_for_replicas(&self) {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let target = loop {
            // Sentinel drops clients of the nodes it reconfigures: an error is tried again.
            if let Some(offset) = self.primary_replication("master_repl_offset") {
                break offset.parse::<u64>().unwrap_or(0);
            }
            assert!(
                Instant::now() < deadline,
                "the primary {} did not report its replication offset within {} s",
                self.primary().url(),
                SYNC_TIMEOUT.as_secs()
            );
            thread::sleep(POLL_INTERVAL);
        };
        let port = self.primary().port().to_string();
        for replica in self.replicas().into_iter().filter(|node| node.is_up()) {
            loop {
                // Read again each time: a primary takes a new replication id when it creates
                // its backlog for its first replica, keeping its offset.
                let replid = self.primary_replication("master_replid");
                let replication = replica
                    .try_query::<String>(redis::cmd("INFO").arg("replication"))
                    .unwrap_or_else(|error| error.to_string());
                let field = |name| info::field(&replication, name);
                if field("master_port") == Some(port.as_str())
                    && field("master_link_status") == Some("up")
                    && replid.is_some()
                    && field("master_replid") == replid.as_deref()
                    && field("slave_repl_offset")
                        .and_then(|offset| offset.parse::<u64>().ok())
                        .is_some_and(|offset| offset >= target)
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the replica {} did not sync with {} (replication id {replid:?}, offset \
                     {target}) within {} s:\n{replication}",
                    replica.url(),
                    self.primary().url(),
                    SYNC_TIMEOUT.as_secs()
                );
                thread::sleep(POLL_INTERVAL);
            }
        }
    }

    /// A field of the primary's `INFO replication`; `None` while it does not answer.
    fn primary_replication(&self, name: &str) -> Option<String> {
        let replication = self
            .primary()
            .try_query::<String>(redis::cmd("INFO").arg("replication"))
            .ok()?;
        info::field(&replication, name).map(str::to_owned)
    }

    /// Freezes node `index`, a replica (SIGSTOP), and closes its replication link at the
    /// primary, so that no write from now on reaches it: a replica lagging behind, as when
    /// the primary dies under load. A pause alone is not enough: what the primary sends lands
    /// in the paused process's socket buffer, and it reads it once resumed. Undo it with
    /// [`RedisServer::resume`](crate::RedisServer::resume): it then reconnects (to the primary
    /// it had, if it is still up).
    ///
    /// # Panics
    ///
    /// When node `index` is the primary or is not connected to it.
    pub fn cut_off(&self, index: usize) {
        assert_ne!(index, self.primary, "cut_off is for a replica");
        let replica = &self.nodes[index];
        let links: String =
            replica.query(redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("master"));
        let local = links
            .split_whitespace()
            .find_map(|field| field.strip_prefix("laddr="))
            .unwrap_or_else(|| panic!("{} has no link to a primary: {links:?}", replica.url()))
            .to_owned();
        replica.pause();
        let killed: u64 = self.primary().query(
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ADDR")
                .arg(&local)
                .arg("SKIPME")
                .arg("yes"),
        );
        assert_eq!(
            killed, 1,
            "the primary had no replication link from {local}"
        );
    }

    /// Kills the primary (SIGKILL), as in a crash; it stays down.
    pub fn kill_primary(&mut self) {
        let primary = self.primary;
        self.nodes[primary].kill();
    }

    /// Records that the node on `port` is the primary now, after a failover that Sentinel
    /// made (see [`crate::RedisSentinel::wait_for_failover`]).
    ///
    /// # Panics
    ///
    /// When no node listens on `port`.
    pub fn primary_moved_to(&mut self, port: u16) {
        self.primary = self
            .nodes
            .iter()
            .position(|node| node.port() == port)
            .unwrap_or_else(|| panic!("no node of the replica set listens on port {port}"));
    }

    /// Makes node `index` the primary by hand (`REPLICAOF NO ONE`), points the other live
    /// nodes at it, and waits until it says it is the primary. A replica that is paused when this is
    /// called is pointed at the new primary once it runs again.
    ///
    /// # Panics
    ///
    /// When node `index` is down, or it does not say so within 20 s.
    pub fn promote(&mut self, index: usize) {
        let _: () = self.nodes[index].query(redis::cmd("REPLICAOF").arg("NO").arg("ONE"));
        let port = self.nodes[index].port();
        for (other, node) in self.nodes.iter().enumerate() {
            if other != index {
                // A dead node refuses: it is pointed nowhere, and a restart reads its arguments.
                let _ = node.try_query::<()>(
                    redis::cmd("REPLICAOF")
                        .arg("127.0.0.1")
                        .arg(port.to_string()),
                );
            }
        }
        self.primary = index;
        wait_until_primary(&self.nodes[index]);
    }
}

/// Waits until `node` says it is a master (`role:master`).
pub(crate) fn wait_until_primary(node: &RedisServer) {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        if is_primary(node) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not become a primary within {} s",
            node.url(),
            SYNC_TIMEOUT.as_secs()
        );
        thread::sleep(POLL_INTERVAL);
    }
}

/// Whether `node` answers and says it is a master.
pub(crate) fn is_primary(node: &RedisServer) -> bool {
    node.try_query::<String>(redis::cmd("INFO").arg("replication"))
        .is_ok_and(|text| info::field(&text, "role") == Some("master"))
}
