//! A private PostgreSQL server: `initdb` in a temporary directory, then the
//! server on a free loopback port, stopped and removed when dropped.
//!
//! ```no_run
//! use idempotent_test_support::postgres::PostgresServer;
//!
//! // One server for a whole test binary; each test makes its own schema.
//! let server = PostgresServer::shared();
//! println!("connect to {}", server.url());
//! ```
//!
//! Parts:
//! - `binaries.rs`: finding `initdb` and `postgres` (`pg_config --bindir`,
//!   `/usr/lib/postgresql/*/bin`, `PATH`).
//! - `os_user.rs`: running them as the `postgres` account when the tests run
//!   as root, which PostgreSQL refuses.
//! - `supervisor.rs`: the process that stops the server when the test
//!   process drops it, exits or crashes.
//! - `readiness.rs`: waiting until the server accepts connections.
//! - `pgbouncer.rs`: [`PgBouncer`], a private pooler in front of a server.

mod binaries;
mod os_user;
mod pgbouncer;
mod readiness;
mod supervisor;

pub use self::pgbouncer::PgBouncer;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use self::os_user::Runner;
use self::readiness::NotReady;
use self::supervisor::{Supervisor, LOG_FILE};
use crate::{ports, process};

/// How long a started server may take to accept connections; it usually takes
/// 100 ms, but a loaded CI machine may be slow.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Fresh ports (and data directories) to try when another process takes the
/// port between our probe and the server's bind.
const START_ATTEMPTS: usize = 5;

/// The superuser `initdb` creates; local connections need no password.
const SUPERUSER: &str = "postgres";

/// Where `initdb` writes its output, in the server's directory.
const INITDB_LOG: &str = "initdb.log";

/// Settings for speed over durability: a test server's data is thrown away,
/// and crash tests kill clients, never this server's host.
const SETTINGS: [&str; 5] = [
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
    "listen_addresses=127.0.0.1",
];

/// A private PostgreSQL server on a free loopback port, with its data in a
/// temporary directory; the superuser `postgres` connects without a password.
///
/// Dropping it shuts the server down (immediate shutdown) and removes the
/// directory. A server is also stopped when the test process exits or
/// crashes without dropping it (see [`PostgresServer::shared`]).
///
/// When the tests run as root, the server runs as the `postgres` account
/// (PostgreSQL refuses root), which then owns the directory.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    supervisor: Supervisor,
    dir: TempDir,
}

