//! Spawning, signalling and reaping server processes.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Where a server's stdout and stderr go: its log file only starts once its configuration is
/// read, so errors in the arguments themselves would otherwise be lost.
pub(crate) const STDIO_FILE: &str = "stdio.log";

/// Starts `binary` with `args` in `dir`, appending its stdout and stderr to [`STDIO_FILE`].
pub(crate) fn spawn(binary: &Path, args: &[String], dir: &Path) -> Child {
    let stdout = open_append(&dir.join(STDIO_FILE));
    let stderr = stdout
        .try_clone()
        .unwrap_or_else(|error| panic!("cannot duplicate the handle of {STDIO_FILE}: {error}"));
    Command::new(binary)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()))
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()))
}

/// SIGKILL, then reap the process so no zombie is left behind. Errors are ignored because this
/// runs from `Drop`, and a process that already exited is exactly what we want.
pub(crate) fn kill_and_wait(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `signal` (a name such as `STOP` or `CONT`) through the `kill` command, which keeps this
/// crate free of `libc` and `unsafe`.
pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|error| panic!("cannot run `kill -{signal} {pid}`: {error}"));
    assert!(status.success(), "`kill -{signal} {pid}` failed: {status}");
}

/// The contents of `path`, or an empty string when it does not exist (yet).
pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
