//! A small shell process that owns the server and stops it when the test
//! process lets go: on drop, or when the test process exits or crashes.
//!
//! The server runs as the supervisor's child, reading nothing from the pipe
//! the supervisor waits on. The test process holds the other end of that
//! pipe; closing it, deliberately (drop) or because the kernel closes every
//! file of a process that dies, tells the supervisor to shut the server down
//! (SIGQUIT, PostgreSQL's immediate shutdown; SIGKILL after 10 s) and remove
//! its directory. So even a server shared by a whole test binary, held in a
//! `static` that is never dropped, does not outlive the binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// `$1` is the directory to remove at the end, the remaining arguments the
/// server's command line. Prints the server's pid, then waits for EOF.
const SCRIPT: &str = r#"
dir=$1
shift
"$@" </dev/null >>"$dir/postgres.log" 2>&1 &
server=$!
echo "$server"
read -r _ || :
kill -QUIT "$server" 2>/dev/null
( sleep 10; kill -KILL "$server" 2>/dev/null ) &
watchdog=$!
wait "$server"
kill "$watchdog" 2>/dev/null
rm -rf "$dir"
"#;

/// The server's log, in the supervised directory.
pub(crate) const LOG_FILE: &str = "postgres.log";

/// A running supervisor and the server it started.
#[derive(Debug)]
pub(crate) struct Supervisor {
    process: Child,
    /// Dropping it is the signal to stop; `None` once stopped.
    stop: Option<ChildStdin>,
    /// The server's pid (the postmaster).
    server_pid: u32,
}

impl Supervisor {
    /// Starts `command_line` under a supervisor that removes `dir` when it
    /// stops the server.
    pub(crate) fn spawn(dir: &Path, command_line: &[String]) -> Supervisor {
        let mut process = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("sh")
            .arg(dir)
            .args(command_line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the server's supervisor (sh): {error}"));
        let stop = process.stdin.take();
        let stdout = process
            .stdout
            .take()
            .expect("the supervisor's stdout is piped");
        let mut first_line = String::new();
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .unwrap_or_else(|error| panic!("cannot read the server's pid: {error}"));
        let server_pid = first_line.trim().parse().unwrap_or_else(|_| {
            panic!("the supervisor printed {first_line:?} instead of the server's pid")
        });
        Supervisor {
            process,
            stop,
            server_pid,
        }
    }

    pub(crate) fn server_pid(&self) -> u32 {
        self.server_pid
    }

    /// Stops the server, removes its directory, and waits until both are done.
    pub(crate) fn stop(&mut self) {
        if self.stop.take().is_some() {
            let _ = self.process.wait();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}
