//! Private Redis Sentinels watching a [`RedisReplicaSet`], to fail it over for real.

use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use redis::{Cmd, FromRedisValue, RedisResult};
use tempfile::TempDir;

use crate::readiness::{self, NotReady};
use crate::{binaries, connection, ports, process, RedisReplicaSet};

/// The name the sentinels know the primary by.
pub const MASTER_NAME: &str = "idempotent";

/// How long a sentinel has to answer after its start, and a failover to finish.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// After how long without an answer a sentinel holds the primary down: short, so that a
/// killed primary is replaced within a few seconds, but well above Sentinel's 1 s reconnect
/// throttle. A failover resets the master's link without resetting that throttle, so the
/// first `PING` to the promoted primary can go out a full second after the switch; with
/// 1 000 ms here, about one kill in six was followed by a spurious `+sdown` of the new
/// primary 1 s after `+switch-master` and a second failover, which promoted the restarted,
/// still empty old primary.
const DOWN_AFTER_MS: u64 = 2_000;

/// Pause between polls of the sentinels.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// One or more `redis-server --sentinel` processes on free loopback ports, monitoring a
/// [`RedisReplicaSet`]'s primary as [`MASTER_NAME`] with a majority quorum, holding it down
/// after 2 s without an answer. Dropping it kills them.
#[derive(Debug)]
pub struct RedisSentinel {
    sentinels: Vec<SentinelProcess>,
}

#[derive(Debug)]
struct SentinelProcess {
    port: u16,
    child: Child,
    dir: TempDir,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        process::kill_and_wait(&mut self.child);
    }
}

impl RedisSentinel {
    /// Starts `count` sentinels watching `set`'s primary, and waits until each knows every
    /// replica (and, with more than one, the other sentinels), so a failover can start at
    /// once.
    ///
    /// # Panics
    ///
    /// When a sentinel does not start or does not discover the set within 10 s.
    pub fn start(set: &RedisReplicaSet, count: usize) -> RedisSentinel {
        let quorum = count / 2 + 1;
        let sentinels = (0..count)
            .map(|_| SentinelProcess::start(set.primary().port(), quorum))
            .collect();
        let sentinel = RedisSentinel { sentinels };
        sentinel.wait_until_known(set.replicas().len(), count - 1);
        sentinel
    }

