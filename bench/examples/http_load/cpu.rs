//! CPU time of a process, from `/proc/<pid>/stat` (clock ticks of 10 ms).

use std::time::Duration;

fn fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses.
    Some(
        stat[stat.rfind(')')? + 2..]
            .split(' ')
            .map(str::to_owned)
            .collect(),
    )
}

/// The state letter of `pid` (`Z` once it has exited, until waited for).
pub fn state(pid: u32) -> Option<char> {
    fields(pid)?.first()?.chars().next()
}

/// User and system time used by `pid` so far; zero if it is gone.
pub fn of(pid: u32) -> Duration {
    let ticks = fields(pid).and_then(|fields| {
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    });
    Duration::from_millis(ticks.unwrap_or(0) * 10)
}
