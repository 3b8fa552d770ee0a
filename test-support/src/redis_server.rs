//! One private `redis-server`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use redis::{Cmd, Connection, FromRedisValue, RedisResult};
use tempfile::TempDir;

use crate::readiness::{self, NotReady};
use crate::{binaries, connection, info, ports, process};

/// How long a (re)started server may take to answer; generous for a loaded CI machine and for
/// reloading an append-only file.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeout for connecting, reading and writing on the connections this crate opens.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Fresh ports to try when another process takes the one we picked before the server binds it.
const START_ATTEMPTS: usize = 5;

/// The server's own log file, inside its working directory.
const LOG_FILE: &str = "redis.log";

/// What a private server runs with, beyond the defaults of [`RedisServer::start`].
#[derive(Debug, Default, Clone)]
pub struct RedisOptions {
    /// Persist every write before it is acknowledged (`--appendonly yes --appendfsync always`),
    /// so data written before [`RedisServer::kill`] survives [`RedisServer::restart`].
    pub appendonly_always: bool,
    /// More `redis-server` arguments, passed last so they override the defaults, e.g.
    /// `["--maxmemory", "1mb"]`.
    pub extra_args: Vec<String>,
}

/// A private `redis-server` on a free loopback port with its own temporary working directory.
///
/// Dropping it kills the process (SIGKILL, then reaps it) and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    binary: PathBuf,
    /// Kept whole so that [`RedisServer::restart`] runs exactly the same server again.
    args: Vec<String>,
    /// `None` while the server is killed.
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server without persistence (`--save "" --appendonly no`) and waits until it
    /// answers `PING`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on `PATH` (the message says how to install it), or when the
    /// server does not answer within 10 s (the message holds its log).
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Starts a server with `options` and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with(options: RedisOptions) -> RedisServer {
        RedisServer::launch(&options, &[])
    }

    /// Starts a server on a fresh free port (and one more for each of `extra_ports`, filled in
    /// after the argument that names it), retrying with new ports when another process wins the
    /// race for one of them.
    pub(crate) fn launch(options: &RedisOptions, extra_ports: &[&str]) -> RedisServer {
        RedisServer::launch_binary(binaries::redis_server(), options, extra_ports)
    }

    /// As [`RedisServer::launch`], run by `binary`: `redis-server` or a server that takes the
    /// same arguments (`valkey-server`).
    pub(crate) fn launch_binary(
        binary: PathBuf,
        options: &RedisOptions,
        extra_ports: &[&str],
    ) -> RedisServer {
        for _ in 0..START_ATTEMPTS {
            // A fresh directory per attempt: a failed start may leave files behind, such as a
            // cluster node's `nodes.conf` naming the port it lost.
            let dir = tempfile::Builder::new()
                .prefix("idempotent-redis-")
                .tempdir()
                .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
            let port = ports::free_port();
            let mut args = base_args(port, dir.path(), options);
            for name in extra_ports {
                args.extend([(*name).to_owned(), ports::free_port().to_string()]);
            }
            args.extend(options.extra_args.iter().cloned());
            let launch = Launch {
                binary: &binary,
                args: &args,
                port,
                dir: dir.path(),
            };
            match launch.spawn_and_wait() {
                Ok(child) => {
                    return RedisServer {
                        port,
                        binary,
                        args,
                        child: Some(child),
                        dir,
                    }
                }
                Err(Failure::PortTaken) => continue,
                Err(Failure::Other(what)) => panic!("{}", launch.report(&what)),
            }
        }
        panic!(
            "redis-server could not bind a free loopback port in {START_ATTEMPTS} attempts: \
             another process took each one first"
        );
    }

    /// The port it listens on (loopback only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        connection::url(self.port)
    }

    /// Its working directory, where the append-only files and the log live.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL) and reaps it: when this returns, the server is down and its
    /// port refuses connections. Does nothing when it is already down.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_and_wait(&mut child);
        }
    }

    /// Starts the server again with the same port, directory and arguments, and waits until it
    /// answers `PING`; with [`RedisOptions::appendonly_always`] it reloads the data it had. A
    /// server still running is killed first, as in a crash.
    ///
    /// # Panics
    ///
    /// When another process took the port while the server was down, or when it does not
    /// answer within 10 s (the message holds its log).
    pub fn restart(&mut self) {
        self.kill();
        let launch = self.launch_again();
        match launch.spawn_and_wait() {
            Ok(child) => self.child = Some(child),
            Err(Failure::PortTaken) => panic!(
                "{}",
                launch.report("could not restart: another process took its port while it was down")
            ),
            Err(Failure::Other(what)) => panic!("{}", launch.report(&what)),
        }
    }

    /// Starts the server again as a replica of the server on `primary_port`, as an operator
    /// (or Sentinel) brings back a failed primary after a failover: with its own arguments
    /// otherwise, and with the data it had only if it persists them. It waits until the server
    /// answers `PING`, not until it synced.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::restart`].
    pub fn restart_as_replica_of(&mut self, primary_port: u16) {
        if let Some(at) = self.args.iter().position(|arg| arg == "--replicaof") {
            self.args.drain(at..(at + 3).min(self.args.len()));
        }
        self.args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary_port.to_string(),
        ]);
        self.restart();
    }

    /// Whether the process runs (it may be paused); false after [`RedisServer::kill`].
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Freezes the server (SIGSTOP): it accepts connections but answers nothing until
    /// [`RedisServer::resume`], like a server stuck in a long pause.
    ///
    /// # Panics
    ///
    /// When the server is down.
    pub fn pause(&self) {
        process::signal(self.pid("pause"), "STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    ///
    /// # Panics
    ///
    /// When the server is down.
    pub fn resume(&self) {
        process::signal(self.pid("resume"), "CONT");
    }

    /// How many times `command` (any case, e.g. `"evalsha"`, `"set"`, `"config|resetstat"`) ran
    /// since the start or the last [`RedisServer::reset_stats`]; 0 when it never ran.
    ///
    /// The counts include this crate's own commands: `info` and `ping` from waiting for the
    /// server, `info` from earlier calls of this method, `config|resetstat`.
    pub fn command_count(&self, command: &str) -> u64 {
        self.command_counts()
            .get(&command.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Calls per command from `INFO commandstats`, keyed by lowercase command name.
    pub fn command_counts(&self) -> BTreeMap<String, u64> {
        let stats: String = self.query(redis::cmd("INFO").arg("commandstats"));
        info::command_calls(&stats)
    }

    /// Zeroes the command counts (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        let () = self.query(redis::cmd("CONFIG").arg("RESETSTAT"));
    }

    /// Runs `cmd` on a fresh connection and returns its reply, e.g. to plant a corrupt value or
    /// read a key behind the back of the code under test.
    ///
    /// # Panics
    ///
    /// When the command fails; use [`RedisServer::try_query`] to inspect the error.
    pub fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> T {
        self.try_query(cmd)
            .unwrap_or_else(|error| panic!("{cmd:?} on {} failed: {error}", self.url()))
    }

    /// Runs `cmd` on a fresh connection and returns its reply or its error.
    pub fn try_query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let mut con = connection::connect(self.port, COMMAND_TIMEOUT)?;
        cmd.query(&mut con)
    }

    /// A fresh synchronous connection with 10 s connect, read and write timeouts (so a test
    /// against a paused server fails instead of hanging; change them with
    /// `set_read_timeout`). It sends no handshake commands, so it adds nothing to the command
    /// counts.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached.
    pub fn connection(&self) -> Connection {
        connection::connect(self.port, COMMAND_TIMEOUT)
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.url()))
    }

    /// The contents of its log file, across restarts.
    pub fn log(&self) -> String {
        read_log(self.dir())
    }

    fn pid(&self, action: &str) -> u32 {
        match &self.child {
            Some(child) => child.id(),
            None => panic!(
                "cannot {action} the redis-server on port {}: it is down",
                self.port
            ),
        }
    }

    fn launch_again(&self) -> Launch<'_> {
        Launch {
            binary: &self.binary,
            args: &self.args,
            port: self.port,
            dir: self.dir(),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One way to run a server: what [`RedisServer::start_with`] tries and
/// [`RedisServer::restart`] repeats.
struct Launch<'a> {
    binary: &'a Path,
    args: &'a [String],
    port: u16,
    dir: &'a Path,
}

