//! Finding the PostgreSQL server programs, which Debian keeps off `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The programs a private server needs; both must sit in one directory, as
/// `initdb` finds `postgres` next to itself.
const REQUIRED: [&str; 2] = ["initdb", "postgres"];

/// The directory holding `initdb` and `postgres`; panics with install
/// instructions when there is none.
pub(crate) fn bindir() -> PathBuf {
    candidates()
        .into_iter()
        .find(|dir| has_server_programs(dir))
        .unwrap_or_else(|| panic!("{}", missing_message()))
}

/// Where to look, in order: what `pg_config` reports (the installed
/// version's own directory), Debian's versioned directories (newest first),
/// then `PATH`.
fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = pg_config_bindir() {
        dirs.push(dir);
    }
    dirs.extend(debian_bindirs());
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `/usr/lib/postgresql/<major>/bin`, highest major version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn has_server_programs(dir: &Path) -> bool {
    REQUIRED.iter().all(|name| dir.join(name).is_file())
}

/// Tests must fail loudly, with the fix in the message, rather than skip
/// without a server.
fn missing_message() -> String {
    "initdb and postgres (the PostgreSQL server) not found in `pg_config --bindir`, \
     /usr/lib/postgresql/*/bin or on PATH: install them with \
     `sudo apt-get install -y postgresql` (scripts/test does this), or run the \
     Postgres store's tests against an existing server with \
     DATABASE_URL=postgres://user@host/db (each test then uses a fresh schema)"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_the_server_is_not_a_candidate() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_server_programs(dir.path()));
        std::fs::write(dir.path().join("initdb"), "").unwrap();
        assert!(!has_server_programs(dir.path()), "postgres is missing");
        std::fs::write(dir.path().join("postgres"), "").unwrap();
        assert!(has_server_programs(dir.path()));
    }

    #[test]
    fn the_missing_message_says_how_to_install() {
        let message = missing_message();
        assert!(
            message.contains("apt-get install -y postgresql"),
            "{message}"
        );
        assert!(message.contains("DATABASE_URL"), "{message}");
    }
}