    /// The sentinels' URLs, `redis://127.0.0.1:PORT`, to build a sentinel client from.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|sentinel| connection::url(sentinel.port))
            .collect()
    }

    /// The port of the primary as the first sentinel that answers names it.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|sentinel| {
            let (_, port): (String, u16) = sentinel
                .query(
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(MASTER_NAME),
                )
                .ok()?;
            Some(port)
        })
    }

    /// How many failovers the sentinels made since they started: the highest configuration
    /// epoch of [`MASTER_NAME`] any of them reports (each failover that completes raises it by
    /// one). A test that made `n` failovers and reads more saw one it did not ask for.
    ///
    /// # Panics
    ///
    /// When no sentinel answers.
    pub fn failovers(&self) -> u64 {
        self.sentinels
            .iter()
            .filter_map(|sentinel| {
                let master: std::collections::HashMap<String, String> = sentinel
                    .query(redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME))
                    .ok()?;
                master.get("config-epoch")?.parse::<u64>().ok()
            })
            .max()
            .unwrap_or_else(|| {
                panic!(
                    "no sentinel reported a configuration epoch\n{}",
                    self.logs()
                )
            })
    }

    /// Asks a sentinel to fail over now (`SENTINEL FAILOVER`), without waiting for the
    /// primary to be held down; [`RedisSentinel::wait_for_failover`] waits for the result.
    ///
    /// # Panics
    ///
    /// When no sentinel accepts (e.g. no replica is fit to be promoted yet).
    pub fn failover(&self) {
        let accepted = self.sentinels.iter().any(|sentinel| {
            sentinel
                .query::<()>(redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME))
                .is_ok()
        });
        assert!(accepted, "no sentinel accepted SENTINEL FAILOVER");
    }

    /// Waits until the sentinels name a primary other than `set`'s, that node says it is a
    /// master, every sentinel has heard it answer and none has a failover in progress, and
    /// records it in `set`; returns its place in [`RedisReplicaSet::nodes`].
    ///
    /// # Panics
    ///
    /// When that takes more than 30 s (the message holds the sentinels' logs).
    pub fn wait_for_failover(&self, set: &mut RedisReplicaSet) -> usize {
        let before = set.primary().port();
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        loop {
            if let Some(port) = self.primary_port().filter(|&port| port != before) {
                set.primary_moved_to(port);
                if crate::redis_replica_set::is_primary(set.primary()) && self.settled() {
                    return set.primary_index();
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "the sentinels did not fail over from port {before} within {} s\n{}",
                    FAILOVER_TIMEOUT.as_secs(),
                    self.logs()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until the sentinels know `replicas` replicas of the primary that are not held
    /// down, e.g. before the next [`RedisSentinel::failover`].
    ///
    /// # Panics
    ///
    /// When that takes more than 30 s.
    pub fn wait_for_replicas(&self, replicas: usize) {
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        while !self.sentinels.iter().all(|sentinel| {
            sentinel
                .healthy_replicas()
                .is_some_and(|count| count >= replicas)
        }) {
            if Instant::now() >= deadline {
                panic!(
                    "the sentinels did not see {replicas} healthy replicas within {} s\n{}",
                    FAILOVER_TIMEOUT.as_secs(),
                    self.logs()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Whether no sentinel has a failover in progress (until it ends, a sentinel may still
    /// abort it and turn the promoted replica back) or holds the primary down, and each has
    /// had an answer from the primary since it switched to it: a sentinel sets its pending
    /// `PING` time (`last-ping-sent`) at the switch and clears it at the first answer, and
    /// until then the new primary may still be held down and failed over again.
    fn settled(&self) -> bool {
        self.sentinels.iter().all(|sentinel| {
            sentinel
                .query::<std::collections::HashMap<String, String>>(
                    redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME),
                )
                .is_ok_and(|master| {
                    master
                        .get("flags")
                        .is_some_and(|flags| !flags.contains("failover") && !flags.contains("down"))
                        && master.get("last-ping-sent").map(String::as_str) == Some("0")
                })
        })
    }

    /// Every sentinel's log.
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .map(|sentinel| {
                format!(
                    "--- log of the sentinel on port {} ---\n{}",
                    sentinel.port,
                    process::read_lossy(&sentinel.dir.path().join(LOG_FILE))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_until_known(&self, replicas: usize, other_sentinels: usize) {
        let deadline = Instant::now() + READY_TIMEOUT * 3;
        loop {
            let known = self.sentinels.iter().all(|sentinel| {
                sentinel
                    .healthy_replicas()
                    .is_some_and(|count| count >= replicas)
                    && sentinel
                        .query::<Vec<redis::Value>>(
                            redis::cmd("SENTINEL").arg("SENTINELS").arg(MASTER_NAME),
                        )
                        .is_ok_and(|others| others.len() >= other_sentinels)
            });
            if known {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the sentinels did not discover the replica set in time\n{}",
                    self.logs()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// The sentinel's own log file, inside its working directory.
const LOG_FILE: &str = "sentinel.log";

impl SentinelProcess {
    fn start(primary_port: u16, quorum: usize) -> SentinelProcess {
        let binary = binaries::redis_server();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("idempotent-sentinel-")
                .tempdir()
                .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
            let port = ports::free_port();
            let config = dir.path().join("sentinel.conf");
            write_config(&config, dir.path(), port, primary_port, quorum);
            let args = vec![config.display().to_string(), "--sentinel".to_owned()];
            let mut child = process::spawn(&binary, &args, dir.path());
            match readiness::wait(&mut child, port, READY_TIMEOUT) {
                Ok(()) => return SentinelProcess { port, child, dir },
                Err(NotReady::Exited(_))
                    if process::read_lossy(&dir.path().join(LOG_FILE))
                        .contains("Address already in use") =>
                {
                    continue
                }
                Err(what) => {
                    process::kill_and_wait(&mut child);
                    panic!(
                        "redis-server --sentinel on port {port} did not start ({what:?})\n{}\n{}",
                        process::read_lossy(&dir.path().join(LOG_FILE)),
                        process::read_lossy(&dir.path().join(process::STDIO_FILE))
                    );
                }
            }
        }
        panic!("redis-server --sentinel could not bind a free loopback port in 5 attempts");
    }

    fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let mut con = connection::connect(self.port, COMMAND_TIMEOUT)?;
        cmd.query(&mut con)
    }

    /// How many replicas of the primary this sentinel knows and holds up.
    fn healthy_replicas(&self) -> Option<usize> {
        let replicas: Vec<std::collections::HashMap<String, String>> = self
            .query(redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME))
            .ok()?;
        Some(
            replicas
                .iter()
                .filter(|replica| {
                    replica.get("flags").is_some_and(|flags| {
                        !flags.contains("down") && !flags.contains("disconnected")
                    }) && replica.get("master-link-status").map(String::as_str) == Some("ok")
                })
                .count(),
        )
    }
}

fn write_config(path: &Path, dir: &Path, port: u16, primary_port: u16, quorum: usize) {
    let dir = dir.display();
    let config = format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         daemonize no\n\
         dir {dir}\n\
         logfile {dir}/{LOG_FILE}\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}\n\
         sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER_NAME} 10000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    );
    std::fs::write(path, config)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}