impl Launch<'_> {
    /// Spawns the server and waits until it answers, telling a lost race for the port apart
    /// from other failures.
    fn spawn_and_wait(&self) -> Result<Child, Failure> {
        let log_before = read_log(self.dir).len();
        let mut child = process::spawn(self.binary, self.args, self.dir);
        match readiness::wait(&mut child, self.port, READY_TIMEOUT) {
            Ok(()) => Ok(child),
            Err(NotReady::Exited(status)) => {
                // Only this run's lines count: the log is appended to across restarts.
                let log = read_log(self.dir);
                if log
                    .get(log_before..)
                    .unwrap_or(&log)
                    .contains("Address already in use")
                {
                    Err(Failure::PortTaken)
                } else {
                    Err(Failure::Other(format!("exited at start ({status})")))
                }
            }
            Err(NotReady::TimedOut) => {
                process::kill_and_wait(&mut child);
                Err(Failure::Other(format!(
                    "did not answer PING within {} s",
                    READY_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// A panic message with everything the server wrote.
    fn report(&self, what: &str) -> String {
        format!(
            "redis-server on port {port} {what}\ncommand: {binary} {args}\n\
             --- {LOG_FILE} ---\n{log}\n--- stdout and stderr ---\n{stdio}",
            port = self.port,
            binary = self.binary.display(),
            args = shell_words(self.args),
            log = read_log(self.dir),
            stdio = process::read_lossy(&self.dir.join(process::STDIO_FILE)),
        )
    }
}

/// Why a spawn did not give a running server.
enum Failure {
    /// Another process bound the port first.
    PortTaken,
    /// Anything else, described for the panic message.
    Other(String),
}

/// The arguments as they would be typed, so that the empty value of `--save` stays visible.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|arg| if arg.is_empty() { "\"\"" } else { arg.as_str() })
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_log(dir: &Path) -> String {
    process::read_lossy(&dir.join(LOG_FILE))
}

/// Loopback only, no snapshots, no append-only file, logs in the working directory.
fn base_args(port: u16, dir: &Path, options: &RedisOptions) -> Vec<String> {
    let dir = dir.display().to_string();
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--save".to_owned(),
        String::new(),
        "--dir".to_owned(),
        dir.clone(),
        "--logfile".to_owned(),
        format!("{dir}/{LOG_FILE}"),
        "--daemonize".to_owned(),
        "no".to_owned(),
    ];
    if options.appendonly_always {
        args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
    } else {
        args.extend(["--appendonly", "no"].map(String::from));
    }
    args
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// The retry in [`RedisServer::start_with`] depends on telling a lost race for the port
    /// apart from other failures.
    #[test]
    fn a_taken_port_is_reported_as_taken() {
        let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let args = base_args(port, dir.path(), &RedisOptions::default());
        let launch = Launch {
            binary: &binaries::redis_server(),
            args: &args,
            port,
            dir: dir.path(),
        };
        assert!(matches!(launch.spawn_and_wait(), Err(Failure::PortTaken)));
    }

    #[test]
    fn bad_arguments_are_reported_with_the_server_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = base_args(ports::free_port(), dir.path(), &RedisOptions::default());
        args.extend(["--no-such-option".to_owned(), "1".to_owned()]);
        let launch = Launch {
            binary: &binaries::redis_server(),
            args: &args,
            port: ports::free_port(),
            dir: dir.path(),
        };
        let Err(Failure::Other(what)) = launch.spawn_and_wait() else {
            panic!("a server with a bad option started");
        };
        let report = launch.report(&what);
        assert!(report.contains("exited at start"), "{report}");
        assert!(report.contains("no-such-option"), "{report}");
    }
}
