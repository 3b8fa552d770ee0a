//! Waiting until a freshly started server accepts connections.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Pause between looks; the server usually starts within 100 ms.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Why a started server is not ready.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// The server exited; `port_taken` when another process had its port.
    Exited { port_taken: bool },
    /// It did not become ready in time; it is still running.
    TimedOut,
}

/// Waits until the postmaster `pid` serving `data` says it is ready, within
/// `timeout`.
///
/// The postmaster writes `postmaster.pid` in its data directory, with its pid
/// on the first line and, from PostgreSQL 10 on, its status on the eighth
/// (`ready` once it accepts connections): the same signal `pg_ctl -w` waits
/// for. The pid check makes sure the answer is this server's, not a file
/// left behind.
pub(crate) fn wait(data: &Path, log: &Path, pid: u32, timeout: Duration) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        if is_ready(&data.join("postmaster.pid"), pid) {
            return Ok(());
        }
        if !is_alive(pid) {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(NotReady::Exited {
                port_taken: log.contains("Address already in use"),
            });
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut);
        }
        thread::sleep(PROBE_INTERVAL);
    }
}

fn is_ready(pid_file: &Path, pid: u32) -> bool {
    std::fs::read_to_string(pid_file).is_ok_and(|contents| status_is_ready(&contents, pid))
}

fn status_is_ready(contents: &str, pid: u32) -> bool {
    let mut lines = contents.lines();
    lines.next().map(str::trim) == Some(pid.to_string().as_str())
        && lines.nth(6).map(str::trim) == Some("ready")
}

/// Whether process `pid` runs: it exists and is not a zombie (an exited
/// server stays one until its supervisor reaps it).
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (command) state ...`: the command may contain spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: &str =
        "4242\n/tmp/data\n1700000000\n5433\n/tmp\n127.0.0.1\n  5433001   0\nready   \n";

    #[test]
    fn reads_the_status_of_the_right_postmaster() {
        assert!(status_is_ready(READY, 4242));
        assert!(!status_is_ready(READY, 4243), "another server's file");
        let starting = READY.replace("ready   ", "starting");
        assert!(!status_is_ready(&starting, 4242));
        assert!(
            !status_is_ready("4242\n", 4242),
            "a file still being written"
        );
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }
}
