//! The load generator: `wrk`, installed with apt-get when missing, driven by
//! `load.lua` from its own process.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What one `wrk` run reported, from the script's `done` hook.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub requests: u64,
    pub duration: Duration,
    /// Responses with a status of 400 or more.
    pub status_errors: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    pub p50: Duration,
    pub p99: Duration,
    /// CPU time `wrk` used (user and system).
    pub cpu: Duration,
}

impl Report {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64()
    }
}

/// `wrk` on the `PATH`, installed with apt-get if it is not.
pub fn ensure_installed() -> Result<(), String> {
    if installed() {
        return Ok(());
    }
    eprintln!("wrk is not installed: installing the Debian package `wrk` with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success())
    };
    if !install() {
        // The package lists may be missing or stale on a fresh machine.
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        install();
    }
    if installed() {
        Ok(())
    } else {
        // oha cannot give each request its own header value, which the first
        // runs need, so it is no substitute here.
        Err(
            "wrk is not installed and `apt-get install wrk` failed (it needs root and a \
             Debian or Ubuntu package source); install wrk 4.x and run again"
                .into(),
        )
    }
}

fn installed() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Writes the Lua script where `wrk` can read it.
pub fn write_script(dir: &Path) -> PathBuf {
    let path = dir.join("http_load.lua");
    std::fs::write(&path, include_str!("load.lua")).expect("write the wrk script");
    path
}

/// One run of one thread and `connections` connections for `seconds`.
pub struct Run<'a> {
    pub script: &'a Path,
    pub server: SocketAddr,
    pub path: &'a str,
    pub connections: usize,
    pub seconds: u64,
    /// The script's arguments: mode, key or prefix, body, cookies.
    pub args: Vec<String>,
}

impl Run<'_> {
    pub fn run(&self) -> Result<Report, String> {
        let mut child = Command::new("wrk")
            .arg("-t1")
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.seconds))
            .arg("--timeout=5s")
            .arg("-s")
            .arg(self.script)
            .arg(format!("http://{}{}", self.server, self.path))
            .arg("--")
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("start wrk: {error}"))?;
        let pid = child.id();
        let mut output = String::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut output)
            .map_err(|error| format!("read wrk's output: {error}"))?;
        // Until it is waited for, an exited process keeps its CPU times.
        let cpu = exited_cpu(pid);
        let mut errors = String::new();
        let _ = child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut errors);
        let status = child
            .wait()
            .map_err(|error| format!("wait for wrk: {error}"))?;
        let line = output
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .ok_or_else(|| format!("wrk ({status}) printed no result:\n{output}{errors}"))?;
        let mut report = parse(line).ok_or_else(|| format!("unreadable wrk result: {line}"))?;
        report.cpu = cpu;
        Ok(report)
    }
}

fn parse(line: &str) -> Option<Report> {
    let field = |name: &str| -> Option<u64> {
        line.split(' ')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(Report {
        requests: field("requests")?,
        duration: Duration::from_micros(field("duration_us")?),
        status_errors: field("status")?,
        socket_errors: field("connect")? + field("read")? + field("write")? + field("timeout")?,
        p50: Duration::from_micros(field("p50_us")?),
        p99: Duration::from_micros(field("p99_us")?),
        cpu: Duration::ZERO,
    })
}

/// CPU time of process `pid`, read once it has exited (a zombie still has
/// its `/proc` entry), or as it is if it has not exited within a second.
fn exited_cpu(pid: u32) -> Duration {
    for _ in 0..1000 {
        if crate::cpu::state(pid) == Some('Z') {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    crate::cpu::of(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_of_the_script_is_read() {
        let report = parse(
            "requests=5000 duration_us=2000000 status=3 connect=1 read=2 write=0 timeout=4 p50_us=120 p99_us=900",
        )
        .expect("a report");
        assert_eq!(report.requests, 5000);
        assert_eq!(report.per_sec(), 2500.0);
        assert_eq!(report.status_errors, 3);
        assert_eq!(report.socket_errors, 7);
        assert_eq!(report.p50, Duration::from_micros(120));
        assert_eq!(report.p99, Duration::from_micros(900));
        assert!(parse("requests=5000").is_none());
    }
}
