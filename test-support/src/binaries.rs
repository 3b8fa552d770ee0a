//! Finding the Redis executables on `PATH`.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The path of `redis-server`; panics with install instructions when it is missing.
pub(crate) fn redis_server() -> PathBuf {
    require("redis-server")
}

/// The path of `redis-cli`; panics with install instructions when it is missing.
pub(crate) fn redis_cli() -> PathBuf {
    require("redis-cli")
}

fn require(name: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| panic!("{}", missing_message(name)))
}

/// Tests must fail loudly, with the fix in the message, rather than skip without a server.
fn missing_message(name: &str) -> String {
    format!(
        "{name} not found on PATH: install it with `sudo apt-get install -y redis-server` \
         (the README's test command does this)"
    )
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

pub(crate) fn is_executable_file(path: &std::path::Path) -> bool {
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_binary_that_every_machine_has() {
        assert!(find_on_path("sh").is_some());
    }

    #[test]
    fn a_missing_binary_is_not_found() {
        assert!(find_on_path("idempotent-no-such-binary").is_none());
    }

    #[test]
    fn the_missing_message_says_how_to_install() {
        assert_eq!(
            missing_message("redis-server"),
            "redis-server not found on PATH: install it with `sudo apt-get install -y \
             redis-server` (the README's test command does this)"
        );
    }
}