impl PostgresServer {
    /// Creates a database cluster with `initdb` (about a second) and starts
    /// a server on it; returns once it accepts connections.
    ///
    /// # Panics
    ///
    /// When `initdb` or `postgres` cannot be found (the message says how to
    /// install them), when the tests run as root and there is no `postgres`
    /// account, or when the server does not start (the message holds its log).
    pub fn start() -> PostgresServer {
        let bindir = binaries::bindir();
        let runner = Runner::detect();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("idempotent-pg-")
                .tempdir()
                .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
            runner.hand_over(dir.path());
            init_cluster(&runner, &bindir, dir.path());
            // Picked after initdb, so the window in which another process can
            // take it is short.
            let port = ports::free_port();
            let command_line =
                runner.command_line(&bindir.join("postgres"), &server_args(dir.path(), port));
            let supervisor = Supervisor::spawn(dir.path(), &command_line);
            let log = dir.path().join(LOG_FILE);
            let ready = readiness::wait(
                &data_dir(dir.path()),
                &log,
                supervisor.server_pid(),
                READY_TIMEOUT,
            );
            match ready {
                Ok(()) => {
                    return PostgresServer {
                        port,
                        supervisor,
                        dir,
                    }
                }
                Err(NotReady::Exited { port_taken: true }) => continue,
                Err(failure) => {
                    let report = report(dir.path(), &command_line);
                    drop(supervisor);
                    panic!("the private PostgreSQL server on port {port} did not start ({failure:?})\n{report}");
                }
            }
        }
        panic!(
            "PostgreSQL could not bind a free loopback port in {START_ATTEMPTS} attempts: \
             another process took each one first"
        );
    }

    /// One server for the whole test binary, started by the first caller.
    ///
    /// It is never dropped (it lives in a `static`), yet it does not outlive
    /// the binary: its supervisor stops it and removes its directory when the
    /// test process exits. Tests sharing it should each work in their own
    /// schema or database.
    ///
    /// # Panics
    ///
    /// As [`PostgresServer::start`].
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(PostgresServer::start)
    }

    /// The port it listens on (loopback only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of its `postgres` database as the superuser,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The pid of the server process (the postmaster).
    pub fn pid(&self) -> u32 {
        self.supervisor.server_pid()
    }

    /// Its directory: the data directory `data/`, the logs, the Unix socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        process::read_lossy(&self.dir().join(LOG_FILE))
    }
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// `initdb` with trust authentication for local connections, UTF-8, the C
/// locale (byte order, the same on every machine), and no fsync.
fn init_cluster(runner: &Runner, bindir: &Path, dir: &Path) {
    let log_path = dir.join(INITDB_LOG);
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", log_path.display()));
    let stderr = log
        .try_clone()
        .unwrap_or_else(|error| panic!("cannot duplicate the handle of {INITDB_LOG}: {error}"));
    let args: Vec<String> = [
        "-D",
        &data_dir(dir).display().to_string(),
        "--auth=trust",
        "--username",
        SUPERUSER,
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]
    .map(String::from)
    .to_vec();
    let status = runner
        .command(&bindir.join("initdb"), &args)
        // The server's account may not be allowed into the tests' directory.
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .status()
        .unwrap_or_else(|error| panic!("cannot run {}/initdb: {error}", bindir.display()));
    assert!(
        status.success(),
        "initdb failed ({status})\n--- {INITDB_LOG} ---\n{}",
        process::read_lossy(&log_path)
    );
}

/// The server's arguments: the data directory, the port, the Unix socket in
/// the private directory (not the system's `/var/run/postgresql`), and
/// [`SETTINGS`].
fn server_args(dir: &Path, port: u16) -> Vec<String> {
    let mut args = vec![
        "-D".to_owned(),
        data_dir(dir).display().to_string(),
        "-p".to_owned(),
        port.to_string(),
        "-k".to_owned(),
        dir.display().to_string(),
    ];
    for setting in SETTINGS {
        args.extend(["-c".to_owned(), setting.to_owned()]);
    }
    args
}

/// A panic message with everything the server and `initdb` wrote.
fn report(dir: &Path, command_line: &[String]) -> String {
    format!(
        "command: {}\n--- {INITDB_LOG} ---\n{}\n--- {LOG_FILE} ---\n{}",
        command_line.join(" "),
        process::read_lossy(&dir.join(INITDB_LOG)),
        process::read_lossy(&dir.join(LOG_FILE)),
    )
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    fn accepts_connections(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    #[test]
    fn servers_start_on_their_own_ports_and_are_gone_after_drop() {
        let servers: Vec<PostgresServer> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..2).map(|_| scope.spawn(PostgresServer::start)).collect();
            starts
                .into_iter()
                .map(|start| start.join().unwrap())
                .collect()
        });
        assert_ne!(servers[0].port(), servers[1].port());
        for server in &servers {
            assert!(accepts_connections(server.port()));
            assert!(
                server.log().contains("ready to accept connections"),
                "{}",
                server.log()
            );
            assert_eq!(
                server.url(),
                format!("postgres://postgres@127.0.0.1:{}/postgres", server.port())
            );
        }
        for server in servers {
            let (port, pid, dir) = (server.port(), server.pid(), server.dir().to_owned());
            drop(server);
            assert!(!readiness_alive(pid), "the server process is gone");
            assert!(!dir.exists(), "its directory is removed");
            assert!(!accepts_connections(port), "its port is closed");
        }
    }

    fn readiness_alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
}
