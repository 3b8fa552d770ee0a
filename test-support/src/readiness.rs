//! Waiting until a freshly spawned server answers.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use crate::{connection, info};

/// How long one probe may take; short, so the loop notices an exited process quickly.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between probes: redis-server usually listens within a few milliseconds.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Why a spawned server is not ready.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// The process exited (e.g. its port was taken); it has been reaped.
    Exited(ExitStatus),
    /// It did not answer within the deadline; it is still running.
    TimedOut,
}

/// Waits until the server that `child` runs answers `PING` on `port`, within `timeout`.
///
/// Another process may have bound the port between our probe for a free port and the server's
/// start, and that may even be another test's redis-server; so "ready" also requires the answer
/// to come from `child` itself (`process_id` in `INFO server`).
pub(crate) fn wait(child: &mut Child, port: u16, timeout: Duration) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        if answers_as(port, child.id()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut);
        }
        thread::sleep(PROBE_INTERVAL);
    }
}

/// Whether the server on `port` is process `pid` and answers `PING`; while it loads its data it
/// answers `-LOADING` instead, which counts as not ready.
fn answers_as(port: u16, pid: u32) -> bool {
    let Ok(mut con) = connection::connect(port, PROBE_TIMEOUT) else {
        return false;
    };
    let Ok(server_info) = redis::cmd("INFO").arg("server").query::<String>(&mut con) else {
        return false;
    };
    if info::field(&server_info, "process_id") != Some(pid.to_string().as_str()) {
        return false;
    }
    matches!(redis::cmd("PING").query::<String>(&mut con), Ok(pong) if pong == "PONG")
}
