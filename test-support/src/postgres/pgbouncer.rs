//! A private PgBouncer in front of a private PostgreSQL server, in
//! transaction pooling mode, for testing a store behind a pooler.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::os_user::Runner;
use super::supervisor::{Supervisor, LOG_FILE};
use super::{PostgresServer, SUPERUSER};
use crate::{ports, process};

/// How long a started PgBouncer may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where Debian's `pgbouncer` package puts the binary (not on a non-root
/// user's `PATH`).
const DEBIAN_BINARY: &str = "/usr/sbin/pgbouncer";

/// A PgBouncer on a free loopback port forwarding the `postgres` database
/// of a [`PostgresServer`], in `pool_mode = transaction`: each transaction
/// (each statement outside one) may run on another server connection.
///
/// Stopped and its directory removed when dropped, or when the test process
/// exits (as [`PostgresServer`]). Runs as the `postgres` account when the
/// tests run as root, which PgBouncer refuses.
#[derive(Debug)]
pub struct PgBouncer {
    port: u16,
    _supervisor: Supervisor,
    _dir: TempDir,
}

impl PgBouncer {
    /// The `pgbouncer` binary, if installed (`PATH`, then `/usr/sbin`).
    pub fn binary() -> Option<PathBuf> {
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("pgbouncer"))
                .find(|candidate| candidate.is_file())
        });
        on_path.or_else(|| {
            let debian = PathBuf::from(DEBIAN_BINARY);
            debian.is_file().then_some(debian)
        })
    }

    /// Starts PgBouncer in front of `server` with `pool_size` server
    /// connections (1 makes every client share one server connection, the
    /// harshest case for session state such as named prepared statements).
    ///
    /// # Panics
    ///
    /// When `pgbouncer` is not installed (see [`binary`](Self::binary)) or
    /// does not start (the message holds its log).
    pub fn start(server: &PostgresServer, pool_size: u32) -> PgBouncer {
        let binary = Self::binary().unwrap_or_else(|| {
            panic!("pgbouncer is not installed: `apt-get install -y pgbouncer`")
        });
        let runner = Runner::detect();
        let dir = tempfile::Builder::new()
            .prefix("idempotent-pgbouncer-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
        let port = ports::free_port();
        write_config(dir.path(), server.port(), port, pool_size);
        runner.hand_over(dir.path());
        let config = dir.path().join("pgbouncer.ini").display().to_string();
        let command_line = runner.command_line(&binary, &[config]);
        let supervisor = Supervisor::spawn(dir.path(), &command_line);
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer on port {port} did not start within {READY_TIMEOUT:?}\n{}",
                process::read_lossy(&dir.path().join(LOG_FILE))
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        PgBouncer {
            port,
            _supervisor: supervisor,
            _dir: dir,
        }
    }

    /// The URL of the server's `postgres` database through PgBouncer.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }
}

/// Trust authentication (the user must still be listed), logging to the
/// supervisor's log (stderr), no Unix socket.
fn write_config(dir: &Path, server_port: u16, port: u16, pool_size: u32) {
    let users = dir.join("userlist.txt");
    let config = format!(
        "[databases]
postgres = host=127.0.0.1 port={server_port} dbname=postgres user={SUPERUSER}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 200
",
        users = users.display()
    );
    for (path, contents) in [
        (dir.join("pgbouncer.ini"), config),
        (users, format!("\"{SUPERUSER}\" \"\"\n")),
    ] {
        std::fs::write(&path, contents)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }
}
